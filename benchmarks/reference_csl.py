"""Independent plain-PyTorch reference of co-supervised learning (docs/algorithm.md), probe mode.

Written from the spec alone (no csl_hf imports) to cross-check the Trainer-based implementation.
Reads a §4 cache, trains a linear head ``nn.Linear(D, C)`` on the cached features per level, and
prints the §4 report JSON.

Training recipe (every head: ceiling, each level):
  ``torch.manual_seed(seed)`` then a fresh ``nn.Linear``; ``torch.optim.Adam(lr, weight_decay)``
  (coupled L2, as torch's Adam; 0 by default); cosine LR per optimiser step without warmup,
  ``lr_s = lr * 0.5 * (1 + cos(pi * s / total_steps))`` for the s-th step (s = 0 .. total-1),
  ``total_steps = epochs * ceil(N / batch_size)``; each epoch a permutation from a
  ``torch.Generator`` seeded with ``seed`` (one generator per head), last partial batch kept;
  no gradient clipping. Hard targets: cross-entropy with the class index; soft: cross-entropy
  against the probability vector, ``-(p * log_softmax(z)).sum(1).mean()``.

Consistency filter, "keep rank < r*N": with m = #samples whose target argmax is in the previous
student's top-k, r = m / N, so r*N = m exactly and the count of integer ranks in [0, r*N) is
ceil(r*N) = m. We keep exactly m samples (the m smallest CE, stable sort) using the integer m, so
float round-off in r*N (e.g. 2999.9999996) can never move the count by one.

Usage::

    python benchmarks/reference_csl.py --cache_dir /tmp/syn --epochs 20 --batch_size 100 \
        --lr 1e-3 --denoise top3 [--soft_labels] --assignment student --json out.json [--threads 1]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def load_cache(cache_dir):
    """Return (tensors as float32/int64, meta dict)."""
    t = load_file(os.path.join(cache_dir, "cache.safetensors"))
    with open(os.path.join(cache_dir, "cache.json")) as f:
        meta = json.load(f)
    t["features"] = t["features"].float()
    t["teacher_probs"] = t["teacher_probs"].float()
    t["labels"] = t["labels"].long()
    return t, meta


def train_head(x, targets, num_labels, epochs, batch_size, lr, weight_decay, seed):
    """Train a fresh linear head; ``targets`` int64 [N] (hard) or float [N, C] (soft)."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], num_labels)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    n = x.shape[0]
    total = max(1, epochs * math.ceil(n / batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * s / total)))
    gen = torch.Generator().manual_seed(seed)
    soft = targets.dim() == 2
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            z = head(x[idx])
            if soft:
                loss = -(targets[idx] * F.log_softmax(z, dim=1)).sum(1).mean()
            else:
                loss = F.cross_entropy(z, targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return head


@torch.no_grad()
def accuracy(head, x, y):
    return (head(x).argmax(1) == y).sum().item() / len(y)


def bare_adam_loop(features, targets, epochs, batch_size, lr, num_labels=None, seed=0):
    """Speed baseline: seconds for a bare linear-head/Adam/cosine loop over ``features``."""
    if num_labels is None:
        num_labels = targets.shape[1] if targets.dim() == 2 else int(targets.max()) + 1
    t0 = time.perf_counter()
    train_head(features, targets, num_labels, epochs, batch_size, lr, 0.0, seed)
    return time.perf_counter() - t0


def frac(a, b):
    return a / b if b > 0 else None


def run(cache_dir, epochs=20, batch_size=100, lr=1e-3, weight_decay=0.0, denoise="top3",
        soft_labels=False, seed=0, assignment="student"):
    """Run §1 in probe mode; return the §4 report dict."""
    t, meta = load_cache(cache_dir)
    C = meta["num_labels"]
    tr, te = t["split"] == 0, t["split"] == 1
    x_tr, x_te = t["features"][tr], t["features"][te]
    y_tr, y_te = t["labels"][tr], t["labels"][te]
    P_tr, P_te = t["teacher_probs"][:, tr], t["teacher_probs"][:, te]
    N = x_tr.shape[0]
    fit = lambda x, tg, ep: train_head(x, tg, C, ep, batch_size, lr, weight_decay, seed)

    known = y_tr >= 0  # ground truth for train-split diagnostics where known
    ceiling = accuracy(fit(x_tr[known], y_tr[known], epochs), x_te, y_te)
    print(f"  reference ceiling: {ceiling:.4f}", file=sys.stderr, flush=True)
    g = meta["levels"][0][0]
    weak = (P_te[g].argmax(1) == y_te).sum().item() / len(y_te)
    pgr = lambda s: 100.0 * (s - weak) / (ceiling - weak) if ceiling > weak else None
    if ceiling <= weak:
        print(f"warning: ceiling {ceiling:.4f} <= weak {weak:.4f}; PGR is null", file=sys.stderr)

    rounds, prev_logits = [], None
    for level, teachers in enumerate(meta["levels"]):
        if level == 0:
            probs = P_tr[teachers[0]]
            keep = torch.ones(N, dtype=torch.bool)
            m, how = N, "none"
        else:
            # 1. teacher assignment: class -> teacher of this level
            owner = torch.full((C,), -1, dtype=torch.long)
            for j, k in enumerate(teachers):
                owner[meta["specialties"][k]["classes"]] = j
            if (owner < 0).any():
                raise ValueError(f"level {level}: specialties do not cover all classes")
            route_by = prev_logits.argmax(1) if assignment == "student" else y_tr
            if assignment == "oracle" and (y_tr < 0).any():
                raise ValueError("oracle assignment needs ground truth on the training split")
            which = torch.tensor(teachers)[owner[route_by]]  # teacher index into K per sample
            probs = P_tr[which, torch.arange(N)]
            how = assignment
            # 2. consistency filter
            tgt = probs.argmax(1)
            if denoise == "all":
                m = N
            else:
                k = int(denoise[3:])
                topk = prev_logits.topk(k, dim=1).indices
                m = int((topk == tgt[:, None]).any(1).sum())
            if m == 0:
                raise ValueError(f"level {level}: keep rate r = 0 (denoise={denoise})")
            ce = F.cross_entropy(prev_logits, tgt, reduction="none")
            order = torch.sort(ce, stable=True).indices
            keep = torch.zeros(N, dtype=torch.bool)
            keep[order[:m]] = True  # ranks 0..m-1, i.e. rank < r*N with r = m/N
        r = m / N
        tgt = probs.argmax(1)
        targets = probs if soft_labels else tgt
        # 3. fresh head on the kept samples for floor(E / r) epochs
        ep = (epochs * N) // m  # floor(E / r) in exact integer arithmetic (r = m / N)
        head = fit(x_tr[keep], targets[keep], ep)
        with torch.no_grad():
            prev_logits = head(x_tr)  # 4. drives the next level
        student = accuracy(head, x_te, y_te)
        print(f"  reference level {level}: keep {r:.3f}, student {student:.4f}", file=sys.stderr, flush=True)
        correct = (tgt == y_tr) & known
        rounds.append({
            "level": level, "num_teachers": len(teachers), "assignment": how,
            "teacher_accuracy": frac(correct.sum().item(), known.sum().item()),
            "keep_rate": r,
            "precision": frac((keep & correct).sum().item(), (keep & known).sum().item()),
            "recall": frac((keep & correct).sum().item(), correct.sum().item()),
            "student_accuracy": student, "pgr": pgr(student), "epochs": ep})
    config = dict(cache_dir=cache_dir, epochs=epochs, batch_size=batch_size, lr=lr,
                  weight_decay=weight_decay, denoise=denoise, soft_labels=soft_labels,
                  assignment=assignment, optimizer="Adam", schedule="cosine_per_step",
                  mode="probe", reinit_head_each_round=True)
    return {"weak_accuracy": weak, "ceiling_accuracy": ceiling, "seed": seed,
            "config": config, "rounds": rounds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache_dir", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch_size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight_decay", type=float, default=0.0)
    ap.add_argument("--denoise", default="top3", choices=["top1", "top2", "top3", "all"])
    ap.add_argument("--soft_labels", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--assignment", default="student", choices=["student", "oracle"])
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: fastest and steadiest for a tiny probe "
                         "on a shared CPU; 0 keeps torch's default)")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    rep = run(a.cache_dir, a.epochs, a.batch_size, a.lr, a.weight_decay, a.denoise,
              a.soft_labels, a.seed, a.assignment)
    rep["runtime_s"] = time.perf_counter() - t0
    s = json.dumps(rep, indent=1)
    print(s)
    if a.json:
        with open(a.json, "w") as f:
            f.write(s + "\n")


if __name__ == "__main__":
    main()
