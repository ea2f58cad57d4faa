#!/usr/bin/env python
"""What the one-pass labeling buys, on the real default models.

Setup: 512 Animal-MNIST images (448 weak-to-strong training + 64 test, from `make_weak_to_strong_splits`), the
default hierarchy of 12 tiny ConvNeXt teachers (levels 1,2,4,5; trained for a few steps: their speed, not their
accuracy, matters here) and the bundled ImageNet EfficientNet-Lite0 student at 64 px.

(a) `csl_hf.cache.labeling.build_cache`: each image decoded once, every preprocessing derived on the batch, all 12 teachers
    and the student run on the same batch;
(b) one pass per model (13 passes), the way separate scripts label a dataset: for each model, read + decode +
    preprocess every image and run that model alone;
(c) labeling throughput (images/s of (a)) against `transformers.Trainer.predict` of the student alone over the same
    images (a torch Dataset that decodes and preprocesses each image and yields ``pixel_values``).

(d) teachers as 15 linear heads on one shared frozen backbone (the paper's ImageNet layout: levels 1, 2, 4, 8;
    `train_backbone_heads` / `TeacherMixture.from_backbone`; the backbone is the Lite0 feature extractor at the
    student's size, so it costs what the student costs): `build_cache` runs the backbone once per batch for all heads,
    against one pass per model (16 passes: each head as its own backbone + head model, then the student) and against
    the bare lower bound, one decode + the backbone forward + the student forward per batch with nothing else.

Every measurement runs side by side in one process, ``--repeats`` times (median reported). ``--case`` picks
``own`` (a-c), ``shared`` (d) or ``all``.

Measured (2 shared CPU cores, 1 torch thread, 3 repeats): (a) 2.69 s = 191 img/s; (b) 2.95 s, 1.10x (a); (c)
Trainer.predict of the student alone 189 img/s, labeling/predict 1.01. At 64 px the Lite0 student dominates the
compute and decoding a 28 px PNG is cheap, so the 12 teachers and the shared decode ride along almost for free: the
labeling pass runs at the speed of predicting with the student alone; separate passes mainly pay 12 more decodes.

    PYTHONPATH=. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_labeling.py [--repeats 3] [--case shared]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import datasets
import torch
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

from csl_hf import Preprocessing, TeacherTrainingArguments, build_cache, train_backbone_heads, train_teacher_hierarchy
from csl_hf.data import load_csl_dataset, load_image, make_weak_to_strong_splits
from csl_hf.method.hierarchy import class_hierarchy
from csl_hf.models.teacher_mixture.modeling_teacher_mixture import pooled_features
from csl_hf.models import resolve_student_name_or_path
from csl_hf.models.student import find_classifier


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
    return {"train": splits["train"], "test": splits["test"]}, teachers, student, pre, splits["teacher"]


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


def shared_backbone_teachers(teacher_split, pre, steps: int):
    """15 heads (levels 1, 2, 4, 8) on the frozen Lite0 feature extractor, trained for a few steps."""
    backbone = AutoModel.from_pretrained(resolve_student_name_or_path("efficientnet-lite0")).eval()
    names = teacher_split.features["label"].names
    specialties, levels = class_hierarchy(len(names), [1, 2, 4, 8])
    return train_backbone_heads(backbone, teacher_split, specialties, levels, steps=steps, lr=1e-3, batch_size=64,
                                id2label=names, preprocessing=pre)


@torch.no_grad()
def pass_per_head(splits, mixture, student, pre, batch_size):
    """16 passes: each head as its own model (decode, preprocess, backbone, head), then the student."""
    start = time.perf_counter()
    for head in mixture.heads:
        for images in _decoded_batches(splits, batch_size):
            head(pooled_features(mixture.backbone(pixel_values=pre(images)))).softmax(-1)
    for images in _decoded_batches(splits, batch_size):
        student(pixel_values=pre(images))
    return time.perf_counter() - start


@torch.no_grad()
def backbone_and_student(splits, mixture, student, pre, batch_size):
    """The floor: per batch one decode, the backbone forward and the student forward, nothing else."""
    start = time.perf_counter()
    for images in _decoded_batches(splits, batch_size):
        x = pre(images)
        mixture.backbone(pixel_values=x)
        student(pixel_values=x)
    return time.perf_counter() - start


def run_shared(args, splits, teacher_split, student, pre, n):
    mixture = shared_backbone_teachers(teacher_split, pre, args.teacher_steps).eval()
    print(f"\n(d) {len(mixture.heads)} heads on one frozen Lite0 backbone + the Lite0 student, {n} images at "
          f"{args.image_size} px")
    one_pass(splits, mixture, student, pre, args.batch_size)  # warm-up
    a, b, c = [], [], []
    for r in range(args.repeats):
        t_one, labeled = one_pass(splits, mixture, student, pre, args.batch_size)
        t_many = pass_per_head(splits, mixture, student, pre, args.batch_size)
        t_floor = backbone_and_student(splits, mixture, student, pre, args.batch_size)
        assert labeled == n
        a.append(t_one), b.append(t_many), c.append(t_floor)
        print(f"repeat {r + 1}: build_cache {t_one:.2f} s, 16 passes {t_many:.2f} s, backbone + student forward "
              f"{t_floor:.2f} s")
    t_one, t_many, t_floor = statistics.median(a), statistics.median(b), statistics.median(c)
    print(f"(d) one pass (backbone once + 15 heads + student): {t_one:.2f} s  ({n / t_one:.0f} img/s)")
    print(f"    one pass per model (16 passes)               : {t_many:.2f} s  -> {t_many / t_one:.2f}x the one pass "
          "(target >= 5x)")
    print(f"    backbone + student forward alone             : {t_floor:.2f} s  -> one pass is {t_one / t_floor:.2f}x "
          "of it (target <= 1.3x)")


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
    parser.add_argument("--case", choices=("own", "shared", "all"), default="all",
                        help="own: 12 tiny teachers (a-c); shared: 15 heads on one backbone (d)")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    splits, teachers, student, pre, teacher_split = setup(args.teacher_steps, args.image_size)
    n = len(splits["train"]) + len(splits["test"])
    if args.case in ("own", "all"):
        run_own(args, splits, teachers, student, pre, n)
    if args.case in ("shared", "all"):
        run_shared(args, splits, teacher_split, student, pre, n)


def run_own(args, splits, teachers, student, pre, n):
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
