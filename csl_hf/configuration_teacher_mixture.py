"""`TeacherMixtureConfig`: the configuration of a hierarchy of weak teachers (see docs/teachers.md)."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

from .hierarchy import validate_hierarchy


class TeacherMixtureConfig(PreTrainedConfig):
    r"""
    Configuration of a [`TeacherMixture`]: a hierarchy of weak teachers over one global label space.

    Teachers are either *independent image classifiers* (``teacher_configs``, one config dict each: ViT, ConvNeXt,
    any ``AutoModelForImageClassification``) or *heads on one shared frozen backbone* (``backbone_config`` plus
    ``head_sizes``), the paper's setting.

    Args:
        teacher_configs (`list[dict]`, *optional*):
            ``PreTrainedConfig.to_dict()`` of each independent teacher (with its ``model_type``).
        backbone_config (`dict`, *optional*):
            Config dict of the shared backbone (an ``AutoModel``) when teachers are heads on it.
        head_sizes (`list[int]`, *optional*):
            Output size of each head in shared-backbone mode: ``num_labels`` (masked to the specialty) or the number
            of classes of the head's specialty (scattered into the global label space, in the specialty's order).
        backbone_feature_dim (`int`, *optional*):
            Width of the backbone's pooled features (the heads' input size).
        specialties (`list[dict]`):
            One per teacher: ``{"classes": [...]}`` (a class specialist; the generalist lists all classes) or
            ``{"domain": name}``.
        levels (`list[list[int]]`):
            Teacher indices per level. Level 0 is a single generalist.
        teacher_names (`list[str]`, *optional*):
            Display names.
        domain_names (`list[str]`, *optional*):
            The domains of the data, in the id order used by the dataset's ``domain`` column.
        preprocessing (`list[dict]`, *optional*):
            Per-teacher image preprocessing: ``{"size": [h, w], "image_mean": [...], "image_std": [...],
            "rescale_factor": 1/255}``. Teachers that expect different sizes or normalisation get their own; the
            labeling pass decodes each image once and derives every distinct preprocessing from it.
        training_data (`dict`, *optional*):
            What the teachers were trained on, so that a run can refuse a split that overlaps it: ``dataset`` (name
            or path), ``example_ids`` (the source rows of the teacher split), ``num_rows`` of the source,
            ``split_seed``, ``num_images``, ``skipped_images``.
    """

    model_type = "teacher_mixture"

    teacher_configs: list | None = None
    backbone_config: dict | None = None
    head_sizes: list | None = None
    backbone_feature_dim: int | None = None
    specialties: list | None = None
    levels: list | None = None
    teacher_names: list | None = None
    domain_names: list | None = None
    preprocessing: list | None = None
    training_data: dict | None = None

    def __post_init__(self, **kwargs: Any):
        super().__post_init__(**kwargs)
        self.specialties = self.specialties or []
        self.levels = self.levels or []
        if self.teacher_names is None:
            self.teacher_names = [f"teacher_{k}" for k in range(self.num_teachers)]

    @property
    def num_teachers(self) -> int:
        if self.teacher_configs is not None:
            return len(self.teacher_configs)
        return len(self.head_sizes or [])

    @property
    def shares_backbone(self) -> bool:
        return self.backbone_config is not None

    def validate_hierarchy(self) -> None:
        validate_hierarchy(self.levels, self.specialties, self.num_labels, self.num_teachers)


__all__ = ["TeacherMixtureConfig"]
