"""One round of co-supervised learning as data: which teacher labels each sample, the targets, the consistency
filter, and the round's record in the report. Pure functions of a `CSLCache` and tensors (no training, no I/O); the
trainer calls them between its training phases. The method is described in docs/algorithm.md.

Shapes: ``n`` training samples, ``C`` classes, ``T`` teachers of the level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import logging

from . import consistency as C
from ..cache.format import TEST_SPLIT, CSLCache
from ..errors import CSLError

__all__ = ["RoundTargets", "StudentLogits", "assignment_method", "assign", "oracle_assignment", "assigned_targets",
           "mixture_targets", "plan_round", "round_record", "check_assignment_fits", "CLASS_ROUTES"]

# Teacher outputs are read per teacher or per chunk of rows: a level's [T, n, C] never sits in memory at once
# (8 teachers x 1.28M images x 1000 classes would be 41 GB of float32).
CHUNK_ROWS = 65536
# assignments that mix the level's teachers instead of routing each sample to one
MIXTURES = ("ensemble", "soft_gate", "oos_gate")
# assignments that gate class specialists by the student's mass on their classes: meaningless for domain specialists
CLASS_GATES = ("soft_gate", "oos_gate")
# assignments that route by the student's class predictions: a domain specialist covers every class, so they cannot
# choose between domain specialists
CLASS_ROUTES = ("student", *CLASS_GATES)

logger = logging.get_logger(__name__)


class StudentLogits:
    """The previous round's student on the training rows, read chunk by chunk: routing and the consistency filter
    need its logits for every sample, but at ImageNet scale ``[N, C]`` is 5 GB of float32 (and as much again for
    its log-softmax), so it is never built whole.

    Args:
        num_rows: ``N``.
        compute: ``compute(start, end) -> [end - start, C]`` logits of rows ``start:end`` (float32).
    """

    def __init__(self, num_rows: int, compute):
        self.num_rows, self._compute = int(num_rows), compute

    @classmethod
    def from_tensor(cls, logits: torch.Tensor) -> "StudentLogits":
        """Logits that are already there, ``[N, C]``."""
        return cls(logits.shape[0], lambda start, end: logits[start:end].float())

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, rows: slice) -> torch.Tensor:
        start, end, _ = rows.indices(self.num_rows)
        return self._compute(start, end)

    def chunks(self, size: int = CHUNK_ROWS):
        """``(start, end, logits [end - start, C])`` over all rows."""
        for start in range(0, self.num_rows, size):
            end = min(start + size, self.num_rows)
            yield start, end, self._compute(start, end)


@dataclass
class RoundTargets:
    """What one round trains on.

    Attributes:
        level: the hierarchy level (0: the generalist alone).
        method: the teacher assignment used (``none`` at level 0, ``student``, ``agreement``, ``soft_gate``,
            ``oos_gate``, ``oracle`` or ``ensemble``).
        assignment: ``[n]`` long, each training sample's teacher (index into the level).
        target_class: ``[n]`` long, the argmax of the assigned teacher's probabilities (the hard label).
        soft_targets: ``[n, C]`` float32, the assigned teacher's probabilities; only built for soft labels (hard
            labels never hold a dense ``[n, C]`` tensor).
        keep: ``[n]`` bool, the samples that pass the consistency filter.
        keep_rate: the filter's keep rate ``r`` in (0, 1].
        epochs: epochs to train on the kept samples (``floor(E / r)`` when scaled).
        denoise: the filter the round used (``auto`` resolved; ``none`` at level 0).
    """

    level: int
    method: str
    assignment: torch.Tensor
    target_class: torch.Tensor
    soft_targets: torch.Tensor | None
    keep: torch.Tensor
    keep_rate: float
    epochs: float
    denoise: str = "top3"

    def fit_targets(self) -> torch.Tensor:
        """The kept samples' training targets: class ids ``[k]`` (hard) or probabilities ``[k, C]`` (soft)."""
        targets = self.soft_targets if self.soft_targets is not None else self.target_class
        return targets[self.keep]


