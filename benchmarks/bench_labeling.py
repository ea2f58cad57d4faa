#!/usr/bin/env python
"""What the one-pass labeling buys, on the real default models.

Setup: 512 Animal-MNIST images (448 weak-to-strong training + 64 test, from `make_weak_to_strong_splits`), the
default hierarchy of 12 tiny ConvNeXt teachers (levels 1,2,4,5; trained for a few steps: their speed, not their
accuracy, matters here) and the bundled ImageNet EfficientNet-Lite0 student at 64 px.

(a) `csl_hf.labeling.build_cache`: each image decoded once, every preprocessing derived on the batch, all 12 teachers
    and the student run on the same batch;
(b) one pass per model (13 passes), the way separate scripts label a dataset: for each model, read + decode +
    preprocess every image and run that model alone;
(c) labeling throughput (images/s of (a)) against `transformers.Trainer.predict` of the student alone over the same
    images (a torch Dataset that decodes and preprocesses each image and yields ``pixel_values``).

Every measurement runs side by side in one process, ``--repeats`` times (median reported).

Measured (2 shared CPU cores, 1 torch thread, 3 repeats): (a) 2.69 s = 191 img/s; (b) 2.95 s, 1.10x (a); (c)
Trainer.predict of the student alone 189 img/s, labeling/predict 1.01. At 64 px the Lite0 student dominates the
compute and decoding a 28 px PNG is cheap, so the 12 teachers and the shared decode ride along almost for free: the
labeling pass runs at the speed of predicting with the student alone; separate passes mainly pay 12 more decodes.

    PYTHONPATH=. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_labeling.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import datasets
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

from csl_hf import Preprocessing, TeacherTrainingArguments, build_cache, train_teacher_hierarchy
from csl_hf.data import load_csl_dataset, load_image, make_weak_to_strong_splits
from csl_hf.models import resolve_student_name_or_path
from csl_hf.student import find_classifier


def setup(teacher_steps: int, image_size: int):
    dataset = load_csl_dataset("animal_mnist")
    splits = make_weak_to_strong_splits(dataset, seed=0, teacher_size=1000, test_size=64, train_size=448)
    teachers = train_teacher_hierarchy(splits["teacher"], TeacherTrainingArguments(teacher_steps=teacher_steps,
                                                                                   teachers_per_level="1,2,4,5"))
    names = splits["train"].features["label"].names
    path = resolve_student_name_or_path("efficientnet-lite0")
    hf_logging.set_verbosity_error()
    student = AutoModelForImageClassification.from_pretrained(
        path, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        ignore_mismatched_sizes=True).eval()
    base = Preprocessing.from_image_processor(AutoImageProcessor.from_pretrained(path))
    pre = Preprocessing(size=(image_size, image_size), image_mean=base.image_mean, image_std=base.image_std,
                        rescale_factor=base.rescale_factor)
    return {"train": splits["train"], "test": splits["test"]}, teachers, student, pre


def one_pass(splits, teachers, student, pre, batch_size):
    start = time.perf_counter()
    cache, _ = build_cache(splits, teachers, student, pre, batch_size=batch_size, show_progress=False)
    return time.perf_counter() - start, cache.num_samples


def _decoded_batches(splits, batch_size):
    for name in ("train", "test"):
        ds = splits[name].cast_column("image", datasets.Image(decode=False))
        for start in range(0, len(ds), batch_size):
            yield [load_image(v) for v in ds[start : start + batch_size]["image"]]


@torch.no_grad()
def pass_per_model(splits, teachers, student, pre, batch_size):
    """13 passes: each reads, decodes and preprocesses every image for one model (teacher softmax / student features)."""
    start = time.perf_counter()
    for teacher, tpre in zip(teachers.teachers, teachers.preprocessings()):
        teacher.eval()
        for images in _decoded_batches(splits, batch_size):
            teacher(pixel_values=(tpre or pre)(images)).logits.softmax(-1)
    _, head = find_classifier(student)
    features = []
    hook = head.register_forward_pre_hook(lambda m, a: features.append(a[0].detach().clone()))
    try:
        for images in _decoded_batches(splits, batch_size):
            student(pixel_values=pre(images))
    finally:
        hook.remove()
    return time.perf_counter() - start


class PixelValues(torch.utils.data.Dataset):
    """Decodes and preprocesses one image per item, like an ordinary image-classification eval dataset."""

    def __init__(self, splits, pre):
        self.images = [v for name in ("train", "test")
                       for v in splits[name].cast_column("image", datasets.Image(decode=False))["image"]]
        self.pre = pre

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"pixel_values": self.pre(load_image(self.images[i])[None])[0]}


def trainer_predict(splits, student, pre, batch_size, output_dir):
    args = TrainingArguments(output_dir=output_dir, per_device_eval_batch_size=batch_size, report_to="none",
                             use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
                             dataloader_pin_memory=False)
    trainer = Trainer(model=student, args=args)
    data = PixelValues(splits, pre)
    start = time.perf_counter()
    out = trainer.predict(data)
    return time.perf_counter() - start, out.predictions.shape[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--teacher_steps", type=int, default=5)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=128)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    splits, teachers, student, pre = setup(args.teacher_steps, args.image_size)
    n = len(splits["train"]) + len(splits["test"])
    print(f"{n} images, {len(teachers.teachers)} teachers + EfficientNet-Lite0 at {args.image_size} px, batch "
          f"{args.batch_size}, {torch.get_num_threads()} torch thread(s)")
    one_pass(splits, teachers, student, pre, args.batch_size)  # warm-up
    a, b, c = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        trainer_predict(splits, student, pre, args.batch_size, tmp)  # warm-up
        for r in range(args.repeats):
            t_one, labeled = one_pass(splits, teachers, student, pre, args.batch_size)
            t_many = pass_per_model(splits, teachers, student, pre, args.batch_size)
            t_pred, predicted = trainer_predict(splits, student, pre, args.batch_size, tmp)
            assert labeled == predicted == n
            a.append(t_one), b.append(t_many), c.append(t_pred)
            print(f"repeat {r + 1}: build_cache {t_one:.2f} s, 13 passes {t_many:.2f} s, Trainer.predict (student) "
                  f"{t_pred:.2f} s")
    t_one, t_many, t_pred = statistics.median(a), statistics.median(b), statistics.median(c)
    print(f"(a) one pass, all 13 models per batch : {t_one:.2f} s  ({n / t_one:.0f} img/s)")
    print(f"(b) one pass per model (13 passes)    : {t_many:.2f} s  -> (b)/(a) = {t_many / t_one:.2f}x")
    print(f"(c) labeling throughput {n / t_one:.0f} img/s (12 teachers + student features) vs Trainer.predict of the "
          f"student alone {n / t_pred:.0f} img/s -> labeling/predict = {t_pred / t_one:.2f}")


if __name__ == "__main__":
    main()
