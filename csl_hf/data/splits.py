"""Weak-to-strong splits and sample caps.

``make_weak_to_strong_splits`` cuts one labelled dataset into three disjoint parts:

- ``teacher``: its labels train the weak teachers (generalist and specialists);
- ``train``: the weak-to-strong split; the student learns from teacher targets only, its ground
  truth is used for the ceiling and the precision/recall/teacher-accuracy diagnostics;
- ``test``: evaluation only.

Sizes: an ``int`` is a number of examples, a ``float`` in (0, 1) a fraction of the dataset
(``round(fraction * N)``, at least 1).  ``train_size=None`` takes everything left; ``test_size=None`` cuts no test
split (a dataset with its own test split: `csl_hf.data.weak_to_strong`).

Before cutting, `check_classes_can_be_split` refuses a dataset none of whose classes has enough images for every
split (e.g. 2,000 classes of one image each): no teacher could be scored, no student could learn a test class.
After cutting, `check_split_classes` refuses splits that share no class.

Algorithm (deterministic for a given dataset and seed): one ``numpy.random.default_rng(seed)``
permutation; with stratification, each split receives per-class quotas by largest-remainder
allocation of its size over the class frequencies (``test`` first, then ``teacher``, then
``train``, each from what is left), filled from the permuted order.  If a split is smaller than
the number of classes or the column is missing, that split is drawn without stratification.
The indices of each split are sorted, so rows keep the dataset's order (shuffle when training).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import datasets
import numpy as np

__all__ = ["make_weak_to_strong_splits", "weak_to_strong_indices", "cap", "cap_indices", "resolve_size",
           "check_classes_can_be_split", "check_split_classes"]

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("teacher", "train", "test")


def resolve_size(size: int | float, n: int, name: str) -> int:
    """Turn an int count or a float fraction of ``n`` into a count; one-line ``ValueError`` if invalid."""
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be an int (count) or a float in (0, 1) (fraction), got {size!r}")
    if isinstance(size, (float, np.floating)):
        if not 0.0 < float(size) < 1.0:
            raise ValueError(f"{name}={size} as a fraction must be in (0, 1); use an int for a count")
        return max(1, int(round(float(size) * n)))
    if size < 1:
        raise ValueError(f"{name}={size} must be at least 1")
    return int(size)


def _allocate(counts: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` over classes proportionally to ``counts`` (largest remainder), never above counts."""
    total = counts.sum()
    exact = counts * (k / total)
    quota = np.minimum(np.floor(exact).astype(np.int64), counts)
    remainder = k - quota.sum()
    if remainder > 0:
        order = np.lexsort((np.arange(len(counts)), -(exact - quota)))  # largest fraction first, ties by class
        for c in np.concatenate([order, order]):  # second pass only if capacity blocked the first
            if remainder == 0:
                break
            if quota[c] < counts[c]:
                quota[c] += 1
                remainder -= 1
    return quota


def _strata(dataset: datasets.Dataset, stratify_by: str | Sequence[str] | None) -> np.ndarray | None:
    if stratify_by is None:
        return None
    cols = [stratify_by] if isinstance(stratify_by, str) else list(stratify_by)
    missing = [c for c in cols if c not in dataset.column_names]
    if missing:
        if isinstance(stratify_by, str) and stratify_by == "label":
            logger.warning("no 'label' column (columns: %s): splitting without stratification", dataset.column_names)
            return None
        raise ValueError(f"stratify_by column(s) {missing} not in the dataset (columns: {dataset.column_names})")
    table = dataset.select_columns(cols).with_format("arrow")[:]  # honours any indices mapping
    keys = [np.asarray(table.column(c).to_numpy(zero_copy_only=False)) for c in cols]
    # one stratum per distinct combination of the columns
    _, inverse = np.unique(np.stack([np.unique(k, return_inverse=True)[1] for k in keys], axis=1), axis=0, return_inverse=True)
    return inverse.reshape(-1)


def _labels_of(dataset: datasets.Dataset, stratify_by: str | Sequence[str] | None) -> np.ndarray | None:
    """The class column (the first stratification column) as integers, or ``None`` (no such column, or not ints)."""
    if stratify_by is None:
        return None
    col = stratify_by if isinstance(stratify_by, str) else next(iter(stratify_by), None)
    if col not in dataset.column_names:
        return None
    values = np.asarray(dataset.select_columns([col]).with_format("arrow")[:].column(col).to_numpy(zero_copy_only=False))
    return values if values.dtype.kind in "iu" else None


