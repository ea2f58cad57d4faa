"""`TeacherMixtureConfig`: the configuration of a hierarchy of weak teachers (DESIGN §1)."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

from .errors import CSLError


def validate_hierarchy(
    levels: list[list[int]],
    specialties: list[dict],
    num_labels: int,
    num_teachers: int,
    error: type[CSLError] = CSLError,
) -> None:
    """Check that the levels and specialties describe a valid teacher hierarchy.

    Rules: level 0 is exactly one generalist (all classes, no domain); every teacher index exists and appears in one
    level only; a class level's class sets partition ``range(num_labels)`` (any sizes, not necessarily contiguous);
    a domain level names distinct domains. Raises ``error`` with a one-line message naming the level and the fix.
    """
    if len(specialties) != num_teachers:
        raise error(f"{len(specialties)} specialties for {num_teachers} teachers; give exactly one specialty per teacher")
    if not levels:
        raise error("the hierarchy has no levels; level 0 must hold one generalist teacher, e.g. levels=[[0], [1, 2]]")
    seen: set[int] = set()
    everything = set(range(num_labels))
    for lvl, members in enumerate(levels):
        if not members:
            raise error(f"level {lvl} holds no teacher; remove it or add teachers")
        for t in members:
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < num_teachers:
                raise error(f"level {lvl} references teacher {t!r}, but there are only {num_teachers} teachers (0..{num_teachers - 1}); fix the levels")
            if t in seen:
                raise error(f"teacher {t} appears in more than one level (again in level {lvl}); list each teacher once")
            seen.add(t)
        specs = [specialties[t] for t in members]
        for t, spec in zip(members, specs):
            if not isinstance(spec, dict) or (("classes" in spec) == ("domain" in spec) and lvl > 0):
                raise error(f"teacher {t}'s specialty must be {{\"classes\": [...]}} or {{\"domain\": name}}, got {spec!r}")
            if "classes" in spec:
                bad = [c for c in spec["classes"] if not isinstance(c, int) or not 0 <= c < num_labels]
                if bad:
                    raise error(f"teacher {t}'s specialty lists class {bad[0]!r}, outside 0..{num_labels - 1}; fix its classes")
        if lvl == 0:
            spec = specs[0]
            if len(members) != 1 or "domain" in spec or set(spec.get("classes", everything)) != everything:
                raise error("level 0 must be a single generalist over all classes; put specialists in later levels")
            continue
        kinds = {"domain" if "domain" in s else "classes" for s in specs}
        if len(kinds) > 1:
            raise error(f"level {lvl} mixes class and domain specialists; put them in separate levels")
        if kinds == {"domain"}:
            names = [s["domain"] for s in specs]
            if len(set(names)) != len(names):
                raise error(f"level {lvl} names the domain(s) {sorted({n for n in names if names.count(n) > 1})} twice; give each domain one specialist per level")
            continue
        counts: dict[int, int] = {}
        for s in specs:
            for c in s["classes"]:
                counts[c] = counts.get(c, 0) + 1
        overlap = sorted(c for c, k in counts.items() if k > 1)
        if overlap:
            raise error(f"level {lvl}'s specialties overlap on classes {overlap[:10]}; each class must belong to exactly one specialist of a level")
        missing = sorted(everything - set(counts))
        if missing:
            raise error(f"level {lvl}'s specialties leave classes {missing[:10]} uncovered; the class sets of a level must partition all {num_labels} classes")


def class_blocks(num_labels: int, num_blocks: int) -> list[list[int]]:
    """Split ``range(num_labels)`` into ``num_blocks`` contiguous blocks of near-equal size (the paper's layout)."""
    if not 1 <= num_blocks <= num_labels:
        raise CSLError(f"cannot split {num_labels} classes into {num_blocks} blocks; use between 1 and {num_labels}")
    bounds = [round(i * num_labels / num_blocks) for i in range(num_blocks + 1)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(num_blocks)]


def class_hierarchy(num_labels: int, teachers_per_level: list[int]) -> tuple[list[dict], list[list[int]]]:
    """Specialties and levels for levels of ``teachers_per_level`` class-block specialists (first must be 1)."""
    specialties: list[dict] = []
    levels: list[list[int]] = []
    for n in teachers_per_level:
        blocks = class_blocks(num_labels, n)
        levels.append(list(range(len(specialties), len(specialties) + n)))
        specialties += [{"classes": b} for b in blocks]
    return specialties, levels


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


__all__ = ["TeacherMixtureConfig", "validate_hierarchy", "class_blocks", "class_hierarchy"]
