"""Write a synthetic CSL cache (docs/cache.md) with weak generalist + class-block specialists.

Data model (all drawn from one seeded ``torch.Generator``):

* labels: balanced over ``num_labels`` classes, shuffled;
* student features ``x = mu[y] + eps``, ``eps ~ N(0, I_D)``, class means ``mu ~ N(0, s^2 I)`` with
  ``s = separation / sqrt(2 D)`` so that the expected distance between two means is ``separation``
  (default 4.7: a linear probe on the clean features reaches ~90 %);
* teachers are *weak* because they see a worse view of the same sample: a random subset of
  ``teacher_dim_fraction * D`` coordinates plus extra independent noise ``teacher_noise * N(0, I)``.
  Each teacher outputs the Bayes posterior of its own view, restricted to its own classes
  (softmax masked to its class set and renormalised, exactly zero elsewhere).
  Every teacher has the *same* capacity (same view quality); specialists are more accurate inside
  their block only because their task is smaller, which is the premise of CSL.

Levels: ``--levels 1,2,4,5`` means level 0 = 1 generalist, level 1 = 2 specialists over contiguous
class blocks, etc. (blocks as in ``numpy.array_split``). ``make_cache`` also accepts explicit
blocks, e.g. ``levels=[1, [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]]``.

Usage::

    python benchmarks/make_synthetic_cache.py --out /tmp/syn --n 9000 --dim 256 \
        --num_labels 10 --levels 1,2,4,5 --seed 0 --dtype float16
"""
import argparse
import json
import math
import os

import torch
from safetensors.torch import save_file


def _blocks(spec, num_labels):
    """Class blocks of one level: an int (contiguous split) or an explicit list of class lists."""
    if isinstance(spec, int):
        if not 1 <= spec <= num_labels:
            raise ValueError(f"cannot split {num_labels} classes into {spec} blocks")
        return [b.tolist() for b in torch.tensor_split(torch.arange(num_labels), spec)]
    blocks = [sorted(int(c) for c in b) for b in spec]
    if sorted(c for b in blocks for c in b) != list(range(num_labels)):
        raise ValueError(f"blocks {blocks} do not partition the {num_labels} classes")
    return blocks


def make_cache(out_dir, n=9000, dim=256, num_labels=10, levels=(1, 2, 4, 5), seed=0,
               dtype="float16", test_fraction=0.2, separation=4.7, teacher_noise=0.8,
               teacher_dim_fraction=0.5, teacher_mean_error=0.6):
    """Write ``cache.safetensors`` + ``cache.json`` to ``out_dir``; returns None."""
    g = torch.Generator().manual_seed(seed)
    C, D = num_labels, dim
    labels = (torch.arange(n) % C)[torch.randperm(n, generator=g)]
    mu = torch.randn(C, D, generator=g) * (separation / math.sqrt(2 * D))
    x = mu[labels] + torch.randn(n, D, generator=g)
    split = torch.zeros(n, dtype=torch.int8)
    split[torch.randperm(n, generator=g)[: int(round(test_fraction * n))]] = 1

    level_blocks = [_blocks(spec, C) for spec in levels]
    if len(level_blocks[0]) != 1:
        raise ValueError("level 0 must hold exactly one generalist")
    probs, specialties, level_idx, names = [], [], [], []
    m = max(1, int(round(teacher_dim_fraction * D)))
    var = 1.0 + teacher_noise ** 2  # per-coordinate variance of the teacher's view around mu[y]
    for l, blocks in enumerate(level_blocks):
        level_idx.append([])
        for j, classes in enumerate(blocks):
            dims = torch.randperm(D, generator=g)[:m]
            z = x[:, dims] + teacher_noise * torch.randn(n, m, generator=g)
            # the teacher's own (mis)estimate of the class means: systematic, student-learnable errors
            mu_t = mu[:, dims] + teacher_mean_error * (separation / math.sqrt(2 * D)) * torch.randn(
                C, m, generator=g)
            logits = -torch.cdist(z, mu_t).pow(2) / (2 * var)  # Gaussian class posterior of its view
            mask = torch.full((C,), float("-inf"))
            mask[classes] = 0.0
            p = torch.softmax(logits + mask, dim=1)  # masked + renormalised; exactly 0 elsewhere
            level_idx[-1].append(len(probs))
            probs.append(p)
            specialties.append({"classes": list(classes)})
            names.append("generalist" if l == 0 else f"level{l}_specialist{j}")

    dt = {"float16": torch.float16, "float32": torch.float32}[dtype]
    os.makedirs(out_dir, exist_ok=True)
    save_file({"features": x.to(dt).contiguous(), "labels": labels.long().contiguous(),
               "teacher_probs": torch.stack(probs).to(dt).contiguous(), "split": split},
              os.path.join(out_dir, "cache.safetensors"))
    meta = {"num_labels": C, "id2label": {str(c): f"class_{c}" for c in range(C)},
            "levels": level_idx, "specialties": specialties, "teacher_names": names,
            "student": {"name_or_path": "synthetic-gaussian", "feature_dim": D},
            "synthetic": {"n": n, "seed": seed, "separation": separation,
                          "teacher_noise": teacher_noise,
                          "teacher_dim_fraction": teacher_dim_fraction,
                          "teacher_mean_error": teacher_mean_error,
                          "test_fraction": test_fraction, "dtype": dtype}}
    with open(os.path.join(out_dir, "cache.json"), "w") as f:
        json.dump(meta, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=9000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--num_labels", type=int, default=10)
    ap.add_argument("--levels", default="1,2,4,5", help="teachers per level, comma separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--test_fraction", type=float, default=0.2)
    ap.add_argument("--separation", type=float, default=4.7)
    ap.add_argument("--teacher_noise", type=float, default=0.8)
    ap.add_argument("--teacher_dim_fraction", type=float, default=0.5)
    ap.add_argument("--teacher_mean_error", type=float, default=0.6,
                    help="std of the teacher's mean estimate error, in units of the mean scale")
    a = ap.parse_args()
    make_cache(a.out, a.n, a.dim, a.num_labels, [int(v) for v in a.levels.split(",")], a.seed,
               a.dtype, a.test_fraction, a.separation, a.teacher_noise, a.teacher_dim_fraction,
               a.teacher_mean_error)


if __name__ == "__main__":
    main()
