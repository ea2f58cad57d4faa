#!/usr/bin/env python
"""The offline weak-to-strong benchmark behind docs/benchmark.md: several seeds of the default pipeline on a bundled
dataset, with the baselines of the same run (single teacher = level 0, oracle routing, ensemble without routing),
specialties from contiguous id blocks (the paper's layout) or from the data (this package's default), optionally
with the class ids permuted by the seed (as a user's dataset comes: its class order means nothing).

    python benchmarks/offline_benchmark.py --seeds 24,25,26,27,28,29 --permute_classes --specialties auto \\
        --assignments student                  # the package's default beside the paper's student routing
    python benchmarks/offline_benchmark.py --dataset_name animal_mnist --seeds 3,4,5 --permute_classes \\
        --specialties blocks,auto --output_dir bench_out
    python benchmarks/offline_benchmark.py --dataset_name animal_mnist --seeds 0,1,2 --specialties blocks \\
        --sweep 25,50,100,300 --soft
    python benchmarks/offline_benchmark.py --dataset_name digits_domains --seeds 3,4,5 --teacher_steps 200
    python benchmarks/offline_benchmark.py --assignment student --seeds 3,4,5 --permute_classes \\
        --specialties blocks,auto --assignments soft_gate,oos_gate   # one cache, routed three ways (gates trained)
    python benchmarks/offline_benchmark.py --seeds 12,13,14,15,16,17 --permute_classes --specialties auto \\
        --compare_denoise top3                 # the default filter beside the paper's top3, each with its oracle
    python benchmarks/offline_benchmark.py --assignment student --seeds 0,1,2 --specialties blocks --denoise top3 \\
        --soft                                 # the paper's setting

Each run is the library path of ``examples/run_csl.py`` with ``seed = teacher_seed = S`` and the package defaults
(1,000 teacher images, 2,000 test images, the rest weak-to-strong; tiny ConvNeXt teachers, 100 steps, with a gate
teacher per class specialist when a chain routes by them: ``--assignment auto``, the default, or ``oos_gate``; the
bundled EfficientNet-Lite0 student at 64 px; the probe recipe), its report kept under --output_dir (a rerun reuses
it). The tables recorded before ``auto`` routed class levels by gate teachers pass ``--assignment student``.
*PGR* (performance gap recovered) = 100 x (student - weak) / (ceiling - weak) test accuracy;
*fraction of oracle gain* = (best CSL PGR - single-teacher PGR) / (best oracle PGR - single-teacher PGR), with the
oracle of the same specialties and the same filter (--compare_denoise: also against that filter's oracle); the
*worst class* is the lowest per-class test accuracy of the best round. Every number printed comes from the reports.
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
        extras: dict[str, dict], denoise: str = "auto", assignment: str = "auto") -> dict:
    """One run into ``out`` (its report is reused when present), then the rounds of every ``extras`` entry (name ->
    `CoSupervisedConfig` overrides, e.g. ``{"soft": {"soft_labels": True}}``) on the same cache, into ``out/name``.
    The extra reports are attached to the run's report under their names."""
    from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, CSLCache

    path = os.path.join(out, "csl_report.json")
    common = dict(seed=seed, disable_tqdm=True, overwrite_output_dir=True, save_round_checkpoints=False,
                  logging_steps=10**9)
    if not os.path.isfile(path):
        from csl_hf import TeacherTrainingArguments, load_student, load_weak_to_strong_data, train_teacher_hierarchy

        data = load_weak_to_strong_data(dataset, seed=seed)
        if permute_classes:
            data = permute(data, seed)
        # Gate teachers are trained after the teachers (which stay bit-identical), only when a chain needs them:
        # as the command line does, for oos_gate and for auto on a class hierarchy.
        gates = needs_gates(dataset, assignment, extras)
        targs = TeacherTrainingArguments(teacher_seed=seed, teacher_steps=teacher_steps, specialties=specialties,
                                         specialty_gates=gates)
        teachers = train_teacher_hierarchy(data.teacher, targs, domain_level=data.domain_column is not None)
        student, processor = load_student(None, data.id2label)
        args = CoSupervisedConfig(output_dir=out, denoise=denoise, assignment=assignment, **common)
        CoSupervisedTrainer(model=student, teachers=teachers, args=args, train_dataset=data.train,
                            eval_dataset=data.test, processing_class=processor).train()
    with open(path) as f:
        report = json.load(f)
    cache = None
    for name, overrides in extras.items():
        extra_path = os.path.join(out, name, "csl_report.json")
        if not os.path.isfile(extra_path):
            cache = cache or CSLCache.load(os.path.join(out, "cache"))
            extra_args = CoSupervisedConfig(output_dir=os.path.join(out, name),
                                            **{**common, "baselines": "none", "denoise": denoise,
                                               "assignment": assignment, **overrides})
            CoSupervisedTrainer(args=extra_args, cache=cache).train()
        with open(extra_path) as f:
            report[name] = json.load(f)
    return report


