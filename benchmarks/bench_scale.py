#!/usr/bin/env python
"""The CSL rounds at the paper's ImageNet shape, and at ImageNet-train scale, on this machine's CPU.

    python benchmarks/bench_scale.py paper      [--n_train 40000 --n_test 10000 --threads 2]
    python benchmarks/bench_scale.py imagenet   [--n 1281167 --topk 5 --threads 2]

``paper``: a synthetic cache of the shape of the paper's run (40,000 weak-to-strong + 10,000 test samples, 384-dim
features as DINOv2 ViT-S/14, 1,000 classes, 15 teachers in levels 1-2-4-8, dense float16 probabilities). The whole
rounds run (ceiling + 4 levels, 20 epochs, batch 100, Adam, cosine) through `CoSupervisedTrainer` in a fresh
process, its wall time beside a bare PyTorch loop doing the same optimiser steps in another, and each process's peak
RSS beside the cache's own size on disk.

``imagenet``: 1.28 M training samples, compact cache (each teacher's top-5, float16 + int32 ids), features in
float16. Times, in one process: loading the cache, the student's assignment of a specialist level (8 specialists),
the consistency filter (top-3 hits + small-loss ranking), and one epoch of a probe phase; peak RSS after each step.
The full run is extrapolated from these (5 phases, E = 20 epochs, scaled by the keep rates).

Synthetic data (benchmarks/make_synthetic_cache.py's model: Gaussian classes, teachers that see a noisy half of
the coordinates) is generated in chunks, so that generating 1.28 M x 1,000 posteriors never holds them whole.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_cache(out: str, n_train: int, n_test: int, dim: int, num_labels: int, levels: list[int], topk: int | None,
                seed: int = 0, chunk: int = 20000) -> None:
    """A synthetic cache in ``out`` (dense float16 probabilities, or each teacher's top-``topk``)."""
    g = torch.Generator().manual_seed(seed)
    n, C, D = n_train + n_test, num_labels, dim
    labels = torch.randint(C, (n,), generator=g)
    scale = 4.7 / math.sqrt(2 * D)
    mu = torch.randn(C, D, generator=g) * scale
    split = torch.zeros(n, dtype=torch.int8)
    split[n_train:] = 1
    features = torch.empty(n, D, dtype=torch.float16)
    for s in range(0, n, chunk):
        features[s : s + chunk] = (mu[labels[s : s + chunk]] + torch.randn(min(chunk, n - s), D, generator=g)).half()
    blocks, names, level_idx = [], [], []
    for lv, k in enumerate(levels):
        level_idx.append(list(range(len(blocks), len(blocks) + k)))
        for j, b in enumerate(torch.tensor_split(torch.arange(C), k)):
            blocks.append(b.tolist())
            names.append("generalist" if lv == 0 else f"level{lv}_specialist{j}")
    K, m = len(blocks), D // 2
    if topk:
        probs = torch.empty(K, n, topk, dtype=torch.float16)
        ids = torch.empty(K, n, topk, dtype=torch.int32)
    else:
        probs = torch.empty(K, n, C, dtype=torch.float16)
    for t, classes in enumerate(blocks):
        dims = torch.randperm(D, generator=g)[:m]
        mu_t = mu[:, dims] + 0.6 * scale * torch.randn(C, m, generator=g)
        mask = torch.full((C,), float("-inf"))
        mask[classes] = 0.0
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            z = features[s:e, dims].float() + 0.8 * torch.randn(e - s, m, generator=g)
            p = torch.softmax(-torch.cdist(z, mu_t).pow(2) / (2 * 1.64) + mask, dim=1)
            if topk:
                v, i = p.topk(topk, dim=1)
                probs[t, s:e], ids[t, s:e] = v.half(), i.int()
            else:
                probs[t, s:e] = p.half()
    tensors = {"features": features, "labels": labels, "split": split}
    if topk:
        tensors.update(teacher_topk_probs=probs, teacher_topk_indices=ids)
    else:
        tensors["teacher_probs"] = probs
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "cache.safetensors"))
    with open(os.path.join(out, "cache.json"), "w") as f:
        json.dump({"num_labels": C, "id2label": {str(c): f"class_{c}" for c in range(C)}, "levels": level_idx,
                   "specialties": [{"classes": b} for b in blocks], "teacher_names": names,
                   "student": {"name_or_path": "synthetic-gaussian", "feature_dim": D}}, f)


