"""Class hierarchies built from the data: specialties that group the classes the models confuse.

`csl_hf.hierarchy.class_hierarchy` cuts the class ids into contiguous blocks (the paper's layout).
That is only sensible when the label order means something (ImageNet's ids are roughly WordNet-ordered); on a user's
dataset, whose class order is arbitrary, a block mixes unrelated classes and the student's routing (which specialist
owns a sample) errs more. `auto_class_hierarchy` returns the same ``(specialties, levels)`` but groups the classes
so that classes that look alike (close class-mean features) or that a model confuses (confusion mass) share a
specialist, under a balance constraint (every group of a level holds ``floor(C/k)`` or ``ceil(C/k)`` classes).

Pure functions on small tensors / arrays: no model, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import CSLError

__all__ = [
    "SPECIALTY_MODES",
    "auto_class_hierarchy",
    "hierarchy_from_confusion",
    "balanced_partition",
    "class_mean_features",
    "confusion_matrix",
    "partition_cost",
]

SPECIALTY_MODES = ("blocks", "auto")


def class_mean_features(features: torch.Tensor, labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Per-class mean of ``features [N, D]`` over samples with label ``labels [N]`` (``-1`` ignored): ``[C, D]``.

    Raises:
        CSLError: when a class has no sample (its mean, hence its place in the hierarchy, is undefined).
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    known = labels >= 0
    x, y = features[known].double(), labels[known]
    counts = torch.bincount(y, minlength=num_labels)
    if bool((counts == 0).any()):
        missing = (counts == 0).nonzero().flatten().tolist()
        raise CSLError(f"classes {missing[:10]} have no sample to compute a class mean from; enlarge the teacher split "
                       "or use --specialties blocks")
    sums = torch.zeros(num_labels, x.shape[1], dtype=torch.float64).index_add_(0, y, x)
    return (sums / counts.unsqueeze(1)).float()


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Counts ``[C, C]``: row = true class, column = predicted class, over samples with ``labels >= 0``.

    E.g. the level-0 generalist's predictions on the teacher split, the statistic behind ``--specialties auto``
    (docs/routing_research.md).
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    predicted = torch.as_tensor(predicted, dtype=torch.long)
    known = labels >= 0
    flat = labels[known] * num_labels + predicted[known]
    return torch.bincount(flat, minlength=num_labels * num_labels).reshape(num_labels, num_labels).float()


def _dissimilarity(class_features, confusion) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(embedding [C, E], pairwise cost D [C, C], size_normalised)`` from the per-class statistics.

    Features: squared Euclidean distances between class means; the objective ``sum_g (1/|g|) sum_{i<j in g} D`` is
    the within-group sum of squares (Ward's / k-means' objective). Confusion: the cost of a pair is minus its
    symmetrised, row-normalised confusion, and the objective (unnormalised) is minus the confusion mass kept inside
    the groups, i.e. the share of samples a router with this confusion would send to the right group.
    """
    if (class_features is None) == (confusion is None):
        raise CSLError("auto_class_hierarchy needs exactly one of class_features [C, D] or confusion [C, C]")
    if class_features is not None:
        x = np.asarray(torch.as_tensor(class_features).double().cpu().numpy(), dtype=np.float64)
        if x.ndim != 2 or not np.isfinite(x).all():
            raise CSLError(f"class_features must be a finite [C, D] matrix, got shape {tuple(x.shape)}")
        sq = (x * x).sum(1)
        d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
        np.fill_diagonal(d, 0.0)
        return x, d, True
    m = np.asarray(torch.as_tensor(confusion).double().cpu().numpy(), dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.isfinite(m).all() or (m < 0).any():
        raise CSLError(f"confusion must be a non-negative finite [C, C] matrix, got shape {tuple(m.shape)}")
    rows = m / np.maximum(m.sum(1, keepdims=True), 1e-12)  # P(predicted j | true i)
    sym = 0.5 * (rows + rows.T)
    d = -sym
    np.fill_diagonal(d, 0.0)
    return rows, d, False


def partition_cost(groups: Sequence[Sequence[int]], cost: np.ndarray, size_normalised: bool) -> float:
    """``sum_g w(|g|) sum_{i<j in g} cost[i, j]`` with ``w = 1/|g|`` (size-normalised) or ``1``."""
    total = 0.0
    for g in groups:
        g = list(g)
        if len(g) > 1:
            s = float(cost[np.ix_(g, g)].sum()) / 2.0
            total += s / len(g) if size_normalised else s
    return total


def _sizes(n: int, k: int) -> list[int]:
    """Balanced sizes: the first ``n % k`` groups one larger."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _chunk(order: Sequence[int], k: int) -> list[list[int]]:
    out, start = [], 0
    for s in _sizes(len(order), k):
        out.append(list(order[start:start + s]))
        start += s
    return out


def _ward_order(embedding: np.ndarray, items: list[int]) -> list[int]:
    """The leaves of a Ward dendrogram of ``items`` in their plotting order (neighbours in the tree stay adjacent)."""
    if len(items) < 3:
        return list(items)
    from scipy.cluster.hierarchy import leaves_list, linkage

    z = linkage(embedding[items], method="ward")
    return [items[i] for i in leaves_list(z)]


def _local_search(labels: np.ndarray, k: int, cost: np.ndarray, size_normalised: bool, lo: int, hi: int,
                  max_iter: int) -> np.ndarray:
    """Best-improvement swaps (and moves that keep every size in [lo, hi]) until no move lowers the cost."""
    n = len(labels)
    labels = labels.copy()
    w = (lambda s: 1.0 / s if s > 0 else 0.0) if size_normalised else (lambda s: 1.0)
    eye_k = np.eye(k)
    for _ in range(max_iter):
        onehot = eye_k[labels]  # [n, k]
        s = cost @ onehot  # s[i, g] = sum_{j in g} cost[i, j]
        sizes = onehot.sum(0).astype(int)
        within = np.array([(s[labels == g, g].sum()) / 2.0 for g in range(k)])  # P_g
        wg = np.array([w(x) for x in sizes])
        best, move = -1e-12 * (1.0 + abs(float((wg * within).sum()))), None
        # swaps i (in a) <-> j (in b), a != b: sizes unchanged
        sa = s[np.arange(n), labels]  # sum to own group
        a_of = labels
        # delta_ij = w_a(-s[i,a] + s[j,a] - c_ij) + w_b(-s[j,b] + s[i,b] - c_ij)
        s_j_in_a = s[:, a_of].T  # [i, j] -> s[j, a_i]
        s_i_in_b = s[:, a_of]  # [i, j] -> s[i, a_j]
        wa = wg[a_of][:, None]
        wb = wg[a_of][None, :]
        delta = wa * (-sa[:, None] + s_j_in_a - cost) + wb * (-sa[None, :] + s_i_in_b - cost)
        delta[a_of[:, None] == a_of[None, :]] = np.inf
        i, j = np.unravel_index(int(np.argmin(delta)), delta.shape)
        if delta[i, j] < best:
            best, move = float(delta[i, j]), ("swap", int(i), int(j))
        if hi > lo:  # single moves from a group of size hi to one of size lo keep the balance
            wsz = np.vectorize(w, otypes=[float])
            pa = within[a_of] - sa  # [n] own group's pair sum without i
            pb = within[None, :] + s  # [n, k] target group's pair sum with i
            d = (wsz(sizes[a_of] - 1) * pa - wg[a_of] * within[a_of])[:, None] \
                + wsz(sizes + 1)[None, :] * pb - (wg * within)[None, :]
            ok = (sizes[a_of] == hi)[:, None] & (sizes == lo)[None, :]
            d = np.where(ok, d, np.inf)
            i, b = np.unravel_index(int(np.argmin(d)), d.shape)
            if d[i, b] < best:
                best, move = float(d[i, b]), ("move", int(i), int(b))
        if move is None:
            break
        if move[0] == "swap":
            _, i, j = move
            labels[i], labels[j] = labels[j], labels[i]
        else:
            _, i, b = move
            labels[i] = b
    return labels


def balanced_partition(k: int, class_features=None, confusion=None, items: Sequence[int] | None = None,
                       restarts: int | None = None, seed: int = 0, max_iter: int = 10_000) -> list[list[int]]:
    """Partition classes into ``k`` groups of ``floor(n/k)`` or ``ceil(n/k)`` classes minimising the within-group cost.

    Method: balanced clustering by local search. Starts are (1) the leaves of a Ward dendrogram (Ward 1963, via
    ``scipy.cluster.hierarchy.linkage``) of the class embedding, cut into ``k`` consecutive balanced chunks, and (2)
    ``restarts`` seeded random balanced partitions; each start is improved by best-improvement swaps of two classes
    (and single moves that keep the sizes balanced) until no move lowers the cost (a Kernighan-Lin style exchange
    heuristic on the balanced k-means / Ward objective). The lowest-cost result wins; ties go to the earlier start.
    Deterministic for a given ``seed``.

    Args:
        k: number of groups, ``1 <= k <= n``.
        class_features: ``[C, D]`` per-class statistics (e.g. class-mean student features): minimise the
            within-group sum of squares.
        confusion: ``[C, C]`` non-negative counts or rates, row = true class, column = predicted: maximise the
            (row-normalised, symmetrised) confusion kept inside groups. Give exactly one of the two.
        items: the classes to partition (default all ``C``).
        restarts: random starts besides the Ward start; ``None``: 8 for up to 200 classes, 0 above (one start of
            the local search takes ~1 min for 1,000 classes into 8 groups on one CPU core).
    Returns:
        ``k`` sorted lists of class ids, ordered by their smallest class id.
    Raises:
        CSLError: bad ``k``, shapes, or both/neither statistic given.
    """
    embedding, cost, normalised = _dissimilarity(class_features, confusion)
    items = list(range(cost.shape[0])) if items is None else [int(i) for i in items]
    n = len(items)
    if not 1 <= k <= n:
        raise CSLError(f"cannot split {n} classes into {k} groups; use between 1 and {n}")
    if k == 1:
        return [sorted(items)]
    sub = cost[np.ix_(items, items)]
    lo, hi = n // k, -(-n // k)
    if restarts is None:
        restarts = 8 if n <= 200 else 0
    local = list(range(n))
    starts = [_chunk(_ward_order(embedding[items], local), k)]
    rng = np.random.default_rng(seed)
    for _ in range(restarts):
        starts.append(_chunk(list(rng.permutation(n)), k))
    best, best_cost = None, np.inf
    for groups in starts:
        labels = np.empty(n, dtype=int)
        for g, members in enumerate(groups):
            labels[members] = g
        labels = _local_search(labels, k, sub, normalised, lo, hi, max_iter)
        groups = [[int(i) for i in np.flatnonzero(labels == g)] for g in range(k)]
        c = partition_cost(groups, sub, normalised)
        if c < best_cost - 1e-9 * (1.0 + abs(best_cost) if np.isfinite(best_cost) else 1.0):
            best, best_cost = groups, c
    out = [sorted(items[i] for i in g) for g in best]
    return sorted(out, key=lambda g: g[0])


def auto_class_hierarchy(teachers_per_level: Sequence[int], class_features=None, confusion=None,
                         nested: bool = False, restarts: int | None = None, seed: int = 0) -> tuple[list[dict], list[list[int]]]:
    """Specialties and levels like `class_hierarchy`, with each level's class sets found from the data.

    Every level ``l`` with ``k_l = teachers_per_level[l]`` teachers is a partition of all ``C`` classes into ``k_l``
    groups of ``floor(C/k_l)`` or ``ceil(C/k_l)`` classes (balance within one class), chosen by `balanced_partition`
    to keep close classes (``class_features``: smallest within-group sum of squares, as Ward / k-means) or confused
    classes (``confusion``: most confusion mass inside groups) together.

    Args:
        teachers_per_level: e.g. ``[1, 2, 4, 5]``; the first must be 1 (the generalist), none above ``C``.
        class_features: ``[C, D]`` e.g. the student's class-mean features on the teacher split
            (`class_mean_features`).
        confusion: ``[C, C]`` e.g. the generalist's confusion matrix (rows true, columns predicted).
        nested: when ``k_l`` is a multiple of ``k_{l-1}``, split each group of level ``l-1`` into ``k_l / k_{l-1}``
            balanced sub-groups (a tree, as a hierarchical mixture of experts); other levels are partitioned
            independently (``[4, 5]`` cannot nest with balanced sizes). ``False``: every level independently.
        restarts, seed: random starts of the local search and their seed (deterministic).
    Returns:
        ``(specialties, levels)``: ``[{"classes": [...]}, ...]`` (the generalist first, then each level's groups) and
        the teacher indices of each level, in the format of `class_hierarchy` / `validate_hierarchy`.
    Raises:
        CSLError: ``teachers_per_level`` empty, not starting with 1, or asking for more groups than classes; bad
            statistics (see `balanced_partition`).
    """
    per_level = [int(n) for n in teachers_per_level]
    _, cost, _ = _dissimilarity(class_features, confusion)
    num_labels = cost.shape[0]
    if not per_level or per_level[0] != 1:
        raise CSLError(f"teachers_per_level={list(per_level)} must start with 1 (level 0 is one generalist)")
    too_many = [n for n in per_level if not 1 <= n <= num_labels]
    if too_many:
        raise CSLError(f"teachers_per_level asks for {too_many[0]} specialists but there are {num_labels} classes; "
                       f"use between 1 and {num_labels} per level")
    specialties: list[dict] = []
    levels: list[list[int]] = []
    previous: list[list[int]] | None = None
    for k in per_level:
        if k == 1:
            groups = [list(range(num_labels))]
        elif nested and previous is not None and k % len(previous) == 0 and k > len(previous):
            groups = []
            for parent in previous:
                groups += balanced_partition(k // len(previous), class_features, confusion, items=parent,
                                             restarts=restarts, seed=seed)
            groups = sorted(groups, key=lambda g: g[0])
        else:
            groups = balanced_partition(k, class_features, confusion, restarts=restarts, seed=seed)
        levels.append(list(range(len(specialties), len(specialties) + k)))
        specialties += [{"classes": g} for g in groups]
        previous = groups
    return specialties, levels


def hierarchy_from_confusion(teachers_per_level: Sequence[int], confusion: torch.Tensor,
                             present: Sequence[int] | None = None, nested: bool = True,
                             seed: int = 0) -> tuple[list[dict], list[list[int]]]:
    """`auto_class_hierarchy` from a generalist's confusion matrix ``[C, C]``, over the classes that have teacher
    images (``present``, default all); each absent class then joins the smallest group of every level, so that no
    specialist is left without images.

    This is ``--specialties auto``: the generalist (teacher 0) is trained first, its confusions on the teacher split
    group the classes, then the specialists are trained on those groups (docs/benchmark.md measures it).
    """
    num_labels = confusion.shape[0]
    present = list(range(num_labels)) if present is None else sorted(set(int(c) for c in present))
    sub = confusion[present][:, present]
    specialties, levels = auto_class_hierarchy(teachers_per_level, confusion=sub, nested=nested, seed=seed)
    absent = [c for c in range(num_labels) if c not in set(present)]
    for level in levels:
        groups = [[present[i] for i in specialties[t]["classes"]] for t in level]
        for c in absent:
            min(groups, key=len).append(c)
        for t, g in zip(level, groups):
            specialties[t] = {"classes": sorted(g)}
    return specialties, levels
