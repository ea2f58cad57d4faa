"""Routing by gate teachers at an equal teacher budget.

The package's default (`--assignment auto`) routes class levels by gate teachers: one more tiny teacher per class
specialist, so the 1, 2, 4, 5 hierarchy trains 23 teachers instead of 12 (+92 % teacher steps). Here the default gets
the paper's budget instead (12 teachers x 100 steps = 1,200 steps): every one of its 23 teachers trains for
``round(100 * 12 / 23) = 52`` steps (1,196 steps), against student routing (the paper's rule) with 100 steps per
teacher. Each budget's own PGR (performance gap recovered, 100 x (student - weak) / (ceiling - weak) in test
accuracy) is measured from its own generalist (weaker with 52 steps), so both are also scored
here on one yardstick: the 100-step generalist's test accuracy (weak) and the seed's ceiling (the same student on the
same split for both budgets).

    python benchmarks/equal_budget.py --seeds 24,25,26,27,28,29 --output_dir bench_out

The runs are those of ``offline_benchmark.py --permute_classes --specialties auto --assignments student`` with
``--teacher_steps 100`` and ``52`` into the same --output_dir: reports already there are reused, not rerun.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from offline_benchmark import mean_std, run  # noqa: E402

FULL_STEPS, NUM_TEACHERS, NUM_WITH_GATES = 100, 12, 23


def best_accuracy(rounds: list[dict]) -> float:
    """The best test accuracy over the specialist levels (level 1 on), in %: as offline_benchmark's best PGR."""
    return 100 * max(r["student_accuracy"] for r in rounds[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="24,25,26,27,28,29", help="comma-separated seeds (split, teacher, rounds)")
    p.add_argument("--output_dir", default="bench_out")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    low = round(FULL_STEPS * NUM_TEACHERS / NUM_WITH_GATES)
    t0 = time.time()
    extras = {"student": {"assignment": "student"}}
    reports = {}
    for steps in (FULL_STEPS, low):
        tag = f"animal_mnist-perm-auto-steps{steps}-auto-gates"
        reports[steps] = [run(os.path.join(a.output_dir, f"{tag}-seed{s}"), "animal_mnist", s, "auto", True, steps,
                              extras) for s in seeds]
    full, eq = reports[FULL_STEPS], reports[low]
    weak = [100 * r["weak_accuracy"] for r in full]
    ceiling = [100 * r["ceiling_accuracy"] for r in full]
    chains = {
        f"student routing, {NUM_TEACHERS} teachers x {FULL_STEPS} steps": [best_accuracy(r["student"]["rounds"])
                                                                            for r in full],
        f"default (gate teachers), {NUM_WITH_GATES} teachers x {low} steps": [best_accuracy(r["rounds"]) for r in eq],
        f"default (gate teachers), {NUM_WITH_GATES} teachers x {FULL_STEPS} steps": [best_accuracy(r["rounds"])
                                                                                      for r in full],
    }
    print(f"seeds {a.seeds}; teacher steps: {NUM_TEACHERS} x {FULL_STEPS} = {NUM_TEACHERS * FULL_STEPS}, "
          f"{NUM_WITH_GATES} x {low} = {NUM_WITH_GATES * low}, {NUM_WITH_GATES} x {FULL_STEPS} = "
          f"{NUM_WITH_GATES * FULL_STEPS}")
    print(f"weak ({FULL_STEPS}-step generalist) {mean_std(weak)} %; ceiling {mean_std(ceiling)} %; the "
          f"{low}-step generalist {mean_std([100 * r['weak_accuracy'] for r in eq])} %")
    print("PGR on the common yardstick = 100 x (best test accuracy - weak) / (ceiling - weak)\n")
    print("| chain | best test accuracy % | PGR, common yardstick (per seed) |")
    print("|---|---|---|")
    common = {}
    for name, acc in chains.items():
        common[name] = [100 * (x - w) / (c - w) for x, w, c in zip(acc, weak, ceiling)]
        print(f"| {name} | {mean_std(acc)} | {mean_std(common[name])} "
              f"({', '.join(f'{g:.1f}' for g in common[name])}) |")
    student, equal, _ = common.values()
    diff = [e - s for e, s in zip(equal, student)]
    print(f"\nequal budget, default minus student routing: {mean_std(diff)} PGR (per seed "
          f"{', '.join(f'{d:+.1f}' for d in diff)}; better on {sum(d > 0 for d in diff)} of {len(diff)})")
    print(f"(total wall time {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