# ---------------------------------------------------------------------------------------------------- paper shape
def run_trainer(cache_dir: str, out: str, threads: int) -> dict:
    """(In a child process) the whole CSL run; prints wall time, phases and peak RSS as JSON."""
    torch.set_num_threads(threads)
    from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, CSLCache

    cache = CSLCache.load(cache_dir)
    args = CoSupervisedConfig(output_dir=out, learning_rate=1e-3, disable_tqdm=True, save_round_checkpoints=False,
                              logging_steps=10**9, report_to="none",
                              baselines="none")  # the bare loop runs the CSL chain only
    trainer = CoSupervisedTrainer(args=args, cache=cache)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    rows = int((cache.split == 0).sum())
    phases = [(rows, 20)] + [(r["num_kept"], r["epochs"]) for r in trainer.report["rounds"]]
    return {"wall_s": wall, "phases": phases, "peak_rss_mb": peak_rss_mb(),
            "pgr": [r["pgr"] for r in trainer.report["rounds"]]}


def run_bare(cache_dir: str, phases: list, threads: int) -> dict:
    """(In a child process) the same optimiser steps in a bare PyTorch Adam loop on the same features."""
    torch.set_num_threads(threads)
    sys.path.insert(0, HERE)
    from reference_csl import bare_adam_loop

    from csl_hf import CSLCache

    cache = CSLCache.load(cache_dir)
    train = cache.rows(0)
    x, y = cache.features[train], cache.labels[train]
    t0 = time.perf_counter()
    for n, epochs in phases:
        bare_adam_loop(x[:n], y[:n], int(epochs), 100, 1e-3, num_labels=cache.num_labels)
    return {"wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def child(kind: str, *argv) -> dict:
    out = subprocess.run([sys.executable, __file__, "_child", kind, *argv], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": argv[-1]})
    return json.loads(out.stdout.strip().splitlines()[-1])


def paper(a) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = os.path.join(tmp, "cache")
        t0 = time.perf_counter()
        write_cache(cache_dir, a.n_train, a.n_test, 384, 1000, [1, 2, 4, 8], topk=None)
        size = os.path.getsize(os.path.join(cache_dir, "cache.safetensors")) / 2**20
        print(f"synthetic cache: {a.n_train} + {a.n_test} samples x 384 dims, 1,000 classes, 15 teachers (1-2-4-8), "
              f"dense float16: {size:.0f} MiB on disk (made in {time.perf_counter() - t0:.0f} s); "
              f"threads={a.threads}")
        ours = child("trainer", cache_dir, os.path.join(tmp, "out"), str(a.threads))
        bare = child("bare", cache_dir, json.dumps(ours["phases"]), str(a.threads))
    steps = sum(math.ceil(n / 100) * int(e) for n, e in ours["phases"])
    print(f"phases (samples x epochs): {ours['phases']}; {steps} optimiser steps; PGR by level "
          f"{[round(p, 1) for p in ours['pgr']]}")
    print(f"CoSupervisedTrainer.train(): {ours['wall_s']:.1f} s, peak RSS {ours['peak_rss_mb']:.0f} MiB")
    print(f"bare PyTorch Adam loop:      {bare['wall_s']:.1f} s, peak RSS {bare['peak_rss_mb']:.0f} MiB")
    print(f"ratio trainer / bare: {ours['wall_s'] / bare['wall_s']:.2f}x (target <= 1.2x); peak RSS / cache size: "
          f"{ours['peak_rss_mb'] / size:.2f}x (target <= 2x)")


# ---------------------------------------------------------------------------------------------------- ImageNet scale
def imagenet(a) -> None:
    torch.set_num_threads(a.threads)
    from csl_hf import CSLCache
    from csl_hf.method import consistency as C
    from csl_hf.method import rounds as R
    from csl_hf.trainer.modes import ProbeMode

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = os.path.join(tmp, "cache")
        t0 = time.perf_counter()
        # Generated in another process: this one's peak RSS is then the rounds' own.
        made_rss = child("make", cache_dir, str(a.n), str(a.topk), str(a.threads))["peak_rss_mb"]
        size = os.path.getsize(os.path.join(cache_dir, "cache.safetensors")) / 2**20
        made = time.perf_counter() - t0
        rss0 = peak_rss_mb()
        t0 = time.perf_counter()
        cache = CSLCache.load(cache_dir)
        load_s = time.perf_counter() - t0
    print(f"synthetic compact cache: {a.n} training + 10,000 test samples, top-{a.topk} of 1,000 classes, 15 "
          f"teachers: {size:.0f} MiB on disk (made in {made:.0f} s by another process, its peak RSS {made_rss:.0f} "
          f"MiB); threads={a.threads}; this process before loading: peak RSS {rss0:.0f} MiB")
    print(f"load + validate: {load_s:.1f} s, peak RSS {peak_rss_mb():.0f} MiB")
    rows = cache.rows(0)
    head = torch.nn.Linear(384, 1000)
    mode = ProbeMode(head, cache, torch.device("cpu"), 1000)
    t0 = time.perf_counter()
    targets = R.plan_round(cache, 0, None, rows)
    print(f"level 0 targets (generalist argmax): {time.perf_counter() - t0:.1f} s, peak RSS {peak_rss_mb():.0f} MiB")
    # One level-0 epoch on every training sample (timed on its first --max_epoch_steps steps); the head it trains is
    # then the "previous student" of a specialist level, so that the filter's keep rate is a real one.
    data = mode.phase_data(targets.keep, targets.fit_targets(), seed=0, batch_size=100, process_index=0,
                           num_processes=1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    steps = 0
    for batch in data:
        loss = torch.nn.functional.cross_entropy(head(batch["features"].float()), batch["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        if steps == a.max_epoch_steps:
            break
    epoch_s = (time.perf_counter() - t0) * len(data) / steps
    print(f"one probe epoch over all {len(rows)} samples ({len(data)} steps of 100; {steps} timed): {epoch_s:.1f} s, "
          f"peak RSS {peak_rss_mb():.0f} MiB")
    previous = mode.student_logits()
    t0 = time.perf_counter()
    R.assign(cache, 3, "student", previous, rows)
    assign_s = time.perf_counter() - t0
    print(f"student assignment to 8 specialists: {assign_s:.1f} s, peak RSS {peak_rss_mb():.0f} MiB")
    t0 = time.perf_counter()
    targets = R.plan_round(cache, 3, previous, rows, denoise="top3")
    plan_s = time.perf_counter() - t0
    print(f"whole round planning (student logits + assignment + targets + top-3 filter + ranking): {plan_s:.1f} s "
          f"(keep rate {targets.keep_rate:.3f}), peak RSS {peak_rss_mb():.0f} MiB")
    epochs = 20 + sum(C.scaled_epochs(20, r) for r in (0.85, 0.9, 0.93))  # keep rates as in the paper's run
    total_h = (epochs + 20) * epoch_s / 3600 + 4 * plan_s / 3600
    print(f"extrapolated run (ceiling + 4 levels, {epochs + 20} epochs in all at keep rates 0.85-0.93): about "
          f"{total_h:.1f} h of probe training on {a.threads} CPU threads, peak RSS about {peak_rss_mb():.0f} MiB")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "make":  # the ImageNet-scale compact cache, written in its own process
            torch.set_num_threads(int(rest[3]))
            write_cache(rest[0], int(rest[1]), 10000, 384, 1000, [1, 2, 4, 8], topk=int(rest[2]), chunk=50000)
            print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        elif kind == "trainer":
            print(json.dumps(run_trainer(rest[0], rest[1], int(rest[2]))))
        else:
            print(json.dumps(run_bare(rest[0], json.loads(rest[1]), int(rest[2]))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", choices=["paper", "imagenet"])
    p.add_argument("--n_train", type=int, default=40000)
    p.add_argument("--n_test", type=int, default=10000)
    p.add_argument("--n", type=int, default=1281167)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max_epoch_steps", type=int, default=2000, help="imagenet: steps timed to extrapolate an epoch")
    a = p.parse_args()
    paper(a) if a.case == "paper" else imagenet(a)


if __name__ == "__main__":
    main()
