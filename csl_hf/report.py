"""The run report (DESIGN §4 ``csl_report.json``): PGR, atomic JSON writing, a printable table and the PGR plot."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

REPORT_NAME = "csl_report.json"


def atomic_write_json(path: str, obj: Any) -> None:
    """Write JSON to a temporary file in the same directory, then rename it over ``path`` (never half-written)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.1f}"


def format_report_table(report: dict[str, Any], markdown: bool = False) -> str:
    """A table of the run: weak, ceiling, and per round: teachers, assignment, keep rate, precision, accuracy, PGR."""
    head = ["level", "teachers", "assignment", "teacher acc", "keep rate", "precision", "recall", "student acc", "PGR"]
    rows = [
        [str(r["level"]), str(r["num_teachers"]), r["assignment"], _fmt(r.get("teacher_accuracy")),
         _fmt(r.get("keep_rate")), _fmt(r.get("precision")), _fmt(r.get("recall")),
         _fmt(r.get("student_accuracy")), _fmt(r.get("pgr"), pct=False)]
        for r in report["rounds"]
    ]
    title = (f"weak (level-0 teacher) accuracy {_fmt(report.get('weak_accuracy'))}%, "
             f"ceiling {_fmt(report.get('ceiling_accuracy'))}%  (accuracies and rates in %, PGR in %)")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return title + "\n\n" + "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([title, fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def plot_pgr(series: dict[str, list[tuple[int, float | None]]], path: str, title: str = "") -> str:
    """Plot PGR against the number of teachers, one line per series (e.g. hard / soft labels), to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for name, points in series.items():
        pts = [(n, p) for n, p in points if p is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log", base=2)
    xs_all = sorted({n for pts in series.values() for n, _ in pts})
    if xs_all:
        ax.set_xticks(xs_all, [str(x) for x in xs_all])
    ax.set_xlabel("number of teachers (level)")
    ax.set_ylabel("PGR (%)")
    ax.set_title(title or "Performance gap recovered")
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend()
    else:
        ax.text(0.5, 0.5, "PGR undefined (no ceiling above the weak teacher)", ha="center", va="center",
                transform=ax.transAxes)
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=directory)
    os.close(fd)
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
