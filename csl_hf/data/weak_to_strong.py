"""The data of a weak-to-strong run in one call: load a dataset, find its columns, cut the teacher / train / test
splits, cap them, and remember which source rows each split holds.

A dataset with its own test split (a ``DatasetDict`` with ``test``, else ``validation``: Fashion-MNIST, a folder
with ``train/`` and ``test/`` folders, a ``save_to_disk`` or Hub clone with those splits) keeps it: that split is the
test split (its classes matched to the training split's by name; ``test_size`` takes a seeded subset of it when
given, ``max_eval_samples`` caps it), and the teacher and weak-to-strong splits are cut from ``train``, stratified
as usual. Other splits are not used; the log says which splits were used for what.

Bundled sets and local folders are always split as map-style datasets (their length and labels are known
without decoding an image), so ``streaming=True`` reads *the same samples* as a map-style run with the same seed
and sizes, lazily. Only a Hub dataset is split as a stream, with a shuffle buffer (`csl_hf.data.streaming`), which
draws another sample.

Before any teacher is trained, data in which no class can have teacher, weak-to-strong and test images is refused
(`csl_hf.data.splits.check_classes_can_be_split`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import logging

import datasets
import numpy as np

from ..errors import CSLError
from .labels import align_labels, label_names, present_ids
from .loading import class_names, infer_columns, is_local_source, load_csl_dataset
from .splits import cap_indices, check_split_classes, resolve_size, weak_to_strong_indices
from .streaming import _count, stream_splits

__all__ = ["WeakToStrongData", "load_weak_to_strong_data", "own_splits"]

logger = logging.getLogger(__name__)

#: Split names (``datasets``' own keywords) whose split is the test split, in order of preference, and the training
#: split's.
TEST_SPLIT_NAMES = ("test", "testing", "eval", "evaluation", "validation", "valid", "val", "dev")
TRAIN_SPLIT_NAMES = ("train", "training")


@dataclass
class WeakToStrongData:
    """The three splits of a run and what describes them.

    Attributes:
        teacher, train, test: the teacher split (map-style: the teachers train on it for many steps), the
            weak-to-strong training split and the labeled test split (map-style, or streams with ``streaming``).
        image_column, label_column, domain_column: the columns (``domain_column`` ``None`` without domains).
        class_names: the label space in class-id order.
        dataset_name: the source's name or path.
        source_rows: ``{"teacher": rows, "train": rows, "test": rows}`` int64 rows of the source dataset (``None``
            for a streamed Hub dataset, whose rows have no stable index). With its own test split the source is the
            training split followed by the test split: test rows start at the training split's length.
        num_rows: the source dataset's length (``None`` for a streamed Hub dataset); with its own test split, the
            training and the test split's together.
        splits: which of the source's splits were used: ``{"pool": name, "test": name or None}`` (``None`` for a
            source of one split; ``"test"`` is ``None`` when all three splits are cut from the pool).
        seed: the split seed.
    """

    teacher: datasets.Dataset
    train: Any
    test: Any
    image_column: str
    label_column: str
    domain_column: str | None
    class_names: list[str]
    dataset_name: str
    source_rows: dict[str, np.ndarray] | None = None
    num_rows: int | None = None
    seed: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    splits: dict[str, str] | None = None

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.class_names))

    def is_stream(self) -> bool:
        return isinstance(self.train, datasets.IterableDataset)

    def teacher_provenance(self) -> dict[str, Any]:
        """What the teachers trained on, for `TeacherMixtureConfig.training_data`: the dataset, its length, the
        split seed and the teacher split's source rows (to refuse a later run whose splits overlap them)."""
        out: dict[str, Any] = {"dataset": self.dataset_name, "split_seed": self.seed, "num_examples": len(self.teacher)}
        if self.source_rows is not None:
            out.update(num_rows=self.num_rows, example_ids=self.source_rows["teacher"].tolist())
        return out


