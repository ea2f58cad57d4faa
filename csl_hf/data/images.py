"""Image decoding: the one path from a stored image to model inputs.

Every place csl_hf reads an image (teacher training and evaluation, the labeling pass, full fine-tuning, streaming,
evaluation of the student) goes through `load_image` (one image to ``uint8 [3, H, W]`` RGB) or `preprocess_images`
(a batch, each image decoded once and resized right away to every input size that is needed, so a batch of 12-MP
photos never sits in memory at full resolution). Decoding matches ``datasets.Image`` and transformers'
``load_image``: the EXIF Orientation tag is applied (phone photos stored sideways come out upright), every PIL mode
becomes 8-bit RGB, and a corrupt or degenerate file is a one-line ``ValueError`` naming it. High-bit-depth images are
scaled by their mode's range, the same for every image (:data:`MODE_RANGES`: 16-bit data 0..65535 whether stored as
"I;16" or as 32-bit "I", floats 0..1), where PIL's own ``convert("L")`` would clip them at 255 (white); values
outside the range are refused like a corrupt file.

Typical use on a column cast to ``datasets.Image(decode=False)``::

    pixels = load_image(example["image"])                     # uint8 [3, H, W]
    batch = preprocess_images(values, [student_prep, teacher_prep])
"""

from __future__ import annotations

import io
import os
from typing import Any

from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from PIL import Image, ImageOps

from .preprocessing import Preprocessing

__all__ = ["decode_image", "check_image", "to_rgb", "load_image", "preprocess_images", "DecodedBatch", "encode_png_l",
           "dataset_from_png"]

_WHITE = (255, 255, 255)


def _one_line(text: Any, limit: int = 200) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        path = value.get("path")
        if path:
            return repr(str(path))
        data = value.get("bytes")
        return f"<{len(data)} bytes>" if isinstance(data, (bytes, bytearray)) else "<dict>"
    if isinstance(value, (str, os.PathLike)):
        return repr(os.fspath(value))
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return f"<{type(value).__name__}>"


def decode_image(value: Any) -> Image.Image:
    """Decode ``value`` into a fully loaded PIL image, upright (its EXIF Orientation applied, as ``datasets.Image``
    and transformers' ``load_image`` do).

    Accepts a PIL image, a ``datasets`` image dict ``{"bytes": ..., "path": ...}`` (bytes win over
    the path, as in ``datasets.Image``), a path (``str``/``os.PathLike``), raw encoded ``bytes``, or a
    uint8 numpy array (HxW or HxWxC).  The pixel data is loaded eagerly, so truncated files fail
    here rather than later.

    Raises:
        ValueError: ``"corrupt image <where>: <reason>"`` on one line when the value cannot be
            decoded (missing file, truncated or undecodable data, unsupported type).
    """
    where = _describe(value)
    try:
        if isinstance(value, Image.Image):
            img = value
        elif isinstance(value, dict):
            data, path = value.get("bytes"), value.get("path")
            if data is not None:
                img = Image.open(io.BytesIO(data))
            elif path:
                img = Image.open(path)
            else:
                raise ValueError("dict has neither 'bytes' nor 'path'")
        elif isinstance(value, (str, os.PathLike)):
            img = Image.open(value)
        elif isinstance(value, (bytes, bytearray)):
            img = Image.open(io.BytesIO(value))
        elif isinstance(value, np.ndarray):
            img = Image.fromarray(value)
        else:
            raise ValueError(f"unsupported type {type(value).__name__}")
        img.load()  # force decoding of the pixel data (catches truncated files)
        img = ImageOps.exif_transpose(img)  # a no-op (same object) without an Orientation tag
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise ValueError(f"corrupt image {where}: {_one_line(f'{type(e).__name__}: {e}')}") from None
    return img


