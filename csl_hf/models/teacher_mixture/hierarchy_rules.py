"""The rules of a teacher hierarchy, which a `TeacherMixture` checkpoint needs wherever it is loaded.

This file ships with every saved `TeacherMixture` (beside ``configuration_teacher_mixture.py`` and
``modeling_teacher_mixture.py``, named in ``auto_map``), so it imports nothing but torch: ``AutoModel.from_pretrained(
repo, trust_remote_code=True)`` copies exactly these files and their same-folder imports, never the rest of csl_hf.
It is also where csl_hf itself takes them from, so both run the same code: `csl_hf.errors.CSLError`,
`csl_hf.method.hierarchy.validate_hierarchy` and `csl_hf.method.consistency.class_masks` / `masked_softmax` are these.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["CSLError", "class_masks", "masked_softmax", "validate_hierarchy"]


class CSLError(ValueError):
    """A user-facing error: bad input, a bad flag, an inconsistent cache. The message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


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


def class_masks(specialties: Sequence[dict], num_labels: int) -> torch.Tensor:
    """Boolean class sets of teachers, ``[T, C]``. A domain specialist (or a generalist) covers every class."""
    masks = torch.zeros(len(specialties), num_labels, dtype=torch.bool)
    for t, spec in enumerate(specialties):
        classes = spec.get("classes")
        if classes is None:
            masks[t] = True
        else:
            masks[t, torch.as_tensor(list(classes), dtype=torch.long)] = True
    return masks


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax of ``logits [..., C]`` over the classes in ``mask [C]`` only (exactly zero elsewhere)."""
    if mask is None or bool(mask.all()):
        return logits.softmax(dim=-1)
    return logits.masked_fill(~mask, float("-inf")).softmax(dim=-1)
