"""Batched image preprocessing, derived from a model's image processor.

The labeling pass decodes each image once into a uint8 tensor and derives every model's input from it, one call per
*distinct* preprocessing per batch, so that teachers and the student each get the inputs they were trained with and
the student learns from exactly what its saved processor gives at inference (``pipeline(...)``):

* `Preprocessing`: resize to a fixed ``(h, w)``, rescale, normalise, in torch on the whole batch (fast). It is what a
  processor that resizes straight to a fixed size does (ViT's, and the one `csl_hf.load_student` saves).
* `ProcessorPreprocessing`: the image processor itself, for every other geometry (resize of the shortest edge,
  centre crop, ``crop_pct``, no resize): the processor that is saved with the student is the one that made its
  training inputs.

`preprocessing_for` picks the one that reproduces a processor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing", "ProcessorPreprocessing", "preprocessing_for",
           "preprocessing_from_dict"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Resize to ``size`` (bilinear, antialiased), scale by ``rescale_factor``, normalise by mean/std."""

    size: tuple[int, int] = (224, 224)
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    rescale_factor: float = 1 / 255

    def __post_init__(self):
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "image_mean", tuple(float(m) for m in self.image_mean))
        object.__setattr__(self, "image_std", tuple(float(s) for s in self.image_std))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(**{k: d[k] for k in ("size", "image_mean", "image_std", "rescale_factor") if k in d})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"], d["image_mean"], d["image_std"] = list(self.size), list(self.image_mean), list(self.image_std)
        return d

    @classmethod
    def from_image_processor(cls, processor: Any) -> "Preprocessing":
        """Read size, mean, std and rescale factor off a transformers image processor."""
        size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
        size = size or getattr(processor, "size", None) or {"height": 224, "width": 224}
        if not isinstance(size, (dict, int, tuple, list)):  # transformers' SizeDict
            size = {k: getattr(size, k) for k in ("height", "width", "shortest_edge", "longest_edge")
                    if getattr(size, k, None) is not None}
        if isinstance(size, dict):
            if "height" in size and "width" in size:
                hw = (size["height"], size["width"])
            else:
                edge = size.get("shortest_edge") or size.get("longest_edge") or 224
                hw = (edge, edge)
        elif isinstance(size, int):
            hw = (size, size)
        else:
            hw = tuple(size)
        do_norm = getattr(processor, "do_normalize", True)
        mean = getattr(processor, "image_mean", None) if do_norm else None
        std = getattr(processor, "image_std", None) if do_norm else None
        mean = (0.0, 0.0, 0.0) if mean is None else (mean,) * 3 if isinstance(mean, float) else mean
        std = (1.0, 1.0, 1.0) if std is None else (std,) * 3 if isinstance(std, float) else std
        rescale = getattr(processor, "rescale_factor", 1 / 255) if getattr(processor, "do_rescale", True) else 1.0
        return cls(size=hw, image_mean=tuple(mean), image_std=tuple(std), rescale_factor=float(rescale))

    def resized(self, side: int) -> "Preprocessing":
        """The same normalisation at another square input size ``side`` x ``side``."""
        return Preprocessing(size=(int(side), int(side)), image_mean=self.image_mean, image_std=self.image_std,
                             rescale_factor=self.rescale_factor)

    def to_image_processor(self):
        """A standard `ViTImageProcessor` with these settings (loads in any transformers, no csl_hf code)."""
        try:  # the PIL backend by name: without torchvision, transformers would fall back to it with a warning
            from transformers import ViTImageProcessorPil as ViTImageProcessor
        except ImportError:
            from transformers import ViTImageProcessor

        return ViTImageProcessor(
            do_resize=True, size={"height": self.size[0], "width": self.size[1]}, do_rescale=True,
            rescale_factor=self.rescale_factor, do_normalize=True, image_mean=list(self.image_mean),
            image_std=list(self.image_std),
        )

    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """``uint8 [B, 3, H, W]`` (or a list of ``[3, H_i, W_i]``) -> float32 ``[B, 3, h, w]``."""
        if isinstance(images, torch.Tensor):
            out = self._resize(images.float())
        else:
            out = torch.cat([self._resize(img.unsqueeze(0).float()) for img in images])
        mean = torch.tensor(self.image_mean).view(1, -1, 1, 1)
        std = torch.tensor(self.image_std).view(1, -1, 1, 1)
        return (out * self.rescale_factor - mean) / std

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        # Antialiasing only matters (and is only supported well) when shrinking.
        shrink = x.shape[-2] > self.size[0] or x.shape[-1] > self.size[1]
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=shrink).clamp_(0, 255)


