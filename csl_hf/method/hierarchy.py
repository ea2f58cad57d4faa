"""Teacher hierarchies: specialties and levels, how they are built and what makes one valid.

A hierarchy is a list of *levels* of teacher indices. Level 0 holds one generalist over every class; each later level
holds specialists whose *specialties* are either class sets that partition the label space (any sizes, not
necessarily contiguous) or distinct domains. A specialty is ``{"classes": [...]}`` or ``{"domain": name}``; the
generalist lists all classes. See docs/algorithm.md for how the rounds use them.

Builders here:

* `class_hierarchy`: levels of contiguous, near-equal class blocks (the paper's layout);
* `domain_hierarchy`: the generalist plus one specialist per domain;
* `parse_teachers_per_level`: the ``--teachers_per_level`` flag (``"1,2,4,5"`` or ``"auto"``); its syntax alone,
  before the data is read: `check_teachers_per_level`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..errors import CSLError
# The rules live with the teacher mixture, whose saved checkpoints ship them (csl_hf/models/teacher_mixture/).
from ..models.teacher_mixture.hierarchy_rules import validate_hierarchy

logger = logging.getLogger(__name__)

#: ``--teachers_per_level``'s default (suits 10 classes); on fewer classes it keeps the levels that fit.
DEFAULT_TEACHERS_PER_LEVEL = "1,2,4,5"

__all__ = [
    "validate_hierarchy",
    "class_blocks",
    "class_hierarchy",
    "domain_hierarchy",
    "check_teachers_per_level",
    "parse_teachers_per_level",
    "parse_int_list",
    "describe_classes",
    "specialty_names",
]


def class_blocks(num_labels: int, num_blocks: int) -> list[list[int]]:
    """Split ``range(num_labels)`` into ``num_blocks`` contiguous blocks of near-equal size (the paper's layout)."""
    if not 1 <= num_blocks <= num_labels:
        raise CSLError(f"cannot split {num_labels} classes into {num_blocks} blocks; use between 1 and {num_labels}")
    bounds = [round(i * num_labels / num_blocks) for i in range(num_blocks + 1)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(num_blocks)]


def class_hierarchy(num_labels: int, teachers_per_level: Sequence[int],
                    present: Sequence[int] | None = None) -> tuple[list[dict], list[list[int]]]:
    """Specialties and levels for levels of ``teachers_per_level`` class-block specialists (the first must be 1).

    Args:
        present: the classes that have training images (default: all). Blocks are cut over the present classes in
            id order, and each absent class joins the smallest block of every level, so no specialist is left
            without images while every class still belongs to one specialist.
    Raises:
        `CSLError`: a level with more specialists than present classes.
    """
    present = list(range(num_labels)) if present is None else sorted(set(int(c) for c in present))
    absent = [c for c in range(num_labels) if c not in set(present)]
    specialties: list[dict] = []
    levels: list[list[int]] = []
    for n in teachers_per_level:
        if n > len(present):
            raise CSLError(f"a level of {n} specialists needs {n} classes with teacher images, but only "
                           f"{len(present)} have any; use at most {len(present)} per level or add images")
        blocks = [[present[i] for i in block] for block in class_blocks(len(present), n)]
        for c in absent:
            min(blocks, key=len).append(c)
        levels.append(list(range(len(specialties), len(specialties) + n)))
        specialties += [{"classes": sorted(b)} for b in blocks]
    return specialties, levels


def domain_hierarchy(num_labels: int, domain_names: Sequence[str]) -> tuple[list[dict], list[list[int]], list[str]]:
    """The generalist plus one specialist per domain: ``(specialties, levels [[0], [1..D]], teacher_names)``."""
    if not domain_names:
        raise CSLError("a domain hierarchy needs at least one domain; the dataset has no 'domain' column values")
    specialties = [{"classes": list(range(num_labels))}] + [{"domain": d} for d in domain_names]
    levels = [[0], list(range(1, len(domain_names) + 1))]
    return specialties, levels, ["generalist"] + [f"domain {d}" for d in domain_names]


def parse_int_list(spec: str | Sequence[int], name: str) -> list[int]:
    """``"1,2,4"`` (or ``"1 2 4"``, or a sequence) -> ``[1, 2, 4]``: positive integers, one-line `CSLError` otherwise."""
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.replace(" ", ",").split(",") if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise CSLError(f"{name}={spec!r} must be comma-separated integers, e.g. '1,2,4'") from None
    else:
        values = [int(v) for v in spec]
    if not values or any(v < 1 for v in values):
        raise CSLError(f"{name}={spec!r} must be a non-empty list of positive integers")
    return values


def check_teachers_per_level(spec: str | Sequence[int]) -> list[int] | None:
    """What ``--teachers_per_level`` says before the data is read: ``None`` for ``"auto"``, else the levels, checked
    to be positive integers that start with 1 (the count of classes is checked by `parse_teachers_per_level`).

    Raises:
        `CSLError` (one line): not integers, or not starting with 1.
    """
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        return None
    levels = parse_int_list(spec, "teachers_per_level")
    if levels[0] != 1:
        raise CSLError(f"teachers_per_level={spec!r} must start with 1 (level 0 is one generalist), e.g. '1,2,4'")
    return levels


def parse_teachers_per_level(spec: str | Sequence[int], num_labels: int, warn: bool = True) -> list[int]:
    """``"1,2,4,5"`` -> ``[1, 2, 4, 5]``, validated against ``num_labels``; ``"auto"`` -> 1, 2, 4, ... doubling up to
    ``num_labels // 2`` (ending on ``num_labels // 2``: blocks of two or three classes). The default ``"1,2,4,5"``
    on fewer than 5 classes keeps the levels that fit (with a warning unless ``warn=False``): a small dataset runs
    with default flags. What ``"auto"`` resolved to is logged (unless ``warn=False``).

    Raises:
        `CSLError` (one line): not integers, not starting with 1, or more specialists than classes on a level.
    """
    levels = check_teachers_per_level(spec)
    if levels is None:
        levels, n = [1], 2
        while n <= num_labels // 2:
            levels.append(n)
            n *= 2
        if num_labels // 2 > levels[-1]:
            levels.append(num_labels // 2)
        if warn:
            logger.info(f"--teachers_per_level auto on {num_labels} classes: {','.join(map(str, levels))}")
        return levels
    too_many = [n for n in levels if n > num_labels]
    if too_many and isinstance(spec, str) and spec.replace(" ", "") == DEFAULT_TEACHERS_PER_LEVEL:
        fit = [n for n in levels if n <= num_labels]
        if warn:
            logger.warning(f"the default teachers_per_level {DEFAULT_TEACHERS_PER_LEVEL} suits 10 classes; on these "
                           f"{num_labels} classes it is {','.join(map(str, fit))} (set --teachers_per_level to choose)")
        return fit
    if too_many:
        raise CSLError(f"teachers_per_level={spec!r} asks for {too_many[0]} specialists but there are only {num_labels} "
                       f"classes; use at most {num_labels} per level (or 'auto')")
    return levels


def describe_classes(classes: Sequence[int] | None) -> str:
    """A short name for a class set: ``all``, ``3``, ``0-4`` (a contiguous block) or ``1,5,7`` (first ten)."""
    if classes is None:
        return "all"
    classes = list(classes)
    if len(classes) > 1 and classes == list(range(classes[0], classes[-1] + 1)):
        return f"{classes[0]}-{classes[-1]}"
    return ",".join(map(str, classes[:10])) + ("..." if len(classes) > 10 else "")


def specialty_names(specialties: Sequence[dict], num_labels: int, id2label: dict[int, str] | None = None,
                    max_names: int = 4) -> list[str]:
    """Display names of teachers: ``generalist`` (all classes), ``domain sketch`` (domain specialists) and, for class
    specialists, their class names as the console and the card show them (``cat, dog``; past ``max_names + 1``
    names the first ``max_names`` and the count of the rest: ``cat, dog, fox, owl +3 more``), or without
    ``id2label`` their ids (``classes 0-4``, ``class 3``)."""
    names = []
    for spec in specialties:
        classes = spec.get("classes")
        if "domain" in spec:
            names.append(f"domain {spec['domain']}")
        elif classes is not None and sorted(classes) == list(range(num_labels)):
            names.append("generalist")
        elif id2label is not None and classes is not None:
            # "+1 more" would hide one name in the space it takes to print it: past max_names + 1 names only
            cut = max_names if len(classes) > max_names + 1 else len(classes)
            shown = ", ".join(str(id2label[int(c)]) for c in list(classes)[:cut])
            names.append(shown + (f" +{len(classes) - cut} more" if len(classes) > cut else ""))
        elif classes is not None and len(classes) == 1:
            names.append(f"class {classes[0]}")
        else:
            names.append(f"classes {describe_classes(classes)}")
    return names
