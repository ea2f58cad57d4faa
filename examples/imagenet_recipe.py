#!/usr/bin/env python
"""The CSL paper's ImageNet recipe (Liu & Alahi 2024), end to end; each round reports PGR, the performance gap
recovered: 100 x (student - weak) / (ceiling - weak) in top-1 test accuracy.

    weak backbone (frozen)  --15 linear heads: 1 generalist + 2/4/8 class-block specialists-->  TeacherMixture
    one labeling pass        --all 15 heads on ONE backbone pass + the student's features-->      CSL cache
    CoSupervisedTrainer      --hard labels, then soft labels on the same cache, 4 rounds each-->  csl_report.json

* student: DINOv2 ViT-S/14 (facebook/dinov2-small) with a fresh 1000-class head; in probe mode only that head is
  trained, on the cached features (the paper's linear probe);
* teachers: levels of 1, 2, 4, 8 specialists over contiguous 1000/500/250/125-class blocks, linear heads on one
  shared frozen weak backbone (the paper used AlexNet; here google/mobilenet_v2_1.0_224, any AutoModel via
  --teacher_backbone), every head trained with the same step budget on --teacher_train_size images;
* rounds: the paper's hyperparameters (Adam lr 1e-4, weight decay 0, batch 100, cosine per step, E = 20, top3,
  fresh head per level); bf16 autocast for the labeling pass on a GPU (--labeling_bf16).

The recipe is a config file of flags (its first argument); flags after it override it. Under accelerate launch the
teachers are trained once on the main process, the labeling pass is sharded over the processes and the rounds use
DDP, as for examples/run_csl.py.

    python examples/imagenet_recipe.py examples/configs/imagenet_recipe.yaml --output_dir runs/imagenet
    python examples/imagenet_recipe.py examples/configs/imagenet_recipe_tiny.yaml --output_dir /tmp/csl_tiny

The second line is the offline CPU stand-in: a tiny random ConvNeXt backbone, a tiny random ViT student and the
bundled Animal-MNIST (10 classes, levels 1,2,5); every stage runs, its accuracies mean nothing.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

try:  # a checkout run before the package is installed gets one line, not a traceback
    import csl_hf  # noqa: F401
except ModuleNotFoundError as err:
    print(f"error: {err}; install the package first, from the repository root: pip install -e . (see README.md)",
          file=sys.stderr)
    sys.exit(2)

from csl_hf import (
    CoSupervisedConfig,
    CoSupervisedTrainer,
    CSLError,
    ModelArguments,
    TeacherMixture,
    TeacherTrainingArguments,
    load_student,
    train_teacher_hierarchy,
)
from csl_hf.cli.arguments import CSLArgumentParser, parse_run_args
from csl_hf.cli.console import run_command, setup_logging
from csl_hf.cli.output_dir import OutputDirectory
from csl_hf.cli.steps import local_dataset_path, other_label_run
from csl_hf.data.named_splits import load_named_splits
from csl_hf.outputs.report import format_report_table
from csl_hf.teachers import cache_teacher_accuracies

PROG = "python examples/imagenet_recipe.py"
# The paper's reference PGR (%) by number of teachers 1, 2, 4, 8 (AlexNet -> DINOv2 ViT-S/14, ImageNet).
PAPER_PGR = {"hard labels": [49.7, 63.8, 67.0, 69.4], "soft labels": [56.8, 69.0, 73.4, 75.5]}


@dataclass
class RecipeDataArguments:
    """Where the images come from. The teacher split trains the heads; the weak-to-strong split is cut into the
    student's training images (labelled by the teachers) and the test images."""

    dataset_name: str = field(
        default="imagenet-1k",
        metadata={"help": "A Hub dataset id (imagenet-1k is gated: log in or set HF_TOKEN and accept its terms), a "
                  "dataset in the local datasets cache, a local image folder, or a bundled set (animal_mnist)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    streaming: bool = field(default=False, metadata={"help": "Stream the splits instead of downloading them first."})
    teacher_split: str = field(default="train", metadata={"help": "Split whose labels train the teacher heads."})
    w2s_split: str = field(
        default="validation",
        metadata={"help": "Split cut into the weak-to-strong training images and the test images (the reference code: "
                  "ImageNet validation, half to train the student, half to test). If it equals --teacher_split, it "
                  "is taken after the teacher images, so the parts stay disjoint."},
    )
    teacher_train_size: int = field(default=10000, metadata={"help": "Labelled images that train the teacher heads."})
    w2s_train_size: int = field(default=25000, metadata={"help": "Weak-to-strong training images."})
    test_size: int = field(default=25000, metadata={"help": "Test images (evaluation only)."})
    shuffle_buffer_size: int = field(
        default=10000, metadata={"help": "With --streaming: the shuffle buffer of each stream (seeded by --seed)."}
    )


HELP_GROUPS = [
    ("Data", ["dataset_name", "dataset_config_name", "streaming", "teacher_split", "w2s_split", "teacher_train_size",
              "w2s_train_size", "test_size", "shuffle_buffer_size", "labeling_batch_size", "labeling_bf16"]),
    ("Student and teachers", ["student_model_name_or_path", "student_image_size", "teachers_name_or_path",
                              "teacher_backbone", "teacher_image_size", "teachers_per_level", "specialties",
                              "teacher_steps", "teacher_learning_rate", "teacher_batch_size", "teacher_weight_decay",
                              "teacher_seed", "teacher_feature_batch_size"]),
    ("Rounds", ["assignment", "denoise", "soft_labels", "compare_label_types", "baselines", "compact_cache_topk"]),
    ("Training of each round", ["learning_rate", "num_train_epochs", "per_device_train_batch_size",
                                "lr_scheduler_type", "weight_decay", "seed"]),
    ("Outputs", ["output_dir", "overwrite_output_dir", "report_to"]),
]


def build_parser() -> CSLArgumentParser:
    return CSLArgumentParser((RecipeDataArguments, ModelArguments, TeacherTrainingArguments, CoSupervisedConfig),
                             description=__doc__, help_groups=HELP_GROUPS, prog=PROG)


def main(argv: list[str] | None = None) -> dict:
    data_args, model_args, teacher_args, args = parse_run_args(build_parser(), argv)
    setup_logging(args)
    if not teacher_args.teacher_backbone and not model_args.teachers_name_or_path:
        raise CSLError("the ImageNet recipe trains heads on a frozen backbone: pass --teacher_backbone (or start from "
                       "examples/configs/imagenet_recipe.yaml)")
    with OutputDirectory(args, data_path=local_dataset_path(data_args.dataset_name), prog=PROG):
        data = load_named_splits(data_args.dataset_name, data_args.teacher_split, data_args.w2s_split,
                                 data_args.teacher_train_size, data_args.w2s_train_size, data_args.test_size,
                                 args.seed, data_args.streaming, data_args.shuffle_buffer_size,
                                 data_args.dataset_config_name)
        student, processor = load_student(model_args.student_model_name_or_path, data.id2label,
                                          image_size=model_args.student_image_size,
                                          allow_pickle_weights=model_args.allow_pickle_weights)
        teachers = (TeacherMixture.from_pretrained(model_args.teachers_name_or_path) if model_args.teachers_name_or_path
                    else train_teacher_hierarchy(data.teacher, teacher_args, device=args.device))
        trainer = CoSupervisedTrainer(model=student, teachers=teachers, args=args, train_dataset=data.train,
                                      eval_dataset=data.test, processing_class=processor)
        trainer.train()
        reports = {"soft labels" if args.soft_labels else "hard labels": trainer.report}
        if model_args.compare_label_types is not False:
            name, reports[name] = other_label_run(trainer, args)
        trainer.save_model()
        trainer.create_model_card(dataset=data_args.dataset_name)
    summary = {
        "dataset": data_args.dataset_name, "student": model_args.student_model_name_or_path,
        "teacher_backbone": teacher_args.teacher_backbone,
        "teachers_per_level": [len(level) for level in trainer.cache.levels],
        "num_images": {"teacher": data_args.teacher_train_size, "train": len(trainer.cache.rows(0)),
                       "test": len(trainer.cache.rows(1))},
        "teacher_test_accuracy": dict(zip(trainer.cache.teacher_names,
                                          (r["accuracy"] for r in cache_teacher_accuracies(trainer.cache)))),
        "pgr": {name: [r["pgr"] for r in rep["rounds"]] for name, rep in reports.items()},
        "weak_accuracy": trainer.report["weak_accuracy"], "ceiling_accuracy": trainer.report["ceiling_accuracy"],
        "paper_pgr_1_2_4_8_teachers": PAPER_PGR,
    }
    if args.should_save:
        with open(os.path.join(args.output_dir, "recipe_summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        fmt = lambda xs: " -> ".join("-" if x is None else f"{x:.1f}" for x in xs)  # noqa: E731
        for name, report in reports.items():
            print(f"\n== {name} ==\n{format_report_table(report)}\nPGR by teachers per level "
                  f"{summary['teachers_per_level']}: {fmt(summary['pgr'][name])}   (paper, 1/2/4/8 on ImageNet: "
                  f"{fmt(PAPER_PGR[name])})")
        print(f"summary: {os.path.join(args.output_dir, 'recipe_summary.json')}")
    return summary


def cli(argv: list[str] | None = None) -> int:
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