def check_image(img: Image.Image, min_size: int = 2) -> Image.Image:
    """Validate a decoded image; return it unchanged when it is usable.

    Raises:
        ValueError (one line): when ``img`` is not a PIL image, its pixel data cannot be loaded
            (corrupt/truncated), or its width or height is below ``min_size`` pixels.
    """
    if not isinstance(img, Image.Image):
        raise ValueError(f"not a PIL image: {type(img).__name__}")
    where = f" {img.filename!r}" if getattr(img, "filename", "") else ""
    try:
        img.load()
    except Exception as e:
        raise ValueError(f"corrupt image{where}: {_one_line(f'{type(e).__name__}: {e}')}") from None
    w, h = img.size
    if w < min_size or h < min_size:
        raise ValueError(f"image{where} too small: {w}x{h} pixels, need at least {min_size}x{min_size}")
    return img


#: The value range each high-bit-depth PIL mode is read in: its top maps to 255, the same for every image of the mode
#: (never the image's own maximum, which would make two equally dark exposures black and white). 16-bit data, stored
#: as "I;16" (16-bit PNG) or as "I" (32-bit integer TIFF, PNGs on some Pillow versions), spans 0..65535; floats
#: ("F") are intensities in 0..1.
MODE_RANGES = {"I;16": 65535.0, "I": 65535.0, "F": 1.0}
#: Floats this far outside 0..1 (under half an 8-bit step) are rounding, clipped; farther out they are refused.
_FLOAT_SLACK = 0.5 / 255