def _class_list(ids, names: Sequence[str] | None, limit: int = 5) -> str:
    ids = [int(i) for i in ids]
    shown = [str(names[i]) if names is not None and 0 <= i < len(names) else str(i) for i in ids[:limit]]
    return ", ".join(shown) + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def check_classes_can_be_split(labels: np.ndarray, num_splits: int = 3) -> None:
    """Refuse data in which no class has an image for each of ``num_splits`` splits (teacher, weak-to-strong
    training and test; 2 when the test split is the dataset's own).

    Raises:
        `CSLError` (one line): what is wrong with the data, before any teacher is trained.
    """
    from ..errors import CSLError

    labels = labels[labels >= 0]
    if not len(labels):
        raise CSLError("no image has a label: the teachers need labeled images (a label column with class ids)")
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    if counts.max() < num_splits:
        parts = "teacher, weak-to-strong training and test" if num_splits == 3 else "teacher and weak-to-strong training"
        raise CSLError(
            f"every class has fewer than {num_splits} images ({len(counts)} classes, at most {int(counts.max())} "
            f"image(s) each): no class can have {parts} images, so no teacher could learn a class the student is "
            f"tested on; CSL needs several images of each class (tens or more): merge classes or collect more images")


def check_split_classes(labels: dict[str, np.ndarray], names: Sequence[str] | None = None,
                        own_test: str | None = None) -> None:
    """Refuse splits without a class that has teacher, weak-to-strong training and test images (the teachers
    would learn none of the classes the student is trained and scored on).

    Args:
        labels: ``{"teacher": ids, "train": ids, "test": ids}`` of the split rows.
        names: class names, for the message.
        own_test: the name of the dataset's own test split, when the test split is not cut here.

    Raises:
        `CSLError` (one line): which classes each split holds and what to change.
    """
    from ..errors import CSLError

    held = {k: set(np.unique(v[v >= 0]).tolist()) for k, v in labels.items()}
    if held["teacher"] & held["train"] & held["test"]:
        return
    desc = "; ".join(f"{k}: {_class_list(sorted(v), names) or 'none'}" for k, v in held.items())
    if own_test is not None and not held["test"] & (held["teacher"] | held["train"]):
        raise CSLError(f"no class of the dataset's own {own_test} split has training images ({desc}): the teachers "
                       f"and the student would be tested only on classes they never see; add training images of the "
                       f"test classes, or test on images of the training classes")
    smallest = min(("teacher", "train", "test"), key=lambda k: len(labels[k]))
    raise CSLError(f"no class has images in all three splits ({desc}): the teachers could learn none of the classes "
                   f"the student is trained and tested on; collect more images of each class, or make the smallest "
                   f"split ({smallest}, {len(labels[smallest])} images) larger")


def make_weak_to_strong_splits(
    dataset: datasets.Dataset,
    seed: int,
    teacher_size: int | float,
    test_size: int | float | None,
    train_size: int | float | None = None,
    stratify_by: str | Sequence[str] | None = "label",
) -> datasets.DatasetDict:
    """Disjoint, seeded, stratified ``teacher`` / ``train`` / ``test`` splits of a map-style dataset: the rows
    `weak_to_strong_indices` picks (arguments and errors as there).

    Returns:
        ``DatasetDict(teacher=..., train=..., test=...)`` with the dataset's columns.
    """
    indices = weak_to_strong_indices(dataset, seed, teacher_size, test_size, train_size, stratify_by)
    return datasets.DatasetDict({name: dataset.select(indices[name]) for name in SPLIT_NAMES})


