"""Train a hierarchy of weak teachers: one generalist and levels of specialists, every one with the same step budget.

Teachers are tiny ConvNeXt or ViT image classifiers from transformers (random init, a few thousand parameters):
weak on purpose, so that the strong student has a capability gap to recover (weak-to-strong generalization). A
class specialist trains on the images of its classes only, with its logits masked to them; a domain specialist on
the images of its domain.

    from csl_hf import TeacherTrainingArguments, train_teacher_hierarchy
    from csl_hf.data import load_csl_dataset, make_weak_to_strong_splits

    splits = make_weak_to_strong_splits(load_csl_dataset("animal_mnist"), seed=0, teacher_size=1000, test_size=2000)
    mixture = train_teacher_hierarchy(splits["teacher"], TeacherTrainingArguments())
    mixture.save_pretrained("out/teachers")                # reload: TeacherMixture.from_pretrained("out/teachers")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    ConvNextConfig,
    ConvNextForImageClassification,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
)
from transformers.utils import logging

from ..data import class_names, infer_columns
from ..data.images import preprocess_images
from ..data.targets import raw_images
from ..errors import CSLError
from ..hierarchy import class_hierarchy, domain_hierarchy, parse_teachers_per_level, specialty_names
from ..specialties import confusion_matrix, hierarchy_from_confusion
from ..modeling_teacher_mixture import TeacherMixture
from ..preprocessing import Preprocessing
from .arguments import ARCHITECTURES, TeacherTrainingArguments, teacher_preprocessing
from .gates import gated_specialists, train_gate_teachers

__all__ = ["build_teacher", "fit_fixed_steps", "train_teacher", "TeacherSplit", "load_teacher_split",
           "train_teacher_hierarchy"]

logger = logging.get_logger(__name__)


def build_teacher(
    args: TeacherTrainingArguments, num_labels: int, id2label: dict[int, str] | Sequence[str], seed: int | None = None
) -> PreTrainedModel:
    """A tiny randomly initialised `ConvNextForImageClassification` or `ViTForImageClassification` (3 channels,
    ``teacher_image_size`` inputs) over the global label space. ``seed`` makes the initialisation reproducible without
    touching the global RNG."""
    if not isinstance(id2label, dict):
        id2label = dict(enumerate(id2label))
    id2label = {int(k): str(v) for k, v in id2label.items()}
    if len(id2label) != num_labels:
        raise CSLError(f"id2label has {len(id2label)} names for {num_labels} labels")
    common = dict(num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()}, num_channels=3,
                  image_size=int(args.teacher_image_size), patch_size=int(args.teacher_patch_size))
    if args.teacher_architecture == "convnext":
        hidden, depths = args.convnext_stages()
        config = ConvNextConfig(num_stages=len(hidden), hidden_sizes=hidden, depths=depths, drop_path_rate=0.0, **common)
        model_cls = ConvNextForImageClassification
    elif args.teacher_architecture == "vit":
        if args.teacher_image_size % args.teacher_patch_size:
            raise CSLError(f"teacher_patch_size={args.teacher_patch_size} must divide teacher_image_size={args.teacher_image_size} for ViT")
        if args.teacher_hidden_size % args.teacher_num_heads:
            raise CSLError(f"teacher_num_heads={args.teacher_num_heads} must divide teacher_hidden_size={args.teacher_hidden_size}")
        config = ViTConfig(hidden_size=args.teacher_hidden_size, num_hidden_layers=args.teacher_num_layers,
                           num_attention_heads=args.teacher_num_heads, intermediate_size=2 * args.teacher_hidden_size,
                           encoder_stride=args.teacher_patch_size, **common)
        model_cls = ViTForImageClassification
    else:
        raise CSLError(f"teacher_architecture={args.teacher_architecture!r} is unknown; use one of {', '.join(ARCHITECTURES)}")
    if seed is None:
        return model_cls(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config)


def fit_fixed_steps(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    progress=None,
) -> nn.Module:
    """Exactly ``steps`` AdamW steps of cross-entropy on minibatches sampled with replacement (seeded): the equal
    step budget every teacher gets, whatever the size of its data.

    A plain PyTorch loop on purpose: a hierarchy is a dozen tiny models trained for ~100 steps each on a few hundred
    in-memory samples; `Trainer`'s per-run setup (dataloaders, callbacks, accelerate state, logging) would cost more
    than the training itself, and nothing here needs its distributed machinery.

    Args:
        module: trained in place (returned in eval mode).
        inputs: ``[N, ...]`` already on the module's device; targets: ``int64 [N]`` class ids.
        forward: ``forward(module, x) -> logits [B, C]`` (default ``module(x)``).
        progress: an optional tqdm bar, advanced by one per step.
    """
    forward = forward or (lambda m, x: m(x))
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(int(seed))
    module.train()
    for _ in range(int(steps)):
        idx = torch.randint(len(targets), (int(batch_size),), generator=generator).to(inputs.device)
        loss = F.cross_entropy(forward(module, inputs[idx]), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return module.eval()


def train_teacher(
    model: PreTrainedModel,
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    class_subset: Sequence[int] | None = None,
    weight_decay: float = 0.0,
    progress=None,
) -> PreTrainedModel:
    """Train one image-classifier teacher with `fit_fixed_steps`.

    Args:
        model: an image classifier over the global label space (modified in place and returned in eval mode).
        pixel_values: float ``[N, 3, h, w]`` preprocessed images (`load_teacher_split`).
        labels: ``int64 [N]`` global class ids.
        class_subset: a class specialist's classes: only their images are used and the logits are masked to them
            (``-inf`` elsewhere), so the masked softmax the mixture serves is exactly what was trained. ``None``:
            all images, all classes (the generalist; a domain specialist gets its domain's images from the caller).

    Raises:
        `CSLError`: no training image for this teacher.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    mask = None
    if class_subset is not None:
        classes = torch.as_tensor(list(class_subset), dtype=torch.long)
        keep = torch.isin(labels, classes)
        pixel_values, labels = pixel_values[keep], labels[keep]
        mask = torch.zeros(model.config.num_labels, dtype=torch.bool)
        mask[classes] = True
    if len(labels) == 0:
        raise CSLError(f"a teacher has no training images (classes {list(class_subset) if class_subset is not None else 'all'}); "
                       "enlarge the teacher split or use fewer specialists")

    def forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = m(pixel_values=x).logits
        return logits if mask is None else logits.masked_fill(~mask, float("-inf"))

    return fit_fixed_steps(model, pixel_values, labels, steps, batch_size, lr, seed, weight_decay, forward, progress)


@dataclass
class TeacherSplit:
    """The teacher split, decoded once and preprocessed at decode time (never held at full resolution).

    Attributes:
        pixel_values: float32 ``[N, 3, h, w]``; labels: ``int64 [N]``; domains: ``int64 [N]`` or ``None``.
        class_names, domain_names: the label and domain spaces; skipped: bad images skipped.
    """

    pixel_values: torch.Tensor
    labels: torch.Tensor
    domains: torch.Tensor | None
    class_names: list[str]
    domain_names: list[str] | None
    skipped: int = 0


def load_teacher_split(dataset: datasets.Dataset, preprocessing: Preprocessing, on_bad_image: str = "skip",
                       batch_size: int = 256) -> TeacherSplit:
    """Decode a map-style split batch by batch into the teachers' inputs.

    Each image is resized to the teachers' size as soon as it is decoded (`csl_hf.data.images.preprocess_images`),
    so memory grows with the number of images, not their resolution. Bad images are skipped and counted
    (``on_bad_image="skip"``) or stop the run (``"fail"``).

    Raises:
        `CSLError` (one line): a stream, an empty split, missing columns, a bad image with ``on_bad_image="fail"``,
        or no usable image at all.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise CSLError("teacher training needs a map-style datasets.Dataset (materialise or cap a streaming one)")
    if len(dataset) == 0:
        raise CSLError("the teacher split is empty; give the teachers some labelled images")
    try:
        image_col, label_col, domain_col = infer_columns(dataset)
        names = class_names(dataset, label_col)
    except ValueError as e:
        raise CSLError(str(e)) from None
    dataset = raw_images(dataset, image_col)
    pixels, kept_rows, skipped = [], [], 0
    for start in range(0, len(dataset), batch_size):
        values = dataset[start : start + batch_size][image_col]
        try:
            decoded = preprocess_images(values, [preprocessing], skip_bad=on_bad_image == "skip")
        except ValueError as err:
            raise CSLError(f"{err} (in the teacher split); remove or fix the file, or pass --on_bad_image skip") from None
        skipped += len(decoded.errors)
        if decoded.errors:
            logger.warning(f"teacher split: skipped {len(decoded.errors)} bad image(s), e.g. {decoded.errors[0]}")
        if decoded.kept:
            pixels.append(decoded.pixel_values[preprocessing])
            kept_rows.extend(start + i for i in decoded.kept)
    if not kept_rows:
        raise CSLError("every image of the teacher split is unreadable; check the data")
    labels = torch.as_tensor(dataset[label_col], dtype=torch.long)[kept_rows]
    domains, domain_names = None, None
    if domain_col is not None:
        feature, raw = dataset.features[domain_col], dataset[domain_col]
        if isinstance(feature, datasets.ClassLabel):
            domain_names = list(feature.names)
            domains = torch.as_tensor(raw, dtype=torch.long)
        else:
            domain_names = sorted({str(v) for v in raw})
            domains = torch.as_tensor([domain_names.index(str(v)) for v in raw], dtype=torch.long)
        domains = domains[kept_rows]
    return TeacherSplit(torch.cat(pixels), labels, domains, names, domain_names, skipped)


def train_teacher_hierarchy(
    teacher_split: datasets.Dataset,
    args: TeacherTrainingArguments,
    domain_level: bool | None = None,
    specialties: Sequence[dict] | None = None,
    levels: Sequence[Sequence[int]] | None = None,
    on_bad_image: str = "skip",
) -> TeacherMixture:
    """Train a generalist and its specialists on ``teacher_split`` and gather them into a `TeacherMixture`.

    Hierarchy: explicit ``specialties`` + ``levels`` (see `csl_hf.hierarchy`), else a domain hierarchy
    (``domain_level=True``, or ``args.teacher_domain_level`` when ``domain_level`` is ``None``; needs a ``domain``
    column: the generalist plus one specialist per domain), else levels of ``args.teachers_per_level`` class groups:
    with ``args.specialties="auto"`` the generalist is trained first and the classes it confuses on the teacher split
    share a specialist (`csl_hf.specialties.hierarchy_from_confusion`); with ``"blocks"``, contiguous class-id
    blocks (the paper's layout). Every teacher trains for ``args.teacher_steps`` steps; teacher ``k`` is seeded with
    ``args.teacher_seed + k``. The mixture's config records ``training_data["skipped_images"]`` and how the
    specialties were chosen.

    With ``args.specialty_gates``, every class specialist also gets a gate teacher (`csl_hf.teachers.gates`: one
    extra "out of specialty" output, trained after all the teachers, seeds ``teacher_seed + K + g``), held by the
    mixture as ``gate_teachers``; the teachers themselves are exactly those trained without it.

    Raises:
        `CSLError` (one line): fewer than 2 classes, a domain hierarchy without domains, a specialty without images,
        ``specialty_gates`` on a hierarchy without class specialists.
    """
    domain_level = args.teacher_domain_level if domain_level is None else domain_level
    preprocessing = teacher_preprocessing(args)
    split = load_teacher_split(teacher_split, preprocessing, on_bad_image=on_bad_image)
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
            teacher_names = specialty_names(specialties, num_labels)
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
        teachers, specialties, levels, teacher_names=specialty_names(specialties, num_labels),
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
