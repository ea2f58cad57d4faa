"""Deprecated import path: `csl_hf.preprocessing` moved to `csl_hf.data.preprocessing` (kept for scripts written
against csl_hf 0.2; it will be removed in 0.4)."""

import warnings

from .data.images import load_image
from .data.preprocessing import Preprocessing  # noqa: F401

warnings.warn("csl_hf.preprocessing moved to csl_hf.data.preprocessing (Preprocessing is also csl_hf.Preprocessing; "
              "pil_to_uint8 is csl_hf.data.load_image); the old path will be removed in csl_hf 0.4", FutureWarning,
              stacklevel=2)


def pil_to_uint8(image):
    """Deprecated: `csl_hf.data.load_image` (``uint8 [3, H, W]`` RGB, decoded as every csl_hf path decodes)."""
    return load_image(image, min_size=1)
