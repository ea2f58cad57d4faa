#!/usr/bin/env python
"""Check the package against an independent plain-PyTorch implementation of the method (reference_csl.py), on the
same cache with the same hyperparameters.

    python benchmarks/compare_reference.py --cache_dir OUT/cache [--epochs 20 --batch_size 100 --lr 1e-3 \
        --denoise top3 --seed 0 [--soft_labels]]

Agreement criteria (issue #2): the same level-0 teacher accuracy, keep rates within 0.03, student accuracies within
1.5 points per round. The two use different random streams (head initialisation, batch order), so they agree only
to within the run-to-run noise of the probe.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_csl  # noqa: E402

from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, CSLCache  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache_dir", required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--denoise", default="top3")
    p.add_argument("--soft_labels", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    print(f"[1/2] the independent reference implementation (benchmarks/reference_csl.py) on {a.cache_dir} ...",
          flush=True)
    ref = reference_csl.run(a.cache_dir, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=0.0,
                            denoise=a.denoise, soft_labels=a.soft_labels, seed=a.seed, assignment="student")
    with tempfile.TemporaryDirectory() as tmp:
        args = CoSupervisedConfig(output_dir=tmp, num_train_epochs=a.epochs, per_device_train_batch_size=a.batch_size,
                                  learning_rate=a.lr, denoise=a.denoise, soft_labels=a.soft_labels, seed=a.seed,
                                  save_round_checkpoints=False, disable_tqdm=True, assignment="student", baselines="none")
        print("[2/2] the package (CoSupervisedTrainer) with the same settings; one line per round ...", flush=True)
        trainer = CoSupervisedTrainer(args=args, cache=CSLCache.load(a.cache_dir))
        trainer.train()
        ours = trainer.report

    ok = True
    print(f"weak: package {ours['weak_accuracy']:.4f} reference {ref['weak_accuracy']:.4f}; ceiling: package "
          f"{ours['ceiling_accuracy']:.4f} reference {ref['ceiling_accuracy']:.4f}")
    print("| level | teacher acc (pkg / ref) | keep rate (pkg / ref) | student acc % (pkg / ref) | PGR (pkg / ref) |")
    print("|---|---|---|---|---|")
    for mine, theirs in zip(ours["rounds"], ref["rounds"]):
        d_keep = abs(mine["keep_rate"] - theirs["keep_rate"])
        d_acc = 100 * abs(mine["student_accuracy"] - theirs["student_accuracy"])
        same_teacher = mine["level"] > 0 or abs(mine["teacher_accuracy"] - theirs["teacher_accuracy"]) < 1e-9
        ok &= d_keep <= 0.03 and d_acc <= 1.5 and same_teacher
        print(f"| {mine['level']} | {mine['teacher_accuracy']:.4f} / {theirs['teacher_accuracy']:.4f} | "
              f"{mine['keep_rate']:.4f} / {theirs['keep_rate']:.4f} | {100 * mine['student_accuracy']:.2f} / "
              f"{100 * theirs['student_accuracy']:.2f} | {mine['pgr']:.1f} / {theirs['pgr']:.1f} |")
    print("agreement: " + ("yes (level-0 teacher accuracy equal, keep rates within 0.03, accuracies within 1.5 points)"
                           if ok else "NO: outside the tolerances above"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