def summarize(name: str, reports: list[dict], extras: list[str]) -> None:
    levels = [r["num_teachers"] for r in reports[0]["rounds"]]
    pgr = lambda rep, chain: [r["pgr"] for r in (rep["rounds"] if chain == "csl" else rep["baselines"][chain])]  # noqa: E731
    print(f"\n### {name}\n")
    print("| teachers | assignment acc % | keep % | precision % | PGR CSL | PGR oracle | PGR ensemble |"
          + "".join(f" PGR {e} |" for e in extras))
    print("|---|---|---|---|---|---|---|" + "---|" * len(extras))
    for i, n in enumerate(levels):
        col = lambda key: [100 * r["rounds"][i][key] for r in reports if r["rounds"][i].get(key) is not None]  # noqa: E731
        row = (f"| {n} | {mean_std(col('assignment_accuracy'))} | {mean_std(col('keep_rate'))} | "
               f"{mean_std(col('precision'))} | {mean_std([pgr(r, 'csl')[i] for r in reports])} | "
               f"{mean_std([pgr(r, 'oracle')[i] for r in reports])} | "
               f"{mean_std([pgr(r, 'ensemble')[i] for r in reports])} |")
        row += "".join(f" {mean_std([r[e]['rounds'][i]['pgr'] for r in reports])} |" for e in extras)
        print(row)
    single = [r["rounds"][0]["pgr"] for r in reports]
    oracle = [max(pgr(r, "oracle")[1:]) for r in reports]
    # the oracle of a compared filter (an extra with its own oracle baseline): the yardstick before this filter
    reference = next((e for e in extras if "oracle" in reports[0][e].get("baselines", {})), None)
    csl_best = None
    for chain in ["csl", *extras]:
        rounds = [(r["rounds"] if chain == "csl" else r[chain]["rounds"]) for r in reports]
        best_i = [max(range(1, len(rs)), key=lambda i: rs[i]["pgr"]) for rs in rounds]
        best = [rs[i]["pgr"] for rs, i in zip(rounds, best_i)]
        own = oracle if chain == "csl" or "oracle" not in reports[0][chain].get("baselines", {}) else \
            [max(x["pgr"] for x in r[chain]["baselines"]["oracle"][1:]) for r in reports]
        csl_best = csl_best or best
        frac = [100 * (b - s) / (o - s) for b, s, o in zip(best, single, own)]
        versus = "" if chain == "csl" else (
            f"; minus CSL {mean_std([b - c for b, c in zip(best, csl_best)])} (per seed "
            f"{', '.join(f'{b - c:+.1f}' for b, c in zip(best, csl_best))})")
        if reference is not None:
            ref = [max(x["pgr"] for x in r[reference]["baselines"]["oracle"][1:]) for r in reports]
            ref_frac = [100 * (b - s) / (o - s) for b, s, o in zip(best, single, ref)]
            versus += (f"; fraction of the {reference} oracle's gain {mean_std(ref_frac)} % (per seed "
                       f"{', '.join(f'{f:.1f}' for f in ref_frac)})")
        worst = [100 * min(v for v in rs[i].get("per_class_accuracy", {"-": float("nan")}).values() if v is not None)
                 for rs, i in zip(rounds, best_i)]
        print(f"\n{'CSL' if chain == 'csl' else chain}: best PGR {mean_std(best)} (per seed "
              f"{', '.join(f'{b:.1f}' for b in best)}); single teacher {mean_std(single)}; gain "
              f"{mean_std([b - s for b, s in zip(best, single)])}; best oracle {mean_std(own)}; fraction of oracle "
              f"gain recovered {mean_std(frac)} % (per seed {', '.join(f'{f:.1f}' for f in frac)}; >= 60 % on "
              f"{sum(f >= 60 for f in frac)} of {len(frac)}); worst class {mean_std(worst)} %{versus}")
    # where a baseline beats CSL on some seeds, the per-seed numbers say on which (the table gives only the mean)
    ensemble = [max(pgr(r, "ensemble")[1:]) for r in reports]
    print(f"\nbaselines, best PGR per seed: oracle {', '.join(f'{o:.1f}' for o in oracle)}; ensemble "
          f"{', '.join(f'{e:.1f}' for e in ensemble)}; CSL minus ensemble "
          f"{mean_std([c - e for c, e in zip(csl_best, ensemble)])} (per seed "
          f"{', '.join(f'{c - e:+.1f}' for c, e in zip(csl_best, ensemble))})")


