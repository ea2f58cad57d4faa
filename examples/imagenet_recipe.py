#!/usr/bin/env python
"""The CSL paper's ImageNet recipe (Liu & Alahi 2024), end to end.

    weak backbone (frozen)  --15 linear heads: 1 generalist + 2/4/8 class-block specialists-->  TeacherMixture
    one labeling pass        --all 15 heads on ONE backbone pass + the student's features-->      CSL cache
    CoSupervisedTrainer      --hard labels and soft labels, 4 rounds each-->                      csl_report.json

* student: DINOv2 ViT-S/14 (``facebook/dinov2-small``) as an ``AutoModelForImageClassification`` with a fresh
  1000-class head; in probe mode only that head is trained, on the cached features (the paper's linear probe);
* teachers: levels of 1, 2, 4, 8 specialists over contiguous 1000/500/250/125-class blocks, linear heads on one
  shared frozen weak backbone (the paper used AlexNet; default here ``google/mobilenet_v2_1.0_224``, any ``AutoModel``
  via ``--teacher_backbone``), every head trained with the same step budget on ``--teacher_train_size`` images;
* rounds: the paper's hyperparameters (Adam lr 1e-4, weight decay 0, batch 100, cosine per step, E = 20, ``top3``,
  fresh head per level); hard and soft labels on the same cache;
* bf16 autocast for the labeling pass on GPU; runs under ``python`` and ``accelerate launch`` (the labeling pass is
  sharded over processes, the rounds use DDP).

Settings come from dataclass flags (``--help``), optionally from a YAML file given as the FIRST argument (flags after
it override it):

    python examples/imagenet_recipe.py examples/configs/imagenet_recipe.yaml --output_dir runs/imagenet
    accelerate launch --config_file examples/configs/accelerate/multi_gpu_ddp.yaml examples/imagenet_recipe.py \\
        examples/configs/imagenet_recipe.yaml --output_dir runs/imagenet
    python examples/imagenet_recipe.py --tiny --output_dir /tmp/csl_tiny     # offline CPU stand-in (~1 min)

``--tiny`` swaps in a tiny random ConvNeXt backbone and a tiny random ViT student built from configs and the bundled
Animal-MNIST (10 classes, levels 1,2,5): every stage of the recipe runs offline on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging as pylogging
import os
import sys
import time
from dataclasses import dataclass, field

try:  # a checkout run before the package is installed gets one line, not a traceback
    import csl_hf  # noqa: F401
except ModuleNotFoundError as err:
    print(f"error: {err}; install the package first, from the repository root: pip install -e . (see README.md)",
          file=sys.stderr)
    sys.exit(2)

import torch
from transformers import HfArgumentParser
from transformers.utils import logging

from csl_hf import (
    CoSupervisedConfig,
    CoSupervisedTrainer,
    CSLError,
    Preprocessing,
    TeacherMixture,
    build_cache,
    cache_teacher_accuracies,
    load_backbone,
    class_hierarchy,
    load_student,
    train_backbone_heads,
)
from csl_hf.errors import run_command
from csl_hf.hierarchy import parse_teachers_per_level
from csl_hf.models.tiny import tiny_backbone, tiny_student
from csl_hf.report import REPORT_NAME, format_report_table

logger = logging.get_logger("csl_hf.imagenet_recipe")

# The paper's reference PGR (%) by number of teachers 1, 2, 4, 8 (AlexNet -> DINOv2 ViT-S/14, ImageNet).
PAPER_PGR = {"hard": [49.7, 63.8, 67.0, 69.4], "soft": [56.8, 69.0, 73.4, 75.5]}

# The paper's round hyperparameters (docs/algorithm.md); YAML and command-line flags override them.
RECIPE_DEFAULTS = dict(
    output_dir="csl_imagenet", learning_rate=1e-4, weight_decay=0.0, per_device_train_batch_size=100,
    lr_scheduler_type="cosine", num_train_epochs=20.0, denoise="top3", max_grad_norm=0.0, warmup_steps=0,
    reinit_head_each_round=True, scale_epochs_by_keep_rate=True, assignment="auto", labeling_batch_size=256,
)

# --tiny: offline stand-ins (applied as defaults too, so explicit flags still win). The models are RANDOM: the tiny
# run checks the pipeline, its accuracies and PGR mean nothing (lr 1e-2 lets the random ViT's probe beat the teacher).
TINY_DEFAULTS = dict(
    dataset_name="animal_mnist", teacher_split="train", w2s_split="train", teachers_per_level="1,2,5",
    teacher_train_size=1000, w2s_train_size=2000, test_size=1000, teacher_steps=30, teacher_learning_rate=3e-3,
    teacher_batch_size=64, labeling_batch_size=256, feature_batch_size=256, learning_rate=1e-2,
    student_model_name_or_path="tiny-vit (random, from config)", teacher_backbone="tiny-convnext (random, from config)",
)


@dataclass
class RecipeDataArguments:
    """Where the images come from. The teacher split trains the heads; the weak-to-strong split is cut into the
    student's training images (labelled by the teachers) and the test images."""

    dataset_name: str = field(
        default="imagenet-1k",
        metadata={"help": "A Hub dataset id loaded with datasets.load_dataset (imagenet-1k is gated: log in or set "
                  "HF_TOKEN and accept its terms), a dataset in the local datasets cache, a local image folder "
                  "(path/<class>/<image>), or a bundled set (animal_mnist)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name, if any."})
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream the splits (datasets IterableDataset) instead of downloading them first; the "
                  "labeling pass then shards the stream over processes with split_dataset_by_node."},
    )
    teacher_split: str = field(default="train", metadata={"help": "Split whose labels train the teacher heads."})
    w2s_split: str = field(
        default="validation",
        metadata={"help": "Split cut into the weak-to-strong training images and the test images (the reference code "
                  "uses ImageNet validation: half to train the student, half to test). If it equals "
                  "--teacher_split, it is taken after the teacher images, so the parts stay disjoint."},
    )
    teacher_train_size: int = field(
        default=10000,
        metadata={"help": "Labelled images that train the teacher heads (fewer images: weaker teachers)."},
    )
    w2s_train_size: int = field(
        default=25000, metadata={"help": "Weak-to-strong training images (labelled by the teachers only)."}
    )
    test_size: int = field(default=25000, metadata={"help": "Test images (evaluation only)."})
    shuffle_buffer_size: int = field(
        default=10000, metadata={"help": "With --streaming: the shuffle buffer of each stream (seeded by --seed)."}
    )
    feature_batch_size: int = field(
        default=256, metadata={"help": "Images per batch when extracting the teacher backbone's features."}
    )


