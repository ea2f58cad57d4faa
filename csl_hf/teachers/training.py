"""Train a hierarchy of weak teachers: one generalist and levels of specialists, every one with the same step budget,
gathered into one `TeacherMixture`. One call, `train_teacher_hierarchy`, and one arguments dataclass,
`TeacherTrainingArguments`, for both kinds of teachers:

* independent tiny ConvNeXt or ViT image classifiers from transformers (random init, a few thousand parameters):
  weak on purpose, so that the strong student has a capability gap to recover. A class specialist trains on the
  images of its classes only, with its logits masked to them; a domain specialist on the images of its domain;
* linear heads on one shared frozen backbone (``teacher_backbone``; `csl_hf.teachers.backbone`), the paper's setting.

    from csl_hf import TeacherTrainingArguments, train_teacher_hierarchy
    from csl_hf.data import load_csl_dataset, make_weak_to_strong_splits

    splits = make_weak_to_strong_splits(load_csl_dataset("animal_mnist"), seed=0, teacher_size=1000, test_size=2000)
    mixture = train_teacher_hierarchy(splits["teacher"], TeacherTrainingArguments())
    mixture.save_pretrained("out/teachers")                # reload: TeacherMixture.from_pretrained("out/teachers")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import torch
from torch import nn
from transformers.utils import logging

from ..errors import CSLError
from ..method.hierarchy import class_hierarchy, domain_hierarchy, parse_teachers_per_level, specialty_names
from ..method.specialties import confusion_matrix, hierarchy_from_confusion
from ..models.teacher_mixture.modeling_teacher_mixture import TeacherMixture
from .arguments import TeacherTrainingArguments, teacher_preprocessing
from .backbone import load_backbone, train_backbone_heads
from .fitting import build_teacher, train_teacher
from .gates import gated_specialists, train_gate_teachers
from .split import load_teacher_split

__all__ = ["train_teacher_hierarchy"]

logger = logging.get_logger(__name__)


def train_teacher_hierarchy(
    teacher_split: Any,
    args: TeacherTrainingArguments,
    domain_level: bool | None = None,
    specialties: Sequence[dict] | None = None,
    levels: Sequence[Sequence[int]] | None = None,
    on_bad_image: str = "skip",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> TeacherMixture:
    """Train a generalist and its specialists on ``teacher_split`` and gather them into a `TeacherMixture`.

    Hierarchy: explicit ``specialties`` + ``levels`` (see `csl_hf.method.hierarchy`), else a domain hierarchy
    (``domain_level=True``, or ``args.teacher_domain_level`` when ``domain_level`` is ``None``, or, when both are
    ``None``, a ``domain`` column in the split; needs that column: the generalist plus one specialist per domain),
    else levels of ``args.teachers_per_level`` class groups: with ``args.specialties="auto"`` the generalist is trained first and the classes it confuses on the teacher split
    share a specialist (`csl_hf.method.specialties.hierarchy_from_confusion`); with ``"blocks"``, contiguous class-id
    blocks (the paper's layout). Every teacher trains for ``args.teacher_steps`` steps; teacher ``k`` is seeded with
    ``args.teacher_seed + k``. The mixture's config records ``training_data`` (images, skipped images, how the
    specialties were chosen).

    Teachers: independent tiny image classifiers (``args.teacher_architecture``), or, with
    ``args.teacher_backbone``, linear heads on that frozen backbone (`csl_hf.teachers.backbone.train_backbone_heads`;
    ``device`` / ``dtype`` run its feature extraction, e.g. ``torch.bfloat16`` autocast on a GPU). With
    ``args.specialty_gates``, every class specialist also gets a gate teacher (`csl_hf.teachers.gates`), held by the
    mixture as ``gate_teachers``; the teachers themselves are exactly those trained without it.

    Under several processes (``accelerate launch``) the main process trains and every other process receives its
    teachers, so that every process labels its shard with the very same teachers (and no time is spent twice).

    Args:
        teacher_split: the labelled images the teachers learn from (a map-style ``datasets.Dataset``; with
            ``teacher_backbone`` also a stream, a uint8 image tensor or precomputed features, see
            `train_backbone_heads`).
        on_bad_image: ``"skip"`` (count corrupt images) or ``"fail"``.

    Raises:
        `CSLError` (one line): fewer than 2 classes, a domain hierarchy without domains, a specialty without images,
        ``specialty_gates`` on a hierarchy without class specialists.
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState()
    box: list[Any] = [None]
    if state.is_main_process:
        if args.teacher_backbone:
            backbone, preprocessing = load_backbone(args.teacher_backbone, args.teacher_image_size)
            box = [train_backbone_heads(backbone, teacher_split, args, preprocessing, specialties=specialties,
                                        levels=levels, device=device, dtype=dtype)]
        else:
            box = [_train_independent_teachers(teacher_split, args, domain_level, specialties, levels, on_bad_image)]
    if state.num_processes > 1:
        broadcast_object_list(box)  # our own processes: the main process's teachers, as they are
    return box[0]