def needs_gates(dataset: str, assignment: str, extras: dict[str, dict]) -> bool:
    """Whether a run's teachers get gate teachers: a chain routes by them (``oos_gate``, or ``auto`` on a class
    hierarchy, where the package's default routes by them)."""
    wanted = {assignment, *(o.get("assignment", assignment) for o in extras.values())}
    return "oos_gate" in wanted or ("auto" in wanted and dataset != "digits_domains")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_name", default="animal_mnist", help="a bundled dataset: animal_mnist, digits_domains")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (split, teacher and rounds seed)")
    p.add_argument("--specialties", default="auto", help="comma-separated: blocks, auto (class hierarchies)")
    p.add_argument("--permute_classes", action="store_true", help="permute the class ids by the seed")
    p.add_argument("--teacher_steps", type=int, default=100, help="training steps of every teacher")
    p.add_argument("--soft", action="store_true", help="also the rounds with soft labels on the same cache")
    p.add_argument("--assignments", default="", help="comma-separated other --assignment values to run on the same "
                   "teachers and cache beside the default, hard labels (e.g. soft_gate,oos_gate; oos_gate also trains "
                   "gate teachers, --specialty_gates)")
    p.add_argument("--assignment", default="auto", help="the routing of the main chain (and of --soft and "
                   "--compare_denoise): the package's default, auto (oos_gate on class levels, with gate teachers "
                   "trained for it), or e.g. student, the paper's rule and the default before that")
    p.add_argument("--denoise", default="auto", help="the consistency filter of every chain (default: the package's, "
                   "auto); top3 is the paper's")
    p.add_argument("--compare_denoise", default="", help="comma-separated other filters run on the same cache, each "
                   "with its own oracle baseline (e.g. top3: the paper's filter); the fractions of the oracle gain are "
                   "then also printed against the first one's oracle")
    p.add_argument("--sweep", default="", help="teacher budgets (steps) to sweep, e.g. 25,50,100,300")
    p.add_argument("--output_dir", default="bench_out")
    a = p.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the log is the tables; the runs' own progress would bury them
    datasets.disable_progress_bars()
    seeds = [int(s) for s in a.seeds.split(",")]
    t0 = time.time()
    domains = a.dataset_name == "digits_domains"
    extras = {name: {"assignment": name} for name in a.assignments.split(",") if name}
    if a.soft:
        extras["soft"] = {"soft_labels": True}
    for d in [d for d in a.compare_denoise.split(",") if d]:
        extras[f"denoise_{d}"] = {"denoise": d, "baselines": "oracle"}
    # Teachers with gate teachers, and chains routed otherwise than auto: their own directories.
    gates = "-gates" if needs_gates(a.dataset_name, a.assignment, extras) else ""
    gates += "" if a.assignment == "auto" else f"-{a.assignment}"
    best_by_spec: dict[str, list[float]] = {}
    for spec in ["domains"] if domains else a.specialties.split(","):
        tag = f"{a.dataset_name}{'-perm' if a.permute_classes else ''}-{spec}-steps{a.teacher_steps}-{a.denoise}{gates}"
        reports = [run(os.path.join(a.output_dir, f"{tag}-seed{s}"), a.dataset_name, s, "auto" if domains else spec,
                       a.permute_classes, a.teacher_steps, extras, a.denoise, a.assignment) for s in seeds]
        weak = [100 * r["weak_accuracy"] for r in reports]
        ceiling = [100 * r["ceiling_accuracy"] for r in reports]
        print(f"\n## {tag}: seeds {a.seeds}; weak {mean_std(weak)} %, ceiling {mean_std(ceiling)} %; ceiling - weak "
              f"per seed: {', '.join(f'{c - w:.1f}' for c, w in zip(ceiling, weak))} points")
        summarize(f"specialties {spec}" if not domains else "domain specialists (agreement routing)", reports,
                  list(extras))
        best_by_spec[spec] = [max(x["pgr"] for x in r["rounds"][1:]) for r in reports]
    first = next(iter(best_by_spec))
    for spec, best in list(best_by_spec.items())[1:]:
        diff = [b - f for b, f in zip(best, best_by_spec[first])]
        print(f"\nbest CSL PGR, specialties {spec} minus {first}: {mean_std(diff)} (per seed "
              f"{', '.join(f'{d:+.1f}' for d in diff)})")
    if a.sweep:
        print("\n## teacher budget sweep (hard labels)\n")
        print("| teacher steps | generalist test acc % | single-teacher PGR | best CSL PGR | gain |")
        print("|---|---|---|---|---|")
        spec = a.specialties.split(",")[0]
        for steps in [int(x) for x in a.sweep.split(",")]:
            tag = f"{a.dataset_name}{'-perm' if a.permute_classes else ''}-{spec}-steps{steps}-{a.denoise}{gates}"
            reps = [run(os.path.join(a.output_dir, f"{tag}-seed{s}"), a.dataset_name, s, spec, a.permute_classes,
                        steps, {}, a.denoise, a.assignment) for s in seeds]
            single = [r["rounds"][0]["pgr"] for r in reps]
            best = [max(x["pgr"] for x in r["rounds"][1:]) for r in reps]
            print(f"| {steps} | {mean_std([100 * r['weak_accuracy'] for r in reps])} | {mean_std(single)} | "
                  f"{mean_std(best)} | {mean_std([b - s for b, s in zip(best, single)])} |")
    print(f"\n(total wall time {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
