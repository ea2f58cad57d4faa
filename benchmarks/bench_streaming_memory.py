#!/usr/bin/env python
"""Peak memory of the labeling pass over a stream: N images vs 10 N images.

A synthetic ``datasets.IterableDataset.from_generator`` stream yields random 28x28 PNG images with labels (nothing is
held by the generator); `csl_hf.cache.labeling.build_cache` labels it with tiny ViT teachers (3: a generalist and two
class specialists) and a tiny ViT student. Each size runs in a fresh subprocess and reports its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) measured before the pass (imports, models) and after it, and the
bytes of the cache tensors. If images were kept, 10x the images would add 9 N x (PNG bytes, or 2,352 bytes decoded);
the pass should add only about the cache's growth.

What to expect (2 shared CPU cores, --n 3000, tiny models: 193 cache bytes per image): the rows are kept in ~1 MiB
chunks (`csl_hf.cache.labeling._Rows`); at the end each column is concatenated once (rows + one column copy) and the
teacher outputs transposed to ``[K, N, C]``, so the peak grows by ~2-2.5x the cache bytes: 10x the images gave
+13 MiB peak RSS for +5 MiB of cache, where holding the extra 27,000 images would have added 23 MiB (PNG) or 61 MiB
(decoded). With glibc's default, dynamic mmap threshold, large temporaries of the forward passes can land in the heap
between the rows and fragment it a little; ``--fixed_mmap_threshold`` (``MALLOC_MMAP_THRESHOLD_=131072``) shows
that share (+11.6 MiB instead of +13.0 MiB).

    PYTHONPATH=. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_streaming_memory.py [--n 3000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time

NAMES = ["a", "b", "c", "d"]


def _png_stream(n: int, seed: int):
    import datasets
    import numpy as np
    from PIL import Image

    def gen(n, seed):
        rng = np.random.default_rng(seed)
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(buf, format="PNG")
            yield {"image": {"bytes": buf.getvalue(), "path": None}, "label": int(i % len(NAMES))}

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})
    return datasets.IterableDataset.from_generator(gen, features=features, gen_kwargs={"n": n, "seed": seed})


def _tiny_vit(seed: int, size: int = 16):
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=64, image_size=size, patch_size=8,
                                               id2label=dict(enumerate(NAMES))))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(n: int, test_n: int) -> dict:
    import datasets
    import torch

    from csl_hf import TeacherMixture
    from csl_hf.cache.labeling import build_cache
    from csl_hf.data.preprocessing import Preprocessing

    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    pre = Preprocessing(size=(16, 16))
    teachers = TeacherMixture.from_teachers(
        [_tiny_vit(0), _tiny_vit(1), _tiny_vit(2)], [{"classes": [0, 1, 2, 3]}, {"classes": [0, 2]}, {"classes": [1, 3]}],
        [[0], [1, 2]], teacher_names=["g", "even", "odd"], preprocessing=[pre] * 3)
    student = _tiny_vit(3)
    splits = {"train": _png_stream(n, seed=1), "test": _png_stream(test_n, seed=2)}
    # Warm up (first-call allocations of the models and the PNG decoder) so that "before" holds them.
    build_cache({"train": _png_stream(64, 3), "test": _png_stream(64, 4)}, teachers, student, pre, batch_size=64,
                show_progress=False)
    before = _peak_mib()
    start = time.perf_counter()
    cache, stats = build_cache(splits, teachers, student, pre, batch_size=64, show_progress=False)
    seconds = time.perf_counter() - start
    tensors = [t for t in (cache.features, cache.labels, cache.split, cache.teacher_probs,
                           getattr(cache, "source_index", None)) if t is not None]
    png_bytes = sum(len(ex["image"]["bytes"]) for ex in _png_stream(min(n, 500), seed=1).cast_column(
        "image", datasets.Image(decode=False))) / min(n, 500)
    return {"n": n, "labeled": stats.labeled["train"] + stats.labeled["test"], "seconds": seconds,
            "peak_before_mib": before, "peak_after_mib": _peak_mib(),
            "cache_bytes": int(sum(t.numel() * t.element_size() for t in tensors)), "png_bytes_per_image": png_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="images at 1x (10x runs 10 times as many)")
    parser.add_argument("--test_n", type=int, default=256)
    parser.add_argument("--fixed_mmap_threshold", action="store_true",
                        help="run the children with MALLOC_MMAP_THRESHOLD_=131072 (glibc): no dynamic threshold, so "
                        "large temporaries never land in the heap between the cache rows (no heap fragmentation)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.test_n)))
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    if args.fixed_mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    results = []
    for n in (args.n, 10 * args.n):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(n), "--test_n", str(args.test_n)],
                             capture_output=True, text=True, env=env, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'images':>8} {'labeled':>8} {'s':>6} {'img/s':>7} {'peak RSS before':>16} {'peak RSS after':>15} "
          f"{'pass adds':>10} {'cache':>9}")
    for r in results:
        print(f"{r['n']:>8} {r['labeled']:>8} {r['seconds']:>6.1f} {r['labeled'] / r['seconds']:>7.0f} "
              f"{r['peak_before_mib']:>12.1f} MiB {r['peak_after_mib']:>11.1f} MiB "
              f"{r['peak_after_mib'] - r['peak_before_mib']:>6.1f} MiB {r['cache_bytes'] / 2**20:>5.2f} MiB")
    a, b = results
    extra = b["n"] - a["n"]
    d_rss = b["peak_after_mib"] - a["peak_after_mib"]
    d_cache = (b["cache_bytes"] - a["cache_bytes"]) / 2**20
    print(f"10x vs 1x: peak RSS +{d_rss:.1f} MiB, cache +{d_cache:.2f} MiB "
          f"({(b['cache_bytes'] - a['cache_bytes']) / extra:.0f} bytes per image). Holding the extra {extra} images "
          f"would add {extra * b['png_bytes_per_image'] / 2**20:.1f} MiB as PNG bytes, "
          f"{extra * 28 * 28 * 3 / 2**20:.1f} MiB decoded (uint8 RGB).")


if __name__ == "__main__":
    main()