def weak_to_strong_indices(
    dataset: datasets.Dataset,
    seed: int,
    teacher_size: int | float,
    test_size: int | float | None,
    train_size: int | float | None = None,
    stratify_by: str | Sequence[str] | None = "label",
) -> dict[str, np.ndarray]:
    """The rows of disjoint, seeded, stratified ``teacher`` / ``train`` / ``test`` splits of a map-style dataset.

    Args:
        dataset: a ``datasets.Dataset`` (streaming datasets must be materialised or capped first).
        seed: the split depends only on the dataset and this seed.
        teacher_size, test_size, train_size: int counts or float fractions in (0, 1) of the whole
            dataset; ``train_size=None`` uses all remaining examples; ``test_size=None`` cuts no test split
            (its rows are empty).
        stratify_by: the column (or columns, stratifying on their combination) whose proportions
            each split keeps; ``None`` for plain random splits.  A missing default ``"label"`` column
            only disables stratification (with a warning).

    Returns:
        ``{"teacher": rows, "train": rows, "test": rows}``: sorted int64 row indices into ``dataset``.

    Raises:
        TypeError: for an ``IterableDataset``.
        ValueError (one line): invalid sizes, or sizes that add up to more than the dataset.
        `CSLError` (one line): no class has images enough for every split, or (with a test split) the splits share
            no class (`check_classes_can_be_split`, `check_split_classes`).
    """
    if isinstance(dataset, datasets.IterableDataset):
        raise TypeError("make_weak_to_strong_splits needs a map-style datasets.Dataset; cap or materialise the stream first")
    n = len(dataset)
    sizes = {
        "test": 0 if test_size is None else resolve_size(test_size, n, "test_size"),
        "teacher": resolve_size(teacher_size, n, "teacher_size"),
    }
    rest = n - sizes["test"] - sizes["teacher"]
    sizes["train"] = rest if train_size is None else resolve_size(train_size, n, "train_size")
    need = sizes["test"] + sizes["teacher"] + sizes["train"]
    if need > n or sizes["train"] < 1:
        test = f" + test={sizes['test']}" if sizes["test"] else ""
        # With train_size=None the weak-to-strong split is what is left, and it needs at least one example.
        train = f"train={sizes['train']}" if train_size is not None else "at least 1 to train on"
        raise ValueError(
            f"splits need teacher={sizes['teacher']}{test} + {train} = "
            f"{sizes['teacher'] + max(sizes['train'], 1) + sizes['test']} examples but the "
            f"{'training split' if not sizes['test'] else 'dataset'} has only {n}"
        )
    class_ids = _labels_of(dataset, stratify_by)
    if class_ids is not None:
        check_classes_can_be_split(class_ids, 3 if sizes["test"] else 2)

    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    strata = _strata(dataset, stratify_by)
    available = np.ones(n, dtype=bool)
    out: dict[str, np.ndarray] = {}
    for name in ("test", "teacher", "train"):
        k = sizes[name]
        if k == 0:
            out[name] = np.zeros(0, dtype=np.int64)
            continue
        candidates = perm[available[perm]]  # remaining indices in permuted order
        if strata is not None and k >= len(np.unique(strata[candidates])):
            cand_strata = strata[candidates]
            counts = np.bincount(cand_strata, minlength=strata.max() + 1)
            quota = _allocate(counts, k)
            # rank of each candidate within its stratum (in permuted order)
            order = np.argsort(cand_strata, kind="stable")
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            rank = np.empty(len(candidates), dtype=np.int64)
            rank[order] = np.arange(len(candidates)) - np.repeat(starts, counts)
            chosen = candidates[rank < quota[cand_strata]]
        else:
            if strata is not None:
                logger.warning("%s split of %d is smaller than the number of classes: not stratified", name, k)
            chosen = candidates[:k]
        available[chosen] = False
        out[name] = np.sort(chosen)
    if class_ids is not None and sizes["test"]:
        check_split_classes({k: class_ids[out[k]] for k in ("teacher", "train", "test")}, _names_of(dataset, stratify_by))
    return out


def _names_of(dataset: datasets.Dataset, stratify_by) -> list[str] | None:
    col = stratify_by if isinstance(stratify_by, str) else next(iter(stratify_by), None)
    feature = dataset.features.get(col)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def cap(
    dataset: datasets.Dataset | datasets.IterableDataset, max_samples: int | None, seed: int = 0
) -> datasets.Dataset | datasets.IterableDataset:
    """At most ``max_samples`` examples (``--max_train_samples`` / ``--max_eval_samples``).

    ``None`` (or a value >= the dataset size) returns the dataset unchanged. A map-style dataset
    gets a seeded random subset (sorted indices, so the dataset's order is kept); a streaming one
    the first ``max_samples`` examples (``take``; ``seed`` is not used).
    """
    if max_samples is None:
        return dataset
    if isinstance(max_samples, bool) or int(max_samples) != max_samples or max_samples < 1:
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
    max_samples = int(max_samples)
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.take(max_samples)
    if max_samples >= len(dataset):
        return dataset
    return dataset.select(cap_indices(len(dataset), max_samples, seed))


def cap_indices(n: int, max_samples: int | None, seed: int = 0) -> np.ndarray:
    """The rows `cap` keeps of ``n``: all of them, or a seeded random subset of ``max_samples`` in ascending order."""
    if max_samples is None or max_samples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(max_samples), replace=False))
