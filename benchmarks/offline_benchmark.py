#!/usr/bin/env python
"""The offline weak-to-strong benchmark behind docs/benchmark.md: several seeds of the default pipeline on a bundled
dataset, with the baselines of the same run (single teacher = level 0, oracle routing, ensemble without routing),
specialties from contiguous id blocks (the paper's layout) or from the data (this package's default), optionally
with the class ids permuted by the seed (as a user's dataset comes: its class order means nothing).

    python benchmarks/offline_benchmark.py --dataset_name animal_mnist --seeds 3,4,5 --permute_classes \
        --specialties blocks,auto --output_dir bench_out
    python benchmarks/offline_benchmark.py --dataset_name animal_mnist --seeds 0,1,2 --specialties blocks \
        --sweep 25,50,100,300 --soft
    python benchmarks/offline_benchmark.py --dataset_name digits_domains --seeds 3,4,5 --teacher_steps 200
    python benchmarks/offline_benchmark.py --seeds 3,4,5 --permute_classes --specialties blocks,auto \
        --assignment student,oos_gate          # the same teachers and cache, routed two ways (gates trained too)

Each run is the library path of ``examples/run_csl.py`` with ``seed = teacher_seed = S`` and the package defaults
(1,000 teacher images, 2,000 test images, the rest weak-to-strong; tiny ConvNeXt teachers, 100 steps; the bundled
EfficientNet-Lite0 student at 64 px; the probe recipe), its report kept under --output_dir (a rerun reuses it).
*Fraction of oracle gain* = (best CSL PGR - single-teacher PGR) / (best oracle PGR - single-teacher PGR), with the
oracle of the same specialties. Every number printed comes from the reports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import datasets
import numpy as np


def mean_std(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    return f"{vals[0]:.1f}" if len(vals) == 1 else f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"


def permute(data, seed: int):
    """The splits with class ids permuted by ``seed`` (labels and names together): the same images, another order."""
    perm = np.random.default_rng(seed).permutation(len(data.class_names))
    names = [None] * len(perm)
    for old, new in enumerate(perm):
        names[int(new)] = data.class_names[old]
    label = data.label_column

    def remap(ds):
        feature = datasets.ClassLabel(names=names)
        ds = ds.map(lambda ex: {label: int(perm[ex[label]])}, features=ds.features.copy())
        return ds.cast_column(label, feature)

    data.teacher, data.train, data.test = remap(data.teacher), remap(data.train), remap(data.test)
    data.class_names = names
    return data


def run(out: str, dataset: str, seed: int, specialties: str, permute_classes: bool, teacher_steps: int,
        soft: bool, assignments: tuple[str, ...] = ("auto",)) -> dict[str, dict]:
    """One run into ``out`` (its reports are reused when present): the first assignment's report in ``out``, every
    further assignment's rounds on the same cache in ``out/assignment-<name>``. ``oos_gate`` trains the teachers with
    gate teachers (``specialty_gates``; the teachers themselves are the same). Returns ``{assignment: report}``."""
    dirs = {a: out if i == 0 else os.path.join(out, f"assignment-{a}") for i, a in enumerate(assignments)}
    path = os.path.join(out, "csl_report.json")
    if not all(os.path.isfile(os.path.join(d, "csl_report.json")) for d in dirs.values()):
        from csl_hf import (CoSupervisedConfig, CoSupervisedTrainer, TeacherTrainingArguments, load_student,
                            load_weak_to_strong_data, train_teacher_hierarchy)

        data = load_weak_to_strong_data(dataset, seed=seed)
        if permute_classes:
            data = permute(data, seed)
        targs = TeacherTrainingArguments(teacher_seed=seed, teacher_steps=teacher_steps, specialties=specialties,
                                         specialty_gates="oos_gate" in assignments)
        teachers = train_teacher_hierarchy(data.teacher, targs, domain_level=data.domain_column is not None)
        student, processor = load_student(None, data.id2label)
        args = CoSupervisedConfig(output_dir=out, seed=seed, disable_tqdm=True, overwrite_output_dir=True,
                                  save_round_checkpoints=False, logging_steps=10**9, assignment=assignments[0])
        trainer = CoSupervisedTrainer(model=student, teachers=teachers, args=args, train_dataset=data.train,
                                      eval_dataset=data.test, processing_class=processor)
        trainer.train()
        for assignment in assignments[1:]:
            other = CoSupervisedConfig(output_dir=dirs[assignment], seed=seed, disable_tqdm=True,
                                       overwrite_output_dir=True, save_round_checkpoints=False, logging_steps=10**9,
                                       assignment=assignment)
            CoSupervisedTrainer(args=other, cache=trainer.cache).train()
        if soft:
            soft_args = CoSupervisedConfig(output_dir=os.path.join(out, "soft"), seed=seed, disable_tqdm=True,
                                           overwrite_output_dir=True, save_round_checkpoints=False, soft_labels=True,
                                           baselines="none", logging_steps=10**9)
            CoSupervisedTrainer(args=soft_args, cache=trainer.cache).train()
    reports = {}
    for assignment, directory in dirs.items():
        with open(os.path.join(directory, "csl_report.json")) as f:
            reports[assignment] = json.load(f)
    soft_path = os.path.join(out, "soft", "csl_report.json")
    if os.path.isfile(soft_path):
        with open(soft_path) as f:
            reports[assignments[0]]["soft"] = json.load(f)
    return reports


def summarize(name: str, reports: list[dict]) -> None:
    levels = [r["num_teachers"] for r in reports[0]["rounds"]]
    pgr = lambda rep, chain: [r["pgr"] for r in (rep["rounds"] if chain == "csl" else rep["baselines"][chain])]  # noqa: E731
    print(f"\n### {name}\n")
    print("| teachers | assignment acc % | keep % | precision % | PGR CSL | PGR oracle | PGR ensemble |"
          + (" PGR CSL soft |" if "soft" in reports[0] else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if "soft" in reports[0] else ""))
    for i, n in enumerate(levels):
        col = lambda key: [100 * r["rounds"][i][key] for r in reports if r["rounds"][i].get(key) is not None]  # noqa: E731
        row = (f"| {n} | {mean_std(col('assignment_accuracy'))} | {mean_std(col('keep_rate'))} | "
               f"{mean_std(col('precision'))} | {mean_std([pgr(r, 'csl')[i] for r in reports])} | "
               f"{mean_std([pgr(r, 'oracle')[i] for r in reports])} | "
               f"{mean_std([pgr(r, 'ensemble')[i] for r in reports])} |")
        if "soft" in reports[0]:
            row += f" {mean_std([r['soft']['rounds'][i]['pgr'] for r in reports])} |"
        print(row)
    single = [r["rounds"][0]["pgr"] for r in reports]
    best = [max(pgr(r, "csl")[1:]) for r in reports]
    oracle = [max(pgr(r, "oracle")[1:]) for r in reports]
    frac = [100 * (b - s) / (o - s) for b, s, o in zip(best, single, oracle)]
    print(f"\nbest CSL PGR {mean_std(best)} (per seed {', '.join(f'{b:.1f}' for b in best)}); single teacher "
          f"{mean_std(single)}; gain {mean_std([b - s for b, s in zip(best, single)])}; best oracle {mean_std(oracle)}; "
          f"fraction of oracle gain recovered {mean_std(frac)} % (per seed {', '.join(f'{f:.1f}' for f in frac)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_name", default="animal_mnist")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--specialties", default="auto", help="comma-separated: blocks, auto (class hierarchies)")
    p.add_argument("--permute_classes", action="store_true", help="permute the class ids by the seed")
    p.add_argument("--teacher_steps", type=int, default=100)
    p.add_argument("--soft", action="store_true", help="also the rounds with soft labels on the same cache")
    p.add_argument("--assignment", default="auto",
                   help="comma-separated --assignment values, each run on the same teachers and cache, e.g. "
                        "student,oos_gate (oos_gate also trains gate teachers: --specialty_gates)")
    p.add_argument("--sweep", default="", help="teacher budgets (steps) to sweep, e.g. 25,50,100,300")
    p.add_argument("--output_dir", default="bench_out")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    t0 = time.time()
    domains = a.dataset_name == "digits_domains"
    assignments = tuple(a.assignment.split(","))
    gates = "-gates" if "oos_gate" in assignments else ""  # other teachers (with gates): other directories
    for spec in ["domains"] if domains else a.specialties.split(","):
        tag = f"{a.dataset_name}{'-perm' if a.permute_classes else ''}-{spec}-steps{a.teacher_steps}{gates}"
        runs = [run(os.path.join(a.output_dir, f"{tag}-seed{s}"), a.dataset_name, s, "auto" if domains else spec,
                    a.permute_classes, a.teacher_steps, a.soft, assignments) for s in seeds]
        weak = [100 * r[assignments[0]]["weak_accuracy"] for r in runs]
        ceiling = [100 * r[assignments[0]]["ceiling_accuracy"] for r in runs]
        print(f"\n## {tag}: seeds {a.seeds}; weak {mean_std(weak)} %, ceiling {mean_std(ceiling)} %; ceiling - weak "
              f"per seed: {', '.join(f'{c - w:.1f}' for c, w in zip(ceiling, weak))} points")
        for assignment in assignments:
            name = f"specialties {spec}" if not domains else "domain specialists (agreement routing)"
            summarize(name + (f", --assignment {assignment}" if len(assignments) > 1 else ""),
                      [r[assignment] for r in runs])
        best = {x: [max(p["pgr"] for p in r[x]["rounds"][1:]) for r in runs] for x in assignments}
        for x in assignments[1:]:
            diff = [b - c for b, c in zip(best[x], best[assignments[0]])]
            print(f"\nbest CSL PGR, {x} minus {assignments[0]}: {mean_std(diff)} (per seed "
                  f"{', '.join(f'{d:+.1f}' for d in diff)})")
    if a.sweep:
        print("\n## teacher budget sweep (hard labels)\n")
        print("| teacher steps | generalist test acc % | single-teacher PGR | best CSL PGR | gain |")
        print("|---|---|---|---|---|")
        spec = a.specialties.split(",")[0]
        for steps in [int(x) for x in a.sweep.split(",")]:
            tag = f"{a.dataset_name}{'-perm' if a.permute_classes else ''}-{spec}-steps{steps}"
            reps = [run(os.path.join(a.output_dir, f"{tag}-seed{s}"), a.dataset_name, s, spec, a.permute_classes,
                        steps, False)["auto"] for s in seeds]
            single = [r["rounds"][0]["pgr"] for r in reps]
            best = [max(x["pgr"] for x in r["rounds"][1:]) for r in reps]
            print(f"| {steps} | {mean_std([100 * r['weak_accuracy'] for r in reps])} | {mean_std(single)} | "
                  f"{mean_std(best)} | {mean_std([b - s for b, s in zip(best, single)])} |")
    print(f"\n(total wall time {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
