"""Train the weak teacher hierarchy (DESIGN §1, §5).

A hierarchy is one *generalist* over all classes (level 0) plus levels of *specialists*, each trained on its own
class block (or domain) of the teacher split with **the same step budget** as the generalist. Teachers are tiny
ConvNeXt or ViT image classifiers from transformers (random init, a few thousand parameters): weak on purpose, so that
the strong student has a capability gap to recover (weak-to-strong generalisation).

    from csl_hf.data import load_csl_dataset, make_weak_to_strong_splits
    from csl_hf.teachers import TeacherTrainingArguments, train_teacher_hierarchy, evaluate_teachers

    splits = make_weak_to_strong_splits(load_csl_dataset("animal_mnist"), seed=0, teacher_size=1000, test_size=2000)
    mixture = train_teacher_hierarchy(splits["teacher"], TeacherTrainingArguments())
    print(evaluate_teachers(mixture, splits["test"]))      # accuracy of each teacher inside its specialty
    mixture.save_pretrained("out/teachers")                # reload: import csl_hf; AutoModel.from_pretrained(...)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import torch
import torch.nn.functional as F
from transformers import (
    ConvNextConfig,
    ConvNextForImageClassification,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
)
from transformers.utils import logging as hf_logging

from .configuration_teacher_mixture import class_hierarchy
from .data import class_names, decode_image, infer_columns
from .errors import CSLError
from .modeling_teacher_mixture import TeacherMixture
from .preprocessing import Preprocessing, pil_to_uint8, stack_or_list

__all__ = [
    "TeacherTrainingArguments",
    "parse_teachers_per_level",
    "teacher_preprocessing",
    "build_teacher",
    "train_teacher",
    "train_teacher_hierarchy",
    "evaluate_teachers",
    "evaluate_teachers_detailed",
    "load_split_images",
]

logger = hf_logging.get_logger(__name__)

ARCHITECTURES = ("convnext", "vit")


@dataclass
class TeacherTrainingArguments:
    """How to build and train the weak teachers. Every field is a command-line flag under `HfArgumentParser`.

    The defaults make *weak* teachers with a wide capability gap on the bundled 28x28 sets (1,000 teacher images):
    on Animal-MNIST (10 classes) a ConvNeXt generalist at 50-61% test accuracy (3 seeds), level-1 specialists 13-23
    points better than it inside their 5-class blocks, last-level (2-class) specialists 33-44 points better; the
    whole 1,2,4,5 hierarchy trains in ~7 s on one CPU core.
    """

    teacher_architecture: str = field(
        default="convnext",
        metadata={"help": "Teacher model family: 'convnext' (ConvNextForImageClassification) or 'vit' "
                  "(ViTForImageClassification). Both are built from a config with random weights. "
                  "The tiny ViT learns far slower from 1,000 28-px images (Animal-MNIST generalist 0.25 at 100 steps, "
                  "0.33 at 300): ConvNeXt gives the useful 50-60%% generalist.",
                  "choices": list(ARCHITECTURES)},
    )
    teacher_image_size: int = field(
        default=28, metadata={"help": "Side in pixels of the square images the teachers see (images are resized)."}
    )
    teacher_patch_size: int = field(
        default=4,
        metadata={"help": "Patch size: the ConvNeXt stem's stride/kernel or the ViT patch size. Must divide "
                  "teacher_image_size for ViT."},
    )
    teacher_hidden_sizes: str = field(
        default="16,32",
        metadata={"help": "ConvNeXt: comma-separated channel width of each stage, e.g. '16,32' (one stage per entry)."},
    )
    teacher_depths: str = field(
        default="1,1",
        metadata={"help": "ConvNeXt: comma-separated number of blocks per stage, as many entries as "
                  "teacher_hidden_sizes."},
    )
    teacher_hidden_size: int = field(default=32, metadata={"help": "ViT: hidden size (the MLP is 2x wider)."})
    teacher_num_layers: int = field(default=2, metadata={"help": "ViT: number of transformer layers."})
    teacher_num_heads: int = field(default=2, metadata={"help": "ViT: attention heads; must divide teacher_hidden_size."})
    teacher_steps: int = field(
        default=100,
        metadata={"help": "Optimiser steps of EVERY teacher (generalist and specialists get the same budget). "
                  "50-300 steps on ~1,000 images make weak teachers; fewer steps, weaker teachers."},
    )
    teacher_batch_size: int = field(
        default=32, metadata={"help": "Images per step, sampled with replacement from the teacher's own data."}
    )
    teacher_learning_rate: float = field(
        default=3e-3,
        metadata={"help": "AdamW learning rate (constant). 3e-3 with 100 steps gives a ~50-60%% generalist on Animal-MNIST "
                  "and specialists 15-45 points better inside their blocks."},
    )
    teacher_weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    teachers_per_level: str = field(
        default="1,2,4,5",
        metadata={"help": "Class specialists per level, comma-separated; the first level must be 1 (the generalist) "
                  "and no level may exceed the number of classes. Each level splits the classes into contiguous "
                  "blocks of near-equal size. '1,2,4,5' suits 10 classes; 'auto' doubles 1,2,4,... up to half the "
                  "classes (blocks of at least 2)."},
    )
    teacher_domain_level: bool = field(
        default=False,
        metadata={"help": "Build a domain hierarchy instead: the generalist plus one specialist per value of the "
                  "dataset's 'domain' column (e.g. digits_domains)."},
    )
    teacher_seed: int = field(
        default=0, metadata={"help": "Seed of the teachers' initialisation and batch sampling (teacher k uses seed+k)."}
    )

    def __post_init__(self):
        if self.teacher_architecture not in ARCHITECTURES:
            raise CSLError(f"teacher_architecture={self.teacher_architecture!r} is unknown; use one of {', '.join(ARCHITECTURES)}")
        for name in ("teacher_image_size", "teacher_patch_size", "teacher_steps", "teacher_batch_size",
                     "teacher_hidden_size", "teacher_num_layers", "teacher_num_heads"):
            if int(getattr(self, name)) < 1:
                raise CSLError(f"{name}={getattr(self, name)} must be at least 1")
        if not self.teacher_learning_rate > 0:
            raise CSLError(f"teacher_learning_rate={self.teacher_learning_rate} must be positive")
        if isinstance(self.teachers_per_level, (list, tuple)):
            self.teachers_per_level = ",".join(str(n) for n in self.teachers_per_level)

    # ------------------------------------------------------------------------------------------------ helpers
    def convnext_stages(self) -> tuple[list[int], list[int]]:
        """``(hidden_sizes, depths)`` parsed from the comma-separated flags."""
        hidden = _int_list(self.teacher_hidden_sizes, "teacher_hidden_sizes")
        depths = _int_list(self.teacher_depths, "teacher_depths")
        if len(hidden) != len(depths):
            raise CSLError(f"teacher_hidden_sizes has {len(hidden)} stages but teacher_depths has {len(depths)}; give one depth per stage")
        return hidden, depths


def _int_list(spec: str | Sequence[int], name: str) -> list[int]:
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


def parse_teachers_per_level(spec: str | Sequence[int], num_labels: int) -> list[int]:
    """``"1,2,4,5"`` -> ``[1, 2, 4, 5]``, validated against ``num_labels``; ``"auto"`` -> 1, 2, 4, ... doubling up to
    ``num_labels // 2`` (ending on ``num_labels // 2``: blocks of two or three classes)."""
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        levels, n = [1], 2
        while n <= num_labels // 2:
            levels.append(n)
            n *= 2
        if num_labels // 2 > levels[-1]:
            levels.append(num_labels // 2)
        return levels
    levels = _int_list(spec, "teachers_per_level")
    if levels[0] != 1:
        raise CSLError(f"teachers_per_level={spec!r} must start with 1 (level 0 is one generalist), e.g. '1,2,4'")
    too_many = [n for n in levels if n > num_labels]
    if too_many:
        raise CSLError(f"teachers_per_level={spec!r} asks for {too_many[0]} specialists but there are only {num_labels} "
                       f"classes; use at most {num_labels} per level (or 'auto')")
    return levels


def teacher_preprocessing(args: TeacherTrainingArguments) -> Preprocessing:
    """The teachers' input pipeline: resize to ``teacher_image_size``, scale to [0, 1], normalise to [-1, 1]."""
    s = int(args.teacher_image_size)
    return Preprocessing(size=(s, s), image_mean=(0.5,) * 3, image_std=(0.5,) * 3)


# ---------------------------------------------------------------------------------------------------- models
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


def train_teacher(
    model: PreTrainedModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    class_subset: Sequence[int] | None = None,
    preprocessing: Preprocessing | None = None,
    weight_decay: float = 0.0,
    progress=None,
) -> PreTrainedModel:
    """Train one teacher for exactly ``steps`` AdamW steps on batches sampled with replacement (seeded).

    A plain PyTorch loop on purpose: a hierarchy is a dozen tiny models trained for ~100 steps each on a few hundred
    in-memory images; `Trainer`'s per-run setup (dataloaders, callbacks, accelerate state, logging) would cost more
    than the training itself, and nothing here needs its distributed machinery.

    Args:
        model: an image classifier over the global label space (modified in place and returned in eval mode).
        images: ``uint8 [N, 3, H, W]`` (then ``preprocessing`` is applied once, up front) or already preprocessed
            float pixel values (``preprocessing=None``).
        labels: ``int64 [N]`` global class ids.
        class_subset: a class specialist's classes: only their images are used and the logits are masked to them
            (``-inf`` elsewhere), so the masked softmax the mixture serves is exactly what was trained. ``None``:
            all images, all classes (the generalist; a domain specialist gets its domain's images from the caller).
        progress: an optional tqdm bar, advanced by one per step.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    mask = None
    if class_subset is not None:
        classes = torch.as_tensor(list(class_subset), dtype=torch.long)
        keep = torch.isin(labels, classes)
        images, labels = images[keep], labels[keep]
        mask = torch.zeros(model.config.num_labels, dtype=torch.bool)
        mask[classes] = True
    if len(labels) == 0:
        raise CSLError(f"a teacher has no training images (classes {list(class_subset) if class_subset is not None else 'all'}); "
                       "enlarge the teacher split or use fewer specialists")
    pixel_values = preprocessing(images) if preprocessing is not None else images.float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(int(seed))
    model.train()
    for _ in range(int(steps)):
        idx = torch.randint(len(labels), (int(batch_size),), generator=generator)
        logits = model(pixel_values=pixel_values[idx]).logits
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        loss = F.cross_entropy(logits, labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return model.eval()


# ---------------------------------------------------------------------------------------------------- data
def load_split_images(dataset: datasets.Dataset) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor, torch.Tensor | None, list[str], list[str] | None]:
    """Decode every image of a map-style split once.

    Returns ``(images, labels, domains, class_names, domain_names)``: ``images`` uint8 RGB ``[N, 3, H, W]`` (a list
    when sizes differ), ``labels`` int64 ``[N]``, ``domains`` int64 ``[N]`` or ``None`` without a domain column.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise CSLError("teacher training needs a map-style datasets.Dataset (materialise or cap a streaming one)")
    if len(dataset) == 0:
        raise CSLError("the split is empty; give the teachers some labelled images")
    try:
        image_col, label_col, domain_col = infer_columns(dataset)
        names = class_names(dataset, label_col)
    except ValueError as e:
        raise CSLError(str(e)) from None
    if isinstance(dataset.features[image_col], datasets.Image):
        dataset = dataset.cast_column(image_col, datasets.Image(decode=False))
    images = []
    for value in dataset[image_col]:
        try:
            images.append(pil_to_uint8(decode_image(value)))
        except ValueError as e:
            raise CSLError(str(e)) from None
    labels = torch.as_tensor(dataset[label_col], dtype=torch.long)
    domains, domain_names = None, None
    if domain_col is not None:
        feature = dataset.features[domain_col]
        raw = dataset[domain_col]
        if isinstance(feature, datasets.ClassLabel):
            domain_names = list(feature.names)
            domains = torch.as_tensor(raw, dtype=torch.long)
        else:
            domain_names = sorted({str(v) for v in raw})
            domains = torch.as_tensor([domain_names.index(str(v)) for v in raw], dtype=torch.long)
    return stack_or_list(images), labels, domains, names, domain_names


def _classes_name(classes: Sequence[int]) -> str:
    classes = list(classes)
    if len(classes) == 1:
        return f"class {classes[0]}"
    if classes == list(range(classes[0], classes[-1] + 1)):
        return f"classes {classes[0]}-{classes[-1]}"
    return "classes " + ",".join(str(c) for c in classes)


# ---------------------------------------------------------------------------------------------------- hierarchy
def train_teacher_hierarchy(
    teacher_split: datasets.Dataset, args: TeacherTrainingArguments, domain_level: bool | None = None
) -> TeacherMixture:
    """Train a generalist and its specialists on ``teacher_split`` and gather them into a `TeacherMixture`.

    Class hierarchy (default): levels of ``teachers_per_level`` contiguous class blocks (`class_hierarchy`).
    Domain hierarchy (``domain_level=True``, or ``args.teacher_domain_level`` when ``domain_level`` is ``None``;
    needs a ``domain`` column): the generalist plus one specialist per domain, ``levels [[0], [1..D]]``.
    Every teacher trains for ``args.teacher_steps`` steps; teacher ``k`` is seeded with ``args.teacher_seed + k``.
    """
    domain_level = args.teacher_domain_level if domain_level is None else domain_level
    images, labels, domains, names, domain_names = load_split_images(teacher_split)
    num_labels = len(names)
    if num_labels < 2:
        raise CSLError(f"the teacher split has {num_labels} class(es); classification needs at least 2")
    if domain_level:
        if domains is None:
            raise CSLError("domain_level=True needs a 'domain' column in the dataset; drop --teacher_domain_level for a class hierarchy")
        specialties = [{"classes": list(range(num_labels))}] + [{"domain": d} for d in domain_names]
        levels = [[0], list(range(1, len(domain_names) + 1))]
        teacher_names = ["generalist"] + [f"domain {d}" for d in domain_names]
    else:
        per_level = parse_teachers_per_level(args.teachers_per_level, num_labels)
        specialties, levels = class_hierarchy(num_labels, per_level)
        teacher_names = ["generalist"] + [_classes_name(s["classes"]) for s in specialties[1:]]

    preprocessing = teacher_preprocessing(args)
    pixel_values = preprocessing(images)  # decoded and preprocessed once, shared by all teachers
    id2label = dict(enumerate(names))
    teachers = []
    # Tiny models: intra-op threads cost more in synchronisation than they gain (10x slower on a busy 2-core
    # machine), so train on one thread and restore the caller's setting afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bar = hf_logging.tqdm(total=len(specialties) * int(args.teacher_steps), desc="training teachers", unit="step")
    try:
        for k, spec in enumerate(specialties):
            bar.set_description(f"teacher {k + 1}/{len(specialties)} ({teacher_names[k]})")
            x, y, class_subset = pixel_values, labels, None
            if "domain" in spec:
                keep = domains == domain_names.index(spec["domain"])
                x, y = pixel_values[keep], labels[keep]
                if not len(y):
                    raise CSLError(f"domain {spec['domain']!r} has no images in the teacher split; enlarge the split")
            elif k > 0:
                class_subset = spec["classes"]
            model = build_teacher(args, num_labels, id2label, seed=args.teacher_seed + k)
            train_teacher(model, x, y, steps=args.teacher_steps, batch_size=args.teacher_batch_size,
                          lr=args.teacher_learning_rate, seed=args.teacher_seed + k, class_subset=class_subset,
                          weight_decay=args.teacher_weight_decay, progress=bar)
            teachers.append(model)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    return TeacherMixture.from_teachers(
        teachers, specialties, levels, teacher_names=teacher_names, preprocessing=[preprocessing] * len(teachers),
        domain_names=domain_names if domain_level else None,
    )


# ---------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _mixture_probs(mixture: TeacherMixture, images, batch_size: int) -> torch.Tensor:
    """``[N, K, C]`` probabilities of every teacher, each fed its own preprocessing (computed once per distinct one)."""
    preps = mixture.preprocessings()
    n = len(images)
    out = []
    mixture.eval()
    for start in range(0, n, batch_size):
        chunk = images[start:start + batch_size]
        cache: dict = {}
        per_teacher = []
        for p in preps:
            key = None if p is None else repr(p.to_dict())
            if key not in cache:
                cache[key] = p(chunk) if p is not None else torch.stack(list(chunk)).float()
            per_teacher.append(cache[key])
        out.append(mixture(pixel_values_per_teacher=per_teacher).probs)
    return torch.cat(out)


def evaluate_teachers_detailed(mixture: TeacherMixture, dataset: datasets.Dataset, batch_size: int = 256) -> list[dict]:
    """Per teacher: ``{"name", "specialty", "num_samples", "accuracy", "generalist_accuracy"}``.

    ``accuracy`` is the teacher's accuracy on the samples of its specialty (its classes, its domain, everything for the
    generalist); ``generalist_accuracy`` is the level-0 generalist's accuracy on those same samples (the capability gap
    co-supervision exploits). ``None`` where a specialty has no samples in ``dataset``.
    """
    images, labels, domains, names, domain_names = load_split_images(dataset)
    if len(names) != mixture.config.num_labels:
        raise CSLError(f"the dataset has {len(names)} classes but the teachers have {mixture.config.num_labels}")
    probs = _mixture_probs(mixture, images, batch_size)
    preds = probs.argmax(-1)  # [N, K]
    generalist = mixture.config.levels[0][0]
    results = []
    for k, spec in enumerate(mixture.config.specialties):
        if "domain" in spec:
            if domains is None or spec["domain"] not in domain_names:
                raise CSLError(f"teacher {k} specialises in domain {spec['domain']!r}, which the dataset lacks (domains: {domain_names})")
            keep = domains == domain_names.index(spec["domain"])
        else:
            keep = torch.isin(labels, torch.as_tensor(spec["classes"], dtype=torch.long))
        n = int(keep.sum())
        acc = float((preds[keep, k] == labels[keep]).float().mean()) if n else None
        gen = float((preds[keep, generalist] == labels[keep]).float().mean()) if n else None
        results.append({"name": mixture.config.teacher_names[k], "specialty": dict(spec), "num_samples": n,
                        "accuracy": acc, "generalist_accuracy": gen})
    return results


def evaluate_teachers(mixture: TeacherMixture, dataset: datasets.Dataset, batch_size: int = 256) -> list[float]:
    """Accuracy of each teacher on the samples of its specialty (``nan`` where the specialty has no samples)."""
    return [float("nan") if r["accuracy"] is None else r["accuracy"]
            for r in evaluate_teachers_detailed(mixture, dataset, batch_size)]
