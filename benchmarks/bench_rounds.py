#!/usr/bin/env python
"""Speed of the CSL rounds on a cache: `CoSupervisedTrainer.train()` against a bare PyTorch Adam loop that does the
same optimiser steps (same phases, same sample counts, same epochs), measured side by side in one process.

    python benchmarks/bench_rounds.py [--n 9000 --dim 256 --levels 1,2,4,5 --epochs 20 --repeats 3 --threads 1]

What is timed: the trainer's whole ``train()`` (ceiling + every round: assignment, filter, Trainer.train() per phase,
predictions, metrics) against ``sum over phases of bare_adam_loop(...)``. Interpreter and import start-up are
excluded from both. Both run on the same thread count (1 by default: on a shared 2-core machine, two intra-op
threads for a 256x10 linear head only add contention noise).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_synthetic_cache import make_cache  # noqa: E402
from reference_csl import bare_adam_loop  # noqa: E402

from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, CSLCache  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=9000, help="images in the synthetic cache")
    p.add_argument("--dim", type=int, default=256, help="feature width")
    p.add_argument("--num_labels", type=int, default=10)
    p.add_argument("--levels", default="1,2,4,5", help="teachers per level (1,2,4,5 = 12 teachers in 4 levels)")
    p.add_argument("--epochs", type=float, default=20)
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    with tempfile.TemporaryDirectory() as tmp:
        make_cache(os.path.join(tmp, "cache"), n=a.n, dim=a.dim, num_labels=a.num_labels,
                   levels=[int(x) for x in a.levels.split(",")], seed=0, dtype="float16", test_fraction=0.2)
        cache = CSLCache.load(os.path.join(tmp, "cache"))
        train = cache.rows(0)
        x = cache.features[train]
        args = CoSupervisedConfig(output_dir=os.path.join(tmp, "out"), num_train_epochs=a.epochs,
                                  per_device_train_batch_size=a.batch_size, learning_rate=a.lr, disable_tqdm=True,
                                  save_round_checkpoints=False, logging_steps=10**9, report_to="none",
                                  baselines="none")  # the bare loop runs the CSL chain only
        bare_adam_loop(x[:500], cache.labels[train][:500], 1, a.batch_size, a.lr, num_labels=a.num_labels)  # warm-up
        trainer_times, bare_times = [], []
        for _ in range(a.repeats):
            trainer = CoSupervisedTrainer(args=args, cache=cache)
            t0 = time.perf_counter()
            trainer.train()
            report = trainer.report
            trainer_times.append(time.perf_counter() - t0)
            # The same optimiser steps: the ceiling (all training samples, E epochs), then every round's kept set.
            phases = [(len(train), a.epochs)] + [(r["num_kept"], r["epochs"]) for r in report["rounds"]]
            t0 = time.perf_counter()
            for n, epochs in phases:
                bare_adam_loop(x[:n], cache.labels[train][:n], int(epochs), a.batch_size, a.lr, num_labels=a.num_labels)
            bare_times.append(time.perf_counter() - t0)
        steps = sum(-(-n // a.batch_size) * int(e) for n, e in phases)
    t, b = statistics.median(trainer_times), statistics.median(bare_times)
    print(f"cache: {a.n} x {a.dim}, {cache.num_teachers} teachers in {len(cache.levels)} levels; "
          f"{len(phases)} phases, {steps} optimiser steps; threads={a.threads}; torch {torch.__version__}")
    print(f"CoSupervisedTrainer.train(): median {t:.3f} s  (runs: {', '.join(f'{v:.3f}' for v in trainer_times)})")
    print(f"bare PyTorch Adam loop:      median {b:.3f} s  (runs: {', '.join(f'{v:.3f}' for v in bare_times)})")
    print(f"ratio trainer / bare: {t / b:.2f}x  (target: at most 1.5x)")


if __name__ == "__main__":
    main()
