"""Fashion-MNIST (Zalando Research, MIT) as a ``datasets.DatasetDict``, and a two-domain variant with corrupted
copies.

60,000 training and 10,000 test greyscale 28x28 product photos, 10 classes (:data:`FASHION_MNIST_CLASSES`, the
names of the dataset's README in label order). Where the data comes from, in this order:

1. the original idx files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``; gzipped or not) in ``data_dir``,
   else in ``$CSL_FASHION_MNIST_DIR``, else in ``/usr/share/datasets/fashion-mnist/`` (Debian's
   ``apt-get install dataset-fashion-mnist``);
2. else the Hub dataset ``zalando-datasets/fashion_mnist`` through ``datasets.load_dataset`` (online, or from the
   ``datasets`` cache when offline); its label names ("T - shirt / top", ...) are renamed to the README's;
3. else a one-line `CSLError` naming both ways.

``load_fashion_mnist()`` returns ``DatasetDict({"train": 60,000 rows, "test": 10,000 rows})``, columns ``image``
(``Image()``, PIL mode "L", 28x28) and ``label`` (``ClassLabel``), rows in the files' order. The official test split
is the run's test split (`load_weak_to_strong_data`; ``--max_eval_samples`` caps it); teacher and weak-to-strong
splits are cut from the official training split.

``load_fashion_mnist_shifted()`` (bundled name ``fashion_mnist_shifted``) adds a ``domain`` column
(:data:`SHIFTED_DOMAINS`: ``clean``, ``corrupted``): in each official split, half of the images of every class
(chosen by a fixed seed) are replaced by a corrupted copy, so the two domains hold *disjoint* images. A corrupted
image gets one of :data:`CORRUPTIONS` (Gaussian noise, Gaussian blur, fog, contrast; balanced, by the same seed) at
one fixed severity (:data:`DEFAULT_SEVERITY`, 5: the strongest), with the CIFAR-10-C parameters of Hendrycks & Dietterich (2019) for small images; they are
computed here in numpy (no ``imagecorruptions`` / scikit-image / OpenCV dependency), deterministically:
the same files, severity and seed give the same bytes. `shifted_assignment` tells which corruption a row got.
"""

from __future__ import annotations

import functools
import gzip
import os

import datasets
import numpy as np
from transformers.utils import logging

from ..errors import CSLError
from .images import dataset_from_png, encode_png_l

logger = logging.get_logger(__name__)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_GROUPS",
    "FASHION_MNIST_HUB_ID",
    "DEBIAN_FASHION_MNIST_DIR",
    "SHIFTED_DOMAINS",
    "CORRUPTIONS",
    "DEFAULT_SEVERITY",
    "fashion_mnist_dir",
    "read_idx",
    "load_fashion_mnist",
    "load_fashion_mnist_shifted",
    "corrupt",
    "shifted_assignment",
    "natural_groups",
]

#: Class names of Fashion-MNIST in label order (github.com/zalandoresearch/fashion-mnist, README).
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: The natural groups of the classes (by class id): tops, footwear, and three classes of their own. The benchmark
#: scores ``--specialties auto`` against them.
FASHION_MNIST_GROUPS = {"tops": (0, 2, 4, 6), "footwear": (5, 7, 9), "trouser": (1,), "dress": (3,), "bag": (8,)}
FASHION_MNIST_HUB_ID = "zalando-datasets/fashion_mnist"
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
ENV_DIR = "CSL_FASHION_MNIST_DIR"

_FILES = {  # split -> (images, labels) file stems
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # idx: 0x00 0x00 0x08 (uint8) then the number of dimensions

SHIFTED_DOMAINS = ("clean", "corrupted")
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "fog", "contrast")
# 5, the strongest: at 3 the two domains were too alike for the domain level to matter (a trial of 4,000 training
# images, 2 seeds: oracle routing 34.4 +- 29.5 PGR at 3, 35.0 +- 8.6 at 5; docs/benchmark.md, Fashion-MNIST).
DEFAULT_SEVERITY = 5
SHIFT_SEED = 0
# CIFAR-10-C parameters per severity 1..5 (Hendrycks & Dietterich 2019, make_cifar_c.py: 32x32 images).
_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
_BLUR_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)
_FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))  # (strength, octave decay)
_CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)