def _size(value: float | int | None) -> int | float | None:
    """Counts arrive as floats from the command line (a flag takes both 1000 and 0.1)."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() and value >= 1 else float(value)


def _has_labels(split, label_col: str) -> bool:
    """Whether a split carries labels (Hub test splits often hold ``-1`` or no label column): a map-style split is
    read in its label column, a stream in its first examples."""
    if label_col not in (getattr(split, "features", None) or {}) and not isinstance(split, datasets.IterableDataset):
        return False
    try:
        if isinstance(split, datasets.Dataset):
            return any(y >= 0 for y in present_ids(split, label_col))
        return any(ex.get(label_col) is not None and int(ex[label_col]) >= 0
                   for ex in split.select_columns([label_col]).take(8))
    except (KeyError, ValueError, TypeError):  # labels that are not class ids (strings...): not a usable test split
        return False


def own_splits(dataset, dataset_name: str, label_col: str | None = None
               ) -> tuple[Any, Any | None, dict[str, str] | None]:
    """``(pool, test, names)``: of a ``DatasetDict``, the split the teacher and weak-to-strong splits are cut from
    (``train``; a dataset of one split, whatever its name, is that split), its own labeled test split (``test``, else
    ``validation``...; ``None`` without one: a split whose labels are all missing, as many Hub test splits have, is
    passed over) and their names; a single dataset is ``(dataset, None, None)``.

    Raises:
        `CSLError` (one line): several splits none of which is a training split.
    """
    if not isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return dataset, None, None
    names = list(dataset)
    if len(names) == 1:
        return dataset[names[0]], None, None
    pool = next((n for n in TRAIN_SPLIT_NAMES if n in dataset), None)
    if pool is None:
        rest = [n for n in names if n not in TEST_SPLIT_NAMES]
        if len(rest) != 1:
            raise CSLError(f"--dataset_name {dataset_name} has the splits {', '.join(names)} and none is 'train' (the "
                           "split the teacher and weak-to-strong images come from); name the training split 'train'")
        pool = rest[0]
    if label_col is None:
        label_col = infer_columns(dataset[pool])[1]
    test = None
    for name in (n for n in TEST_SPLIT_NAMES if n in dataset and n != pool):
        if _has_labels(dataset[name], label_col):
            test = name
            break
        logger.info("--dataset_name %s: its %r split has no labels: not used as the test split", dataset_name, name)
    unused = [n for n in names if n not in (pool, test)]
    if unused:
        logger.info("--dataset_name %s: split(s) %s not used (the teacher and weak-to-strong splits come from %r%s)",
                    dataset_name, ", ".join(unused), pool, f", the test split is {test!r}" if test else "")
    return dataset[pool], (dataset[test] if test else None), {"pool": pool, "test": test}


def load_weak_to_strong_data(
    dataset_name: str,
    seed: int,
    teacher_size: float = 1000,
    test_size: float | None = None,
    train_size: float | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    streaming: bool = False,
    shuffle_buffer_size: int = 1000,
    folder_layout: str = "auto",
) -> WeakToStrongData:
    """Load ``dataset_name`` (bundled name, local folder or Hub id) and cut it into teacher / train / test splits.

    Sizes are counts or fractions in (0, 1) of the dataset (counts only for a streamed Hub dataset); ``test_size``
    defaults to 2000 images cut from the data, or to the whole of the dataset's own test split (module docstring).
    The train and test splits are then capped to ``max_train_samples`` / ``max_eval_samples`` (a seeded subset).
    ``folder_layout`` says how to read a local folder (`csl_hf.data.local`).

    Raises:
        `CSLError` (one line, naming the dataset): a source that cannot be loaded, missing columns, sizes that do not
        fit the dataset, a test split with classes the training split does not have, data in which no class can have
        teacher, weak-to-strong and test images.
    """
    try:
        local = is_local_source(dataset_name)
        loaded = load_csl_dataset(dataset_name, streaming=streaming and not local, folder_layout=folder_layout)
        dataset, own_test, split_names = own_splits(loaded, dataset_name)
        image_col, label_col, domain_col = infer_columns(dataset)
        names = class_names(dataset, label_col)
        if own_test is not None and label_names(dataset, label_col) is None and isinstance(own_test, datasets.Dataset):
            test_names = class_names(own_test, label_col)  # integer labels: the ids of both splits
            names = test_names if len(test_names) > len(names) else names
        if own_test is not None:
            own_test = align_labels(
                own_test, label_col, names, f"the {split_names['test']} split of {dataset_name}",
                f"its {split_names['pool']} split", fix=f"add {split_names['pool']} images of those classes, or "
                "leave their test images out")
        sizes = {"teacher": _size(teacher_size), "test": _size(test_size), "train": _size(train_size)}
        if own_test is None and sizes["test"] is None:
            sizes["test"] = DEFAULT_TEST_SIZE
        sizes = _fit_default_sizes(sizes, dataset, own_test is not None, dataset_name)
        if isinstance(dataset, datasets.IterableDataset):
            return _stream_data(dataset, own_test, sizes, seed, shuffle_buffer_size, max_train_samples,
                                max_eval_samples, (image_col, label_col, domain_col), names, dataset_name, split_names)
        stratify = (label_col, domain_col) if domain_col else label_col
        rows = weak_to_strong_indices(dataset, seed=seed, teacher_size=sizes["teacher"],
                                      test_size=None if own_test is not None else sizes["test"],
                                      train_size=sizes["train"], stratify_by=stratify)
        if own_test is not None:
            rows["test"] = np.arange(len(own_test))
            if sizes["test"] is not None:
                rows["test"] = cap_indices(len(own_test), resolve_size(sizes["test"], len(own_test), "test_size"), seed)
    except (ValueError, TypeError) as err:
        if isinstance(err, CSLError):
            raise
        in_force = (_size(teacher_size), _size(test_size)) == (SMALL_DATA_FRACTIONS["teacher"],
                                                              SMALL_DATA_FRACTIONS["test"])
        fix = ("; pass sizes that fit, e.g. fractions: --teacher_size 0.2 --test_size 0.2"
               if "splits need" in str(err) and not in_force else "")  # never advise what is already in force
        raise CSLError(f"--dataset_name {dataset_name}: {err}{fix}") from None
    rows["train"] = rows["train"][cap_indices(len(rows["train"]), max_train_samples, seed)]
    rows["test"] = rows["test"][cap_indices(len(rows["test"]), max_eval_samples, seed)]
    parts = {name: dataset.select(rows[name]) for name in ("teacher", "train")}
    parts["test"] = (own_test if own_test is not None else dataset).select(rows["test"])
    if own_test is not None:
        labels = {k: np.asarray(v.select_columns([label_col]).with_format("numpy")[label_col]) for k, v in parts.items()}
        check_split_classes(labels, names, own_test=split_names["test"])
        logger.info("--dataset_name %s: test split = its own %r split (%d of %d images); teacher (%d) and "
                    "weak-to-strong (%d) images cut from its %r split (%d images)", dataset_name, split_names["test"],
                    len(rows["test"]), len(own_test), len(rows["teacher"]), len(rows["train"]), split_names["pool"],
                    len(dataset))
        rows["test"] = rows["test"] + len(dataset)  # rows of the source: the training split, then the test split
    if streaming:  # the same samples, read lazily
        for name in ("train", "test"):
            parts[name] = parts[name].to_iterable_dataset()
    num_rows = len(dataset) + (len(own_test) if own_test is not None else 0)
    return WeakToStrongData(parts["teacher"], parts["train"], parts["test"], image_col, label_col, domain_col, names,
                            dataset_name, source_rows=rows, num_rows=num_rows, seed=seed,
                            sizes={k: len(v) for k, v in rows.items()}, splits=split_names)


#: The default split sizes (counts), made for the bundled sets; `_fit_default_sizes` turns them into fractions for
#: data too small for them.
DEFAULT_TEACHER_SIZE, DEFAULT_TEST_SIZE = 1000, 2000
#: The fractions the defaults become on small data: 20 % teacher, 20 % test, the rest weak-to-strong training images.
SMALL_DATA_FRACTIONS = {"teacher": 0.2, "test": 0.2}


def _fit_default_sizes(sizes: dict, dataset, own_test: bool, dataset_name: str) -> dict:
    """The default counts (1,000 teacher and 2,000 test images) on a map-style dataset too small for them become
    fractions (`SMALL_DATA_FRACTIONS`), with a log line: a folder of a few hundred images runs with default flags.
    Sizes the user gave are kept as they are (and refused when they do not fit)."""
    if not isinstance(dataset, datasets.Dataset) or sizes["teacher"] != DEFAULT_TEACHER_SIZE:
        return sizes
    if own_test:
        if len(dataset) > DEFAULT_TEACHER_SIZE:
            return sizes
        logger.warning("--dataset_name %s: %d training images, fewer than the default --teacher_size %d: using "
                       "--teacher_size %s (a fraction) instead", dataset_name, len(dataset), DEFAULT_TEACHER_SIZE,
                       SMALL_DATA_FRACTIONS["teacher"])
        return {**sizes, "teacher": SMALL_DATA_FRACTIONS["teacher"]}
    if sizes["test"] != DEFAULT_TEST_SIZE or len(dataset) > DEFAULT_TEACHER_SIZE + DEFAULT_TEST_SIZE:
        return sizes
    logger.warning("--dataset_name %s: %d images, fewer than the default --teacher_size %d + --test_size %d: using "
                   "--teacher_size %s --test_size %s (fractions) instead", dataset_name, len(dataset),
                   DEFAULT_TEACHER_SIZE, DEFAULT_TEST_SIZE, SMALL_DATA_FRACTIONS["teacher"],
                   SMALL_DATA_FRACTIONS["test"])
    return {**sizes, **SMALL_DATA_FRACTIONS}


def _stream_data(stream, own_test, sizes, seed, buffer_size, max_train, max_eval, columns, names, dataset_name,
                 split_names) -> WeakToStrongData:
    """A Hub dataset read as a stream: `stream_splits`, or, with its own test split, the teacher and weak-to-strong
    splits from the training stream and the test split from its own stream (counts only)."""
    if own_test is None:
        splits = stream_splits(stream, seed=seed, teacher_size=sizes["teacher"], test_size=sizes["test"],
                               train_size=sizes["train"], buffer_size=buffer_size)
        test = splits["test"]
    else:
        splits = stream_splits(stream, seed=seed, teacher_size=sizes["teacher"], test_size=None,
                               train_size=sizes["train"], buffer_size=buffer_size)
        test = own_test.take(_count(sizes["test"], "test_size")) if sizes["test"] is not None else own_test
        logger.info("--dataset_name %s: test split = its own %r split (streamed); teacher and weak-to-strong images "
                    "from its %r split", dataset_name, split_names["test"], split_names["pool"])
    train = splits["train"].take(max_train) if max_train else splits["train"]
    test = test.take(max_eval) if max_eval else test
    return WeakToStrongData(splits["teacher"], train, test, *columns, names, dataset_name, seed=seed,
                            splits=split_names)
