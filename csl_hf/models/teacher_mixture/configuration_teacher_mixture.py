"""`TeacherMixtureConfig`: the configuration of a hierarchy of weak teachers (see docs/teachers.md).

Shipped with every saved mixture (``auto_map``): it imports only transformers and its own folder, so that
``AutoConfig.from_pretrained(repo, trust_remote_code=True)`` works without csl_hf.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

from .hierarchy_rules import CSLError, validate_hierarchy


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
        gate_teacher_configs (`list[dict]`, *optional*):
            ``PreTrainedConfig.to_dict()`` of each *gate teacher*: an independent image classifier with
            ``num_labels + 1`` outputs (the classes and "out of specialty", index ``num_labels``) that tells whether an
            image belongs to one class specialist's specialty (``--specialty_gates``; used by ``--assignment
            oos_gate``, docs/routing_research.md §5). ``None``: no gates (every mixture before gates existed).
        gate_specialists (`list[int]`, *optional*):
            For each gate teacher, the index of the class specialist (into ``specialties``) whose specialty it
            gates; distinct, never the generalist or a domain specialist.
        gate_preprocessing (`list[dict]`, *optional*):
            Per gate teacher, its image preprocessing (as ``preprocessing``); ``None`` for a gate: it reads the
            inputs of the specialist it gates.
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
    gate_teacher_configs: list | None = None
    gate_specialists: list | None = None
    gate_preprocessing: list | None = None

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

    @property
    def num_gates(self) -> int:
        return len(self.gate_teacher_configs or [])

    def validate_hierarchy(self) -> None:
        validate_hierarchy(self.levels, self.specialties, self.num_labels, self.num_teachers)
        self.validate_gates()

    def validate_gates(self) -> None:
        """Each gate teacher gates one distinct class specialist (not the generalist, not a domain specialist).

        Raises:
            `CSLError` (one line): the lists disagree in length, or a gate names a teacher that cannot have one.
        """
        gates, specialists = self.gate_teacher_configs or [], self.gate_specialists or []
        if len(gates) != len(specialists):
            raise CSLError(f"{len(gates)} gate teachers for {len(specialists)} gate_specialists; give the specialist "
                           "each gate teacher gates")
        if self.gate_preprocessing is not None and len(self.gate_preprocessing) != len(gates):
            raise CSLError(f"{len(self.gate_preprocessing)} gate_preprocessing specs for {len(gates)} gate teachers; "
                           "give one per gate teacher")
        if len(set(specialists)) != len(specialists):
            raise CSLError(f"gate_specialists {specialists} name a specialist twice; one gate teacher per specialist")
        for k in specialists:
            if not isinstance(k, int) or not 0 <= k < self.num_teachers:
                raise CSLError(f"gate_specialists names teacher {k!r}, but the mixture has teachers 0..{self.num_teachers - 1}")
            classes = self.specialties[k].get("classes")
            if classes is None or sorted(classes) == list(range(self.num_labels)):
                raise CSLError(f"gate_specialists names teacher {k}, which is not a class specialist (a generalist or "
                               "a domain specialist has no specialty to gate)")


__all__ = ["TeacherMixtureConfig"]
