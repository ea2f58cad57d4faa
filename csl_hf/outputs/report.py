"""The run report ``csl_report.json`` (its schema is in docs/cache.md): a printable table and the PGR plot."""

from __future__ import annotations

from typing import Any

from transformers.utils import logging

from ..utils import atomic_write, jsonable

logger = logging.get_logger(__name__)

REPORT_NAME = "csl_report.json"
#: Below this ceiling - weak gap (a fraction: 0.05 = 5 accuracy points), PGR is flagged as unreliable.
PGR_MIN_GAP = 0.05


def pgr_reliability(report: dict[str, Any], min_gap: float = PGR_MIN_GAP) -> str | None:
    """A one-sentence warning when the report's PGR numbers mean little, else ``None``.

    PGR = 100 * (student - weak) / (ceiling - weak) divides by the gap between the ceiling and the weak teacher.
    With a gap of g accuracy points, one point of test accuracy moves PGR by 100 / g points: below ``min_gap``
    (5 points), test-set noise alone swings PGR by tens of points.
    """
    weak, ceiling = report.get("weak_accuracy"), report.get("ceiling_accuracy")
    if weak is None or ceiling is None:
        return None
    gap = ceiling - weak
    if gap <= 0:
        return (f"PGR is undefined: the ceiling ({100 * ceiling:.1f}%) is not above the weak teacher "
                f"({100 * weak:.1f}%), so there is no gap to recover.")
    if gap < min_gap:
        return (f"PGR is unreliable here: the ceiling is only {100 * gap:.1f} points above the weak teacher (under "
                f"{100 * min_gap:.0f}), so one point of test accuracy moves PGR by {100 / (100 * gap):.0f} points; "
                "compare accuracies instead.")
    return None


def report_config(args, cache) -> dict[str, Any]:
    """The ``config`` of ``csl_report.json``: the settings a reader needs to interpret the numbers."""
    keys = ("assignment", "denoise", "denoise_neighbors", "soft_labels", "reinit_head_each_round",
            "scale_epochs_by_keep_rate",
            "student_mode", "learning_rate", "weight_decay", "per_device_train_batch_size", "lr_scheduler_type",
            "warmup_steps", "max_grad_norm", "optim", "max_steps", "num_train_epochs")
    if args.student_mode == "full":
        keys += ("backbone_learning_rate", "head_warmup_epochs", "freeze_batch_norm")
    config = {k: jsonable(getattr(args, k)) for k in keys}
    config.update(world_size=args.world_size, levels=cache.levels, teacher_names=cache.teacher_names,
                  student=cache.student.get("name_or_path"))
    return config


