#!/usr/bin/env python
"""Routing research (docs/routing_research.md): how CSL's class levels should route samples to specialists.

For one seed it (1) loads the data, permuting the class ids by the seed (a user's dataset comes in arbitrary order),
(2) makes the weak-to-strong splits, (3) builds several class hierarchies -- ``blocks`` (contiguous ids, today),
``auto`` (balanced clustering of the student's class-mean features on the teacher split, `csl_hf.method.specialties`),
``auto_nested`` (the same, nested where the level sizes allow) and ``auto_conf`` (balanced clustering of the
generalist's confusion on the teacher split) -- trains the teachers of each, plus specialists with an extra
"out of my specialty" output, (4) labels the data ONCE with all teachers and the default Lite0 student at 64 px
(``csl_hf.cache.labeling.build_cache``), then (5) runs the CSL rounds on that cache for every routing option with a small
plain-PyTorch rounds loop (`routing_rounds.py`, the package's recipe).

    # selection seeds, every option (labels once per seed, then ~3 s per option):
    python benchmarks/routing_research.py --seeds 0,1,2 --out research_out
    # report seeds, the candidates only:
    python benchmarks/routing_research.py --seeds 3,4,5 --out research_out --options student,oracle,...
    # the loop vs the package (CoSupervisedTrainer on the same cache, student routing):
    python benchmarks/routing_research.py --seeds 0 --out research_out --verify
    # domains (digits_domains, 200 teacher steps, no permutation):
    python benchmarks/routing_research.py --dataset digits_domains --teacher_steps 200 --no_permute --seeds 3,4,5 \
        --out research_out

Every seed's results are written to ``OUT/<dataset>[-perm]-seed<S>/results.json`` (caches under ``cache/``, reused
when present); the tables aggregate those files (mean ± std over the seeds given).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from routing_rounds import Rounds, level_summary, ms, summarize, teacher_only  # noqa: E402

from csl_hf.method import consistency as C  # noqa: E402
from csl_hf.cache import CSLCache  # noqa: E402
from csl_hf.method.specialties import (  # noqa: E402
    auto_class_hierarchy,
    class_mean_features,
    confusion_matrix,
)

PER_LEVEL = [1, 2, 4, 5]
CLASS_HIERARCHIES = ("blocks", "auto", "auto_nested", "auto_conf", "auto_conf_nested")

# name -> (route, soft labels, refinement passes). Routes: see `targets_for`.
OPTIONS = {
    "student": ("student", False, 0),  # today's default (paper)
    "student_soft": ("student", True, 0),
    "oracle": ("oracle", False, 0),  # diagnostic upper reference (ground-truth routing)
    "ensemble": ("ensemble", False, 0),  # baseline: no routing
    "agreement": ("agreement", False, 0),
    "softgate": ("softgate", False, 0),
    "softgate_soft": ("softgate", True, 0),
    "student_refine1": ("student", False, 1),
    "student_refine2": ("student", False, 2),
    "softgate_refine1": ("softgate", False, 1),
    "softgate_refine2": ("softgate", False, 2),
    "oos_gate": ("oos_gate", False, 0),  # plain specialists' labels, gate = student mass x OOS in-specialty prob
    "oos": ("oos", False, 0),  # OOS specialists replace the plain ones (same budget): labels and gate
    "oos_only": ("oos_only", False, 0),  # OOS specialists, gate by their in-specialty prob alone
    "oos_gate_hard": ("oos_gate_hard", False, 0),  # hard route to the argmax of the oos_gate gate
    "oos_gate_refine1": ("oos_gate", False, 1),
    "oos_gate_soft": ("oos_gate", True, 0),
    "gen_gate": ("gen_gate", False, 0),  # gate = student mass x generalist mass (no extra teacher)
}
DOMAIN_OPTIONS = {
    "agreement": ("agreement", False, 0),  # today's default for domain levels
    "oracle": ("oracle", False, 0),
    "ensemble": ("ensemble", False, 0),
    "agreement_soft_gate": ("kl_gate", False, 0),
    "agreement_refine1": ("agreement", False, 1),
    "agreement_refine2": ("agreement", False, 2),
}



# ------------------------------------------------------------------------------------------------------------ data
def permute_classes(dataset, seed: int):
    """Relabel class ``c`` as ``perm[c]`` (``perm`` seeded) and reorder the class names to match."""
    import datasets

    names = list(dataset.features["label"].names)
    perm = np.random.default_rng(seed).permutation(len(names))
    new_names = [None] * len(names)
    for old, new in enumerate(perm):
        new_names[new] = names[old]
    labels = perm[np.asarray(dataset["label"])]
    ds = dataset.remove_columns("label").add_column("label", labels.tolist())
    return ds.cast_column("label", datasets.ClassLabel(names=new_names)), perm.tolist()


def routing_coverage(predicted: torch.Tensor, labels: torch.Tensor, groups: Sequence[Sequence[int]]) -> float:
    """Share of samples whose predicted class falls in the group of their true class (a router's accuracy).

    ``predicted``, ``labels``: ``[N]`` class ids (``labels < 0`` ignored); ``groups``: a partition of the classes.
    """
    num = max(max(g) for g in groups) + 1
    owner = torch.full((num,), -1, dtype=torch.long)
    for t, g in enumerate(groups):
        owner[torch.as_tensor(list(g), dtype=torch.long)] = t
    known = labels >= 0
    return float((owner[predicted[known]] == owner[labels[known]]).float().mean())


def restrict_to_classes(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Probabilities ``[..., C]`` restricted to a class set ``[C]`` and renormalised (uniform where no mass is left)."""
    masked = probs * mask.to(probs.dtype)
    total = masked.sum(dim=-1, keepdim=True)
    uniform = mask.to(probs.dtype) / mask.sum(dim=-1, keepdim=True).clamp_min(1).to(probs.dtype)
    return torch.where(total > 0, masked / total.clamp_min(1e-30), uniform)


def load_split_images(dataset):
    """``(images, labels)``: every image of a map-style split as uint8 ``[3, H, W]`` (stacked when sizes agree)."""
    from csl_hf.data import infer_columns
    from csl_hf.data.images import load_image
    from csl_hf.data.targets import raw_images

    image_col, label_col, _ = infer_columns(dataset)
    images = [load_image(v) for v in raw_images(dataset, image_col)[image_col]]
    if len({tuple(i.shape) for i in images}) == 1:
        images = torch.stack(images)
    return images, torch.as_tensor(dataset[label_col], dtype=torch.long)


@torch.no_grad()
def mixture_probs(mixture, images, batch_size: int) -> torch.Tensor:
    """``[N, K, C]`` probabilities of every teacher of ``mixture``, each fed its own preprocessing."""
    preps = mixture.preprocessings()
    mixture.eval()
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        out.append(mixture(pixel_values_per_teacher=[p(chunk) for p in preps]).probs)
    return torch.cat(out)


@torch.no_grad()
def student_features(student, preprocessing, images, batch_size: int = 128) -> torch.Tensor:
    """The student's classifier input ``[N, D]`` for uint8 images (as the labeling pass captures it)."""
    from csl_hf.models.student import find_classifier

    _, head = find_classifier(student)
    captured = {}
    handle = head.register_forward_pre_hook(lambda m, a: captured.__setitem__("x", a[0].detach()))
    out = []
    try:
        student.eval()
        for s in range(0, len(images), batch_size):
            student(pixel_values=preprocessing(images[s:s + batch_size]))
            out.append(captured["x"].float())
    finally:
        handle.remove()
    return torch.cat(out)


def train_oos_specialists(targs, specialties, pixel_values, labels, names, seed_offset: int):
    """Class specialists with an extra output "other" (index C), trained on ALL teacher images (others -> C),
    in-specialty images oversampled to half the draws, ``targs.teacher_steps`` steps each (the plain budget)."""
    from csl_hf.teachers.training import build_teacher, train_teacher

    num = len(names)
    out = []
    for k, spec in enumerate(specialties):
        classes = list(spec["classes"])
        inside = torch.isin(labels, torch.tensor(classes))
        y = torch.where(inside, labels, torch.full_like(labels, num))
        idx_in, idx_out = inside.nonzero().flatten(), (~inside).nonzero().flatten()
        reps = max(1, round(len(idx_out) / max(1, len(idx_in))))
        idx = torch.cat([idx_in.repeat(reps), idx_out])
        model = build_teacher(targs, num + 1, list(names) + ["other"], seed=targs.teacher_seed + seed_offset + k)
        train_teacher(model, pixel_values[idx], y[idx], steps=targs.teacher_steps, batch_size=targs.teacher_batch_size,
                      lr=targs.teacher_learning_rate, seed=targs.teacher_seed + seed_offset + k,
                      class_subset=classes + [num], weight_decay=targs.teacher_weight_decay)
        out.append((model, classes))
    return out


@torch.no_grad()
def oos_outputs(models, pixel_values, num_labels: int, batch_size: int = 512):
    """For each OOS specialist: (in-specialty probability ``[N]``, renormalised in-specialty distribution ``[N, C]``)."""
    ins, dists = [], []
    for model, classes in models:
        mask = torch.zeros(num_labels + 1, dtype=torch.bool)
        mask[classes] = True
        mask[num_labels] = True
        probs = torch.cat([C.masked_softmax(model(pixel_values=pixel_values[s:s + batch_size]).logits, mask)
                           for s in range(0, len(pixel_values), batch_size)])
        ins.append(1.0 - probs[:, num_labels])
        dists.append(restrict_to_classes(probs[:, :num_labels], mask[:num_labels]))
    return torch.stack(ins), torch.stack(dists)


def build_hierarchy(name: str, num: int, stats: dict):
    """The class hierarchy ``name`` from the teacher-split statistics (class-mean features, generalist confusion)."""
    from csl_hf.method.hierarchy import class_hierarchy

    if name == "blocks":
        return class_hierarchy(num, PER_LEVEL)
    source = {"class_features": stats["class_means"]} if name.startswith("auto") and "conf" not in name \
        else {"confusion": stats["confusion"]}
    return auto_class_hierarchy(PER_LEVEL, nested=name.endswith("nested"), **source)


def prepare(seed: int, dataset_name: str, permute: bool, teacher_steps: int, out: str, train_size: int | None,
            wanted: list[str]) -> dict:
    """Teachers of every hierarchy, one labeling pass -> ``out/cache`` + ``out/hierarchies.pt``; returns the meta.

    A cache made earlier is reused; class hierarchies in ``wanted`` that it lacks are added to it (their teachers
    are trained and run on the cached images; the student's features are unchanged).
    """
    meta_path = os.path.join(out, "hierarchies.pt")
    meta = None
    if os.path.isfile(meta_path) and os.path.isfile(os.path.join(out, "cache", "cache.json")):
        meta = torch.load(meta_path)
        missing = [] if "domains" in meta["index"] else [h for h in wanted if h not in meta["index"]]
        if not missing:
            return meta
    from csl_hf import TeacherMixture, TeacherTrainingArguments, train_teacher_hierarchy
    from csl_hf.data import load_csl_dataset, make_weak_to_strong_splits
    from csl_hf.cache.labeling import build_cache
    from csl_hf.models import DEFAULT_STUDENT
    from csl_hf.data.preprocessing import Preprocessing
    from csl_hf.models.student import load_student
    from csl_hf.teachers.arguments import teacher_preprocessing

    t0 = time.time()
    dataset = load_csl_dataset(dataset_name)
    domain = "domain" in dataset.column_names
    perm = list(range(len(dataset.features["label"].names)))
    if permute:
        dataset, perm = permute_classes(dataset, seed)
    names = list(dataset.features["label"].names)
    num = len(names)
    splits = make_weak_to_strong_splits(dataset, seed=seed, teacher_size=1000, test_size=2000, train_size=train_size,
                                        stratify_by=("label", "domain") if domain else "label")
    # blocks / auto hierarchies are built here and passed explicitly, so the arguments' own `specialties` is unused
    targs = TeacherTrainingArguments(teacher_steps=teacher_steps, teacher_seed=seed, specialties="blocks")
    images, labels = load_split_images(splits["teacher"])
    tprep = teacher_preprocessing(targs)
    pixels = tprep(images)

    def add_oos(meta_oos, name, hierarchy, cache, all_pixels):
        models = train_oos_specialists(targs, hierarchy[0][1:], pixels, labels, names, seed_offset=1)
        ins, dists = oos_outputs(models, all_pixels, num)
        meta_oos[name] = {"in_specialty": torch.cat([torch.ones(1, ins.shape[1]), ins]),
                          "probs": torch.cat([cache.teacher_probs[:1].float(), dists])}

    if meta is not None:  # add the missing hierarchies to the cache made earlier
        cache = CSLCache.load(os.path.join(out, "cache"))
        tr_img, _ = load_split_images(splits["train"])
        te_img, _ = load_split_images(splits["test"])
        all_images = torch.cat([tr_img, te_img])[cache.source_index]
        all_pixels = tprep(all_images)
        for name in missing:
            hierarchy = build_hierarchy(name, num, meta["stats"])
            mixture = train_teacher_hierarchy(splits["teacher"], targs, specialties=hierarchy[0], levels=hierarchy[1])
            probs = mixture_probs(mixture, all_images, 512).permute(1, 0, 2)[1:]  # [K-1, N, C], no generalist
            base = cache.teacher_probs.shape[0]
            cache.teacher_probs = torch.cat([cache.teacher_probs, probs.to(cache.teacher_probs.dtype)])
            cache.specialties += [dict(sp) for sp in hierarchy[0][1:]]
            cache.levels += [[base + t - 1 for t in level] for level in hierarchy[1][1:]]
            cache.teacher_names += [f"{name} {t}" for t in range(1, len(hierarchy[0]))]
            meta["index"][name] = [0] + list(range(base, base + len(hierarchy[0]) - 1))
            meta["hierarchies"][name] = [list(map(dict, hierarchy[0])), hierarchy[1]]
            add_oos(meta["oos"], name, hierarchy, cache, all_pixels)
        cache.save(os.path.join(out, "cache"))
        meta["extend_s"] = meta.get("extend_s", 0) + time.time() - t0
        torch.save(meta, meta_path)
        return meta

    student_name = DEFAULT_STUDENT
    student, processor = load_student(student_name, dict(enumerate(names)))
    base = Preprocessing.from_image_processor(processor)
    prep = Preprocessing(size=(64, 64), image_mean=base.image_mean, image_std=base.image_std,
                         rescale_factor=base.rescale_factor)
    hierarchies: dict[str, tuple[list[dict], list[list[int]]]] = {}
    mixtures = {}
    if domain:
        mixtures["domains"] = train_teacher_hierarchy(splits["teacher"], targs, domain_level=True)
        hierarchies["domains"] = (mixtures["domains"].config.specialties, mixtures["domains"].config.levels)
        stats = {}
    else:
        hierarchies["blocks"] = build_hierarchy("blocks", num, {})
        mixtures["blocks"] = train_teacher_hierarchy(splits["teacher"], targs, specialties=hierarchies["blocks"][0],
                                                       levels=hierarchies["blocks"][1])
        feats = student_features(student, prep, images)
        means = class_mean_features(feats, labels, num)
        generalist = mixtures["blocks"].teachers[0]
        with torch.no_grad():
            pred = torch.cat([generalist(pixel_values=pixels[s:s + 500]).logits.argmax(-1)
                              for s in range(0, len(pixels), 500)])
        confusion = confusion_matrix(pred, labels, num)
        stats = {"class_means": means, "confusion": confusion}
        for name in wanted:
            if name != "blocks":
                hierarchies[name] = build_hierarchy(name, num, stats)
                mixtures[name] = train_teacher_hierarchy(splits["teacher"], targs, specialties=hierarchies[name][0],
                                                         levels=hierarchies[name][1])

    # One mixture with every hierarchy's teachers (the generalist once): label the data once.
    teachers, specialties, levels, index = [mixtures[next(iter(mixtures))].teachers[0]], [{"classes": list(range(num))}], [[0]], {}
    for name, mixture in mixtures.items():
        specs, lv = hierarchies[name]
        pos = {0: 0}
        for level in lv[1:]:
            ids = []
            for t in level:
                pos[t] = len(teachers)
                ids.append(len(teachers))
                teachers.append(mixture.teachers[t])
                specialties.append(dict(specs[t]))
            levels.append(ids)
        index[name] = [pos[t] for t in range(len(specs))]
    combined = TeacherMixture.from_teachers(teachers, specialties, levels, preprocessing=[tprep] * len(teachers),
                                            domain_names=mixtures[next(iter(mixtures))].config.domain_names)
    cache, _ = build_cache({"train": splits["train"], "test": splits["test"]}, combined, student, prep,
                           domain_col="domain" if domain else None, batch_size=128, student_name=student_name,
                           show_progress=False)
    cache.save(os.path.join(out, "cache"))

    oos = {}
    if not domain:  # specialists that know their specialty, for every class hierarchy
        tr_img, _ = load_split_images(splits["train"])
        te_img, _ = load_split_images(splits["test"])
        all_pixels = tprep(torch.cat([tr_img, te_img]))[cache.source_index]
        for name, hierarchy in hierarchies.items():
            add_oos(oos, name, hierarchy, cache, all_pixels)
    meta = {"hierarchies": {k: [list(map(dict, v[0])), v[1]] for k, v in hierarchies.items()}, "index": index,
            "perm": perm, "names": names, "oos": oos, "stats": stats, "prepare_s": time.time() - t0}
    torch.save(meta, meta_path)
    return meta




# ------------------------------------------------------------------------------------------------------------ verify
def verify(cache: CSLCache, meta: dict, R: Rounds, seed: int, res_student: dict, out: str) -> dict:
    """The package's `CoSupervisedTrainer` (student routing, hard labels) on the blocks teachers of this cache."""
    from csl_hf import CoSupervisedConfig, CoSupervisedTrainer

    name = "blocks" if "blocks" in meta["index"] else next(iter(meta["index"]))
    idx = meta["index"][name]
    specs, levels = meta["hierarchies"][name]
    sub = CSLCache(features=cache.features, labels=cache.labels, split=cache.split, num_labels=cache.num_labels,
                   levels=levels, specialties=specs, teacher_probs=cache.teacher_probs[torch.tensor(idx)],
                   domains=cache.domains, id2label=cache.id2label, domain_names=cache.domain_names)
    args = CoSupervisedConfig(output_dir=os.path.join(out, "verify"), seed=seed, save_round_checkpoints=False,
                              report_to="none", disable_tqdm=True)
    trainer = CoSupervisedTrainer(args=args, cache=sub)
    trainer.train()
    report = trainer.report
    return {"package": [r["student_accuracy"] for r in report["rounds"]],
            "package_keep": [r["keep_rate"] for r in report["rounds"]],
            "package_ceiling": report["ceiling_accuracy"],
            "loop": [r["acc"] for r in level_summary(res_student["rounds"])],
            "loop_keep": [r["keep"] for r in level_summary(res_student["rounds"])]}




# ------------------------------------------------------------------------------------------------------------ main
def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def run_seed(a, seed: int) -> dict:
    tag = f"{a.dataset}{'' if a.no_permute else '-perm'}{'' if a.teacher_steps == 100 else f'-steps{a.teacher_steps}'}"
    out = os.path.join(a.out, f"{tag}-seed{seed}")
    os.makedirs(out, exist_ok=True)
    res_path = os.path.join(out, "results.json")
    results = read_json(res_path) if os.path.isfile(res_path) else {"seed": seed, "runs": {}}
    t0 = time.time()
    meta = prepare(seed, a.dataset, not a.no_permute, a.teacher_steps, out, a.train_size,
                   a.hierarchies.split(",") if a.hierarchies else list(CLASS_HIERARCHIES))
    results["prepare_s"] = meta["prepare_s"]
    cache = CSLCache.load(os.path.join(out, "cache"))
    hierarchies = [h for h in (a.hierarchies.split(",") if a.hierarchies else meta["index"]) if h in meta["index"]]
    options = DOMAIN_OPTIONS if "domains" in meta["index"] else OPTIONS
    wanted = a.options.split(",") if a.options else list(options)
    results["hierarchies"] = meta["hierarchies"]
    results["perm"] = meta["perm"]
    level0 = None
    for h in hierarchies:
        R = Rounds(cache, meta, h, seed)
        if level0 is None:  # identical for every hierarchy: the same generalist, features and seeds
            ceiling, level0 = R.ceiling_and_level0()
            results["ceiling"], results["weak"] = ceiling, R.weak
        results.setdefault("teacher_only", {})[h] = teacher_only(R)
        results.setdefault("coverage0", {})[h] = {
            str(level): routing_coverage(level0["hard"][0].argmax(-1), R.y_tr,
                                         [R.specs[t]["classes"] for t in R.levels[level]])
            for level in range(1, len(R.levels)) if not R.domain}
        for name in wanted:
            key = f"{h}/{name}"
            if key in results["runs"] and not a.rerun:
                continue
            route, soft, refine = options[name]
            if route.startswith("oos") and getattr(R, "oos_in", None) is None:
                continue
            t1 = time.time()
            results["runs"][key] = R.run(route, soft, refine, ceiling, level0)
            results["runs"][key]["seconds"] = time.time() - t1
            print(f"seed {seed} {key}: PGR " + ", ".join(
                f"{r['pgr']:.1f}" for r in level_summary(results["runs"][key]["rounds"])) +
                  f" ({time.time() - t1:.1f} s)", flush=True)
        ref = results["runs"].get(f"{h}/{'agreement' if R.domain else 'student'}")
        if a.verify and h == hierarchies[0] and ref is not None:
            results["verify"] = verify(cache, meta, R, seed, ref, out)
            print("verify:", json.dumps(results["verify"]))
    results["wall_s"] = results.get("wall_s", 0) + time.time() - t0
    with open(res_path, "w") as f:
        json.dump(results, f, indent=1)
    return results




def main():
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="animal_mnist")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="research_out")
    p.add_argument("--no_permute", action="store_true", help="keep the dataset's class order")
    p.add_argument("--teacher_steps", type=int, default=100)
    p.add_argument("--train_size", type=int, default=None, help="weak-to-strong training images (default: the rest)")
    p.add_argument("--hierarchies", default="", help="comma-separated subset (default: all of the cache)")
    p.add_argument("--options", default="", help="comma-separated routing options (default: all)")
    p.add_argument("--rerun", action="store_true", help="recompute options already in results.json")
    p.add_argument("--verify", action="store_true", help="also run the package's trainer (student routing)")
    p.add_argument("--summary_only", action="store_true")
    a = p.parse_args()
    t0 = time.time()
    seeds = [int(s) for s in a.seeds.split(",")]
    results = []
    for s in seeds:
        if a.summary_only:
            tag = f"{a.dataset}{'' if a.no_permute else '-perm'}{'' if a.teacher_steps == 100 else f'-steps{a.teacher_steps}'}"
            results.append(read_json(os.path.join(a.out, f"{tag}-seed{s}", "results.json")))
        else:
            results.append(run_seed(a, s))
    summarize(results, a.hierarchies.split(",") if a.hierarchies else None, a.options.split(",") if a.options else None)
    print(f"\n(wall time of this invocation {time.time() - t0:.0f} s; labeling+teachers per seed "
          f"{ms([r.get('prepare_s') for r in results])} s)")


if __name__ == "__main__":
    main()