@dataclass
class RecipeModelArguments:
    """The student, the weak backbone and its heads."""

    student_model_name_or_path: str = field(
        default="facebook/dinov2-small",
        metadata={"help": "The strong student: any AutoModelForImageClassification checkpoint; it gets a fresh head "
                  "over the dataset's classes (the paper: DINOv2 ViT-S/14)."},
    )
    teacher_backbone: str = field(
        default="google/mobilenet_v2_1.0_224",
        metadata={"help": "The shared frozen weak backbone (any AutoModel with pooled or spatial outputs; the paper "
                  "used AlexNet). Its pooled features feed every teacher head."},
    )
    teachers_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Reuse a saved TeacherMixture (e.g. OUTPUT_DIR/teachers of an earlier run) instead of "
                  "training the heads."},
    )
    teachers_per_level: str = field(
        default="1,2,4,8",
        metadata={"help": "Class-block specialists per level, comma-separated, first 1 (the generalist); on 1000 "
                  "classes 1,2,4,8 gives the paper's 1000/500/250/125-class blocks."},
    )
    teacher_steps: int = field(
        default=1000, metadata={"help": "Adam steps of EVERY head (generalist and specialists: the same budget)."}
    )
    teacher_learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of the teacher heads."})
    teacher_batch_size: int = field(default=256, metadata={"help": "Feature rows per teacher-head step."})
    teacher_weight_decay: float = field(default=0.0, metadata={"help": "Weight decay of the teacher heads."})
    label_types: str = field(
        default="hard,soft",
        metadata={"help": "Which rounds to run on the one cache: 'hard,soft' (both, as in the paper), 'hard' or "
                  "'soft'. The first goes to OUTPUT_DIR, the second to OUTPUT_DIR/<type>_labels."},
    )
    bf16_labeling: bool = field(
        default=True,
        metadata={"help": "On GPU, run the backbone feature extraction and the labeling pass under bf16 autocast "
                  "(ignored on CPU). The rounds train a linear probe; pass --bf16 to run them in bf16 as well."},
    )
    tiny: bool = field(
        default=False,
        metadata={"help": "Offline CPU stand-in: a tiny random ConvNeXt backbone and a tiny random ViT student built "
                  "from configs, bundled Animal-MNIST (10 classes) and levels 1,2,5. Other flags still override."},
    )
    tiny_image_size: int = field(default=28, metadata={"help": "With --tiny: image side of the backbone and the student."})


