#!/usr/bin/env python
"""Is full fine-tuning worth running? Full-mode CSL against the full-mode single teacher, and the full-mode ceiling
against the probe ceiling, on Animal-MNIST within a bounded CPU budget.

    python benchmarks/full_mode_benchmark.py --seeds 0,1,2 --output_dir bench_full [-- extra run_csl.py flags]

Each seed runs ``examples/run_csl.py --student_mode full`` (its own recipe: the head fitted on cached features
first, batch-norm statistics frozen, backbone learning rate / 10, warmup, 3 epochs) on 2,000 weak-to-strong images,
1,000 teacher images and 1,000 test images, levels 1,2,5; then the probe rounds on the very same cache
(``--cache_dir``, seconds), for the probe ceiling and the probe's CSL beside it. Every
number printed comes from the runs' csl_report.json files (kept under --output_dir).
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
DATA = ["--dataset_name", "animal_mnist", "--teacher_size", "1000", "--test_size", "1000", "--train_size", "2000",
        "--teachers_per_level", "1,2,5"]


def run(out: str, argv: list[str]) -> tuple[dict, float]:
    path = os.path.join(out, "csl_report.json")
    t0 = time.time()
    if not os.path.isfile(path):
        subprocess.run([sys.executable, RUN_CSL, *argv, "--output_dir", out, "--overwrite_output_dir", "True",
                        "--disable_tqdm", "True", "--no_compare_label_types"], check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f), time.time() - t0


def ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--output_dir", default="bench_full")
    a, extra = p.parse_known_args()
    extra = [x for x in extra if x != "--"]
    rows, t0 = [], time.time()
    for s in [int(x) for x in a.seeds.split(",")]:
        out = os.path.join(a.output_dir, f"seed{s}")
        full, wall = run(out, [*DATA, "--seed", str(s), "--teacher_seed", str(s), "--student_mode", "full", *extra])
        probe, _ = run(os.path.join(out, "probe"), ["--cache_dir", os.path.join(out, "cache"), "--seed", str(s)])
        rows.append((s, full, probe, wall))
    print(f"## Animal-MNIST, full fine-tuning vs linear probe ({len(rows)} seeds; 2,000 weak-to-strong images)\n")
    print("| seed | weak % | probe ceiling % | full ceiling % | full single-teacher PGR | full best CSL PGR | "
          "probe single-teacher PGR | probe best CSL PGR | full run wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    cols = {k: [] for k in ("pc", "fc", "fs", "fb", "ps", "pb")}
    for s, full, probe, wall in rows:
        fs, fb = full["rounds"][0]["pgr"], max(r["pgr"] for r in full["rounds"][1:])
        ps, pb = probe["rounds"][0]["pgr"], max(r["pgr"] for r in probe["rounds"][1:])
        for k, v in zip(cols, (100 * probe["ceiling_accuracy"], 100 * full["ceiling_accuracy"], fs, fb, ps, pb)):
            cols[k].append(v)
        print(f"| {s} | {100 * full['weak_accuracy']:.1f} | {100 * probe['ceiling_accuracy']:.1f} | "
              f"{100 * full['ceiling_accuracy']:.1f} | {fs:.1f} | {fb:.1f} | {ps:.1f} | {pb:.1f} | {wall:.0f} |")
    print(f"| mean ± std | | {ms(cols['pc'])} | {ms(cols['fc'])} | {ms(cols['fs'])} | {ms(cols['fb'])} | "
          f"{ms(cols['ps'])} | {ms(cols['pb'])} | |")
    gain = [b - s for b, s in zip(cols["fb"], cols["fs"])]
    lift = [f - q for f, q in zip(cols["fc"], cols["pc"])]
    print(f"\nfull-mode best CSL minus full-mode single teacher: {ms(gain)} PGR points; full ceiling minus probe "
          f"ceiling: {ms(lift)} accuracy points")
    print(f"(total wall time {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
