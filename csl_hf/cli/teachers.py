"""``csl-hf teachers``: train a hierarchy of weak teachers for co-supervised learning and save it as one TeacherMixture.

    csl-hf teachers --dataset_name animal_mnist --output_dir out
    csl-hf teachers --dataset_name digits_domains --teacher_domain_level --output_dir out_digits
    csl-hf run --teachers_name_or_path out/teachers          # reuse them (same --seed and sizes)

The dataset is cut into teacher / train / test splits exactly as csl-hf run cuts it (same flags, same
defaults, same seed), and the teachers learn from the labels of the teacher split only: a generalist over all
classes, then levels of class specialists (--teachers_per_level 1,2,4,5; the classes the generalist confuses share one,
--specialties auto, or contiguous id blocks, --specialties blocks) or one specialist per domain
(--teacher_domain_level), every one trained for the same number of steps; with --specialty_gates, also a gate teacher
per class specialist (for csl-hf run --assignment oos_gate). The mixture is saved to
OUTPUT_DIR/teachers (safetensors) with the rows it was trained on, so that csl-hf run refuses a run whose test or
weak-to-strong split overlaps them. Each teacher's test accuracy inside its specialty is printed next to the
generalist's on the same images: the gap co-supervision exploits.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ..data.weak_to_strong import load_weak_to_strong_data
from ..errors import CSLError
from ..teachers import TeacherTrainingArguments, evaluate_teachers_detailed, train_teacher_hierarchy
from ..utils import changed_fields
from .arguments import CSLArgumentParser, DataArguments, parse_run_args
from .console import run_command, setup_logging

__all__ = ["HELP_GROUPS", "NOT_HERE", "RunArguments", "build_parser", "main", "cli"]


@dataclass
class RunArguments:
    """Where the teachers go, and the split seed (the same default as csl-hf run's --seed)."""

    output_dir: str = field(default="teachers_output", metadata={"help": "The mixture is saved to OUTPUT_DIR/teachers."})
    seed: int = field(default=42, metadata={"help": "Seed of the teacher/train/test split (csl-hf run's --seed)."})


HELP_GROUPS = [
    ("Data (the same flags and defaults as csl-hf run)", ["dataset_name", "folder_layout", "teacher_size", "test_size",
                                                          "train_size"]),
    ("Teachers", ["teachers_per_level", "specialties", "teacher_domain_level", "teacher_steps",
                  "teacher_architecture", "teacher_backbone", "teacher_learning_rate", "teacher_batch_size",
                  "teacher_image_size", "teacher_seed", "teacher_feature_batch_size", "specialty_gates"]),
    ("Teacher architecture (tiny models built from a config)",
     ["teacher_patch_size", "teacher_hidden_sizes", "teacher_depths", "teacher_hidden_size", "teacher_num_layers",
      "teacher_num_heads", "teacher_weight_decay"]),
    ("Run", ["output_dir", "seed"]),
]


#: csl-hf run's data flags that mean nothing here: refused by name rather than ignored.
NOT_HERE = ("cache_dir", "max_train_samples", "max_eval_samples", "streaming", "shuffle_buffer_size")


def build_parser(prog: str = "csl-hf teachers") -> CSLArgumentParser:
    return CSLArgumentParser((DataArguments, TeacherTrainingArguments, RunArguments), description=__doc__,
                             help_groups=HELP_GROUPS, prog=prog)


def main(argv: list[str] | None = None, prog: str = "csl-hf teachers") -> None:
    """Cut the data as ``csl-hf run`` does, train the teachers on the teacher split, save them to
    ``OUTPUT_DIR/teachers`` and print each one's test accuracy inside its specialty.

    Raises:
        `CSLError` (one line): a bad flag or dataset, or a data flag that belongs to ``csl-hf run``.
    """
    parser = build_parser(prog)
    data_args, teacher_args, run_args = parse_run_args(parser, argv)
    setup_logging()  # warnings as `warning: ...` lines, progress as csl-hf run prints it
    given = [name for name in changed_fields(data_args) if name in NOT_HERE]
    if given:
        raise CSLError(f"--{given[0]} does not apply to {prog}: the teachers learn from the teacher split only, read "
                       "whole; drop it (it belongs to csl-hf run / examples/run_csl.py)")
    data = load_weak_to_strong_data(data_args.dataset_name, seed=run_args.seed, teacher_size=data_args.teacher_size,
                                    test_size=data_args.test_size, train_size=data_args.train_size,
                                    folder_layout=data_args.folder_layout)
    start = time.time()
    mixture = train_teacher_hierarchy(data.teacher, teacher_args,
                                      domain_level=teacher_args.builds_domain_level(data.domain_column is not None))
    mixture.config.training_data = {**mixture.config.training_data, **data.teacher_provenance()}
    elapsed = time.time() - start
    path = os.path.join(run_args.output_dir, "teachers")
    mixture.save_pretrained(path)
    results = evaluate_teachers_detailed(mixture, data.test)
    gates = f" (+ {mixture.config.num_gates} gate teachers)" if mixture.has_gates else ""
    print(f"trained {mixture.config.num_teachers} teachers{gates} x {teacher_args.teacher_steps} steps on "
          f"{len(data.teacher)} images in {elapsed:.1f}s; saved to {path}")
    print(f"test accuracy inside each specialty ({len(data.test)} test images); generalist on the same images:")
    for level, members in enumerate(mixture.config.levels):
        for k in members:
            r = results[k]
            acc = "   n/a" if r["accuracy"] is None else f"{r['accuracy']:6.3f}"
            gen = "" if level == 0 or r["generalist_accuracy"] is None else f"  (generalist {r['generalist_accuracy']:.3f})"
            member = "" if r.get("membership_accuracy") is None else \
                f"  gate: in/out of specialty {r['membership_accuracy']:.3f}"
            print(f"  level {level}  {r['name']:<24} n={r['num_samples']:<5} accuracy {acc}{gen}{member}")
    print(f"reuse: csl-hf run --dataset_name {data_args.dataset_name} --seed {run_args.seed} "
          f"--teachers_name_or_path {path}")


def cli(argv: list[str] | None = None, prog: str = "csl-hf teachers") -> int:
    """The command line: runs `main`; a `CSLError` is one ``error: ...`` line on stderr and exit status 2."""
    return run_command(lambda a: main(a, prog), argv)
