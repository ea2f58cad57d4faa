"""The data of a weak-to-strong run in one call: load a dataset, find its columns, cut the teacher / train / test
splits, cap them, and remember which source rows each split holds.

Bundled sets and local image folders are always split as map-style datasets (their length and labels are known
without decoding an image), so ``streaming=True`` reads *the same samples* as a map-style run with the same seed
and sizes, lazily. Only a Hub dataset is split as a stream, with a shuffle buffer (`csl_hf.data.streaming`), which
draws another sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np

from ..errors import CSLError
from .loading import class_names, infer_columns, is_local_source, load_csl_dataset
from .splits import cap_indices, weak_to_strong_indices
from .streaming import stream_splits

__all__ = ["WeakToStrongData", "load_weak_to_strong_data"]


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
            for a streamed Hub dataset, whose rows have no stable index).
        num_rows: the source dataset's length (``None`` for a streamed Hub dataset).
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


def load_weak_to_strong_data(
    dataset_name: str,
    seed: int,
    teacher_size: float = 1000,
    test_size: float = 2000,
    train_size: float | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    streaming: bool = False,
    shuffle_buffer_size: int = 1000,
) -> WeakToStrongData:
    """Load ``dataset_name`` (bundled name, image folder or Hub id) and cut it into teacher / train / test splits.

    Sizes are counts or fractions in (0, 1) of the dataset (counts only for a streamed Hub dataset). The train and
    test splits are then capped to ``max_train_samples`` / ``max_eval_samples`` (a seeded subset).

    Raises:
        `CSLError` (one line, naming the dataset): a source that cannot be loaded, missing columns, sizes that do not
        fit the dataset.
    """
    try:
        local = is_local_source(dataset_name)
        dataset = load_csl_dataset(dataset_name, streaming=streaming and not local)
        if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
        image_col, label_col, domain_col = infer_columns(dataset)
        names = class_names(dataset, label_col)
        sizes = {"teacher": _size(teacher_size), "test": _size(test_size), "train": _size(train_size)}
        if isinstance(dataset, datasets.IterableDataset):
            splits = stream_splits(dataset, seed=seed, teacher_size=sizes["teacher"], test_size=sizes["test"],
                                   train_size=sizes["train"], buffer_size=shuffle_buffer_size)
            return WeakToStrongData(splits["teacher"], splits["train"].take(max_train_samples) if max_train_samples
                                    else splits["train"], splits["test"].take(max_eval_samples) if max_eval_samples
                                    else splits["test"], image_col, label_col, domain_col, names, dataset_name,
                                    seed=seed)
        stratify = (label_col, domain_col) if domain_col else label_col
        rows = weak_to_strong_indices(dataset, seed=seed, teacher_size=sizes["teacher"], test_size=sizes["test"],
                                      train_size=sizes["train"], stratify_by=stratify)
    except (ValueError, TypeError) as err:
        if isinstance(err, CSLError):
            raise
        raise CSLError(f"--dataset_name {dataset_name}: {err}") from None
    rows["train"] = rows["train"][cap_indices(len(rows["train"]), max_train_samples, seed)]
    rows["test"] = rows["test"][cap_indices(len(rows["test"]), max_eval_samples, seed)]
    parts = {name: dataset.select(rows[name]) for name in ("teacher", "train", "test")}
    if streaming:  # the same samples, read lazily
        for name in ("train", "test"):
            parts[name] = parts[name].to_iterable_dataset()
    return WeakToStrongData(parts["teacher"], parts["train"], parts["test"], image_col, label_col, domain_col, names,
                            dataset_name, source_rows=rows, num_rows=len(dataset), seed=seed,
                            sizes={k: len(v) for k, v in rows.items()})
