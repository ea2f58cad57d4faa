"""Loading datasets for co-supervised learning and finding their columns.

``load_csl_dataset(name_or_path)`` resolves, in this order:

1. a bundled name (:data:`BUNDLED_DATASETS`): ``animal_mnist`` (10 animal classes) or
   ``digits_domains`` (10 digits x 2 domains), built offline from installed PyPI packages; ``fashion_mnist`` and
   ``fashion_mnist_shifted`` (+ a corrupted domain), from Debian's files or the Hub, with their own test split
   (a ``DatasetDict``; see :mod:`csl_hf.data.fashion_mnist`);
2. an existing local directory, read the way ``datasets`` reads it (:mod:`csl_hf.data.local`): a ``save_to_disk``
   folder, a clone of a Hub dataset (parquet, csv...), an image folder with metadata or with split folders
   (``path/train/<class>/<image>``, ``path/test/<class>/<image>``: a ``DatasetDict``), else an image folder
   ``path/<class>/<image>`` or ``path/<domain>/<class>/<image>`` (see :mod:`csl_hf.data.image_folder`);
3. anything else: ``datasets.load_dataset(name_or_path, ...)`` (a Hub dataset id, or a dataset
   already in the local ``datasets`` cache when offline).

The loaded dataset's ``info.dataset_name`` names its source, for reports and model cards.
"""

from __future__ import annotations

import os
from typing import Any

import datasets

from .animal_mnist import load_animal_mnist
from .columns import DOMAIN_COLUMN_NAMES, IMAGE_COLUMN_NAMES, LABEL_COLUMN_NAMES
from .digits_domains import load_digits_domains
from .fashion_mnist import load_fashion_mnist, load_fashion_mnist_shifted
from .local import FOLDER_LAYOUTS, read_local_dataset

__all__ = ["BUNDLED_DATASETS", "load_csl_dataset", "infer_columns", "class_names", "is_local_source"]

BUNDLED_DATASETS = ("animal_mnist", "digits_domains", "fashion_mnist", "fashion_mnist_shifted")
_BUNDLED_LOADERS = {"animal_mnist": load_animal_mnist, "digits_domains": load_digits_domains,
                    "fashion_mnist": load_fashion_mnist, "fashion_mnist_shifted": load_fashion_mnist_shifted}
#: Bundled sets that come as a ``DatasetDict`` with their own ``train`` and ``test`` splits.
_BUNDLED_WITH_SPLITS = ("fashion_mnist", "fashion_mnist_shifted")



