#!/usr/bin/env python
"""What a full-mode CSL step costs beside a plain `transformers.Trainer` fine-tuning step of the same student on the
same images, measured side by side in one process.

    python benchmarks/bench_full_mode.py [--n 512 --epochs 2 --batch_size 32 --image_size 64 --threads 2]

(a) plain Trainer: `Trainer(model=student, train_dataset=...)` over a torch Dataset that decodes and preprocesses
    each image per item (as transformers' run_image_classification.py does with set_transform), cross-entropy on the
    ground truth;
(b) CSL full mode: one `CoSupervisedTrainer` phase (the ceiling, on the same images and labels, same batch size and
    epochs), with the decoded-image cache (each image decoded once per run), and
(c) the same with ``image_cache_mb=0`` (decoded per read, like (a)).

Each phase's time per optimiser step is taken from the Trainer's own ``train_runtime`` / steps, so labeling and
predictions are not in it. The student is the bundled EfficientNet-Lite0 at ``--image_size`` px.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, Preprocessing, load_student
from csl_hf import TeacherTrainingArguments, train_teacher_hierarchy
from csl_hf.data import load_csl_dataset, load_image, make_weak_to_strong_splits


class StepTimes(TrainerCallback):
    """Wall time of each train() call and its optimiser steps (from the Trainer's own end-of-train metrics)."""

    def __init__(self):
        self.per_step = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_runtime" in logs and state.global_step:
            self.per_step.append(logs["train_runtime"] / state.global_step)


class DecodePerItem(torch.utils.data.Dataset):
    def __init__(self, dataset, preprocessing):
        self.dataset, self.pre = dataset, preprocessing

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        row = self.dataset[i]
        return {"pixel_values": self.pre(load_image(row["image"])[None])[0], "labels": torch.tensor(row["label"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    splits = make_weak_to_strong_splits(load_csl_dataset("animal_mnist"), seed=0, teacher_size=200, test_size=64,
                                        train_size=a.n)
    names = splits["train"].features["label"].names
    teachers = train_teacher_hierarchy(splits["teacher"], TeacherTrainingArguments(teacher_steps=2,
                                                                                   teachers_per_level="1,2"))
    plain_times, csl_times, nocache_times = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.repeats):
            student, processor = load_student(None, dict(enumerate(names)), image_size=a.image_size)
            pre = Preprocessing.from_image_processor(processor)
            timer = StepTimes()
            args = TrainingArguments(output_dir=f"{tmp}/plain", per_device_train_batch_size=a.batch_size,
                                     num_train_epochs=a.epochs, learning_rate=1e-4, report_to="none",
                                     save_strategy="no", logging_steps=10**9, disable_tqdm=True, use_cpu=True,
                                     dataloader_pin_memory=False)
            Trainer(model=student, args=args, train_dataset=DecodePerItem(splits["train"], pre),
                    callbacks=[timer]).train()
            plain_times.append(timer.per_step[-1])
            for cache_mb, times in ((2048, csl_times), (0, nocache_times)):
                student, processor = load_student(None, dict(enumerate(names)), image_size=a.image_size)
                timer = StepTimes()
                cfg = CoSupervisedConfig(output_dir=f"{tmp}/csl{cache_mb}", student_mode="full", max_levels=1,
                                         per_device_train_batch_size=a.batch_size, num_train_epochs=a.epochs,
                                         warmup_steps=0, learning_rate=1e-4, backbone_learning_rate=1e-4,
                                         image_cache_mb=cache_mb, head_warmup_epochs=0,  # fine-tuning steps only
                                         disable_tqdm=True, use_cpu=True,
                                         save_round_checkpoints=False, overwrite_output_dir=True,
                                         dataloader_pin_memory=False)
                CoSupervisedTrainer(model=student, teachers=teachers, args=cfg, train_dataset=splits["train"],
                                    eval_dataset=splits["test"], processing_class=processor,
                                    callbacks=[timer]).train()
                times.append(timer.per_step[0])  # the first phase: the ceiling, on the ground truth
    plain, csl, nocache = (statistics.median(t) for t in (plain_times, csl_times, nocache_times))
    print(f"{a.n} Animal-MNIST images at {a.image_size} px, EfficientNet-Lite0, batch {a.batch_size}, {a.epochs} epochs, "
          f"{a.threads} thread(s), median of {a.repeats}")
    print(f"(a) plain Trainer step (decode per item):           {1000 * plain:.1f} ms")
    print(f"(b) CSL full-mode step (images decoded once per run): {1000 * csl:.1f} ms -> {csl / plain:.2f}x (a)")
    print(f"(c) CSL full-mode step (decoded per read):            {1000 * nocache:.1f} ms -> {nocache / plain:.2f}x (a)"
          "  (target <= 1.1x)")


if __name__ == "__main__":
    main()