def _resizes_to_fixed_size(processor: Any) -> bool:
    """Whether a processor's geometry is a plain resize to a fixed ``height x width`` (what `Preprocessing` does)."""
    size = getattr(processor, "size", None)
    if not isinstance(size, dict) and size is not None:  # transformers' SizeDict
        size = {k: getattr(size, k) for k in ("height", "width", "shortest_edge", "longest_edge")
                if getattr(size, k, None) is not None}
    return (getattr(processor, "do_resize", True) and isinstance(size, dict) and "height" in size and "width" in size
            and not getattr(processor, "do_center_crop", False) and not getattr(processor, "do_pad", False))


@dataclass(frozen=True, eq=False)
class ProcessorPreprocessing:
    """A transformers image processor run on the decoded images: the exact inputs the processor gives at inference,
    for geometries `Preprocessing` does not reproduce (shortest-edge resize, centre crop, ``crop_pct``).

    Attributes:
        processor: the image processor (any transformers ``BaseImageProcessor``).
        size: ``(h, w)`` of its outputs, probed once; they must not depend on the input's size.

    Raises:
        `csl_hf.errors.CSLError`: a processor whose output size depends on the image (no fixed-size crop or resize).
    """

    processor: Any
    size: tuple[int, int] = field(init=False)

    def __post_init__(self):
        from ..errors import CSLError

        shapes = {tuple(self._run([torch.zeros(3, h, w, dtype=torch.uint8)]).shape[-2:]) for h, w in ((96, 96),
                                                                                                     (60, 180))}
        if len(shapes) != 1:
            raise CSLError(f"the image processor {type(self.processor).__name__} gives inputs of other sizes for other "
                           "images (no fixed resize or crop); give the student a processor with a fixed size, e.g. "
                           "do_center_crop=True with a crop_size")
        object.__setattr__(self, "size", shapes.pop())

    def _run(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        arrays = [img.permute(1, 2, 0).numpy() for img in images]  # HWC uint8, as decoded
        return self.processor(images=arrays, return_tensors="pt")["pixel_values"].float()

    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """``uint8 [B, 3, H, W]`` (or a list of ``[3, H_i, W_i]``) -> float32 ``[B, 3, h, w]``."""
        return self._run(list(images))

    def to_dict(self) -> dict[str, Any]:
        """The processor's class and settings (what the cache fingerprint and ``cache.json`` record)."""
        return {"image_processor": json.loads(self.processor.to_json_string()), "size": list(self.size)}

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __eq__(self, other) -> bool:
        return isinstance(other, ProcessorPreprocessing) and self.to_dict() == other.to_dict()


def preprocessing_for(processor: Any) -> Preprocessing | ProcessorPreprocessing:
    """The preprocessing that reproduces ``processor``: `Preprocessing` (torch, batched) when it resizes straight to a
    fixed size, else the processor itself (`ProcessorPreprocessing`)."""
    if isinstance(processor, (Preprocessing, ProcessorPreprocessing)):
        return processor
    if _resizes_to_fixed_size(processor):
        return Preprocessing.from_image_processor(processor)
    return ProcessorPreprocessing(processor)


def preprocessing_from_dict(d: dict[str, Any]) -> Preprocessing | ProcessorPreprocessing:
    """The inverse of ``to_dict`` of either kind (a processor is rebuilt from its class name and settings)."""
    if "image_processor" not in d:
        return Preprocessing.from_dict(d)
    import transformers

    settings = dict(d["image_processor"])
    cls = getattr(transformers, settings.get("image_processor_type", ""), None)
    if cls is None:
        from transformers import AutoImageProcessor

        raise ValueError(f"unknown image processor class {settings.get('image_processor_type')!r} "
                         f"(transformers {transformers.__version__}); {AutoImageProcessor.__name__} cannot rebuild it")
    return ProcessorPreprocessing(cls.from_dict(settings))