def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".strip()


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else shaped like a path is treated as one."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def load_csl_dataset(
    name_or_path: str, streaming: bool = False, split: str | None = None, folder_layout: str = "auto", **kwargs: Any
) -> datasets.Dataset | datasets.IterableDataset | datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load a dataset for CSL by bundled name, local image folder, or Hub id (resolution order in
    the module docstring).

    Args:
        name_or_path: ``"animal_mnist"``, ``"digits_domains"``, a local directory, or a Hub id.
        streaming: return an ``IterableDataset`` (bundled sets via ``.to_iterable_dataset(num_shards=...)``; split
            it with `csl_hf.data.streaming.stream_splits`).
        split: one split (``None`` gives a ``DatasetDict`` for a source with named splits). Hub datasets: forwarded to
            ``load_dataset``. Single-split sources (animal_mnist, digits_domains, a plain image folder): ``None``,
            ``"train"`` or ``"all"``.
        folder_layout: how to read a local folder (:data:`csl_hf.data.local.FOLDER_LAYOUTS`): ``"auto"`` as
            ``datasets`` does (see :mod:`csl_hf.data.local`), ``"splits"``, ``"domains"`` or ``"classes"``.
        **kwargs: forwarded to ``datasets.load_dataset`` for local folders and Hub datasets.

    Raises:
        ValueError (one line): an unknown split, a local path that does not exist, is of a type no reader takes or cannot be
            read (an ambiguous layout names its readings), or a Hub dataset that cannot be loaded (e.g. offline).
    """
    name = os.fspath(name_or_path)
    if folder_layout not in FOLDER_LAYOUTS:
        raise ValueError(f"folder_layout {folder_layout!r} does not exist; use one of {', '.join(FOLDER_LAYOUTS)}")
    if folder_layout != "auto" and not os.path.isdir(os.path.expanduser(name)):
        raise ValueError(f"--folder_layout {folder_layout} applies to a local folder, and {name!r} is not one; drop it")
    if name in _BUNDLED_LOADERS and name not in _BUNDLED_WITH_SPLITS and split not in (None, "train", "all"):
        raise ValueError(
            f"{name!r} has a single split (use split=None); make teacher/train/test splits with make_weak_to_strong_splits"
        )
    if name in _BUNDLED_LOADERS:
        if kwargs:
            raise ValueError(f"bundled dataset {name!r} takes no loading options, got {sorted(kwargs)}")
        ds = _named(_BUNDLED_LOADERS[name](), name)
        if name in _BUNDLED_WITH_SPLITS:
            if split is not None and split not in ds:
                raise ValueError(f"{name!r} has the splits {', '.join(ds)} (or split=None for both), not {split!r}")
            if split is None and not streaming:
                return ds
            if split is None:
                return datasets.IterableDatasetDict(
                    {k: v.to_iterable_dataset(num_shards=min(len(v), 1024)) for k, v in ds.items()})
            ds = ds[split]
        # Many small shards: the bundled sets are sorted by class, and a streaming shuffle permutes shards.
        return ds.to_iterable_dataset(num_shards=min(len(ds), 1024)) if streaming else ds
    if os.path.isdir(os.path.expanduser(name)) or os.path.isfile(os.path.expanduser(name)):
        ds = read_local_dataset(os.path.expanduser(name), folder_layout=folder_layout, **kwargs)
        if isinstance(ds, datasets.DatasetDict):
            if split is not None and split not in ds:
                raise ValueError(f"{name!r} has the splits {', '.join(ds)} (or split=None for all), not {split!r}")
            ds = ds[split] if split is not None else ds
        elif split not in (None, "train", "all"):
            raise ValueError(f"{name!r} has a single split (use split=None); make teacher/train/test splits with "
                             "make_weak_to_strong_splits")
        ds = _named(ds, name)
        if not streaming:
            return ds
        if isinstance(ds, datasets.DatasetDict):
            return datasets.IterableDatasetDict(
                {k: v.to_iterable_dataset(num_shards=max(1, min(len(v), 1024))) for k, v in ds.items()})
        return ds.to_iterable_dataset(num_shards=max(1, min(len(ds), 1024))) if isinstance(ds, datasets.Dataset) \
            else ds
    if os.path.exists(os.path.expanduser(name)) or _looks_like_path(name):
        what = "is neither a folder nor a data file" if os.path.exists(os.path.expanduser(name)) else "does not exist"
        raise ValueError(
            f"dataset path {name!r} {what}; expected an image folder (path/<class>/<image>, "
            f"path/<domain>/<class>/<image> or path/<split>/<class>/<image>), a save_to_disk folder, a clone of a Hub "
            f"dataset, or a bundled name: {', '.join(BUNDLED_DATASETS)}"
        )
    import difflib

    close = difflib.get_close_matches(name, BUNDLED_DATASETS, n=1, cutoff=0.8)
    if close and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        # Offline, a near-miss of a bundled name is a typo: say so at once instead of asking the Hub.
        raise ValueError(f"dataset {name!r} is neither bundled nor a local folder; did you mean {close[0]!r}?")
    try:
        return _named(datasets.load_dataset(name, split=split, streaming=streaming, **kwargs), name)
    except Exception as e:
        if close:
            raise ValueError(f"could not load dataset {name!r} ({_first_line(e)}); did you mean {close[0]!r}?") from e
        raise ValueError(
            f"could not load dataset {name!r} with datasets.load_dataset ({_first_line(e)}); without Hub access use a "
            f"local image folder (path/<class>/<image> or path/<domain>/<class>/<image>) or a bundled dataset: "
            f"{', '.join(BUNDLED_DATASETS)}"
        ) from e


def is_local_source(name_or_path: str) -> bool:
    """A bundled dataset, a local folder or data file: data whose length and labels are known without reading
    images."""
    path = os.path.expanduser(os.fspath(name_or_path))
    return os.fspath(name_or_path) in _BUNDLED_LOADERS or os.path.isdir(path) or os.path.isfile(path)


def _named(dataset, name: str):
    """Record the source's name in ``info.dataset_name`` (of every split of a dict)."""
    for ds in dataset.values() if isinstance(dataset, dict) else [dataset]:
        info = getattr(ds, "info", None)
        if info is not None:
            info.dataset_name = name
    return dataset


