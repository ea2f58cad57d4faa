#!/usr/bin/env python
"""Why full mode fits the head first and freezes batch-norm statistics: the full-mode ceiling (the bundled
EfficientNet-Lite0 student fine-tuned on the ground truth of 2,000 Animal-MNIST images) with each of the two recipe
choices on and off, beside the linear probe on the same cached features.

    python benchmarks/full_mode_recipe.py --cache_dir bench_full/seed0/cache [--threads 2]

The cache is any Animal-MNIST cache of the bundled student (e.g. the one `full_mode_benchmark.py` writes for seed 0,
whose splits ``--seed`` must reproduce). Every variant runs the full-mode defaults of `CoSupervisedConfig`: AdamW, head
learning rate 1e-3, backbone 1e-4, 3 epochs of batch 100, warmup over 10 % of the steps then cosine decay; the head
warm-up is the probe's recipe (20 epochs, 1e-3, cosine) on the cached features. Test accuracy on the cache's test
split. This is a plain PyTorch loop over preprocessed tensors (the recipe, not the trainer's speed, is measured).
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch
import torch.nn.functional as F

from csl_hf import CSLCache, load_student, load_weak_to_strong_data
from csl_hf.cache import TEST_SPLIT, TRAIN_SPLIT
from csl_hf.data.source import ImageSource
from csl_hf.data.targets import ImageTargets, image_positions
from csl_hf.models.student import find_classifier


def cosine(steps: int, warmup: int = 0):
    return lambda k: (k + 1) / warmup if k < warmup else 0.5 * (1 + math.cos(math.pi * (k - warmup) / max(1, steps - warmup)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache_dir", required=True)
    p.add_argument("--seed", type=int, default=0, help="the split seed the cache was labeled with")
    p.add_argument("--sizes", default="1000,1000,2000", help="teacher, test and train sizes of that run")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    teacher_size, test_size, train_size = (int(x) for x in a.sizes.split(","))
    cache = CSLCache.load(a.cache_dir)
    data = load_weak_to_strong_data("animal_mnist", seed=a.seed, teacher_size=teacher_size, test_size=test_size,
                                    train_size=train_size)
    pretrained, processor = load_student(None, data.id2label)
    source = ImageSource.from_datasets(data.train, data.test, processor, cache=cache)
    train_pos, test_pos = image_positions(cache, data.train, data.test)

    def pixels(ds, positions):
        return torch.cat(list(ImageTargets(ds, positions, None, source.preprocessing, source.image_column).batches(250)))

    x_train, x_test = pixels(data.train, train_pos), pixels(data.test, test_pos)
    y_train, y_test = (cache.labels[cache.rows(s)].long() for s in (TRAIN_SPLIT, TEST_SPLIT))
    f_train, f_test = (cache.features[cache.rows(s)].float() for s in (TRAIN_SPLIT, TEST_SPLIT))
    head_name, _ = find_classifier(pretrained)
    n, batch = len(y_train), 100

    def fit_head(head):
        opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine(20 * math.ceil(n / batch)))
        g = torch.Generator().manual_seed(0)
        for _ in range(20):
            for idx in torch.randperm(n, generator=g).split(batch):
                loss = F.cross_entropy(head(f_train[idx]), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()

    @torch.no_grad()
    def accuracy(model) -> float:
        model.eval()
        logits = torch.cat([model(pixel_values=x).logits for x in x_test.split(250)])
        return 100 * (logits.argmax(-1) == y_test).float().mean().item()

    probe_head = copy.deepcopy(dict(pretrained.named_modules())[head_name])
    fit_head(probe_head)
    with torch.no_grad():
        probe = 100 * (probe_head(f_test).argmax(-1) == y_test).float().mean().item()
    print(f"Animal-MNIST, {n} training images, {len(y_test)} test images; the bundled student at "
          f"{source.preprocessing.size[0]} px; {a.threads} threads\n")
    print("| head fitted first (LP-FT) | batch-norm statistics frozen | test accuracy % | wall s |")
    print("|---|---|---|---|")
    print(f"| (linear probe only) | | {probe:.1f} | |")
    for warm, freeze in ((False, False), (True, False), (False, True), (True, True)):
        t0 = time.time()
        student = copy.deepcopy(pretrained)
        head = dict(student.named_modules())[head_name]
        if warm:
            fit_head(head)
        in_head = {id(q) for q in head.parameters()}
        groups = [{"params": [q for q in student.parameters() if id(q) in in_head], "lr": 1e-3},
                  {"params": [q for q in student.parameters() if id(q) not in in_head], "lr": 1e-4}]
        opt = torch.optim.AdamW(groups, weight_decay=0.0)
        steps = 3 * math.ceil(n / batch)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine(steps, math.ceil(0.1 * steps)))
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            student.train()
            if freeze:
                for m in student.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.eval()
            for idx in torch.randperm(n, generator=g).split(batch):
                loss = F.cross_entropy(student(pixel_values=x_train[idx]).logits, y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        print(f"| {'yes' if warm else 'no'} | {'yes' if freeze else 'no'} | {accuracy(student):.1f} | "
              f"{time.time() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
