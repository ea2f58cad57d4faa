"""Weak-to-strong splits of a *stream* (``datasets.IterableDataset``), for ``run_csl.py --streaming``.

`make_weak_to_strong_splits` needs a map-style dataset (a global permutation, per-class quotas). A stream has no
length and no random access, so :func:`stream_splits` cuts it in one seeded order instead:

1. ``stream.shuffle(seed=seed, buffer_size=buffer_size)``: the shard order is permuted and a buffer of
   ``buffer_size`` examples is sampled from (the `datasets` streaming shuffle). The same seed gives the same order on
   every read and in every process, which is what makes the three splits below disjoint and identical under
   ``accelerate launch``.
2. In that order: the first ``teacher_size`` examples are the **teacher** split, *materialised* as a map-style
   ``Dataset`` (it is small, and the teachers train on it for many steps); the next ``test_size`` the **test**
   split; everything after (or the next ``train_size``) the weak-to-strong **train** split. Test and train stay
   streams (``skip``/``take`` on the shuffled stream): they are read once, by the labeling pass.

Differences from the map-style splits, on purpose:

* sizes are counts (a stream's length is unknown, so fractions are refused);
* no stratification: class proportions are those of the shuffled stream;
* the shuffle is local: an example can only move within ``buffer_size`` (plus the permutation of shards). A source
  sorted by class needs many shards (``Dataset.to_iterable_dataset(num_shards=...)``, as `load_csl_dataset` does for
  the bundled sets; an image folder has one shard per file) or a large buffer. A teacher split that misses classes
  is reported with a warning;
* the splits differ from `make_weak_to_strong_splits` on the same data and seed (another permutation). To compare a
  streamed run with a map-style one, split the map-style data first and stream each split
  (``splits["train"].to_iterable_dataset()``).
"""

from __future__ import annotations

import logging

import datasets
import numpy as np

__all__ = ["stream_splits"]

logger = logging.getLogger(__name__)


def _count(value, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer() and value >= 1:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}={value!r}: a stream's length is unknown, so split sizes must be counts (ints >= 1), "
                         "not fractions")
    if value < 1:
        raise ValueError(f"{name}={value} must be at least 1")
    return int(value)


def _undecoded_features(features: datasets.Features | None) -> datasets.Features | None:
    if features is None:
        return None
    return datasets.Features({k: datasets.Image(decode=False) if isinstance(v, datasets.Image) else v
                              for k, v in features.items()})


def stream_splits(
    stream: datasets.IterableDataset,
    seed: int,
    teacher_size: int,
    test_size: int | None,
    train_size: int | None = None,
    buffer_size: int = 1000,
) -> dict[str, datasets.Dataset | datasets.IterableDataset]:
    """Disjoint, seeded ``teacher`` / ``test`` / ``train`` splits of a stream (algorithm in the module docstring).

    Args:
        stream: a ``datasets.IterableDataset`` (e.g. ``load_csl_dataset(name, streaming=True)``).
        seed: seed of the streaming shuffle; the splits depend only on the stream, ``seed`` and ``buffer_size``.
        teacher_size: examples of the teacher split (read now and materialised).
        test_size: examples of the labeled test split; ``None`` cuts none (a dataset with its own test split).
        train_size: examples of the weak-to-strong split; ``None`` takes the rest of the stream.
        buffer_size: the shuffle buffer (examples held in memory while shuffling).

    Returns:
        ``{"teacher": Dataset, "test": IterableDataset, "train": IterableDataset}`` with the stream's columns.

    Raises:
        TypeError: ``stream`` is not an ``IterableDataset`` (use `make_weak_to_strong_splits` for a ``Dataset``).
        ValueError (one line): sizes that are not counts, or a stream shorter than ``teacher_size``.
    """
    if not isinstance(stream, datasets.IterableDataset):
        raise TypeError("stream_splits needs a datasets.IterableDataset; split a map-style Dataset with "
                        "make_weak_to_strong_splits")
    teacher_size = _count(teacher_size, "teacher_size")
    test_size = _count(test_size, "test_size", allow_none=True)
    train_size = _count(train_size, "train_size", allow_none=True)
    buffer_size = _count(buffer_size, "buffer_size")

    features = stream.features
    raw = _undecoded_features(features)
    # Read the teacher rows undecoded (bytes/paths) and store them as they are; casting does not change the order.
    source = stream.cast(raw) if raw is not None and raw != features else stream
    rows = list(source.shuffle(seed=seed, buffer_size=buffer_size).take(teacher_size))
    if len(rows) < teacher_size:
        more = f" (and test_size={test_size} more are needed)" if test_size else ""
        raise ValueError(f"the stream has only {len(rows)} examples, fewer than teacher_size={teacher_size}{more}")
    teacher = datasets.Dataset.from_list(rows, features=raw)
    for col, feature in (features or {}).items():
        if isinstance(feature, datasets.Image) and raw[col] != feature:
            teacher = teacher.cast_column(col, feature)  # back to the stream's decoding (a metadata change)
    _warn_missing_classes(teacher, features, buffer_size)

    shuffled = stream.shuffle(seed=seed, buffer_size=buffer_size)
    test = shuffled.skip(teacher_size).take(test_size) if test_size else None
    train = shuffled.skip(teacher_size + (test_size or 0))
    if train_size is not None:
        train = train.take(train_size)
    return {"teacher": teacher, "test": test, "train": train}


def _warn_missing_classes(teacher: datasets.Dataset, features: datasets.Features | None, buffer_size: int) -> None:
    if features is None:
        return
    col = next((c for c in ("label", "labels", "fine_label") if c in features), None)
    if col is None or not isinstance(features[col], datasets.ClassLabel):
        return
    seen = set(teacher[col])
    missing = [n for i, n in enumerate(features[col].names) if i not in seen]
    if missing:
        logger.warning(
            "the streamed teacher split (%d examples) has no example of %d class(es) (%s): the stream looks ordered "
            "by class; shard the source (to_iterable_dataset(num_shards=...)) or raise buffer_size (now %d)",
            len(teacher), len(missing), ", ".join(map(str, missing[:5])), buffer_size)
