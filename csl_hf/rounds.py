"""One round of co-supervised learning as data: which teacher labels each sample, the targets, the consistency
filter, and the round's record in the report. Pure functions of a `CSLCache` and tensors (no training, no I/O); the
trainer calls them between its training phases. The method is described in docs/algorithm.md.

Shapes: ``n`` training samples, ``C`` classes, ``T`` teachers of the level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import consistency as C
from .cache import CSLCache
from .errors import CSLError

__all__ = ["RoundTargets", "assignment_method", "assign", "oracle_assignment", "assigned_targets", "plan_round",
           "round_record"]

# Teacher outputs are read per teacher or per chunk of rows: a level's [T, n, C] never sits in memory at once
# (8 teachers x 1.28M images x 1000 classes would be 41 GB of float32).
CHUNK_ROWS = 65536


@dataclass
class RoundTargets:
    """What one round trains on.

    Attributes:
        level: the hierarchy level (0: the generalist alone).
        method: the teacher assignment used (``none`` at level 0, ``student``, ``agreement`` or ``oracle``).
        assignment: ``[n]`` long, each training sample's teacher (index into the level).
        target_class: ``[n]`` long, the argmax of the assigned teacher's probabilities (the hard label).
        soft_targets: ``[n, C]`` float32, the assigned teacher's probabilities; only built for soft labels (hard
            labels never hold a dense ``[n, C]`` tensor).
        keep: ``[n]`` bool, the samples that pass the consistency filter.
        keep_rate: the filter's keep rate ``r`` in (0, 1].
        epochs: epochs to train on the kept samples (``floor(E / r)`` when scaled).
    """

    level: int
    method: str
    assignment: torch.Tensor
    target_class: torch.Tensor
    soft_targets: torch.Tensor | None
    keep: torch.Tensor
    keep_rate: float
    epochs: float

    def fit_targets(self) -> torch.Tensor:
        """The kept samples' training targets: class ids ``[k]`` (hard) or probabilities ``[k, C]`` (soft)."""
        targets = self.soft_targets if self.soft_targets is not None else self.target_class
        return targets[self.keep]


def assignment_method(cache: CSLCache, level: int, requested: str) -> str:
    """The assignment a level uses: ``auto`` is ``agreement`` for domain levels and ``student`` for class levels.

    Raises:
        `CSLError`: ``student`` on a domain level (it routes by class, and domain specialists cover every class).
    """
    kind = cache.level_kind(level)
    if requested == "auto":
        return "agreement" if kind == "domain" else "student"
    if requested == "student" and kind == "domain":
        raise CSLError(f"level {level} holds domain specialists: --assignment student routes by class; use agreement, "
                       "oracle or auto")
    return requested


def oracle_assignment(cache: CSLCache, level: int, rows: torch.Tensor) -> torch.Tensor | None:
    """Assignment by ground truth (the true class's or the true domain's specialist), ``[n]``; ``None`` where the
    ground truth is not known for every sample."""
    if cache.level_kind(level) == "domain":
        if cache.domains is None:
            return None
        return C.assign_by_oracle_domain(cache.domains[rows], cache.teacher_domain_ids(level))
    labels = cache.labels[rows]
    if bool((labels < 0).any()):
        return None
    specs = [cache.specialties[t] for t in cache.levels[level]]
    return C.assign_by_oracle_class(labels, C.class_masks(specs, cache.num_labels))