def _to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """A single-channel 16/32-bit integer or float array as uint8, by its mode's range (:data:`MODE_RANGES`).

    Raises:
        ValueError (one line): values outside the mode's range (they have no fixed meaning to scale by).
    """
    top = MODE_RANGES["I;16" if mode.startswith("I;16") else mode]
    arr = arr.astype(np.float64)
    if arr.size:
        low, high = float(np.nanmin(arr)), float(np.nanmax(arr))
        slack = _FLOAT_SLACK if mode == "F" else 0.0
        nan = bool(np.isnan(arr).any())
        if nan or low < -slack or high > top + slack:
            what = "float (mode F) pixels as intensities in 0..1" if mode == "F" else \
                f"{'16' if mode.startswith('I;16') else '32'}-bit integer (mode {mode}) pixels as 16-bit data 0..65535"
            values = "NaN pixel values" if nan else f"pixel values {low:g}..{high:g}"
            raise ValueError(f"{values} out of range: csl_hf reads {what}; save the image rescaled to that range, or "
                             "as 8-bit")
    return np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Return ``img`` as an 8-bit RGB image.

    - ``RGB``: returned as is;
    - ``L``/``1``/``CMYK``/``YCbCr``/...: PIL's conversion;
    - ``RGBA``/``LA``/``PA``/``La``/``RGBa`` and ``P`` with transparency: alpha-composited on white;
    - ``I;16*``/``I`` (16/32-bit integer) and ``F`` (float): scaled by the mode's range (:data:`MODE_RANGES`: 16-bit
      values 0..65535 divided by 257, floats 0..1 multiplied by 255), the same for every image, then grey → RGB.

    Raises:
        ValueError (one line): a 16/32-bit or float image with values outside its mode's range.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "F") or mode.startswith("I;16"):
        return Image.fromarray(_to_uint8(np.asarray(img), mode), mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(value: Any, min_size: int = 2) -> torch.Tensor:
    """Decode one stored image (anything `decode_image` accepts) into ``uint8 [3, H, W]`` RGB.

    Raises:
        ValueError (one line, naming the file): corrupt or undecodable, smaller than ``min_size`` pixels, or a
        high-bit-depth image with values outside its mode's range (`to_rgb`).
    """
    image = check_image(decode_image(value), min_size)
    try:
        image = to_rgb(image)
    except ValueError as err:  # a high-bit-depth image outside its mode's range
        raise ValueError(f"image {_describe(value)}: {err}") from None
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


@dataclass
class DecodedBatch:
    """A batch decoded by `preprocess_images`.

    Attributes:
        pixel_values: per requested `Preprocessing`, float32 ``[B', 3, h, w]`` for the ``B'`` usable images.
        kept: positions (in the input batch) of the usable images, in order.
        errors: one line per skipped image.
    """

    pixel_values: dict[Preprocessing, torch.Tensor] = field(default_factory=dict)
    kept: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


#: Decoded images of at most this many values (uint8 ``3 x H x W``; 1 MiB, a 590 x 590 photo) wait for the end of their
#: batch to be preprocessed together with the others of their size; larger ones are preprocessed at once and their
#: full resolution dropped, so a batch of photos holds only the models' input sizes.
_BATCHED_IMAGE_VALUES = 1 << 20


def preprocess_images(values: Sequence[Any], preprocessings: Sequence[Preprocessing], min_size: int = 2,
                      skip_bad: bool = True) -> DecodedBatch:
    """Decode each image once and derive every distinct preprocessing from it.

    Small images (up to 1 MiB of pixel values decoded) are preprocessed together at the end of the batch, one tensor
    per image size, with the same numbers as one at a time; a larger photo's small versions are made at once and its
    full resolution dropped, so memory follows the *input* sizes of the models, not the photos' resolution.

    Args:
        values: stored images (bytes / path dicts of a ``datasets.Image(decode=False)`` column, paths, PIL images).
        preprocessings: the input pipelines needed (duplicates are computed once).
        min_size: smallest usable width or height, in pixels.
        skip_bad: skip (and report in ``errors``) corrupt or too-small images; ``False`` raises on the first.
    Returns:
        A `DecodedBatch`. When no image is usable its ``pixel_values`` is empty.
    Raises:
        ValueError (one line): a bad image when ``skip_bad`` is ``False``.
    """
    distinct = list(dict.fromkeys(preprocessings))
    out = DecodedBatch()
    small: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}  # shape -> (position in kept, uint8 image)
    large: list[tuple[int, list[torch.Tensor]]] = []  # (position in kept, its versions, one per preprocessing)
    for i, value in enumerate(values):
        try:
            pixels = load_image(value, min_size)
        except ValueError as err:
            if not skip_bad:
                raise
            out.errors.append(str(err))
            continue
        position = len(out.kept)
        out.kept.append(i)
        if pixels.numel() <= _BATCHED_IMAGE_VALUES:
            small.setdefault(tuple(pixels.shape), []).append((position, pixels))
        else:  # a photo: its small versions now, and the full resolution dropped
            large.append((position, [p(pixels[None]) for p in distinct]))
    if not out.kept:
        return out
    # Images of one size are resized as one tensor: the same numbers as one at a time (interpolation and
    # normalisation act on each image alone), without a resize call per image and per preprocessing.
    for j, p in enumerate(distinct):
        parts = [(torch.tensor([k for k, _ in group]), p(torch.stack([x for _, x in group])))
                 for group in small.values()]
        parts += [(torch.tensor([k]), versions[j]) for k, versions in large]
        result = torch.empty((len(out.kept), *parts[0][1].shape[1:]), dtype=parts[0][1].dtype)
        for positions, values_ in parts:
            result[positions] = values_
        out.pixel_values[p] = result
    return out


def encode_png_l(images: np.ndarray) -> list[bytes]:
    """PNG-encode a stack of uint8 greyscale images ``[N, H, W]`` (low zlib level: fast, lossless)."""
    out = []
    for a in images:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(a, dtype=np.uint8), mode="L").save(buf, format="PNG", compress_level=1)
        out.append(buf.getvalue())
    return out


def dataset_from_png(png: list[bytes], columns: dict[str, Any], features: datasets.Features) -> datasets.Dataset:
    """An in-memory ``Dataset`` whose ``image`` column holds already-encoded image bytes.

    Passing ``{"bytes": ..., "path": None}`` dicts skips ``datasets.Image``'s per-example
    re-encoding, which is what makes the bundled loaders fast.
    """
    data: dict[str, Any] = {"image": [{"bytes": b, "path": None} for b in png]}
    data.update({k: np.asarray(v).tolist() for k, v in columns.items()})
    return datasets.Dataset.from_dict(data, features=features)