def fashion_mnist_dir(data_dir: str | os.PathLike | None = None) -> str:
    """The folder the idx files are read from: ``data_dir``, else ``$CSL_FASHION_MNIST_DIR``, else Debian's."""
    return os.path.expanduser(os.fspath(data_dir or os.environ.get(ENV_DIR) or DEBIAN_FASHION_MNIST_DIR))


def _find(folder: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def read_idx(path: str) -> np.ndarray:
    """Read one idx file of unsigned bytes (gzipped when its name ends in ``.gz``): ``[N, rows, cols]`` images
    (magic 2051, 16-byte header) or ``[N]`` labels (magic 2049, 8-byte header).

    Raises:
        CSLError (one line, naming the file): a bad magic number, or a size that does not match the header.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise CSLError(f"cannot read {path}: {err}") from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if magic not in (_IMAGES_MAGIC, _LABELS_MAGIC):
        raise CSLError(f"{path} is not an idx file of unsigned bytes (magic {magic}, expected 2051 or 2049)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise CSLError(f"{path}: {len(raw) - header} bytes of data for shape {shape} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_split(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_stem, labels_stem = _FILES[split]
    images, labels = read_idx(_find(folder, images_stem)), read_idx(_find(folder, labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CSLError(f"Fashion-MNIST {split} files in {folder} disagree: images {images.shape}, "
                       f"labels {labels.shape}")
    if len(labels) and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise CSLError(f"Fashion-MNIST {split} labels in {folder} go up to {labels.max()}, expected 0..9")
    return images, labels.astype(np.int64)


def _files_present(folder: str) -> bool:
    return all(_find(folder, stem) for pair in _FILES.values() for stem in pair)


def _files_missing(folder: str) -> list[str]:
    """The idx files a folder that holds only some of the four lacks (empty when it holds all or none)."""
    stems = [stem for pair in _FILES.values() for stem in pair]
    missing = [stem + ".gz" for stem in stems if not _find(folder, stem)]
    return missing if len(missing) < len(stems) else []


def _load_hub() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The Hub copy as arrays (the split's images decoded once)."""
    dd = datasets.load_dataset(FASHION_MNIST_HUB_ID)
    out = {}
    for split in _FILES:
        ds = dd[split]
        images = np.stack([np.asarray(im.convert("L"), dtype=np.uint8) for im in ds["image"]])
        out[split] = (images, np.asarray(ds["label"], dtype=np.int64))
    return out


@functools.lru_cache(maxsize=2)
def _load_arrays(folder: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if _files_present(folder):
        return {split: _read_split(folder, split) for split in _FILES}
    debian = os.path.expanduser(DEBIAN_FASHION_MNIST_DIR)
    from_env = folder == os.path.expanduser(os.environ.get(ENV_DIR) or "\0")
    if not os.path.isdir(folder) and folder != debian:  # a typo in the path: no Hub attempt, and say what else works
        instead = (f"unset it to read the installed Debian copy in {debian}" if from_env and _files_present(debian)
                   else "name a folder with the four *-ubyte.gz files")
        raise CSLError(f"Fashion-MNIST: {'$' + ENV_DIR + '=' if from_env else ''}{folder} is not a folder; "
                       f"{instead}")
    missing = _files_missing(folder)
    if missing:  # some of the files: the user meant this folder, so no Hub attempt, and the line names what is absent
        raise CSLError(f"Fashion-MNIST in {folder} is incomplete: {', '.join(missing)} missing (a .gz or the "
                       "uncompressed file); add them, or point $" + ENV_DIR + " at a folder with all four *-ubyte files")
    if datasets.config.HF_HUB_OFFLINE:
        logger.info(f"no Fashion-MNIST idx files in {folder}: looking for the Hub dataset {FASHION_MNIST_HUB_ID} in "
                    "the local datasets cache (HF_HUB_OFFLINE=1)")
    else:
        logger.info(f"no Fashion-MNIST idx files in {folder}: loading the Hub dataset {FASHION_MNIST_HUB_ID} through "
                    "datasets (without a network, huggingface_hub retries a few times before it gives up; "
                    "HF_HUB_OFFLINE=1 reads only the local datasets cache)")
    try:
        return _load_hub()
    except Exception as err:  # offline, no datasets cache, Hub error: say how to get the data instead
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:160]
        # Advice only of what is not already so: the folder that was searched, and the Hub only when offline.
        files = "the four *-ubyte.gz files"
        if folder == debian:
            where = (f"install the Debian package (apt-get install dataset-fashion-mnist), or point ${ENV_DIR} at a "
                     f"folder with {files}")
        elif from_env:
            where = f"put {files} in ${ENV_DIR} ({folder})"
            if _files_present(debian):
                where += f", or unset ${ENV_DIR} to read the installed Debian copy in {debian}"
        else:
            where = f"put {files} in {folder}"
        hub = " or unset HF_HUB_OFFLINE to download the Hub dataset" if datasets.config.HF_HUB_OFFLINE else ""
        raise CSLError(
            f"Fashion-MNIST not found: no idx files in {folder} and the Hub dataset {FASHION_MNIST_HUB_ID} could not "
            f"be loaded ({reason}); {where}{',' if hub else ''}{hub}"
        ) from None


def _features(with_domain: bool) -> datasets.Features:
    features = {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(FASHION_MNIST_CLASSES))}
    if with_domain:
        features["domain"] = datasets.ClassLabel(names=list(SHIFTED_DOMAINS))
    return datasets.Features(features)


