"""Class ids matched by *name* between datasets, teachers and students.

Two ``datasets`` of the same classes can number them differently: a test folder that misses a class gets a shorter
``ClassLabel`` (``datasets`` numbers the classes it sees, in sorted order), a dataset saved elsewhere may list its
classes in another order. Scoring or labeling such a split by id counts a cat as a bird. Everything that meets a
second split (the weak-to-strong splits of a dataset with its own test split, ``CoSupervisedTrainer``'s
``train_dataset`` / ``eval_dataset``, ``evaluate`` / ``predict`` on a dataset) goes through `align_labels` or
`label_id_map`: ids are mapped to the reference's ids by class name, and a class the reference does not know is one
line naming it. A label column without names (plain integers) carries ids, and is taken as it is.
"""

from __future__ import annotations

import datasets
import numpy as np
import torch

from ..errors import CSLError

__all__ = ["label_names", "label_id_map", "align_labels", "align_label_ids", "present_ids"]


def label_names(dataset, label_col: str) -> list[str] | None:
    """The ``ClassLabel`` names of ``label_col``, or ``None`` (plain integers, or a stream without features)."""
    feature = (getattr(dataset, "features", None) or {}).get(label_col)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def present_ids(dataset: datasets.Dataset, label_col: str) -> set[int]:
    """The label ids that occur in a map-style dataset (its label column alone is read)."""
    column = dataset.select_columns([label_col]).with_format("arrow")[:].column(label_col)
    return {int(y) for y in np.unique(column.drop_null().to_numpy())}


def _names(names: list[str], limit: int = 8) -> str:
    return ", ".join(map(str, names[:limit])) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def label_id_map(names: list[str] | None, reference: list[str], what: str, reference_what: str,
                 fix: str | None = None, present=None) -> np.ndarray | None:
    """``mapping[id in names] = id in reference`` by class name; ``None`` when the ids already agree (or ``names`` is
    ``None``: integer labels are ids).

    Args:
        present: the ids that occur in the data, when known: a class name ``reference`` lacks is refused only if
            some image has it (a ``ClassLabel`` may list classes a split holds no image of); ``None``: every name
            counts.

    Raises:
        `CSLError` (one line): a class of ``names`` (that occurs) that ``reference`` does not have.
    """
    if names is None or list(names) == list(reference):
        return None
    index = {name: i for i, name in enumerate(reference)}
    unknown = [n for i, n in enumerate(names) if n not in index and (present is None or i in present)]
    if unknown:
        raise CSLError(f"{what} has class(es) {_names(unknown)} unknown to {reference_what}, whose classes are "
                       f"{_names(list(reference))}; " + (fix or "leave out the images of those classes (e.g. with "
                       "dataset.filter) or use teachers and a student trained on them"))
    return np.asarray([index.get(n, -1) for n in names], dtype=np.int64)


def align_label_ids(labels: torch.Tensor, mapping: np.ndarray | None) -> torch.Tensor:
    """Labels ``[n]`` through `label_id_map`'s ``mapping`` (negative ids, unknown labels, stay as they are)."""
    if mapping is None:
        return labels
    table = torch.as_tensor(mapping, dtype=labels.dtype)
    return torch.where(labels >= 0, table[labels.clamp(min=0)], labels)


def align_labels(dataset, label_col: str, reference: list[str], what: str, reference_what: str,
                 fix: str | None = None):
    """``dataset`` with ``label_col`` renumbered to ``reference``'s ids by class name and its ``ClassLabel`` set to
    ``reference`` (the dataset itself when the ids already agree, or the labels are plain integers).

    Map-style datasets are rewritten once with ``Dataset.map`` over the label column alone (no image is decoded;
    the result is cached by ``datasets`` fingerprint); streams are mapped lazily.

    Raises:
        `CSLError` (one line): a class that ``reference`` does not know (see `label_id_map`).
    """
    names = label_names(dataset, label_col)
    present = None
    if names is not None and isinstance(dataset, datasets.Dataset) and set(names) - set(reference):
        present = present_ids(dataset, label_col)
    mapping = label_id_map(names, reference, what, reference_what, fix, present)
    if mapping is None:
        return dataset
    features = dataset.features.copy()
    features[label_col] = datasets.ClassLabel(names=list(reference))
    table = mapping.tolist()

    def renumber(labels):
        return {label_col: [table[y] if y is not None and y >= 0 else y for y in labels]}

    if isinstance(dataset, datasets.IterableDataset):
        return dataset.map(renumber, input_columns=[label_col], batched=True, features=features)
    return dataset.map(renumber, input_columns=[label_col], batched=True, features=features,
                       desc=f"matching {what}'s classes by name")
