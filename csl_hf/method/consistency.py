"""The pure tensor math of co-supervised learning (docs/algorithm.md): teacher assignment, consistency filtering, label
quality. No I/O, no training, no state: every function maps tensors to tensors and is unit-tested on hand-computed
cases. The trainer only orchestrates these.

Shapes: ``N`` samples, ``C`` classes (the global label space), ``T`` teachers of one level.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import CSLError
# Shipped with every saved TeacherMixture (its specialists' softmax), so defined there and used here.
from ..models.teacher_mixture.hierarchy_rules import class_masks, masked_softmax  # noqa: F401

ASSIGNMENTS = ("auto", "student", "agreement", "soft_gate", "oos_gate", "oracle", "ensemble")
DENOISE_MODES = ("auto", "top1", "top2", "top3", "knn", "all")


# --------------------------------------------------------------------------------------------------------------
# Teacher assignment: which teacher of a level labels each sample. Each returns indices into the level, [N].
# --------------------------------------------------------------------------------------------------------------


def assign_by_student(student_logits: torch.Tensor, teacher_classes: torch.Tensor) -> torch.Tensor:
    """`student` assignment: the teacher whose class set holds the argmax of the previous student's logits.

    Args:
        student_logits: ``[N, C]`` logits of the previous round's student.
        teacher_classes: ``[T, C]`` boolean class sets of the level's teachers (a partition of the classes).
    Returns:
        ``[N]`` long, the chosen teacher per sample.
    """
    predicted = student_logits.argmax(dim=-1)
    owner = _class_owner(teacher_classes)
    return owner[predicted]


def assign_by_agreement(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """`agreement` assignment: the teacher minimising ``KL(p_student || p_teacher)``.

    Args:
        student_logits: ``[N, C]``.
        teacher_probs: ``[T, N, C]`` probabilities of the level's teachers.
        eps: floor on teacher probabilities so that a zero (a class specialist outside its classes) costs a large
            but finite divergence instead of ``inf`` for every teacher.
    Returns:
        ``[N]`` long.
    """
    log_ps = student_logits.float().log_softmax(dim=-1)  # [N, C]
    ps = log_ps.exp()
    log_pt = teacher_probs.float().clamp_min(eps).log()  # [T, N, C]
    kl = (ps.unsqueeze(0) * (log_ps.unsqueeze(0) - log_pt)).sum(dim=-1)  # [T, N]
    return kl.argmin(dim=0)


def assign_by_oracle_class(labels: torch.Tensor, teacher_classes: torch.Tensor) -> torch.Tensor:
    """`oracle` assignment for class specialists: the teacher owning the true class (diagnostic only)."""
    if bool((labels < 0).any()):
        raise CSLError("oracle assignment needs ground-truth labels for every training sample; use --assignment auto")
    return _class_owner(teacher_classes)[labels]


def assign_by_oracle_domain(domains: torch.Tensor, teacher_domains: torch.Tensor) -> torch.Tensor:
    """`oracle` assignment for domain specialists: the teacher of the sample's true domain.

    Args:
        domains: ``[N]`` domain id per sample.
        teacher_domains: ``[T]`` domain id per teacher of the level.
    """
    match = domains.unsqueeze(0) == teacher_domains.unsqueeze(1)  # [T, N]
    if not bool(match.any(dim=0).all()):
        raise CSLError(
            "oracle assignment found samples whose domain has no specialist in this level; "
            "give every domain a teacher or use --assignment agreement"
        )
    return match.to(torch.uint8).argmax(dim=0)


def _class_owner(teacher_classes: torch.Tensor) -> torch.Tensor:
    """``[C]`` index of the teacher owning each class. Requires a partition (checked when the cache is read)."""
    return teacher_classes.to(torch.uint8).argmax(dim=0)


# --------------------------------------------------------------------------------------------------------------
# Consistency filter (step 2 of a round; Liu & Alahi 2024, Sec. 3.3): the teacher-student and local-global
# consistency. It runs in two steps, so that a split of any size is filtered chunk by chunk:
#   1. `filter_scores` scores each sample of a chunk of rows (rows are independent: the scores of a split are the
#      concatenation of its chunks' scores);
#   2. `select` turns the whole split's scores into the keep rate and the kept set.
# `method.rounds.plan_round` runs exactly these two; `consistency_filter` chains them on one dense tensor.
# --------------------------------------------------------------------------------------------------------------


KNN_AUTO_MAX_SAMPLES = 200_000
"""Above this many training samples ``auto`` uses ``top3`` on class levels too: the exact neighbour search of ``knn``
is ``O(N^2 D)`` (minutes on a CPU at this size, hours at ImageNet's 1.28 M)."""


def denoise_for_level(denoise: str, level_kind: str, num_samples: int = 0) -> str:
    """The filter a level uses: ``auto`` is ``knn`` for class levels and ``top3`` for domain levels, and ``top3`` on
    every level when ``num_samples > KNN_AUTO_MAX_SAMPLES``; any other mode is itself. (On class levels a misrouted
    sample gets a wrong label that the routing student itself finds plausible, which ``knn`` catches and ``top3``
    does not; on domain levels every specialist covers every class and ``knn`` lost to ``top3``:
    docs/denoise_research.md.)

    Raises:
        `CSLError`: ``denoise`` is not one of `DENOISE_MODES`.
    """
    if denoise not in DENOISE_MODES:
        raise CSLError(f"--denoise {denoise!r} is not a filter; use one of {', '.join(DENOISE_MODES)}")
    if denoise == "auto":
        return "top3" if level_kind == "domain" or num_samples > KNN_AUTO_MAX_SAMPLES else "knn"
    return denoise


def topk_of(denoise: str) -> int | None:
    """``"top3" -> 3``; ``"all" -> None`` (keep everything).

    Raises:
        `CSLError`: a ``denoise`` that is not one of `DENOISE_MODES`.
    """
    if denoise not in DENOISE_MODES:
        raise CSLError(f"--denoise {denoise!r} is not a filter; use one of {', '.join(DENOISE_MODES)}")
    if denoise in ("auto", "knn"):
        raise CSLError(f"--denoise {denoise} is not a top-k filter (resolve it with denoise_for_level)")
    return None if denoise == "all" else int(denoise[3:])


def topk_hits(student_logits: torch.Tensor, target_class: torch.Tensor, k: int) -> torch.Tensor:
    """``[N]`` bool: the target class is among the previous student's top-k classes (``student_logits [N, C]``).

    This is the *local-global* agreement: the specialist's (local) label is plausible under the previous
    student's (global) coarse view.
    """
    k = min(k, student_logits.shape[-1])
    topk = student_logits.topk(k, dim=-1).indices  # [N, k]
    return (topk == target_class.unsqueeze(-1)).any(dim=-1)


def filter_scores(student_logits: torch.Tensor, target_class: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1 of the consistency filter, for a chunk of ``n`` samples.

    Args:
        student_logits: ``[n, C]`` logits of the previous round's student.
        target_class: ``[n]`` long, the labels of this round (the assigned teachers' argmax).
        k: the ``k`` of ``top{k}`` (`topk_of`).
    Returns:
        ``(hits, losses)``: ``hits [n]`` bool, the target is in the student's top-k (`topk_hits`: local-global
        consistency); ``losses [n]`` float32, the cross-entropy of the student's logits against the target (how
        plausible the student finds the label: teacher-student consistency).
    """
    logits = student_logits.float()
    return topk_hits(logits, target_class, k), F.cross_entropy(logits, target_class, reduction="none")


def keep_smallest(losses: torch.Tensor, keep_rate: float) -> torch.Tensor:
    """``[N]`` bool keep mask of the ``ceil(keep_rate * N)`` smallest ``losses [N]`` (ties by index)."""
    n = losses.shape[0]
    num_keep = min(n, math.ceil(keep_rate * n - 1e-6))
    order = torch.sort(losses, stable=True).indices
    keep = torch.zeros(n, dtype=torch.bool)
    keep[order[:num_keep]] = True
    return keep


def select(hits: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Step 2 of the consistency filter, on the scores of the whole split (`filter_scores`, ``[N]`` each).

    The keep rate ``r`` is the share of samples whose target is in the previous student's top-k, an exact ratio of
    integers (``hits.sum() / N``, so that ``r * N`` recovers the count). The kept set is the ``ceil(r * N)`` samples
    with the smallest loss (ties by index): not necessarily the ones with a hit.

    Returns:
        ``(keep [N] bool, keep_rate)``.
    """
    keep_rate = int(hits.sum()) / hits.shape[0]
    return keep_smallest(losses, keep_rate), keep_rate


def consistency_filter(
    student_logits: torch.Tensor, target_class: torch.Tensor, denoise: str
) -> tuple[torch.Tensor, float]:
    """The whole consistency filter on one dense ``student_logits [N, C]``: `select` of `filter_scores`.

    Returns:
        ``(keep [N] bool, keep_rate)``; ``denoise="all"`` keeps everything with rate 1.
    """
    k = topk_of(denoise)
    if k is None:
        return torch.ones(target_class.shape[0], dtype=torch.bool), 1.0
    return select(*filter_scores(student_logits, target_class, k))


def nearest_neighbors(features: torch.Tensor, k: int, rows: torch.Tensor | None = None,
                      max_block_bytes: int = 1 << 26) -> torch.Tensor:
    """Each sample's ``k`` nearest other samples by cosine similarity: ``[N, k]`` long, most similar first; a sample
    is never its own neighbour.

    Args:
        features: ``[M, D]``; the samples are ``features[rows]`` (``N`` of them), or all ``M`` rows.
        k: neighbours per sample, ``1 <= k < N``.
        rows: ``[N]`` long row indices, or ``None`` for every row. Indices in the result are positions in ``rows``.
        max_block_bytes: the similarities are computed one ``[c, N]`` float32 block of rows at a time (at most this
            many bytes; default 64 MiB), filled from normalised ``[c', D]`` blocks of the samples (at most a quarter
            of it); the result does not depend on it.

    Time ``O(N^2 D)``; memory the two blocks and the ``[N]`` norms, never a normalised copy of the samples (``4 N D``
    bytes, 0.8x a 59,000-image cache of a 1280-d student); each block is normalised as a whole copy would be.

    Raises:
        `CSLError`: fewer than ``k + 1`` samples.
    """
    n = features.shape[0] if rows is None else rows.shape[0]
    if not 0 < k < n:
        raise CSLError(f"--denoise_neighbors {k} needs between 1 and {n - 1} (the number of training samples - 1)")

    def block(start: int, end: int) -> torch.Tensor:  # samples start..end-1, float32 (may be the caller's memory)
        return (features[start:end] if rows is None else features[rows[start:end]]).float()
    # Sample blocks get a quarter of the budget: their size sets only the memory; the similarity block's rows set how
    # often every sample is normalised again (once per block of rows).
    per_block = max(1, min(n, max_block_bytes // 4 // (4 * features.shape[1])))
    norms = torch.cat([block(s, min(n, s + per_block)).norm(dim=-1) for s in range(0, n, per_block)]).clamp_min(
        1e-12).unsqueeze(1)  # F.normalize's arithmetic
    chunk_rows = max(1, min(n, max_block_bytes // (4 * n)))
    sim = torch.empty(chunk_rows, n)
    out = torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, chunk_rows):
        end = min(n, start + chunk_rows)
        z, rows_sim = block(start, end) / norms[start:end], sim[: end - start]
        for col, col_end in ((c, min(n, c + per_block)) for c in range(0, n, per_block)):
            torch.matmul(z, (block(col, col_end) / norms[col:col_end]).T, out=rows_sim[:, col:col_end])
        rows_sim[torch.arange(end - start), torch.arange(start, end)] = float("-inf")
        out[start:end] = rows_sim.topk(k, dim=-1).indices
    return out


def neighbor_agreement(target_class: torch.Tensor, neighbors: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``[N]`` bool: the sample's label is a most frequent label among its neighbours' labels (ties count as agreement).

    The *neighbour* consistency filter (``--denoise knn``; Bahri et al. 2020, "Deep k-NN for noisy labels"): a label
    is kept when the teacher labels of the samples nearest to it in the student's feature space agree with it. The
    judge is the other samples' labels, not the previous student, so a sample that the previous student routed to
    the wrong specialist (whose label that student therefore finds plausible) is caught when its neighbours were
    routed right.

    Args:
        target_class: ``[N]`` long, each sample's label.
        neighbors: ``[N, k]`` long indices into the samples (`nearest_neighbors`).
        num_labels: ``C``.
    """
    votes = torch.zeros(target_class.shape[0], num_labels)
    votes.scatter_add_(1, target_class[neighbors], torch.ones(neighbors.shape, dtype=votes.dtype))
    own = votes.gather(1, target_class.unsqueeze(1)).squeeze(1)
    return own >= votes.max(dim=1).values


def scaled_epochs(num_epochs: float, keep_rate: float) -> int:
    """``floor(E / r)``: train longer on fewer samples so the number of optimiser steps stays about constant."""
    return max(1, math.floor(num_epochs / keep_rate + 1e-9))


# --------------------------------------------------------------------------------------------------------------
# Diagnostics against ground truth (never used for training).
# --------------------------------------------------------------------------------------------------------------


def label_quality(
    target_class: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor
) -> tuple[float | None, float | None, float | None]:
    """Teacher accuracy, precision and recall of the kept labels, on samples with known labels.

    ``correct = target == label``; teacher accuracy ``|correct| / N``; precision ``|kept & correct| / |kept|``;
    recall ``|kept & correct| / |correct|``. A ratio with an empty denominator (or no known labels) is ``None``.
    """
    known = labels >= 0
    if not bool(known.any()):
        return None, None, None
    correct = (target_class == labels) & known
    kept = keep & known
    n_correct, n_kept = int(correct.sum()), int(kept.sum())
    both = int((kept & correct).sum())
    accuracy = n_correct / int(known.sum())
    precision = both / n_kept if n_kept else None
    recall = both / n_correct if n_correct else None
    return accuracy, precision, recall


def absent_classes(classes: torch.Tensor, num_labels: int) -> list[int]:
    """The class ids in ``0..num_labels-1`` that ``classes [N]`` (long) never holds: e.g. the classes that no kept
    label of a round reaches, or that the student never predicts. A class the first student misses can be filtered
    out of every later round (its labels are never in the student's top-k), so a run names them."""
    counts = torch.bincount(classes.long(), minlength=num_labels) if classes.numel() else torch.zeros(num_labels)
    return [int(c) for c in (counts[:num_labels] == 0).nonzero(as_tuple=True)[0]]


def accuracy(scores_or_classes: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy over the samples with a known label (``labels [N] >= 0``), as a fraction in [0, 1]: the one
    accuracy of a run (weak teacher, ceiling, every round's student, the baselines).

    Args:
        scores_or_classes: ``[N, C]`` logits or probabilities (their argmax is the prediction) or ``[N]`` predicted
            class ids.
    Returns:
        ``nan`` when no label is known.
    """
    known = labels >= 0
    if not bool(known.any()):
        return float("nan")
    predicted = scores_or_classes if scores_or_classes.dim() == 1 else scores_or_classes.argmax(dim=-1)
    return float((predicted[known] == labels[known]).float().mean())


# --------------------------------------------------------------------------------------------------------------
# Gates and the ensemble baseline (docs/routing_research.md records what each routing rule measured). A *gate* ``[N, T]`` is a
# distribution over the level's teachers per sample; a gated target is the mixture ``sum_t g_t p_t`` (a mixture of
# experts, Jacobs et al. 1991), whose argmax is the hard label. Hard routing is the special case of a one-hot gate.
# --------------------------------------------------------------------------------------------------------------


def specialty_mass(student_logits: torch.Tensor, teacher_classes: torch.Tensor) -> torch.Tensor:
    """The previous student's probability mass on each teacher's class set.

    Args:
        student_logits: ``[N, C]`` logits of the previous round's student.
        teacher_classes: ``[T, C]`` boolean class sets of the level (a partition: the masses sum to one).
    Returns:
        ``[N, T]`` float32, ``g[n, t] = sum_{c in S_t} softmax(student_logits[n])_c``.
    """
    p = student_logits.float().softmax(dim=-1)
    return p @ teacher_classes.float().T


def gated_targets(gate: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """The mixture ``sum_t gate[n, t] * teacher_probs[t, n]``, renormalised to sum to one per row.

    Args:
        gate: ``[N, T]`` non-negative weights per sample and teacher (need not sum to one; a zero row gives the
            plain mean of the teachers).
        teacher_probs: ``[T, N, C]`` the level's teacher probabilities (a class specialist is zero outside its set).
    Returns:
        ``[N, C]`` float32 probabilities; the hard label is its argmax.
    """
    gate = gate.float().clamp_min(0)
    total = gate.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(gate, 1.0 / gate.shape[-1])
    gate = torch.where(total > 0, gate / total.clamp_min(torch.finfo(gate.dtype).tiny), uniform)
    mix = torch.einsum("nt,tnc->nc", gate, teacher_probs.float())
    return mix / mix.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(mix.dtype).tiny)


def soft_gate_targets(student_logits: torch.Tensor, teacher_probs: torch.Tensor,
                      teacher_classes: torch.Tensor) -> torch.Tensor:
    """Soft gating: each specialist weighted by the previous student's mass on its specialty.

    ``target[n] = sum_t g[n, t] p_t[n]`` with ``g = specialty_mass(student_logits, teacher_classes)``. For class
    specialists (zero outside their classes) a class ``c`` owned by teacher ``t`` gets ``g[n, t] * p_t[n, c]``: the
    label is the class that is both in a plausible specialty and likely under its specialist, so a confident
    specialist can win over a vague one even when the student's argmax lies in the other specialty.

    Args / shapes: ``student_logits [N, C]``, ``teacher_probs [T, N, C]``, ``teacher_classes [T, C]`` bool.
    Returns:
        ``[N, C]`` float32 probabilities.
    """
    return gated_targets(specialty_mass(student_logits, teacher_classes), teacher_probs)


def ensemble_targets(teacher_probs: torch.Tensor) -> torch.Tensor:
    """No routing: the level's teachers averaged with equal weights and renormalised, ``[T, N, C] -> [N, C]``.

    For class specialists over a partition this is each class's probability from its own specialist, renormalised
    over the classes: ``q[n, c] = p_{owner(c)}[n, c] / sum_c' p_{owner(c')}[n, c']``. A baseline for routing.
    """
    gate = torch.ones(teacher_probs.shape[1], teacher_probs.shape[0])
    return gated_targets(gate, teacher_probs)


def specialist_gate(student_logits: torch.Tensor, teacher_classes: torch.Tensor, in_specialty: torch.Tensor,
                    student_weight: float = 1.0) -> torch.Tensor:
    """A gate that joins the student's specialty mass with specialists that know their specialty.

    ``g[n, t] ∝ specialty_mass[n, t] ** student_weight * in_specialty[t, n]``: a product of experts over "which
    specialist owns this sample" (Hinton 2002), where ``in_specialty[t, n]`` is specialist ``t``'s own probability
    that sample ``n`` is in its class set (e.g. ``1 - p_t(other)`` of a specialist trained with an extra
    out-of-specialty output). ``student_weight=0`` gates by the specialists alone.

    Args / shapes: ``student_logits [N, C]``, ``teacher_classes [T, C]`` bool, ``in_specialty [T, N]`` in [0, 1].
    Returns:
        ``[N, T]`` float32, rows sum to one (uniform where every factor is zero).
    """
    mass = specialty_mass(student_logits, teacher_classes)
    g = mass.clamp_min(1e-12).pow(student_weight) * in_specialty.float().T.clamp_min(0)
    total = g.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, g / total.clamp_min(torch.finfo(g.dtype).tiny), torch.full_like(g, 1.0 / g.shape[-1]))

