"""Animal-MNIST (PyPI ``animal-mnist`` 0.4, MIT) as a ``datasets.Dataset``.

10,000 greyscale 28x28 animal silhouettes, 10 classes x 1,000.  The package's own loader imports
TensorFlow, so it is never imported: the gzipped pickles in ``animal_mnist/data/Animal_MNIST/`` are
read directly, with an unpickler restricted to numpy array reconstruction.

Class names: the package README lists "Bear, Bird, Cat, Cow, Dog, Elephant, Giraffe, Horse,
Sheep, Zebra"; the integer labels 0..9 follow that (alphabetical) order, which was checked by
looking at the silhouettes of each label.  The stored order is sorted by label: always shuffle
(``make_weak_to_strong_splits`` does).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os

import pickle
from typing import BinaryIO

import datasets
import numpy as np

from ..errors import MissingPackageError
from .images import dataset_from_png, encode_png_l

__all__ = ["ANIMAL_MNIST_CLASSES", "load_animal_mnist", "animal_mnist_dir"]

ANIMAL_MNIST_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
_DATA_FILE = "animal_data_version_3.gz"
_LABEL_FILE = "animal_label_version_3.gz"


# Only what pickle needs to rebuild a plain numpy array (numpy 1.x and 2.x module names).
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and nothing else: any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")


def load_numpy_pickle(fileobj: BinaryIO) -> np.ndarray:
    """Unpickle one numpy array from ``fileobj`` with :class:`NumpyOnlyUnpickler`."""
    obj = NumpyOnlyUnpickler(fileobj).load()
    if not isinstance(obj, np.ndarray):
        raise pickle.UnpicklingError(f"expected a numpy array, got {type(obj).__name__}")
    return obj


def animal_mnist_dir() -> str:
    """Directory holding the Animal-MNIST files of the installed ``animal-mnist`` package."""
    spec = importlib.util.find_spec("animal_mnist")  # does not import the package
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            "Animal-MNIST (--dataset_name animal_mnist, the default) needs its images from PyPI: pip install "
            "--no-deps animal-mnist==0.4 (--no-deps: its metadata asks for TensorFlow, which csl_hf never imports)"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "Animal_MNIST")


@functools.lru_cache(maxsize=1)
def _load_arrays() -> tuple[tuple[bytes, ...], np.ndarray]:
    root = animal_mnist_dir()
    with gzip.open(os.path.join(root, _DATA_FILE), "rb") as f:
        images = load_numpy_pickle(f)
    with gzip.open(os.path.join(root, _LABEL_FILE), "rb") as f:
        labels = load_numpy_pickle(f)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"unexpected Animal-MNIST images: dtype {images.dtype}, shape {images.shape}")
    if labels.shape != (images.shape[0],) or labels.min() < 0 or labels.max() >= len(ANIMAL_MNIST_CLASSES):
        raise ValueError(f"unexpected Animal-MNIST labels: shape {labels.shape}, range {labels.min()}..{labels.max()}")
    return tuple(encode_png_l(images)), labels.astype(np.int64)


def load_animal_mnist() -> datasets.Dataset:
    """Load Animal-MNIST: 10,000 rows, columns ``image`` (``Image()``, PIL mode "L", 28x28) and
    ``label`` (``ClassLabel`` over :data:`ANIMAL_MNIST_CLASSES`).  The rows are in the package's
    order (sorted by label).  The decoded arrays are cached per process, so later calls are fast.
    """
    png, labels = _load_arrays()
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(ANIMAL_MNIST_CLASSES))}
    )
    return dataset_from_png(list(png), {"label": labels}, features)
