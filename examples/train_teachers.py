#!/usr/bin/env python
"""Train a hierarchy of weak teachers for co-supervised learning and save it as one `TeacherMixture`.

    python examples/train_teachers.py --dataset_name animal_mnist --output_dir out
    python examples/train_teachers.py --dataset_name digits_domains --teacher_domain_level --output_dir out_digits

The dataset is cut into teacher / train / test splits (`make_weak_to_strong_splits`); the teachers learn from the
labels of the teacher split only: a generalist over all classes, then levels of class-block specialists
(``--teachers_per_level 1,2,4,5``) or one specialist per domain (``--teacher_domain_level``), every one trained for the
same number of steps. The mixture is written to ``OUTPUT_DIR/teachers`` (safetensors) and reloads with
``import csl_hf; AutoModel.from_pretrained("OUTPUT_DIR/teachers")``. Each teacher's test accuracy inside its specialty is
printed next to the generalist's on the same images: the gap co-supervision exploits.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import HfArgumentParser  # noqa: E402

from csl_hf.data import load_csl_dataset, make_weak_to_strong_splits  # noqa: E402
from csl_hf.errors import CSLError  # noqa: E402
from csl_hf.teachers import TeacherTrainingArguments, evaluate_teachers_detailed, train_teacher_hierarchy  # noqa: E402


@dataclass
class DataArguments:
    """Where the images come from and how they are split."""

    dataset_name: str = field(
        default="animal_mnist",
        metadata={"help": "Bundled dataset ('animal_mnist': 10 classes; 'digits_domains': 10 digits in 2 domains), a "
                  "local image folder (path/<class>/<image> or path/<domain>/<class>/<image>), or a Hub dataset id."},
    )
    teacher_size: float = field(
        default=1000, metadata={"help": "Images whose labels train the teachers: a count, or a fraction in (0, 1)."}
    )
    test_size: float = field(
        default=2000, metadata={"help": "Images held out to evaluate the teachers: a count, or a fraction in (0, 1)."}
    )
    train_size: float | None = field(
        default=None,
        metadata={"help": "Size of the weak-to-strong training split (unused here, but it fixes the split); "
                  "default: all remaining images."},
    )


@dataclass
class RunArguments:
    """Where results go."""

    output_dir: str = field(
        default="teachers_output", metadata={"help": "Directory; the mixture is saved to OUTPUT_DIR/teachers."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the teacher/train/test split."})


def _size(value):
    """Counts arrive as floats from the parser (a field must take both 1000 and 0.1)."""
    return None if value is None else int(value) if float(value).is_integer() and value >= 1 else float(value)


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser((DataArguments, TeacherTrainingArguments, RunArguments), description=__doc__.split("\n\n")[0])
    try:
        data_args, teacher_args, run_args = parser.parse_args_into_dataclasses(args=argv)
        try:
            dataset = load_csl_dataset(data_args.dataset_name)
            if not hasattr(dataset, "select"):  # a DatasetDict from the Hub: use its train split
                dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
            splits = make_weak_to_strong_splits(dataset, seed=run_args.seed, teacher_size=_size(data_args.teacher_size),
                                                test_size=_size(data_args.test_size),
                                                train_size=_size(data_args.train_size))
        except (ValueError, TypeError) as e:
            raise CSLError(str(e)) from None
        start = time.time()
        mixture = train_teacher_hierarchy(splits["teacher"], teacher_args)
        elapsed = time.time() - start
        path = os.path.join(run_args.output_dir, "teachers")
        mixture.save_pretrained(path)
        results = evaluate_teachers_detailed(mixture, splits["test"])
    except CSLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print(f"trained {mixture.config.num_teachers} teachers x {teacher_args.teacher_steps} steps on "
          f"{len(splits['teacher'])} images in {elapsed:.1f}s; saved to {path}")
    print(f"test accuracy inside each specialty ({len(splits['test'])} test images); generalist on the same images:")
    for level, members in enumerate(mixture.config.levels):
        for k in members:
            r = results[k]
            acc = "   n/a" if r["accuracy"] is None else f"{r['accuracy']:6.3f}"
            gen = "" if level == 0 or r["generalist_accuracy"] is None else f"  (generalist {r['generalist_accuracy']:.3f})"
            print(f"  level {level}  {r['name']:<24} n={r['num_samples']:<5} accuracy {acc}{gen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