# ------------------------------------------------------------------------------------------------------ parsing
def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        (RecipeDataArguments, RecipeModelArguments, CoSupervisedConfig),
        description=__doc__.split("\n\n")[0],
        epilog="An optional YAML file as the first argument sets any of these flags (keys = flag names without --); "
               "flags after it override it. Example: examples/configs/imagenet_recipe.yaml",
    )
    parser.set_defaults(**RECIPE_DEFAULTS)
    return parser


def parse_args(argv: list[str] | None = None):
    """``(data, model, args)``: recipe defaults < YAML file (first argument) < ``--tiny`` defaults < flags."""
    import yaml

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    known = {f.name for dtype in parser.dataclass_types for f in dataclasses.fields(dtype)}
    from_yaml: dict = {}
    if argv and argv[0].endswith((".yaml", ".yml")):
        with open(argv.pop(0), encoding="utf-8") as f:
            from_yaml = yaml.safe_load(f) or {}
        unknown = sorted(set(from_yaml) - known)
        if unknown:
            raise CSLError(f"the recipe YAML has unknown keys {unknown}; use flag names (see --help)")
        parser.set_defaults(**from_yaml)
    wants_tiny = from_yaml.get("tiny", False) or any(a in ("--tiny", "--tiny=True", "--tiny=true") for a in argv)
    if "--tiny" in argv:
        i = argv.index("--tiny")
        if i + 1 < len(argv) and argv[i + 1].lower() in ("false", "0", "no"):
            wants_tiny = False
    if wants_tiny:
        parser.set_defaults(**TINY_DEFAULTS)
    data, model, args = parser.parse_args_into_dataclasses(args=argv)
    return data, model, args


# ------------------------------------------------------------------------------------------------------ data
def _take(dataset, start: int, n: int):
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        return dataset.skip(start).take(n) if start else dataset.take(n)
    if start + n > len(dataset):
        raise CSLError(f"asked for images {start}..{start + n} of a split of {len(dataset)}; lower --teacher_train_size, "
                       "--w2s_train_size or --test_size")
    return dataset.select(range(start, start + n))