def _features(dataset: Any) -> datasets.Features:
    features = getattr(dataset, "features", None)
    if features is None:
        raise ValueError(
            "the dataset's features are unknown (a streaming dataset without metadata); "
            "give them with .cast(features): an Image column and a ClassLabel label column"
        )
    return features


def infer_columns(dataset: datasets.Dataset | datasets.IterableDataset,
                  labels: bool = True) -> tuple[str, str | None, str | None]:
    """Find ``(image_col, label_col, domain_col or None)``.

    image: the first ``datasets.Image`` column, else the first of image/img/pixel_values present.
    label: the first of label/labels/fine_label present, else the first ``ClassLabel`` column that
    is not a domain column (``None`` when there is none and ``labels=False``).  domain: a column named ``domain``,
    else None.

    Raises:
        ValueError (one line, listing the columns): no image or no label column.
    """
    features = _features(dataset)
    cols = list(features)
    image_col = next((c for c in cols if isinstance(features[c], datasets.Image)), None)
    image_col = image_col or next((c for c in IMAGE_COLUMN_NAMES if c in features), None)
    if image_col is None:
        hint = ("; 'file_name' is how an image folder's metadata names its images: pass the folder holding the "
                "images and this table (named metadata.csv / metadata.jsonl)") if "file_name" in cols else ""
        raise ValueError(f"no image column (an Image feature or one named {'/'.join(IMAGE_COLUMN_NAMES)}) among "
                         f"{cols}{hint}")
    domain_col = next((c for c in DOMAIN_COLUMN_NAMES if c in features), None)
    label_col = next((c for c in LABEL_COLUMN_NAMES if c in features), None)
    label_col = label_col or next(
        (c for c in cols if isinstance(features[c], datasets.ClassLabel) and c != domain_col), None
    )
    if label_col is None and labels:
        raise ValueError(f"no label column (a ClassLabel or one named {'/'.join(LABEL_COLUMN_NAMES)}) among {cols}")
    return image_col, label_col, domain_col


def class_names(dataset: datasets.Dataset | datasets.IterableDataset, label_col: str) -> list[str]:
    """Class names of ``label_col``: the ``ClassLabel`` names, else (integer labels of a map-style
    dataset) ``["0", ..., str(max)]``.

    Raises:
        ValueError (one line): the column is missing, or its names cannot be determined.
    """
    features = _features(dataset)
    if label_col not in features:
        raise ValueError(f"label column {label_col!r} not among {list(features)}")
    feature = features[label_col]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    dtype = getattr(feature, "dtype", "")
    if isinstance(dataset, datasets.Dataset) and dtype.startswith(("int", "uint")):
        values = dataset.select_columns([label_col]).with_format("arrow")[:].column(label_col).to_numpy()
        if len(values) and values.min() < 0:
            raise ValueError(f"label column {label_col!r} has negative labels; cast it to a ClassLabel")
        return [str(i) for i in range(int(values.max()) + 1 if len(values) else 0)]
    raise ValueError(
        f"cannot determine class names of column {label_col!r} ({feature!r}); cast it to datasets.ClassLabel"
    )
