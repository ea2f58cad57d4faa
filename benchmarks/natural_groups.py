"""Do specialties from the data (``--specialties auto``) find Fashion-MNIST's natural groups (tops, footwear,
trouser, dress, bag)? The class groups of every level of a run's saved teachers, their adjusted Rand index (ARI)
against the natural groups, and the best ARI any partition with the same group sizes reaches."""

from __future__ import annotations

import itertools
import json
import os
import statistics


def level_partitions(out: str) -> list[list[list[int]]]:
    """The class groups of every level of the run's saved teachers (``out/teachers/config.json``)."""
    with open(os.path.join(out, "teachers", "config.json")) as f:
        config = json.load(f)
    specialties, levels = config["specialties"], config["levels"]
    return [[sorted(specialties[t]["classes"]) for t in level] for level in levels]


def partition_labels(groups: list[list[int]], num_classes: int) -> list[int]:
    out = [-1] * num_classes
    for g, classes in enumerate(groups):
        for c in classes:
            out[c] = g
    return out


def partitions_with_sizes(items: list[int], sizes: list[int]):
    """Every partition of ``items`` into groups of the given sizes (unordered among equal sizes)."""
    if not sizes:
        yield []
        return
    first, rest = items[0], items[1:]
    size, others = sizes[0], sizes[1:]
    for mates in itertools.combinations(rest, size - 1):
        group = [first, *mates]
        remaining = [i for i in rest if i not in mates]
        # the remaining sizes must be placed on the remaining items; try each distinct size for the next group
        for tail in _place(remaining, others):
            yield [group, *tail]


def _place(items: list[int], sizes: list[int]):
    if not sizes:
        yield []
        return
    for size in sorted(set(sizes)):
        left = list(sizes)
        left.remove(size)
        for tail in partitions_with_sizes(items, [size, *left]):
            yield tail


def best_ari(sizes: list[int], truth: list[int]) -> float:
    from sklearn.metrics import adjusted_rand_score

    best = -1.0
    for groups in _place(list(range(len(truth))), sorted(sizes)):
        best = max(best, adjusted_rand_score(truth, partition_labels(groups, len(truth))))
    return best


def natural_group_report(outs: list[str], names: list[str]) -> None:
    from sklearn.metrics import adjusted_rand_score

    from csl_hf.data.fashion_mnist import natural_groups

    truth = natural_groups(len(names))
    per_level: dict[int, list[float]] = {}
    bests: dict[int, float] = {}
    print("\nWhich classes share a specialist (specialties auto), per seed and level; ARI against the natural groups "
          "(tops, footwear, trouser, dress, bag):\n")
    for out in outs:
        for i, groups in enumerate(level_partitions(out)):
            if len(groups) < 2:
                continue
            ari = adjusted_rand_score(truth, partition_labels(groups, len(names)))
            per_level.setdefault(len(groups), []).append(ari)
            if len(groups) not in bests:
                bests[len(groups)] = best_ari([len(g) for g in groups], truth)
            shown = " | ".join(", ".join(names[c] for c in g) for g in groups)
            print(f"- {os.path.basename(out)}, {len(groups)} specialists: {shown}  (ARI {ari:.2f})")
    print("\n| specialists | ARI vs natural groups (per seed) | best ARI with these group sizes |\n|---|---|---|")
    for k in sorted(per_level):
        v = per_level[k]
        spread = f" ± {statistics.stdev(v):.2f}" if len(v) > 1 else ""
        print(f"| {k} | {statistics.mean(v):.2f}{spread} ({', '.join(f'{x:.2f}' for x in v)}) | {bests[k]:.2f} |")