def _train_independent_teachers(
    teacher_split: datasets.Dataset,
    args: TeacherTrainingArguments,
    domain_level: bool | None = None,
    specialties: Sequence[dict] | None = None,
    levels: Sequence[Sequence[int]] | None = None,
    on_bad_image: str = "skip",
) -> TeacherMixture:
    """`train_teacher_hierarchy` with independent tiny image classifiers (see there)."""
    domain_level = args.teacher_domain_level if domain_level is None else domain_level
    preprocessing = teacher_preprocessing(args)
    split = load_teacher_split(teacher_split, preprocessing, on_bad_image=on_bad_image)
    if domain_level is None:  # unset everywhere: the data decides, as on the command line
        domain_level = split.domains is not None
    names = split.class_names
    num_labels = len(names)
    if num_labels < 2:
        raise CSLError(f"the teacher split has {num_labels} class(es); classification needs at least 2")
    auto, present, per_level = False, sorted(set(split.labels.tolist())), []
    if specialties is not None:
        specialties, levels = [dict(s) for s in specialties], [list(level) for level in levels]
    elif domain_level:
        if split.domains is None:
            raise CSLError("a domain hierarchy needs a 'domain' column in the dataset; drop --teacher_domain_level for "
                           "a class hierarchy")
        specialties, levels, _ = domain_hierarchy(num_labels, split.domain_names)
    else:
        if len(present) < num_labels:
            missing = [names[c] for c in range(num_labels) if c not in set(present)]
            logger.warning(f"the teacher split has no image of {len(missing)} class(es) ({', '.join(missing[:10])}): "
                           "they join the smallest group of each level, and no teacher can predict them")
        per_level = parse_teachers_per_level(args.teachers_per_level, num_labels)
        # With --specialties auto these blocks are placeholders: the groups are chosen once the generalist is trained.
        specialties, levels = class_hierarchy(num_labels, per_level, present=present)
        auto = args.specialties == "auto" and len(per_level) > 1

    id2label = dict(enumerate(names))
    teachers, gates, gated = [], [], []
    # Checked before any training: the count of class specialists does not change when auto regroups the classes.
    num_gates = len(gated_specialists(specialties, num_labels)) if args.specialty_gates else 0
    if args.specialty_gates and not num_gates:
        raise CSLError("--specialty_gates gates class specialists, and this hierarchy has none (domain specialists "
                       "are routed with --assignment agreement); drop --specialty_gates")
    # Tiny models: intra-op threads cost more in synchronisation than they gain (10x slower on a busy 2-core
    # machine), so train on one thread and restore the caller's setting afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bar = logging.tqdm(total=(len(specialties) + num_gates) * int(args.teacher_steps), desc="training teachers",
                       unit="step")
    try:
        for k in range(len(specialties)):
            if auto and k == 1:  # the generalist is trained: group the classes it confuses
                specialties, levels = hierarchy_from_confusion(
                    per_level, _confusion(teachers[0], split.pixel_values, split.labels, num_labels), present)
                _log_specialties(specialties, levels, names)
            spec = specialties[k]
            teacher_names = specialty_names(specialties, num_labels, id2label)
            bar.set_description(f"teacher {k + 1}/{len(specialties)} ({teacher_names[k]})")
            x, y, class_subset = split.pixel_values, split.labels, None
            if "domain" in spec:
                keep = split.domains == split.domain_names.index(spec["domain"])
                x, y = x[keep], y[keep]
                if not len(y):
                    raise CSLError(f"domain {spec['domain']!r} has no images in the teacher split; enlarge the split")
            elif sorted(spec["classes"]) != list(range(num_labels)):
                class_subset = spec["classes"]
            model = build_teacher(args, num_labels, id2label, seed=args.teacher_seed + k)
            train_teacher(model, x, y, steps=args.teacher_steps, batch_size=args.teacher_batch_size,
                          lr=args.teacher_learning_rate, seed=args.teacher_seed + k, class_subset=class_subset,
                          weight_decay=args.teacher_weight_decay, progress=bar)
            teachers.append(model)
        if num_gates:
            bar.set_description(f"gate teachers ({num_gates})")
            gates, gated = train_gate_teachers(args, split.pixel_values, split.labels, specialties, id2label, bar)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    mixture = TeacherMixture.from_teachers(
        teachers, specialties, levels, teacher_names=specialty_names(specialties, num_labels, id2label),
        preprocessing=[preprocessing] * len(teachers),
        domain_names=split.domain_names if any("domain" in s for s in specialties) else None,
        gate_teachers=gates or None, gate_specialists=gated or None,
        gate_preprocessing=[preprocessing] * len(gates) if gates else None,
    )
    mixture.config.training_data = {"num_images": int(len(split.labels)), "skipped_images": split.skipped,
                                    "specialties": "auto (generalist confusions)" if auto else
                                    "given" if per_level == [] and not domain_level else
                                    "domains" if domain_level else "blocks"}
    return mixture


@torch.no_grad()
def _confusion(generalist: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, num_labels: int,
               batch_size: int = 512) -> torch.Tensor:
    """The generalist's confusion matrix ``[C, C]`` (rows true, columns predicted) on its own training images."""
    generalist.eval()
    predicted = torch.cat([generalist(pixel_values=pixel_values[i : i + batch_size]).logits.argmax(-1)
                           for i in range(0, len(labels), batch_size)])
    return confusion_matrix(predicted, labels, num_labels)


def _log_specialties(specialties: list[dict], levels: list[list[int]], names: list[str]) -> None:
    for level, members in enumerate(levels[1:], start=1):
        groups = " | ".join(", ".join(names[c] for c in specialties[t]["classes"]) for t in members)
        logger.info(f"specialties of level {level} (classes the generalist confuses share a specialist): {groups}")
