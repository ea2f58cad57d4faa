"""Weak-to-strong data from a dataset's *named* splits, as the CSL paper's ImageNet recipe takes them: the teachers'
images from one split (ImageNet ``train``), the student's training images and the test images from another
(ImageNet ``validation``, half each, as in the reference code). Each split is shuffled with the seed and read in
order, so a stream needs no length; when both are the same split, the parts are taken one after the other and stay
disjoint."""

from __future__ import annotations

import datasets

from ..errors import CSLError
from .labels import align_labels
from .loading import class_names, infer_columns, load_csl_dataset
from .weak_to_strong import WeakToStrongData

__all__ = ["load_named_splits"]


def _take(dataset, start: int, n: int):
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.skip(start).take(n) if start else dataset.take(n)
    if start + n > len(dataset):
        raise CSLError(f"asked for images {start}..{start + n} of a split of {len(dataset)}; lower "
                       "--teacher_train_size, --w2s_train_size or --test_size")
    return dataset.select(range(start, start + n))


def load_named_splits(dataset_name: str, teacher_split: str, w2s_split: str, teacher_size: int, train_size: int,
                      test_size: int, seed: int, streaming: bool = False, shuffle_buffer_size: int = 10000,
                      config_name: str | None = None) -> WeakToStrongData:
    """The teacher split: the first ``teacher_size`` images of ``teacher_split`` (shuffled with ``seed``); the
    weak-to-strong training and test splits: the next ``train_size`` and ``test_size`` images of ``w2s_split``
    (after the teacher images when it is the same split).

    Raises:
        `CSLError` (one line): a dataset or split that does not load, missing columns, sizes beyond a split.
    """
    kwargs = {"name": config_name} if config_name else {}

    def load(split: str):
        try:
            ds = load_csl_dataset(dataset_name, streaming=streaming, split=split, **kwargs)
        except ValueError as err:
            raise CSLError(f"--dataset_name {dataset_name} split {split}: {err}") from None
        if isinstance(ds, datasets.IterableDataset):
            return ds.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
        if isinstance(ds, datasets.Dataset):
            return ds.shuffle(seed=seed)
        raise CSLError(f"--dataset_name {dataset_name}: split {split!r} did not give one dataset")

    teacher_source = load(teacher_split)
    w2s_source = teacher_source if w2s_split == teacher_split else load(w2s_split)
    start = teacher_size if w2s_split == teacher_split else 0
    try:
        image_col, label_col, domain_col = infer_columns(teacher_source)
        names = class_names(teacher_source, label_col)
    except ValueError as err:
        raise CSLError(f"--dataset_name {dataset_name}: {err}") from None
    if w2s_source is not teacher_source:  # the same classes, perhaps numbered otherwise: matched by name
        w2s_source = align_labels(w2s_source, label_col, names, f"the {w2s_split} split of {dataset_name}",
                                  f"its {teacher_split} split", fix=f"add {teacher_split} images of those classes, or "
                                  "leave their images out")
    return WeakToStrongData(_take(teacher_source, 0, teacher_size), _take(w2s_source, start, train_size),
                            _take(w2s_source, start + train_size, test_size), image_col, label_col, domain_col, names,
                            dataset_name, seed=seed)