def assignment_method(cache: CSLCache, level: int, requested: str) -> str:
    """The assignment a level uses: ``auto`` is ``agreement`` for domain levels, and for class levels ``oos_gate``
    when the cache holds the gate teachers' in-specialty probabilities (``--specialty_gates``; the command line
    trains them for ``auto``), else ``student`` (the paper's rule). ``oos_gate`` was selected on seeds 0-2 and
    adopted by a rule written down before fresh seeds 24-29 were run (docs/routing_research.md section 12).

    Raises:
        `CSLError`: ``student``, ``soft_gate`` or ``oos_gate`` on a domain level (they route by class, and domain
        specialists cover every class); ``oos_gate`` on a cache without ``in_specialty``.
    """
    kind = cache.level_kind(level)
    if requested in CLASS_ROUTES and kind == "domain":
        raise CSLError(_domain_level_error(level, requested))
    if requested == "oos_gate":
        check_assignment_fits("oos_gate", cache=cache)
    if requested == "auto":
        if kind == "domain":
            return "agreement"
        if cache.in_specialty is None:
            logger.info_once("--assignment auto: the teachers have no gate teachers, so class levels are routed by the "
                             "student (the paper's rule); teachers trained with --specialty_gates route better")
            return "student"
        return "oos_gate"
    return requested


def _domain_level_error(level: int, assignment: str) -> str:
    return (f"level {level} holds domain specialists: --assignment {assignment} routes by the student's class "
            "predictions, and a domain specialist covers every class; use agreement, oracle or auto")


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


def assign(cache: CSLCache, level: int, method: str, previous: StudentLogits | torch.Tensor,
           rows: torch.Tensor) -> torch.Tensor:
    """Each training sample's teacher, ``[n]`` long indices into ``cache.levels[level]``.

    Args:
        method: ``student``, ``agreement`` or ``oracle`` (see `assignment_method`).
        previous: the previous round's student on the training rows (`StudentLogits` or a ``[n, C]`` tensor).
        rows: ``[n]`` the training rows of the cache.
    """
    if method == "oracle":
        oracle = oracle_assignment(cache, level, rows)
        if oracle is None:
            what = "domains" if cache.level_kind(level) == "domain" else "labels"
            raise CSLError(f"level {level}: oracle assignment needs ground truth ({what}) for every training sample; "
                           "use --assignment auto")
        return oracle
    previous = previous if isinstance(previous, StudentLogits) else StudentLogits.from_tensor(previous)
    members = cache.levels[level]
    masks = C.class_masks([cache.specialties[t] for t in members], cache.num_labels)
    out = torch.empty(len(rows), dtype=torch.long)
    for start, end, logits in previous.chunks():
        if method == "student":
            out[start:end] = C.assign_by_student(logits, masks)
        else:
            out[start:end] = C.assign_by_agreement(logits, cache.probs(members, rows[start:end]))
    return out


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