def build_report(args, cache, weak: float, ceiling: float | None, rounds: list[dict[str, Any]],
                 baselines: dict[str, list[dict[str, Any]]] | None = None,
                 teacher_training_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run report ``csl_report.json`` (schema in docs/cache.md): weak and ceiling accuracies, the seed, the
    settings (`report_config`), every round's record, the baseline chains that trained past level 0 (each one's PGR
    by level is logged) and the bad images skipped per split (``teacher`` from ``teacher_training_data``)."""
    report = {"weak_accuracy": weak, "ceiling_accuracy": ceiling, "seed": args.seed,
              "config": report_config(args, cache), "rounds": rounds}
    if baselines is not None:
        report["baselines"] = {name: recs for name, recs in baselines.items() if len(recs) > 1}
        for name, recs in report["baselines"].items():
            logger.info(f"{name} baseline, PGR by level: " + ", ".join(
                format_pgr(r["pgr"]) for r in recs))
    skipped = dict((cache.source or {}).get("skipped_images") or {})
    if teacher_training_data and "skipped_images" in teacher_training_data:
        skipped["teacher"] = teacher_training_data["skipped_images"]
    if skipped:
        report["skipped_images"] = skipped
    return report


def train_output(start: float, phase_losses: list[tuple[int, float]], report: dict[str, Any]):
    """``train()``'s `transformers.trainer_utils.TrainOutput` for a whole run: ``global_step`` counts the optimiser
    steps of every phase, ``training_loss`` is their step-weighted mean loss, ``metrics`` holds the runtime
    (``start``: ``time.time()`` when the run began), the weak and ceiling accuracies and the final student's accuracy
    and PGR."""
    from transformers.trainer_utils import TrainOutput, speed_metrics

    steps = sum(s for s, _ in phase_losses)
    loss = sum(s * l for s, l in phase_losses) / steps if steps else 0.0
    metrics = speed_metrics("train", start, num_steps=steps)
    final = report["rounds"][-1] if report["rounds"] else {}
    metrics.update({"train_loss": loss, "weak_accuracy": report["weak_accuracy"],
                    "ceiling_accuracy": report["ceiling_accuracy"], "student_accuracy": final.get("student_accuracy"),
                    "pgr": final.get("pgr")})
    return TrainOutput(steps, loss, {k: v for k, v in metrics.items() if v is not None})


def _names(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f" (+{len(names) - most} more)" if len(names) > most else "")


def missing_class_lines(report: dict[str, Any]) -> list[str]:
    """One sentence per kind of class a run does not learn: the classes that no kept label reaches and those the
    student never predicts on the test split, per round (``[]`` when every round reaches every class)."""
    out = []
    for key, what in (("classes_without_kept_labels", "no kept label reaches"),
                      ("classes_never_predicted", "the student never predicts on the test split")):
        per_round = [f"level {r['level']}: {_names(r[key])}" for r in report.get("rounds") or [] if r.get(key)]
        if per_round:
            out.append(f"classes {what}: " + "; ".join(per_round))
    return out


def format_round_line(record: dict[str, Any]) -> str:
    """One log line per finished round: ``level 2 (4 teachers, student): keep 0.860, precision 0.684, ...``."""
    n = record["num_teachers"]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    missing = [f"{what} {_names(record[key], 4)}" for key, what in (("classes_without_kept_labels", "no kept label for"),
                                                                   ("classes_never_predicted", "never predicts"))
               if record.get(key)]
    return (f"level {record['level']} ({n} teacher{'s' if n > 1 else ''}, {record['assignment']}): keep "
            f"{record['keep_rate']:.3f}, precision {fmt(record['precision'])}, student "
            f"{record['student_accuracy']:.4f}, PGR {fmt(record['pgr'])}" + (f" ({'; '.join(missing)})" if missing
                                                                              else ""))


def format_pgr(x: float | None) -> str:
    """A PGR (or a percentage) to one decimal, ``-`` when missing; a value that rounds to zero is ``0.0``, not ``-0.0``."""
    return "-" if x is None else f"{round(x, 1) + 0.0:.1f}"


def _fmt(x: float | None, pct: bool = True) -> str:
    return format_pgr(None if x is None else 100 * x if pct else x)


def format_report_table(report: dict[str, Any], markdown: bool = False) -> str:
    """A table of the run: weak, ceiling, and per round: teachers, assignment, keep rate, precision, accuracy, PGR."""
    head = ["level", "teachers", "assignment", "teacher acc", "keep rate", "precision", "recall", "student acc", "PGR"]
    rows = [
        [str(r["level"]), str(r["num_teachers"]), r["assignment"], _fmt(r.get("teacher_accuracy")),
         _fmt(r.get("keep_rate")), _fmt(r.get("precision")), _fmt(r.get("recall")),
         _fmt(r.get("student_accuracy")), _fmt(r.get("pgr"), pct=False)]
        for r in report["rounds"]
    ]
    title = (f"weak (level-0 teacher) test accuracy {_fmt(report.get('weak_accuracy'))}%, "
             f"ceiling {_fmt(report.get('ceiling_accuracy'))}%  (accuracies and rates in %, PGR in %)")
    if pgr_reliability(report):
        head[-1] = "PGR (unreliable)"
    legend = ("teacher acc: the assigned teachers' labels on the training split; student acc: on the test split; "
              "PGR (performance gap recovered) = (student acc - weak) / (ceiling - weak)")
    missing = missing_class_lines(report)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return title + "\n\n" + "\n".join(lines) + "\n\n" + legend + "".join(f"\n\n**{m}**" for m in missing)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    warning = pgr_reliability(report)
    return "\n".join([title, fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows), legend,
                      *([f"note: {warning}"] if warning else []), *(f"warning: {m}" for m in missing)])


#: Stable colours: a series keeps its colour in every plot, whichever series are present.
SERIES_COLORS = {"hard labels": "tab:blue", "soft labels": "tab:orange", "oracle": "tab:green",
                 "ensemble": "tab:purple", "single teacher": "tab:gray"}


def plot_pgr(reports: dict[str, dict[str, Any]], path: str, title: str = "") -> str:
    """Plot a run (and its comparisons) to ``path`` (PNG): PGR by number of teachers (left) and the student's test
    accuracy beside the weak teacher and the ceiling (right).

    Args:
        reports: ``{series name: report}`` (e.g. ``{"hard labels": ..., "soft labels": ...}``); the first report's
            weak and ceiling accuracies are the reference lines, its level 0 the single-teacher reference, and its
            baseline chains (oracle, ensemble) dashed series.
        title: names the data, e.g. ``"CSL on animal_mnist"``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(reports.values()))
    weak, ceiling = first.get("weak_accuracy"), first.get("ceiling_accuracy")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.8), dpi=120)
    spare = iter(c for c in plt.rcParams["axes.prop_cycle"].by_key()["color"] if c not in SERIES_COLORS.values())
    xs_all = sorted({r["num_teachers"] for rep in reports.values() for r in rep["rounds"]})
    dashed = {"oracle", "ensemble"}
    series = dict(reports)
    for name, chain in (first.get("baselines") or {}).items():  # references measured in the same run
        series.setdefault(name, {"rounds": chain})
    for name, rep in series.items():
        color = SERIES_COLORS.get(name) or next(spare, None)
        rounds = rep["rounds"]
        pts = [(r["num_teachers"], r["pgr"]) for r in rounds if r.get("pgr") is not None]
        style = dict(marker="o", color=color, linestyle="--" if name in dashed else "-")
        if pts:
            left.plot(*zip(*pts), label=name if name not in dashed else f"{name} (baseline)", **style)
        right.plot([r["num_teachers"] for r in rounds], [100 * r["student_accuracy"] for r in rounds],
                   label=f"student, {name}", **style)
    single = first["rounds"][0].get("pgr") if first["rounds"] else None
    if single is not None:
        left.axhline(single, color=SERIES_COLORS["single teacher"], linestyle=":", label="single teacher (level 0)")
    if weak is not None:
        right.axhline(100 * weak, color="tab:red", linestyle="--", label="weak (level-0 teacher)")
    if ceiling is not None:
        right.axhline(100 * ceiling, color="black", linestyle="--", label="ceiling (ground truth)")
    for ax, ylabel in ((left, "PGR (%)"), (right, "test accuracy (%)")):
        ax.set_xscale("log", base=2)
        if xs_all:
            ax.set_xticks(xs_all, [str(x) for x in xs_all])
            ax.minorticks_off()
        ax.set_xlabel("number of teachers (level)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    warning = pgr_reliability(first)
    if not left.get_lines():
        left.text(0.5, 0.5, "PGR undefined (no ceiling above the weak teacher)", ha="center", va="center",
                  transform=left.transAxes, fontsize=8)
    elif warning:
        left.set_title("PGR unreliable: ceiling − weak gap < 5 points", fontsize=8, color="tab:red")
    fig.suptitle(title or "Performance gap recovered")
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
    return path
