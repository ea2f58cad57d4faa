"""A small CSL cache from a fixed generator: class-conditional Gaussian features and weak, noisy teachers whose
specialists are more accurate inside their class block (the premise of co-supervision)."""

from __future__ import annotations

import torch

from csl_hf import CSLCache
from csl_hf.method.hierarchy import class_hierarchy


def noisy_teacher(labels: torch.Tensor, classes: list[int], num_labels: int, accuracy: float,
                  g: torch.Generator) -> torch.Tensor:
    """Probabilities ``[N, C]`` over ``classes`` whose argmax equals the label with prob. ``accuracy`` when the label is
    in ``classes`` (a random class of the set otherwise)."""
    n = labels.shape[0]
    cls = torch.tensor(classes)
    inside = torch.isin(labels, cls)
    random_pick = cls[torch.randint(len(classes), (n,), generator=g)]
    right = (torch.rand(n, generator=g) < accuracy) & inside
    predicted = torch.where(right, labels, random_pick)
    logits = torch.randn(n, num_labels, generator=g)
    logits[torch.arange(n), predicted] += 3.0
    mask = torch.zeros(num_labels, dtype=torch.bool)
    mask[cls] = True
    return logits.masked_fill(~mask, float("-inf")).softmax(-1)


def make_cache(n: int = 1200, dim: int = 16, num_labels: int = 6, teachers_per_level=(1, 2, 3), seed: int = 0,
               generalist_accuracy: float = 0.5, specialist_accuracy: float = 0.85, test_fraction: float = 0.25,
               separation: float = 1.0,
               dtype: torch.dtype = torch.float32) -> CSLCache:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_labels, (n,), generator=g)
    centers = torch.randn(num_labels, dim, generator=g) * separation
    features = centers[labels] + torch.randn(n, dim, generator=g)
    specialties, levels = class_hierarchy(num_labels, list(teachers_per_level))
    probs = []
    for level_idx, level in enumerate(levels):
        for t in level:
            acc = generalist_accuracy if level_idx == 0 else specialist_accuracy
            probs.append(noisy_teacher(labels, specialties[t]["classes"], num_labels, acc, g))
    split = (torch.rand(n, generator=g) < test_fraction).to(torch.int8)
    return CSLCache(
        features=features.to(dtype), labels=labels, split=split, num_labels=num_labels, levels=levels,
        specialties=specialties, teacher_probs=torch.stack(probs).to(dtype),
        id2label={i: f"class_{i}" for i in range(num_labels)}, student={"name_or_path": "synthetic", "feature_dim": dim},
    )