def mixture_targets(cache: CSLCache, members: list[int], rows: torch.Tensor, soft: bool,
                    previous: StudentLogits | None = None,
                    by_specialists: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Targets that mix the level's teachers instead of picking one: ``sum_t g[n, t] p_t[n]``.

    ``previous=None`` is the ``ensemble`` baseline (equal weights, `consistency.ensemble_targets`); with the previous
    student it is ``soft_gate`` (``g`` = the student's probability mass on each specialty,
    `consistency.soft_gate_targets`); with ``by_specialists`` too it is ``oos_gate``: ``g[n, t] ∝ mass[n, t] *
    in_specialty[t, n]``, the gate teachers' own in-specialty probabilities from the cache
    (`consistency.specialist_gate`, docs/routing_research.md §5), while the labels still come from the plain
    specialists. Memory is one chunk of ``CHUNK_ROWS`` rows at a time.

    Returns ``(teacher [n], target_class [n], soft_targets [n, C] or None)``; ``teacher`` is the one that gives the
    target class the most probability (for the assignment-accuracy diagnostic)."""
    n = len(rows)
    chosen, target_class = torch.empty(n, dtype=torch.long), torch.empty(n, dtype=torch.long)
    soft_targets = torch.empty(n, cache.num_labels) if soft else None
    masks = C.class_masks([cache.specialties[t] for t in members], cache.num_labels) if previous is not None else None
    for start in range(0, n, CHUNK_ROWS):
        end = min(n, start + CHUNK_ROWS)
        probs = cache.probs(members, rows[start:end])  # [T, c, C]
        if previous is None:
            mixture = C.ensemble_targets(probs)
        elif by_specialists:
            gate = C.specialist_gate(previous[start:end], masks, cache.in_specialty_of(members, rows[start:end]))
            mixture = C.gated_targets(gate, probs)
        else:
            mixture = C.soft_gate_targets(previous[start:end], probs, masks)
        target = mixture.argmax(-1)
        target_class[start:end] = target
        chosen[start:end] = probs.gather(-1, target[None, :, None].expand(len(members), -1, 1))[..., 0].argmax(0)
        if soft_targets is not None:
            soft_targets[start:end] = mixture
    return chosen, target_class, soft_targets


def training_neighbors(cache: CSLCache, rows: torch.Tensor, k: int) -> torch.Tensor:
    """``[n, k]`` nearest neighbours of the training ``rows`` among themselves in the student's cached features
    (`consistency.nearest_neighbors`), indices into ``rows``; ``k`` is at most ``n - 1``. Computed once per cache, rows
    and ``k`` (every level and every baseline chain of a run filters the same rows)."""
    k = min(int(k), len(rows) - 1)
    memo = cache.__dict__.setdefault("_neighbors", {})
    key = (int(k), id(cache.features), rows.numel(), hash(rows.numpy().tobytes()))
    if key not in memo:
        memo.clear()
        memo[key] = C.nearest_neighbors(cache.features, int(k), rows)
    return memo[key]


def plan_round(cache: CSLCache, level: int, previous: StudentLogits | torch.Tensor | None, rows: torch.Tensor, *,
               assignment: str = "auto", denoise: str = "auto", soft_labels: bool = False, num_epochs: float = 20,
               scale_epochs_by_keep_rate: bool = True, denoise_neighbors: int = 10) -> RoundTargets:
    """Targets and filter of one round (steps 1-3 of the method in docs/algorithm.md).

    Level 0 takes the generalist's labels for every sample. A later level routes each sample to one of its teachers
    (``assignment``), takes that teacher's label, and keeps the samples that pass the consistency filter
    (``denoise``): ``topK`` under the previous student ``previous`` (`StudentLogits`, or a ``[n, C]`` tensor),
    ``knn`` against the labels of each sample's ``denoise_neighbors`` nearest neighbours in the student's features,
    ``auto`` = ``knn`` on class levels and ``top3`` on domain levels (`consistency.denoise_for_level`). Memory is
    ``O(n)`` besides one chunk of logits (``O(n k)`` for ``knn``), and ``O(n C)`` only for soft labels (their
    targets).

    Raises:
        `CSLError`: the filter keeps no sample (the message names the level and a looser ``denoise``).
    """
    members = cache.levels[level]
    n = len(rows)
    if level == 0:
        method, chosen = "none", torch.zeros(n, dtype=torch.long)
    else:
        if previous is None:
            raise CSLError(f"level {level} needs the previous round's student logits")
        previous = previous if isinstance(previous, StudentLogits) else StudentLogits.from_tensor(previous)
        method = assignment_method(cache, level, assignment)
        if method not in MIXTURES:
            chosen = assign(cache, level, method, previous, rows)
    if method in MIXTURES:
        gate_by = previous if method in CLASS_GATES else None
        chosen, target_class, soft_targets = mixture_targets(cache, members, rows, soft_labels, gate_by,
                                                             by_specialists=method == "oos_gate")
    else:
        target_class, soft_targets = assigned_targets(cache, members, chosen, rows, soft_labels)
    mode = C.denoise_for_level(denoise, cache.level_kind(level), n)
    if denoise == "auto" and mode == "top3" and cache.level_kind(level) != "domain":
        logger.warning_once(f"--denoise auto: {n} training samples is above {C.KNN_AUTO_MAX_SAMPLES}, so class levels "
                            "use the paper's top3 filter (the knn search is O(N^2)); pass --denoise knn to force it")
    if level == 0 or mode == "all":
        keep, keep_rate = torch.ones(n, dtype=torch.bool), 1.0
    elif mode == "knn" and n < 2:  # no neighbour to ask
        keep, keep_rate = torch.ones(n, dtype=torch.bool), 1.0
    elif mode == "knn":
        keep = C.neighbor_agreement(target_class, training_neighbors(cache, rows, denoise_neighbors), cache.num_labels)
        keep_rate = int(keep.sum()) / n
    else:  # the consistency filter, chunk by chunk: scores per sample, then one selection over the split
        k = C.topk_of(mode)
        hits, losses = torch.empty(n, dtype=torch.bool), torch.empty(n)
        for start, end, logits in previous.chunks():
            hits[start:end], losses[start:end] = C.filter_scores(logits, target_class[start:end], k)
        keep, keep_rate = C.select(hits, losses)
    if int(keep.sum()) == 0 or keep_rate <= 0:
        raise CSLError(
            f"level {level}: the consistency filter ({mode}) kept no sample (keep rate 0); use a looser --denoise "
            f"(e.g. top3 or all) or check the level's teachers"
        )
    scale = scale_epochs_by_keep_rate and level > 0
    epochs = C.scaled_epochs(num_epochs, keep_rate) if scale else num_epochs
    return RoundTargets(level, method, chosen, target_class, soft_targets, keep, keep_rate, epochs,
                        "none" if level == 0 else mode)


def check_assignment_fits(assignment: str, cache: CSLCache | None = None, teachers=None) -> None:
    """Refuse, before any labeling or training, an ``assignment`` the hierarchy cannot run: one that routes by the
    student's class predictions (``student``, ``soft_gate``, ``oos_gate``: `CLASS_ROUTES`) on a hierarchy with a
    level of domain specialists, or ``oos_gate`` where the cache (or, before labeling, the teachers) holds no gate
    teachers' in-specialty probabilities. `assignment_method` decides the same per level, mid-run; this is the check
    of every level at once, made by `CoSupervisedTrainer` when it is built.

    Args:
        assignment: ``CoSupervisedConfig.assignment``.
        cache: the run's `CSLCache`, or ``None`` before labeling; then ``teachers`` (a `TeacherMixture`) is read.

    Raises:
        `CSLError` (one line) naming the fix (another ``--assignment``, or ``--specialty_gates``).
    """
    if cache is not None:
        specialties, levels = cache.specialties, cache.levels
        missing = cache.in_specialty is None
        where = "this cache holds no 'in_specialty'"
    else:
        specialties, levels = teachers.config.specialties, teachers.config.levels
        missing = not teachers.has_gates
        where = "these teachers have no gate teachers"
    if assignment in CLASS_ROUTES:
        for level in range(1, len(levels)):
            if any("domain" in specialties[t] for t in levels[level]):
                raise CSLError(_domain_level_error(level, assignment))
    if assignment == "oos_gate" and missing:
        raise CSLError(f"--assignment oos_gate routes by the gate teachers' in-specialty probabilities, and {where}; "
                       "train the teachers with --specialty_gates (TeacherTrainingArguments(specialty_gates=True)) "
                       "and label again, or use another --assignment")


def round_record(cache: CSLCache, targets: RoundTargets, rows: torch.Tensor, test_predictions: torch.Tensor,
                 pgr: float | None) -> dict[str, Any]:
    """The round's entry in ``csl_report.json``: label quality against ground truth on the training rows ``rows [n]``
    (teacher accuracy, precision and recall of the kept labels), keep rate, the student's accuracy on the test split
    from its predicted classes ``test_predictions [m]`` (`consistency.accuracy`) and its ``pgr`` (percent), per-class
    (and per-domain) test accuracy, the classes that no kept label reaches and those the student never predicts on the
    test split (by name), and, where the ground-truth routing is known, the assignment accuracy."""
    teacher_acc, precision, recall = C.label_quality(targets.target_class, cache.labels[rows], targets.keep)
    student_accuracy = C.accuracy(test_predictions, cache.labels[cache.rows(TEST_SPLIT)])
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
        "denoise": targets.denoise,
    }
    oracle = oracle_assignment(cache, targets.level, rows) if targets.level > 0 else None
    if oracle is not None and targets.method != "ensemble":
        record["assignment_accuracy"] = float((targets.assignment == oracle).float().mean())
    record.update(group_accuracies(cache, test_predictions))
    # The classes this round cannot teach (no kept label) or the student does not give (no test prediction), by name.
    record["classes_without_kept_labels"] = [cache.id2label[c] for c in C.absent_classes(
        targets.target_class[targets.keep], cache.num_labels)]
    record["classes_never_predicted"] = [cache.id2label[c] for c in C.absent_classes(test_predictions,
                                                                                    cache.num_labels)]
    return record


def group_accuracies(cache: CSLCache, test_predictions: torch.Tensor) -> dict[str, dict[str, float | None]]:
    """The student's test accuracy per class (``per_class_accuracy``, by class name) and, with domains, per domain
    (``per_domain_accuracy``): where a specialist helps and where routing hurts. ``None`` for a class without test
    samples."""
    test = cache.rows(TEST_SPLIT)
    labels = cache.labels[test]
    correct = test_predictions == labels
    out = {"per_class_accuracy": {}}
    for c in range(cache.num_labels):
        mine = labels == c
        out["per_class_accuracy"][cache.id2label[c]] = float(correct[mine].float().mean()) if bool(mine.any()) else None
    if cache.domains is not None and cache.domain_names:
        domains = cache.domains[test]
        out["per_domain_accuracy"] = {
            name: float(correct[domains == d].float().mean()) if bool((domains == d).any()) else None
            for d, name in enumerate(cache.domain_names)}
    return out