def load_splits(data: RecipeDataArguments, model: RecipeModelArguments, seed: int):
    """``({"teacher", "train", "test"}, image_col, label_col, class_names)``."""
    import datasets

    from csl_hf.data import class_names, infer_columns, load_csl_dataset, make_weak_to_strong_splits

    if model.tiny or data.dataset_name in ("animal_mnist", "digits_domains"):
        full = load_csl_dataset(data.dataset_name)
        image_col, label_col, _ = infer_columns(full)
        names = class_names(full, label_col)
        splits = make_weak_to_strong_splits(full, seed=seed, teacher_size=data.teacher_train_size,
                                            test_size=data.test_size, train_size=data.w2s_train_size,
                                            stratify_by=label_col)
        if data.streaming:
            splits = {k: v.to_iterable_dataset() for k, v in splits.items()}
        return splits, image_col, label_col, names

    kwargs = {"name": data.dataset_config_name} if data.dataset_config_name else {}

    def load(split):
        try:
            ds = load_csl_dataset(data.dataset_name, streaming=data.streaming, split=split, **kwargs)
        except ValueError as err:
            raise CSLError(f"--dataset_name {data.dataset_name} split {split}: {err}") from None
        if isinstance(ds, datasets.IterableDataset):
            return ds.shuffle(seed=seed, buffer_size=data.shuffle_buffer_size)
        if isinstance(ds, datasets.Dataset):
            return ds.shuffle(seed=seed)
        raise CSLError(f"--dataset_name {data.dataset_name}: split {split!r} did not give one dataset")

    teacher_source = load(data.teacher_split)
    w2s_source = teacher_source if data.w2s_split == data.teacher_split else load(data.w2s_split)
    start = data.teacher_train_size if data.w2s_split == data.teacher_split else 0
    try:
        image_col, label_col, _ = infer_columns(teacher_source)
        names = class_names(teacher_source, label_col)
    except ValueError as err:
        raise CSLError(f"--dataset_name {data.dataset_name}: {err}") from None
    splits = {
        "teacher": _take(teacher_source, 0, data.teacher_train_size),
        "train": _take(w2s_source, start, data.w2s_train_size),
        "test": _take(w2s_source, start + data.w2s_train_size, data.test_size),
    }
    return splits, image_col, label_col, names