@functools.lru_cache(maxsize=2)
def _clean_png(folder: str) -> dict[str, tuple[tuple[bytes, ...], np.ndarray]]:
    return {split: (tuple(encode_png_l(images)), labels) for split, (images, labels) in _load_arrays(folder).items()}


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> datasets.DatasetDict:
    """Load Fashion-MNIST: ``DatasetDict`` with ``train`` (60,000 rows) and ``test`` (10,000 rows), columns ``image``
    (``Image()``, mode "L", 28x28) and ``label`` (``ClassLabel`` over :data:`FASHION_MNIST_CLASSES`). Sources in the
    module docstring; the encoded images are cached per process.

    Raises:
        CSLError (one line): the data is neither on disk nor loadable from the Hub; a malformed idx file.
    """
    png = _clean_png(fashion_mnist_dir(data_dir))
    return datasets.DatasetDict({split: dataset_from_png(list(p), {"label": y}, _features(False))
                                 for split, (p, y) in png.items()})


# ---------------------------------------------------------------------------------------------------------------
# The shifted domain: corrupted copies


def shifted_assignment(labels: np.ndarray, seed: int = SHIFT_SEED,
                       split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Which rows of a split are corrupted, and how: ``(domain, corruption)``, int64 arrays of ``len(labels)``.

    ``domain`` is 1 for half of the rows of every class (``floor(n_c / 2)`` clean, the rest corrupted, chosen by
    ``seed`` and the split's name), 0 otherwise. ``corruption`` indexes :data:`CORRUPTIONS` on corrupted rows (the
    four in turn over a seeded order, so they are balanced) and is -1 on clean rows.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, list(_FILES).index(split) if split in _FILES else 99])
    domain = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        domain[rows[len(rows) // 2:]] = 1
    corruption = np.full(len(labels), -1, np.int64)
    corrupted = rng.permutation(np.flatnonzero(domain == 1))
    corruption[corrupted] = np.arange(len(corrupted)) % len(CORRUPTIONS)
    return domain, corruption


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``[N, H, W]`` with reflected borders."""
    k = _gaussian_kernel(sigma)
    r = len(k) // 2
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        padded = np.pad(x, pad, mode="reflect")
        n = x.shape[axis]
        x = sum(k[i] * np.take(padded, np.arange(i, i + n), axis=axis) for i in range(len(k)))
    return x


def _upsample_matrix(cells: int, size: int) -> np.ndarray:
    """``[size, cells + 1]`` linear interpolation from a grid of ``cells + 1`` knots onto ``size`` pixels."""
    pos = np.linspace(0, cells, size)
    lo = np.minimum(np.floor(pos).astype(int), cells - 1)
    frac = pos - lo
    m = np.zeros((size, cells + 1))
    m[np.arange(size), lo] = 1 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def _plasma(n: int, h: int, w: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Fractal value noise in [0, 1], ``[n, h, w]``: octaves of random grids (2, 4, ... cells) interpolated
    bilinearly, octave k weighted ``decay ** -k`` (a larger decay is smoother), like the plasma fractal of
    ImageNet-C's fog."""
    out = np.zeros((n, h, w))
    for k, cells in enumerate(c for c in (2, 4, 8, 16) if c <= max(h, w)):
        grid = rng.uniform(-1.0, 1.0, size=(n, cells + 1, cells + 1))
        out += decay ** -k * (_upsample_matrix(cells, h) @ grid @ _upsample_matrix(cells, w).T)
    lo, hi = out.min(axis=(1, 2), keepdims=True), out.max(axis=(1, 2), keepdims=True)
    return (out - lo) / np.maximum(hi - lo, 1e-12)


def corrupt(images: np.ndarray, corruption: str, severity: int = DEFAULT_SEVERITY,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """Corrupt uint8 greyscale images ``[N, H, W]`` with one of :data:`CORRUPTIONS` at ``severity`` 1..5
    (CIFAR-10-C parameters); returns uint8 ``[N, H, W]``. Noise and fog draw from ``rng`` (default seed 0)."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; expected one of {', '.join(CORRUPTIONS)}")
    if not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    s = int(severity) - 1
    rng = rng if rng is not None else np.random.default_rng(0)
    x = np.asarray(images, dtype=np.float64) / 255.0
    if x.size == 0:
        return np.asarray(images, dtype=np.uint8).copy()
    if corruption == "gaussian_noise":
        x = x + rng.normal(0.0, _NOISE_STD[s], size=x.shape)
    elif corruption == "gaussian_blur":
        x = _blur(x, _BLUR_SIGMA[s])
    elif corruption == "fog":
        strength, decay = _FOG[s]
        peak = x.max(axis=(1, 2), keepdims=True)
        x = (x + strength * _plasma(len(x), x.shape[1], x.shape[2], decay, rng)) * peak / (peak + strength)
    else:  # contrast
        mean = x.mean(axis=(1, 2), keepdims=True)
        x = (x - mean) * _CONTRAST[s] + mean
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=2)
def _shifted_png(folder: str, severity: int, seed: int) -> dict[str, tuple[tuple[bytes, ...], np.ndarray, np.ndarray]]:
    out = {}
    for split, (images, labels) in _load_arrays(folder).items():
        domain, corruption = shifted_assignment(labels, seed, split)
        images = images.copy()
        rng = np.random.default_rng([seed, severity, list(_FILES).index(split)])
        for k, name in enumerate(CORRUPTIONS):
            rows = np.flatnonzero(corruption == k)
            images[rows] = corrupt(images[rows], name, severity, rng)
        out[split] = (tuple(encode_png_l(images)), labels, domain)
    return out


def load_fashion_mnist_shifted(data_dir: str | os.PathLike | None = None, severity: int = DEFAULT_SEVERITY,
                               seed: int = SHIFT_SEED) -> datasets.DatasetDict:
    """Fashion-MNIST over two domains of disjoint images: ``DatasetDict`` ``train`` / ``test`` (the official splits)
    with columns ``image``, ``label`` and ``domain`` (``ClassLabel`` ``["clean", "corrupted"]``); half of each
    class's images in each split are corrupted copies (`shifted_assignment`, `corrupt`). Deterministic.

    Raises:
        CSLError (one line): the data cannot be found (see `load_fashion_mnist`); ValueError: a bad severity.
    """
    if not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    png = _shifted_png(fashion_mnist_dir(data_dir), int(severity), int(seed))
    return datasets.DatasetDict({split: dataset_from_png(list(p), {"label": y, "domain": d}, _features(True))
                                 for split, (p, y, d) in png.items()})


def natural_groups(num_classes: int = len(FASHION_MNIST_CLASSES)) -> list[int]:
    """The natural group id of every class (:data:`FASHION_MNIST_GROUPS`, in its order)."""
    out = [-1] * num_classes
    for g, classes in enumerate(FASHION_MNIST_GROUPS.values()):
        for c in classes:
            out[c] = g
    return out
