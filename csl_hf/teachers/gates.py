"""Gate teachers: class specialists that know their specialty (this package's extension, not the paper's; measured in
docs/routing_research.md §2 and §5).

A class specialist's softmax is masked to its classes, so on an image from outside its specialty it is as confident
as on its own: its output says nothing about whether the image is its to label. A *gate teacher* is the same tiny
model with one more output, "out of specialty" (index ``C``), trained on **all** teacher images: images outside the
specialty are labelled ``C``, the specialty's own images are oversampled to about half the draws, and it gets the
same step budget as a plain specialist. ``1 - p(other)`` is then the specialist's own probability that an image
belongs to its specialty; ``--assignment oos_gate`` multiplies it into the previous student's specialty mass to route
(`csl_hf.method.consistency.specialist_gate`). The plain specialists still give the labels: replacing them by gate teachers
at equal budget loses (half of a gate teacher's steps go to "other").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from ..errors import CSLError
from .arguments import TeacherTrainingArguments
from .fitting import build_teacher, fit_fixed_steps

__all__ = ["OTHER_LABEL", "gated_specialists", "gate_training_rows", "gate_seed", "train_gate_teachers"]

#: The name of a gate teacher's extra output (index ``num_labels``).
OTHER_LABEL = "<out of specialty>"


def gated_specialists(specialties: Sequence[dict], num_labels: int) -> list[int]:
    """The teachers that get a gate: class specialists whose classes are not all ``num_labels`` classes (not the
    generalist, not a domain specialist: a domain specialist covers every class and is routed by ``agreement``)."""
    return [k for k, spec in enumerate(specialties)
            if spec.get("classes") is not None and sorted(spec["classes"]) != list(range(num_labels))]


def gate_training_rows(labels: torch.Tensor, classes: Sequence[int], num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What one gate teacher trains on: ``(rows, targets)``.

    ``targets [N]`` is the class for images of the specialty and ``num_labels`` ("other") for the rest; ``rows`` lists
    every image once and the specialty's images ``round(n_out / n_in)`` times, so that uniform draws from ``rows`` hit
    the specialty about half the time (as in docs/routing_research.md §2).
    """
    inside = torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))
    targets = torch.where(inside, labels, torch.full_like(labels, num_labels))
    rows_in, rows_out = inside.nonzero().flatten(), (~inside).nonzero().flatten()
    repeats = max(1, round(len(rows_out) / max(1, len(rows_in))))
    return torch.cat([rows_in.repeat(repeats), rows_out]), targets


def gate_seed(args: TeacherTrainingArguments, num_teachers: int, gate: int) -> int:
    """Gate ``g`` is seeded with ``teacher_seed + num_teachers + g``: deterministic, and distinct from every teacher
    of the hierarchy (teacher ``k`` uses ``teacher_seed + k``, ``k < num_teachers``)."""
    return int(args.teacher_seed) + int(num_teachers) + int(gate)


def train_gate_teachers(
    args: TeacherTrainingArguments,
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    specialties: Sequence[dict],
    id2label: dict[int, str],
    progress=None,
) -> tuple[list[PreTrainedModel], list[int]]:
    """Train one gate teacher per class specialist of ``specialties``.

    Args:
        args: the teachers' arguments (architecture, ``teacher_steps``, batch size, learning rate, seed).
        pixel_values: ``[N, 3, h, w]`` the teacher split, preprocessed (`load_teacher_split`).
        labels: ``int64 [N]`` its class ids.
        specialties: the hierarchy's specialties (one per teacher).
        id2label: the ``C`` class names; a gate teacher's label space is them plus `OTHER_LABEL`.
    Returns:
        ``(gate_teachers, gate_specialists)``: the models (``C + 1`` outputs, eval mode) and the teacher index each
        gates, for `TeacherMixture.from_teachers`.

    Raises:
        `CSLError`: ``specialties`` has no class specialist to gate.
    """
    num_labels = len(id2label)
    gated = gated_specialists(specialties, num_labels)
    if not gated:
        raise CSLError("--specialty_gates gates class specialists, and this hierarchy has none (domain specialists are "
                       "routed with --assignment agreement); drop --specialty_gates")
    names = [id2label[i] for i in range(num_labels)]
    other = OTHER_LABEL if OTHER_LABEL not in names else OTHER_LABEL + " (gate)"
    gates = []
    for g, k in enumerate(gated):
        classes = list(specialties[k]["classes"])
        seed = gate_seed(args, len(specialties), g)
        model = build_teacher(args, num_labels + 1, names + [other], seed=seed)
        rows, targets = gate_training_rows(labels, classes, num_labels)
        mask = torch.zeros(num_labels + 1, dtype=torch.bool)
        mask[classes + [num_labels]] = True

        # The minibatches draw *row indices* and gather the pixels per step: the oversampled rows are never copied.
        def forward(m: nn.Module, batch_rows: torch.Tensor, mask=mask) -> torch.Tensor:
            return m(pixel_values=pixel_values[batch_rows]).logits.masked_fill(~mask, float("-inf"))

        fit_fixed_steps(model, rows, targets[rows], args.teacher_steps, args.teacher_batch_size,
                        args.teacher_learning_rate, seed, args.teacher_weight_decay, forward, progress)
        gates.append(model)
    return gates, gated