# ------------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict:
    from accelerate import PartialState

    try:
        data, model, args = parse_args(argv)
    except ValueError as err:
        if isinstance(err, CSLError):
            raise
        raise CSLError(f"{str(err).strip().splitlines()[0]}; see python examples/imagenet_recipe.py --help") from None
    pylogging.basicConfig(format="%(message)s", level=pylogging.INFO)
    logging.set_verbosity_info() if args.should_log else logging.set_verbosity_warning()
    logging.get_logger("transformers").setLevel(pylogging.WARNING)
    label_types = [t.strip() for t in model.label_types.split(",") if t.strip()]
    if not label_types or any(t not in ("hard", "soft") for t in label_types) or len(set(label_types)) != len(label_types):
        raise CSLError(f"--label_types {model.label_types!r}: use 'hard,soft', 'soft,hard', 'hard' or 'soft'")

    # The TrainingArguments set up the process group first (with --use_cpu True under a CPU launch: without it,
    # accelerate's PartialState sees no GPU backend and every process would think it runs alone).
    _ = args.device
    state = PartialState()
    device = state.device
    dtype = torch.bfloat16 if (model.bf16_labeling and device.type == "cuda") else None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    splits, image_col, label_col, names = load_splits(data, model, args.seed)
    id2label = dict(enumerate(names))
    timings["load_data_s"] = time.perf_counter() - t0

    # ---- teachers: linear heads on one shared frozen backbone
    t0 = time.perf_counter()
    teachers_dir = os.path.join(args.output_dir, "teachers")
    if model.teachers_name_or_path:
        teachers = TeacherMixture.from_pretrained(model.teachers_name_or_path)
    else:
        if state.is_main_process:
            backbone, backbone_prep = (tiny_backbone(model.tiny_image_size) if model.tiny
                                       else load_backbone(model.teacher_backbone))
            per_level = parse_teachers_per_level(model.teachers_per_level, len(names))
            specialties, levels = class_hierarchy(len(names), per_level)
            teachers = train_backbone_heads(
                backbone, splits["teacher"], specialties, levels, steps=model.teacher_steps,
                lr=model.teacher_learning_rate, batch_size=model.teacher_batch_size, id2label=id2label,
                preprocessing=backbone_prep, seed=args.seed, weight_decay=model.teacher_weight_decay,
                feature_batch_size=data.feature_batch_size, image_col=image_col, label_col=label_col,
                device=device, dtype=dtype)
            teachers.save_pretrained(teachers_dir)
        state.wait_for_everyone()
        if not state.is_main_process:  # every process labels with the very heads the main process trained
            teachers = TeacherMixture.from_pretrained(teachers_dir)
    timings["teachers_s"] = time.perf_counter() - t0

    # ---- student and the one labeling pass (all heads on one backbone pass + the student's features)
    if model.tiny:
        student, student_prep = tiny_student(id2label, model.tiny_image_size)
    else:
        student, processor = load_student(model.student_model_name_or_path, id2label)
        student_prep = Preprocessing.from_image_processor(processor)
    processor = student_prep.to_image_processor()
    t0 = time.perf_counter()
    cache, stats = build_cache(
        {"train": splits["train"], "test": splits["test"]}, teachers, student, student_prep, image_col=image_col,
        label_col=label_col, batch_size=args.labeling_batch_size, accelerator=state, on_bad_image=args.on_bad_image,
        dtype=dtype, student_name=model.student_model_name_or_path, compact_topk=args.compact_cache_topk,
        show_progress=not args.disable_tqdm)
    timings["labeling_s"] = time.perf_counter() - t0
    labeled = sum(stats.labeled.values())
    if state.is_main_process:
        cache.save(os.path.join(args.output_dir, "cache"))
        logger.info(f"labeling: {cache.num_samples} images x {cache.num_teachers} teachers in "
                    f"{timings['labeling_s']:.1f}s (this process: {labeled}, skipped {stats.skipped})")

    # ---- rounds: hard and soft labels on the same cache
    reports: dict[str, dict] = {}
    for i, kind in enumerate(label_types):
        out_dir = args.output_dir if i == 0 else os.path.join(args.output_dir, f"{kind}_labels")
        run_args = dataclasses.replace(args, soft_labels=(kind == "soft"), output_dir=out_dir,
                                       overwrite_output_dir=True)
        t0 = time.perf_counter()
        trainer = CoSupervisedTrainer(model=student, args=run_args, cache=cache, processing_class=processor)
        trainer.train()
        reports[kind] = trainer.report
        trainer.save_model()
        trainer.create_model_card(dataset=data.dataset_name)
        timings[f"rounds_{kind}_s"] = time.perf_counter() - t0

    summary = {
        "dataset": data.dataset_name,
        "student": model.student_model_name_or_path,
        "teacher_backbone": model.teacher_backbone,
        "teachers_per_level": [len(level) for level in cache.levels],
        "num_images": {"teacher": data.teacher_train_size, "train": int((cache.split == 0).sum()),
                       "test": int((cache.split == 1).sum())},
        "teacher_test_accuracy": dict(zip(cache.teacher_names, [r["accuracy"] for r in cache_teacher_accuracies(cache)])),
        "pgr": {kind: [r["pgr"] for r in rep["rounds"]] for kind, rep in reports.items()},
        "student_accuracy": {kind: [r["student_accuracy"] for r in rep["rounds"]] for kind, rep in reports.items()},
        "weak_accuracy": next(iter(reports.values()))["weak_accuracy"],
        "ceiling_accuracy": next(iter(reports.values()))["ceiling_accuracy"],
        "paper_pgr_1_2_4_8_teachers": PAPER_PGR,
        "reports": {kind: os.path.join(args.output_dir if i == 0 else os.path.join(args.output_dir, f"{kind}_labels"),
                                       REPORT_NAME) for i, kind in enumerate(label_types)},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "device": str(device), "num_processes": state.num_processes, "labeling_dtype": str(dtype or torch.float32),
    }
    if state.is_main_process:
        with open(os.path.join(args.output_dir, "recipe_summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        for kind, rep in reports.items():
            print(f"\n== {kind} labels ==")
            print(format_report_table(rep))
        fmt = lambda xs: " -> ".join("-" if x is None else f"{x:.1f}" for x in xs)  # noqa: E731
        for kind in reports:
            print(f"PGR ({kind}) by teachers per level {summary['teachers_per_level']}: {fmt(summary['pgr'][kind])}"
                  f"   (paper, 1/2/4/8 on ImageNet: {fmt(PAPER_PGR[kind])})")
        print(f"summary: {os.path.join(args.output_dir, 'recipe_summary.json')}")
    return summary


def cli(argv: list[str] | None = None) -> int:
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
