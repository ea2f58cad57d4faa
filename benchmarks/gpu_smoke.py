#!/usr/bin/env python
"""GPU smoke check of the ImageNet recipe (examples/imagenet_recipe.py): one self-contained, offline command.

    python benchmarks/gpu_smoke.py                    # on a GPU: DINOv2 ViT-S/14 student + MobileNetV2 teacher backbone
    python benchmarks/gpu_smoke.py --device cpu       # CPU: tiny ConvNeXt backbone + tiny ViT student (tested here)

What it does, timing each stage:
1. makes ``--num_images`` synthetic random images (224 px, 1000 classes; no dataset or network needed), or reads
   ``--dataset_name`` (a bundled set or a local image folder);
2. trains 1+2+4+8 linear teacher heads on the frozen backbone's features (`csl_hf.train_backbone_heads`, from
   `TeacherTrainingArguments` as every teacher);
3. model-only throughput: all 15 heads on one backbone pass + the student, on a preprocessed batch, bf16 autocast;
4. the labeling pass (`csl_hf.cache.labeling.build_cache`: decode, preprocess, teachers + student, bf16 autocast);
5. one CSL round (`CoSupervisedTrainer`, levels 0 and 1, plus the ceiling): optimiser steps/s;
and prints device name, images/s, steps/s and peak GPU memory, also written to ``OUTPUT_DIR/gpu_smoke.json``.

Models: ``--models auto`` (default on GPU) loads ``--student`` / ``--backbone`` from the local Hugging Face cache and,
where they are not there (no network on the device machine), builds the SAME architectures from configs with random
weights: throughput and memory are those of the real models, accuracies are meaningless (random images anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"], help="auto: cuda when available.")
    p.add_argument("--models", default="auto", choices=["auto", "hub", "config", "tiny"],
                   help="hub: load --student/--backbone (offline cache); config: same architectures, random weights; "
                        "auto: hub, else config; tiny: tiny random ConvNeXt + ViT (the default with --device cpu).")
    p.add_argument("--student", default="facebook/dinov2-small", help="Student (AutoModelForImageClassification).")
    p.add_argument("--backbone", default="google/mobilenet_v2_1.0_224", help="Teacher backbone (AutoModel).")
    p.add_argument("--dataset_name", default=None, help="Bundled set or local image folder instead of synthetic images.")
    p.add_argument("--num_images", type=int, default=512, help="Images labeled (3/4 weak-to-strong train, 1/4 test).")
    p.add_argument("--num_teacher_images", type=int, default=256, help="Images whose labels train the heads.")
    p.add_argument("--num_labels", type=int, default=None, help="Classes of the synthetic data (default 1000; tiny 10).")
    p.add_argument("--teachers_per_level", default=None, help="Default 1,2,4,8 (tiny: 1,2,5).")
    p.add_argument("--image_size", type=int, default=None, help="Side of the synthetic images (default 224; tiny 28).")
    p.add_argument("--batch_size", type=int, default=128, help="Labeling / throughput batch size.")
    p.add_argument("--throughput_iters", type=int, default=10, help="Timed batches of the model-only throughput.")
    p.add_argument("--teacher_steps", type=int, default=50, help="Adam steps per teacher head.")
    p.add_argument("--epochs", type=float, default=20, help="Epochs per phase of the CSL round (batch 100; the paper's E = 20). Steps/s includes each phase's Trainer setup.")
    p.add_argument("--denoise", default="all", choices=["all", "top1", "top2", "top3"],
                   help="Filter of the round. 'all' by default: with random images (and random weights) a target is in "
                        "the student's top-3 of 1000 classes ~0.3%% of the time, and top3 could keep no sample.")
    p.add_argument("--no_bf16", action="store_true", help="Run in float32 instead of bf16 autocast on GPU.")
    p.add_argument("--output_dir", default=None, help="Where gpu_smoke.json goes (default: $OUT, else a temp dir).")
    return p.parse_args(argv)


def synthetic_dataset(n: int, num_labels: int, size: int, seed: int):
    """Random smooth RGB images (PNG) with labels spread evenly over every class block."""
    import datasets
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        low = rng.integers(0, 256, (max(2, size // 8), max(2, size // 8), 3), dtype=np.uint8)
        images.append(Image.fromarray(low).resize((size, size), Image.BILINEAR))
    labels = [(i * num_labels) // n for i in range(n)]
    perm = rng.permutation(n)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=num_labels)})
    return datasets.Dataset.from_dict({"image": [images[i] for i in perm], "label": [labels[i] for i in perm]},
                                      features=features)


def build_models(kind: str, student_name: str, backbone_name: str, id2label: dict, image_size: int):
    """``(backbone, backbone_prep, student, student_prep, description)``."""
    from csl_hf import CSLError, Preprocessing, load_backbone, load_student
    from csl_hf.models.tiny import tiny_backbone, tiny_student

    if kind == "tiny":
        b, bp = tiny_backbone(image_size)
        s, sp = tiny_student(id2label, image_size)
        return b, bp, s, sp, "tiny random ConvNeXt backbone + tiny random ViT student (from configs)"
    if kind in ("hub", "auto"):
        try:
            b, bp = load_backbone(backbone_name)
            s, processor = load_student(student_name, id2label)
            sp = Preprocessing.from_image_processor(processor)
            return b, bp, s, sp, f"{backbone_name} + {student_name} (pretrained, local cache)"
        except CSLError as err:
            if kind == "hub":
                raise
            print(f"[smoke] pretrained weights not available offline ({str(err)[:120]}...): building the same "
                  "architectures from configs with random weights")
    from transformers import (Dinov2Config, Dinov2ForImageClassification, MobileNetV2Config, MobileNetV2Model)

    torch.manual_seed(0)
    backbone = MobileNetV2Model(MobileNetV2Config(depth_multiplier=1.0, image_size=224)).eval()
    student = Dinov2ForImageClassification(Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14, image_size=518,
        num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()})).eval()
    # MobileNetV2: inputs in [-1, 1]; DINOv2: ImageNet mean/std; both 224 px crops.
    bp = Preprocessing(size=(224, 224), image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
    sp = Preprocessing(size=(224, 224))
    return backbone, bp, student, sp, ("MobileNetV2-1.0 backbone + DINOv2 ViT-S/14 student, architectures from configs, "
                                       "RANDOM weights (throughput/memory only)")


def main(argv=None) -> dict:
    args = parse(argv)
    from accelerate import PartialState
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging

    from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, TeacherTrainingArguments, build_cache, train_backbone_heads
    from csl_hf.method.hierarchy import parse_teachers_per_level

    hf_logging.set_verbosity_error()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no GPU (torch.cuda.is_available() is False)")
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # PartialState and the Trainer then stay on the CPU
    tiny = args.models == "tiny" or (args.device == "cpu" and args.models == "auto")
    kind = "tiny" if tiny else args.models
    num_labels = args.num_labels or (10 if tiny else 1000)
    image_size = args.image_size or (28 if tiny else 224)
    per_level = parse_teachers_per_level(args.teachers_per_level or ("1,2,5" if tiny else "1,2,4,8"), num_labels)
    out_dir = args.output_dir or os.environ.get("OUT") or tempfile.mkdtemp(prefix="csl_smoke_")
    os.makedirs(out_dir, exist_ok=True)

    state = PartialState()
    device = state.device
    use_bf16 = device.type == "cuda" and not args.no_bf16
    dtype = torch.bfloat16 if use_bf16 else None
    cuda = device.type == "cuda"
    device_name = torch.cuda.get_device_name(device) if cuda else f"CPU ({os.cpu_count()} cores visible, torch threads {torch.get_num_threads()})"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    print(f"[smoke] device: {device_name} | torch {torch.__version__} | dtype {'bf16 autocast' if use_bf16 else 'float32'}")

    # ---- data
    t0 = time.perf_counter()
    if args.dataset_name:
        from csl_hf.data import class_names, infer_columns, load_csl_dataset

        full = load_csl_dataset(args.dataset_name, split="train").shuffle(seed=0)  # a folder with splits: train
        image_col, label_col, _ = infer_columns(full)
        if image_col != "image" or label_col != "label":
            full = full.rename_columns({image_col: "image", label_col: "label"})
        names = class_names(full, "label")
        num_labels = len(names)
        per_level = parse_teachers_per_level(args.teachers_per_level or ("1,2,5" if tiny else "1,2,4,8"), num_labels)
        total = min(len(full), args.num_images + args.num_teacher_images)
        teacher_ds = full.select(range(0, min(args.num_teacher_images, total // 3)))
        rest = full.select(range(len(teacher_ds), total))
    else:
        names = [f"class_{i}" for i in range(num_labels)]
        teacher_ds = synthetic_dataset(args.num_teacher_images, num_labels, image_size, seed=0)
        rest = synthetic_dataset(args.num_images, num_labels, image_size, seed=1)
    n_train = (3 * len(rest)) // 4
    train_ds, test_ds = rest.select(range(n_train)), rest.select(range(n_train, len(rest)))
    id2label = dict(enumerate(names))
    data_s = time.perf_counter() - t0

    backbone, bprep, student, sprep, described = build_models(kind, args.student, args.backbone, id2label, image_size)
    n_params = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    print(f"[smoke] models: {described}\n[smoke]   backbone {n_params(backbone):.2f}M params, student "
          f"{n_params(student):.2f}M params | {num_labels} classes, teachers per level {per_level}")
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    # ---- teacher heads
    t0 = time.perf_counter()
    heads_args = TeacherTrainingArguments(teachers_per_level=",".join(map(str, per_level)), specialties="blocks",
                                          teacher_steps=args.teacher_steps, teacher_learning_rate=1e-3,
                                          teacher_batch_size=64, teacher_feature_batch_size=args.batch_size)
    teachers = train_backbone_heads(backbone, teacher_ds, heads_args, preprocessing=bprep, id2label=id2label,
                                    device=device, dtype=dtype)
    sync()
    heads_s = time.perf_counter() - t0

    # ---- model-only throughput: one backbone pass for all heads + the student, preprocessed batch on the device
    teachers.to(device).eval()
    student.to(device).eval()
    xb = torch.randn(args.batch_size, 3, *bprep.size, device=device)
    xs = torch.randn(args.batch_size, 3, *sprep.size, device=device)
    calls = {"backbone": 0}
    hook = teachers.backbone.register_forward_hook(lambda *a: calls.__setitem__("backbone", calls["backbone"] + 1))
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else torch.autocast(device.type, enabled=False)
    with torch.no_grad(), autocast:
        for _ in range(2):  # warm-up (cuDNN autotune, lazy init)
            teachers(pixel_values=xb)
            student(pixel_values=xs)
        sync()
        calls["backbone"] = 0
        t0 = time.perf_counter()
        for _ in range(args.throughput_iters):
            probs = teachers(pixel_values=xb).probs
            student(pixel_values=xs)
        sync()
        model_s = time.perf_counter() - t0
    hook.remove()
    model_ips = args.batch_size * args.throughput_iters / model_s
    backbone_passes_per_batch = calls["backbone"] / args.throughput_iters

    # ---- the labeling pass (decode + preprocess + all teachers + student features)
    t0 = time.perf_counter()
    cache, stats = build_cache({"train": train_ds, "test": test_ds}, teachers, student, sprep, batch_size=args.batch_size,
                               accelerator=state, dtype=dtype, student_name=args.student, show_progress=False)
    sync()
    label_s = time.perf_counter() - t0
    label_ips = sum(stats.labeled.values()) / label_s

    # ---- one CSL round (ceiling + level 0 + level 1) on the cache
    class StepCounter(TrainerCallback):
        steps = 0

        def on_step_end(self, *a, **k):
            StepCounter.steps += 1

    run_args = CoSupervisedConfig(output_dir=os.path.join(out_dir, "csl_round"), overwrite_output_dir=True,
                                  learning_rate=1e-4, per_device_train_batch_size=100, num_train_epochs=args.epochs,
                                  max_levels=2, denoise=args.denoise, save_round_checkpoints=False, disable_tqdm=True, report_to="none",
                                  logging_steps=10_000, use_cpu=not cuda, bf16=use_bf16)
    trainer = CoSupervisedTrainer(model=student, args=run_args, cache=cache, callbacks=[StepCounter()])
    sync()
    t0 = time.perf_counter()
    trainer.train()
    report = trainer.report
    sync()
    rounds_s = time.perf_counter() - t0
    steps_ps = StepCounter.steps / rounds_s

    peak = {"allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30,
            "reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30} if cuda else None
    result = {
        "device": device_name, "torch": torch.__version__, "dtype": "bf16" if use_bf16 else "float32",
        "models": described, "num_labels": num_labels, "teachers_per_level": per_level,
        "num_teachers": int(probs.shape[1]), "batch_size": args.batch_size,
        "images": {"teacher": len(teacher_ds), "train": len(train_ds), "test": len(test_ds)},
        "backbone_passes_per_batch": backbone_passes_per_batch,
        "model_only_images_per_s": model_ips,
        "labeling_images_per_s": label_ips, "labeling_s": label_s,
        "teacher_heads_s": heads_s, "data_s": data_s,
        "round_optimizer_steps": StepCounter.steps, "round_s": rounds_s, "round_steps_per_s": steps_ps,
        "peak_gpu_memory": peak,
        "report": {"weak_accuracy": report["weak_accuracy"], "ceiling_accuracy": report["ceiling_accuracy"],
                   "rounds": [{k: r[k] for k in ("level", "num_teachers", "keep_rate", "student_accuracy")}
                              for r in report["rounds"]]},
    }
    with open(os.path.join(out_dir, "gpu_smoke.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)

    line = "=" * 78
    print(line)
    print(f" CSL GPU smoke check -- {device_name}")
    print(line)
    print(f" models             : {described}")
    print(f" precision          : {'bf16 autocast' if use_bf16 else 'float32'}")
    print(f" teachers           : {result['num_teachers']} heads {per_level} on one backbone "
          f"(backbone passes per batch: {backbone_passes_per_batch:g})")
    print(f" teacher heads      : {heads_s:8.2f} s  (features of {len(teacher_ds)} images + {args.teacher_steps} steps x {result['num_teachers']} heads)")
    print(f" model-only         : {model_ips:10.1f} images/s  (batch {args.batch_size}, all teachers + student, no decode)")
    print(f" labeling pass      : {label_ips:10.1f} images/s  ({sum(stats.labeled.values())} images in {label_s:.2f} s, "
          "incl. PNG decode + preprocessing on the CPU)")
    print(f" CSL round (L0+L1)  : {steps_ps:10.1f} optimizer steps/s  ({StepCounter.steps} steps incl. ceiling, {rounds_s:.2f} s)")
    if peak:
        print(f" peak GPU memory    : {peak['allocated_gib']:.2f} GiB allocated, {peak['reserved_gib']:.2f} GiB reserved")
    else:
        print(" peak GPU memory    : n/a (CPU run)")
    print(f" result file        : {os.path.join(out_dir, 'gpu_smoke.json')}")
    print(line)
    if backbone_passes_per_batch != 1:
        raise SystemExit(f"FAIL: the teacher backbone ran {backbone_passes_per_batch} times per batch (expected 1)")
    print("SMOKE OK")
    return result


if __name__ == "__main__":
    main()