def assign(cache: CSLCache, level: int, method: str, previous_logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Each training sample's teacher, ``[n]`` long indices into ``cache.levels[level]``.

    Args:
        method: ``student``, ``agreement`` or ``oracle`` (see `assignment_method`).
        previous_logits: ``[n, C]`` the previous round's student on the training rows.
        rows: ``[n]`` the training rows of the cache.
    """
    members = cache.levels[level]
    if method == "student":
        specs = [cache.specialties[t] for t in members]
        return C.assign_by_student(previous_logits, C.class_masks(specs, cache.num_labels))
    if method == "agreement":
        return torch.cat([
            C.assign_by_agreement(previous_logits[i : i + CHUNK_ROWS], cache.probs(members, rows[i : i + CHUNK_ROWS]))
            for i in range(0, len(rows), CHUNK_ROWS)
        ])
    oracle = oracle_assignment(cache, level, rows)
    if oracle is None:
        what = "domains" if cache.level_kind(level) == "domain" else "labels"
        raise CSLError(f"level {level}: oracle assignment needs ground truth ({what}) for every training sample; use "
                       "--assignment auto")
    return oracle


def assigned_targets(cache: CSLCache, members: list[int], assignment: torch.Tensor, rows: torch.Tensor,
                     soft: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The assigned teacher's hard label ``[n]`` and, when ``soft``, its probabilities ``[n, C]``, reading one teacher
    (and one chunk of its rows) at a time."""
    target_class = torch.empty(len(rows), dtype=torch.long)
    soft_targets = torch.empty(len(rows), cache.num_labels) if soft else None
    for i, teacher in enumerate(members):
        mine = (assignment == i).nonzero(as_tuple=True)[0]
        for start in range(0, len(mine), CHUNK_ROWS):
            part = mine[start : start + CHUNK_ROWS]
            probs = cache.probs(teacher, rows[part])
            target_class[part] = probs.argmax(dim=-1)
            if soft_targets is not None:
                soft_targets[part] = probs
    return target_class, soft_targets


def plan_round(cache: CSLCache, level: int, previous_logits: torch.Tensor | None, rows: torch.Tensor, *,
               assignment: str = "auto", denoise: str = "top3", soft_labels: bool = False, num_epochs: float = 20,
               scale_epochs_by_keep_rate: bool = True) -> RoundTargets:
    """Targets and filter of one round (steps 1-3 of the method in docs/algorithm.md).

    Level 0 takes the generalist's labels for every sample. A later level routes each sample to one of its teachers
    (``assignment``), takes that teacher's label, and keeps the samples that pass the consistency filter
    (``denoise``) under the previous student ``previous_logits [n, C]``.

    Raises:
        `CSLError`: the filter keeps no sample (the message names the level and a looser ``denoise``).
    """
    members = cache.levels[level]
    if level == 0:
        method, chosen = "none", torch.zeros(len(rows), dtype=torch.long)
    else:
        if previous_logits is None:
            raise CSLError(f"level {level} needs the previous round's student logits")
        method = assignment_method(cache, level, assignment)
        chosen = assign(cache, level, method, previous_logits, rows)
    target_class, soft_targets = assigned_targets(cache, members, chosen, rows, soft_labels)
    if level == 0:
        keep, keep_rate = torch.ones(len(rows), dtype=torch.bool), 1.0
    else:
        keep, keep_rate = C.consistency_filter(previous_logits, target_class, denoise)
    if int(keep.sum()) == 0 or keep_rate <= 0:
        raise CSLError(
            f"level {level}: the consistency filter kept no sample (keep rate 0: no target is in the previous "
            f"student's {denoise}); use a looser --denoise (e.g. top3 or all) or check the level's teachers"
        )
    scale = scale_epochs_by_keep_rate and level > 0
    epochs = C.scaled_epochs(num_epochs, keep_rate) if scale else num_epochs
    return RoundTargets(level, method, chosen, target_class, soft_targets, keep, keep_rate, epochs)


def round_record(cache: CSLCache, targets: RoundTargets, rows: torch.Tensor, labels: torch.Tensor,
                 student_accuracy: float, pgr: float | None) -> dict[str, Any]:
    """The round's entry in ``csl_report.json``: label quality against ground truth on the training split (teacher
    accuracy, precision and recall of the kept labels), keep rate, the student's test accuracy and PGR, and, where the
    ground truth routing is known, the assignment accuracy."""
    teacher_acc, precision, recall = C.label_quality(targets.target_class, labels, targets.keep)
    record = {
        "level": targets.level,
        "num_teachers": len(cache.levels[targets.level]),
        "assignment": targets.method,
        "teacher_accuracy": teacher_acc,
        "keep_rate": targets.keep_rate,
        "precision": precision,
        "recall": recall,
        "student_accuracy": student_accuracy,
        "pgr": pgr,
        "num_kept": int(targets.keep.sum()),
        "epochs": targets.epochs,
    }
    oracle = oracle_assignment(cache, targets.level, rows) if targets.level > 0 else None
    if oracle is not None:
        record["assignment_accuracy"] = float((targets.assignment == oracle).float().mean())
    return record
