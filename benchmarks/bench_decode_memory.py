#!/usr/bin/env python
"""Peak memory of decoding a folder of photos does not grow with their resolution.

JPEG photos are written as image folders (``class/xxx.jpg``): N photos at 12 megapixels (4000 x 3000), N at 0.1
megapixels (365 x 274), and N / 2 at 12 megapixels (does the peak grow with the number of photos?). For each, a fresh process loads the folder with `load_csl_dataset` and runs
the two paths that read a whole split: teacher training's decode (`load_teacher_split`, which resizes every image to
the teachers' 28 px as it is decoded, batch by batch) and the teachers' test evaluation (`evaluate_teachers_detailed`
with tiny teachers). It prints the peak resident memory (``ru_maxrss``) above the process's peak after its imports.
Held at full resolution, one 12 MP photo is 36 MB as uint8 and 144 MB as float32; decoding one photo at a time
needs about one photo's worth of memory (PIL image, uint8 and float32 copies while it is resized), whatever N.

    python benchmarks/bench_decode_memory.py            # 48 photos per resolution
    python benchmarks/bench_decode_memory.py --images 96
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIG, SMALL = (4000, 3000), (365, 274)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_folder(path: str, size: tuple[int, int], n: int) -> None:
    import numpy as np
    from PIL import Image

    w, h = size
    colours = {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 220)}
    shade = np.linspace(0.6, 1.0, w, dtype=np.float32)[None, :, None] * np.linspace(0.7, 1.0, h, dtype=np.float32)[
        :, None, None]
    for c, (name, rgb) in enumerate(colours.items()):
        os.makedirs(os.path.join(path, name), exist_ok=True)
        base = np.asarray(rgb, dtype=np.float32)[None, None, :] * shade
        for i in range(c, n, len(colours)):
            img = np.clip(base + (i % 7) * 3, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(path, name, f"{i:03d}.jpg"), quality=90)


def child(folder: str) -> None:
    """Decode ``folder`` as teacher training and teacher evaluation do; print two peak-RSS deltas (MiB)."""
    import torch
    from transformers.utils import logging as hf_logging

    from csl_hf import TeacherMixture, TeacherTrainingArguments, evaluate_teachers_detailed
    from csl_hf.data import load_csl_dataset
    from csl_hf.method.hierarchy import class_hierarchy
    from csl_hf.teachers.arguments import teacher_preprocessing
    from csl_hf.teachers.training import build_teacher, load_teacher_split

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
    dataset = load_csl_dataset(folder)
    names = dataset.features["label"].names
    args = TeacherTrainingArguments(teacher_steps=1)
    prep = teacher_preprocessing(args)
    # Tiny teachers, built before the measurement starts: only decoding is measured.
    specialties, levels = class_hierarchy(len(names), [1, 3])
    teachers = TeacherMixture.from_teachers([build_teacher(args, len(names), names, seed=k) for k in range(4)],
                                            specialties, levels, preprocessing=[prep] * 4)
    base = peak_mib()
    t0 = time.perf_counter()
    split = load_teacher_split(dataset, prep)
    decode = peak_mib() - base
    evaluate_teachers_detailed(teachers, dataset, batch_size=16)
    evaluate = peak_mib() - base
    print(f"{len(split.labels)} {decode:.1f} {evaluate:.1f} {time.perf_counter() - t0:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48, help="N: photos per resolution (3 classes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        child(a.child)
        return
    env = {**os.environ, "PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    rows = []
    runs = [(f"12 MP ({BIG[0]} x {BIG[1]})", BIG, a.images), (f"0.1 MP ({SMALL[0]} x {SMALL[1]})", SMALL, a.images),
            (f"12 MP ({BIG[0]} x {BIG[1]})", BIG, a.images // 2)]
    with tempfile.TemporaryDirectory() as tmp:
        for label, size, n in runs:
            folder = os.path.join(tmp, f"{size[0]}x{size[1]}-{n}")
            write_folder(folder, size, n)
            on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs) / 2**20
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", folder], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            rows.append((label, int(out[0]), on_disk, float(out[1]), float(out[2]), float(out[3]),
                         size[0] * size[1] * 3 * n / 2**20))
    print("peak RSS above the process's peak after imports (MiB)\n")
    print("| photos | decoded | on disk MiB | teacher split decode | + teacher evaluation | held as uint8 would be | "
          "seconds |")
    print("|---|---|---|---|---|---|---|")
    for label, n, disk, decode, evaluate, seconds, held in rows:
        print(f"| {label} | {n} | {disk:.1f} | {decode:.1f} | {evaluate:.1f} | {held:.0f} | {seconds:.1f} |")
    big, small, half = rows
    print(f"\n12 MP vs 0.1 MP, {big[1]} photos each: peak {big[4]:.0f} vs {small[4]:.0f} MiB "
          f"(photos {big[6] / small[6]:.0f}x larger, peak {big[4] / max(small[4], 1e-9):.1f}x)")
    print(f"12 MP, {half[1]} vs {big[1]} photos: peak {half[4]:.0f} vs {big[4]:.0f} MiB "
          f"({big[4] - half[4]:+.0f} MiB for {big[1] - half[1]} more photos; held as uint8 they would add "
          f"{big[6] - half[6]:.0f} MiB)")


if __name__ == "__main__":
    main()
