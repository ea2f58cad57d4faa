"""High-bit-depth images (issue 18, item 6): scaled by their mode's range, the same for every image, never by the
image's own maximum; values outside the range are refused in one line. Offline, fast."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import numpy as np
import pytest
from PIL import Image

from csl_hf.data import load_image, preprocess_images, to_rgb
from csl_hf.data.images import MODE_RANGES


def _exposure(peak: float, pattern: int, dtype, shape=(6, 8)) -> np.ndarray:
    """A dark exposure: a pattern (different per ``pattern``) scaled to ``peak``."""
    rng = np.random.default_rng(pattern)
    a = rng.random(shape)
    a = a / a.max() * peak
    return a.astype(dtype)


def _grey(img) -> np.ndarray:
    return np.asarray(to_rgb(img))[..., 0].astype(int)


def test_integer_image_modes_two_dark_exposures_keep_their_scale():
    # 16-bit sensor data saved as 32-bit integers ("I"): equally dark exposures of different content. The old
    # rule took one (peak 200 <= 255) as 8-bit, the other (peak 3000) as 16-bit: white versus black.
    a = _exposure(3000, 0, np.int32)
    b = _exposure(200, 1, np.int32)
    for arr in (a, b):
        out = _grey(Image.fromarray(arr, "I"))
        np.testing.assert_array_equal(out, np.round(arr / 257.0).astype(int))
    assert _grey(Image.fromarray(a, "I")).max() == 12 and _grey(Image.fromarray(b, "I")).max() == 1
    # the same pixels as "I" and as "I;16" give the same picture
    np.testing.assert_array_equal(_grey(Image.fromarray(a, "I")), _grey(Image.fromarray(a.astype(np.uint16))))


@pytest.mark.parametrize("fmt", ["tiff_int32", "png_16bit"])
def test_integer_image_modes_files_through_load_image(tmp_path, fmt):
    # the kind of input a user has: files, decoded the way the labeling pass decodes them
    outs = []
    for k, peak in enumerate((4000, 900)):
        arr = _exposure(peak, k, np.uint16)
        img = Image.fromarray(arr.astype(np.int32), "I") if fmt == "tiff_int32" else Image.fromarray(arr)
        path = tmp_path / f"{k}.{'tif' if fmt == 'tiff_int32' else 'png'}"
        img.save(path)
        assert Image.open(path).mode == ("I" if fmt == "tiff_int32" else "I;16")
        pixels = load_image(str(path))
        assert pixels.shape == (3, 6, 8)
        np.testing.assert_array_equal(pixels[0].numpy(), np.round(arr / 257.0).astype(np.uint8))
        outs.append(pixels)
    assert outs[0].max() > outs[1].max()  # the brighter exposure stays brighter


def test_integer_image_modes_through_an_image_dataset(tmp_path):
    # a datasets.Image column of int32 TIFFs (what an image folder of them gives), batch-decoded
    paths = []
    for k, peak in enumerate((300, 250)):
        path = tmp_path / f"{k}.tif"
        Image.fromarray(_exposure(peak, k, np.int32), "I").save(path)
        paths.append(str(path))
    ds = datasets.Dataset.from_dict({"image": paths}, features=datasets.Features({"image": datasets.Image()}))
    raw = ds.cast_column("image", datasets.Image(decode=False))["image"]
    from csl_hf.data.preprocessing import Preprocessing

    batch = preprocess_images(raw, [Preprocessing(size=(6, 8), image_mean=(0.0,) * 3, image_std=(1.0,) * 3)])
    assert batch.kept == [0, 1] and not batch.errors
    values = next(iter(batch.pixel_values.values()))
    # both around 1/257 of their 16-bit peak, not stretched to white
    assert float(values[0].max()) == pytest.approx(round(300 / 257) / 255, abs=1e-6)
    assert float(values[1].max()) == pytest.approx(round(250 / 257) / 255, abs=1e-6)


def test_integer_image_modes_float_images_are_intensities_in_0_1():
    a = _exposure(0.10, 0, np.float32)
    b = _exposure(0.02, 1, np.float32)
    for arr in (a, b):
        np.testing.assert_array_equal(_grey(Image.fromarray(arr, "F")), np.round(arr * 255.0).astype(int))
    # rounding just outside 0..1 is clipped
    edge = np.array([[-1e-4, 0.0], [1.0, 1.0 + 1e-4]], np.float32)
    assert _grey(Image.fromarray(edge, "F")).tolist() == [[0, 0], [255, 255]]


@pytest.mark.parametrize("mode,values", [("F", (0.0, 255.0)), ("F", (-0.5, 0.5)), ("I", (0, 70000)),
                                         ("I", (-5, 100)), ("F", (0.0, float("nan")))])
def test_integer_image_modes_out_of_range_are_refused(tmp_path, mode, values):
    arr = np.array([[values[0], values[1]], [values[0], values[1]]], np.float32 if mode == "F" else np.int32)
    with pytest.raises(ValueError) as err:
        to_rgb(Image.fromarray(arr, mode))
    msg = str(err.value)
    assert "\n" not in msg and "out of range" in msg and ("0..1" if mode == "F" else "0..65535") in msg
    # from a file: the line names it, and the batch decoder skips it like a corrupt image
    path = tmp_path / "x.tif"
    Image.fromarray(arr, mode).save(path)
    batch = preprocess_images([{"path": str(path), "bytes": None}], [])
    assert batch.kept == [] and "x.tif" in batch.errors[0] and "out of range" in batch.errors[0]


def test_integer_image_modes_ranges_documented():
    assert MODE_RANGES == {"I;16": 65535.0, "I": 65535.0, "F": 1.0}
    big_endian = Image.frombytes("I;16B", (2, 1), np.array([0, 65535], ">u2").tobytes())
    assert _grey(big_endian).tolist() == [[0, 255]]
