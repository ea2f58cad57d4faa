"""`preprocess_images` preprocesses the images of one size as one tensor: the same numbers, in the same order, as
one image at a time, for mixed sizes, large photos (preprocessed at once), bad images and both kinds of
preprocessing. Offline, fast."""

import io
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ConvNextImageProcessor

from csl_hf.data import load_image, preprocess_images
from csl_hf.data import images as images_module
from csl_hf.data.preprocessing import Preprocessing, ProcessorPreprocessing


def _png(h: int, w: int, seed: int, mode: str = "RGB") -> dict:
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


PREPROCESSINGS = [
    Preprocessing(size=(64, 64), image_mean=(0.5,) * 3, image_std=(0.5,) * 3),  # upsampling
    Preprocessing(size=(28, 28), image_mean=(0.2, 0.3, 0.4), image_std=(0.9, 0.8, 0.7)),  # same size for 28 px
    Preprocessing(size=(16, 12), image_mean=(0.0,) * 3, image_std=(1.0,) * 3),  # shrinking (antialiased)
    ProcessorPreprocessing(ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)),  # a processor's own
]


@pytest.mark.parametrize("values", [
    [_png(28, 28, k, "L") for k in range(9)],  # one size (Fashion-MNIST)
    [_png(28, 28, 0), _png(40, 30, 1), _png(28, 28, 2, "L"), _png(40, 30, 3), _png(17, 50, 4)],  # mixed sizes
    [_png(28, 28, 0), {"bytes": b"not an image", "path": None}, _png(700, 600, 1), _png(28, 28, 2),
     _png(1, 1, 3), _png(33, 33, 4)],  # a bad image, a photo larger than the batched limit, a too-small image
])
def test_batched_preprocessing_matches_one_image_at_a_time(values):
    batch = preprocess_images(values, PREPROCESSINGS + PREPROCESSINGS[:1])  # a duplicate is computed once
    kept = [i for i, v in enumerate(values) if v["bytes"] != b"not an image" and Image.open(
        io.BytesIO(v["bytes"])).size != (1, 1)]
    assert batch.kept == kept and len(batch.errors) == len(values) - len(kept)
    assert list(batch.pixel_values) == PREPROCESSINGS
    for p in PREPROCESSINGS:
        expected = torch.cat([p(load_image(values[i])[None]) for i in kept])
        assert torch.equal(batch.pixel_values[p], expected), p


def test_large_photos_do_not_wait_for_the_batch(monkeypatch):
    """A photo over the limit is preprocessed before the next image is decoded (memory follows the models' input
    sizes); small ones wait for the end of the batch."""
    calls = []
    p = PREPROCESSINGS[0]
    real_load = images_module.load_image

    def load(value, min_size=2):
        calls.append("decode")
        return real_load(value, min_size)

    class Recording(Preprocessing):
        def __call__(self, images):
            calls.append(f"preprocess {len(images)}")
            return super().__call__(images)

    monkeypatch.setattr(images_module, "load_image", load)
    rec = Recording(size=p.size, image_mean=p.image_mean, image_std=p.image_std)
    preprocess_images([_png(700, 600, 0), _png(28, 28, 1), _png(28, 28, 2)], [rec])
    assert calls == ["decode", "preprocess 1", "decode", "decode", "preprocess 2"]
