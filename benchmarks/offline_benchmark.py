#!/usr/bin/env python
"""The offline weak-to-strong benchmark behind docs/benchmark.md: several seeds of the default run (hard and soft
labels), oracle assignment on the same caches, and a sweep of the teacher budget.

    python benchmarks/offline_benchmark.py --dataset_name animal_mnist --seeds 0,1,2 --sweep 25,50,100,300 \
        --output_dir bench_out [-- any extra run_csl.py flags]

Every number it prints comes from the csl_report.json files of the runs it launches (kept under --output_dir).
Each run is ``examples/run_csl.py`` with ``--seed S --teacher_seed S`` plus the extra flags; the oracle rows rerun
the rounds on that run's cache with ``--assignment oracle``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_CSL = os.path.join(ROOT, "examples", "run_csl.py")


def read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def run(out: str, argv: list[str]) -> dict:
    if not os.path.isfile(os.path.join(out, "csl_report.json")):
        subprocess.run([sys.executable, RUN_CSL, *argv, "--output_dir", out, "--overwrite_output_dir", "True",
                        "--disable_tqdm", "True"], check=True, stdout=subprocess.DEVNULL)
    return read(os.path.join(out, "csl_report.json"))


def mean_std(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"


def pct(values: list[float]) -> list[float]:
    return [100 * v for v in values]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_name", default="animal_mnist")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--sweep", default="", help="teacher budgets (steps) to sweep, e.g. 25,50,100,300; empty: none")
    p.add_argument("--output_dir", default="bench_out")
    a, extra = p.parse_known_args()
    extra = [x for x in extra if x != "--"]
    seeds = [int(s) for s in a.seeds.split(",")]
    base = ["--dataset_name", a.dataset_name, *extra]
    t0 = time.time()

    hard, soft, oracle = [], [], []
    for s in seeds:
        out = os.path.join(a.output_dir, f"{a.dataset_name}-seed{s}")
        hard.append(run(out, [*base, "--seed", str(s), "--teacher_seed", str(s)]))
        other = os.path.join(out, "soft_labels", "csl_report.json")
        soft.append(read(other) if os.path.isfile(other) else None)
        oracle.append(run(os.path.join(out, "oracle"), ["--cache_dir", os.path.join(out, "cache"), "--seed", str(s),
                                                        "--assignment", "oracle", "--compare_label_types", "False",
                                                        *extra]))

    levels = [r["num_teachers"] for r in hard[0]["rounds"]]
    print(f"## {a.dataset_name}: {len(seeds)} seeds ({a.seeds}); mean ± std\n")
    gaps = [100 * (r["ceiling_accuracy"] - r["weak_accuracy"]) for r in hard]
    print(f"weak (level-0 teacher) accuracy {mean_std(pct([r['weak_accuracy'] for r in hard]))} %, "
          f"ceiling {mean_std(pct([r['ceiling_accuracy'] for r in hard]))} %; ceiling - weak per seed: "
          f"{', '.join(f'{g:.1f}' for g in gaps)} points\n")
    print("| teachers | assignment | keep rate % | precision % | student acc % (hard) | PGR hard | PGR soft | PGR oracle (hard) |")
    print("|---|---|---|---|---|---|---|---|")
    for i, n in enumerate(levels):
        col = lambda reports, k: [r["rounds"][i][k] for r in reports if r is not None]  # noqa: E731
        print(f"| {n} | {hard[0]['rounds'][i]['assignment']} | {mean_std(pct(col(hard, 'keep_rate')))} | "
              f"{mean_std(pct([v for v in col(hard, 'precision') if v is not None]))} | "
              f"{mean_std(pct(col(hard, 'student_accuracy')))} | {mean_std(col(hard, 'pgr'))} | "
              f"{mean_std(col(soft, 'pgr'))} | {mean_std(col(oracle, 'pgr'))} |")
    gains = [max(r["pgr"] for r in rep["rounds"][1:]) - rep["rounds"][0]["pgr"] for rep in hard]
    print(f"\nbest CSL round minus single teacher (hard labels), PGR points: {mean_std(gains)} "
          f"(per seed: {', '.join(f'{g:.1f}' for g in gains)})")

    if a.sweep:
        print("\n## teacher budget sweep (hard labels)\n")
        print("| teacher steps | generalist test acc % | single-teacher PGR | best CSL PGR | gain |")
        print("|---|---|---|---|---|")
        for steps in [int(x) for x in a.sweep.split(",")]:
            reps = []
            for s in seeds:
                out = os.path.join(a.output_dir, f"{a.dataset_name}-steps{steps}-seed{s}")
                reps.append(run(out, [*base, "--seed", str(s), "--teacher_seed", str(s), "--teacher_steps", str(steps),
                                      "--compare_label_types", "False"]))
            single = [r["rounds"][0]["pgr"] for r in reps]
            best = [max(x["pgr"] for x in r["rounds"][1:]) for r in reps]
            print(f"| {steps} | {mean_std(pct([r['weak_accuracy'] for r in reps]))} | {mean_std(single)} | "
                  f"{mean_std(best)} | {mean_std([b - s for b, s in zip(best, single)])} |")
    print(f"\n(total wall time {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
