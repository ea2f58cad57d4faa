"""Metrics for weak-to-strong evaluation.

- `performance_gap_recovered(student, weak, ceiling)`: the PGR formula (docs/algorithm.md), pure Python.
- `load_pgr_metric()`: the same as an `evaluate` module (`csl_hf/metrics/pgr/pgr.py`), loaded by local
  path from wherever `csl_hf` is installed, so nothing is fetched from the Hub.
- `PGR_METRIC_PATH`: that folder's absolute path, for `evaluate.load(PGR_METRIC_PATH)`.
"""

from __future__ import annotations

import functools
import math
import os
import warnings


__all__ = ["PGR_METRIC_PATH", "load_pgr_metric", "performance_gap_recovered", "pgr_metric", "pgr_of",
           "student_metrics"]

PGR_METRIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pgr")


def performance_gap_recovered(student: float, weak: float, ceiling: float) -> float | None:
    """Performance gap recovered, in percent: ``100 * (student - weak) / (ceiling - weak)``.

    `student`, `weak` and `ceiling` are accuracies on the same test split, on the same scale (fractions
    in [0, 1] by convention). Returns ``None`` and emits a `UserWarning` saying why when
    ``ceiling <= weak`` (there is no gap to recover). The result may be negative (the student is worse
    than its weak teacher) or above 100 (it beats the ceiling).

    Keep in sync with `performance_gap_recovered` in `pgr/pgr.py`, which must stay self-contained
    because `evaluate` copies that file alone into its module cache.
    """
    student, weak, ceiling = float(student), float(weak), float(ceiling)
    for name, value in (("student", student), ("weak", weak), ("ceiling", ceiling)):
        if not math.isfinite(value):
            raise ValueError(f"`{name}` accuracy must be finite, got {value!r}.")
    if ceiling <= weak:
        warnings.warn(
            f"PGR is undefined: ceiling accuracy ({ceiling:.4f}) <= weak accuracy ({weak:.4f}), so there is "
            "no performance gap to recover; reporting pgr=None.",
            UserWarning,
            stacklevel=2,
        )
        return None
    return 100.0 * (student - weak) / (ceiling - weak)


def load_pgr_metric(**kwargs):
    """Return ``evaluate.load(PGR_METRIC_PATH, **kwargs)``: the PGR `evaluate` module, loaded by local path.

    Works the same from a source checkout and from a non-editable install (the module script is package
    data). Nothing is fetched from the Hub. ``kwargs`` go to `evaluate.load` (e.g. ``experiment_id``,
    ``num_process``/``process_id`` for distributed evaluation).
    """
    script = os.path.join(PGR_METRIC_PATH, "pgr.py")
    if not os.path.isfile(script):
        raise FileNotFoundError(
            f"The PGR metric script is missing at {script}: csl_hf was installed without its package data "
            "(setup.py needs the package `csl_hf.metrics.pgr` in `packages`, e.g. via find_packages(), and "
            "package_data={'csl_hf.metrics.pgr': ['pgr.py', 'README.md']})."
        )
    import evaluate  # optional dependency: only needed here

    return evaluate.load(PGR_METRIC_PATH, **kwargs)


@functools.lru_cache(maxsize=1)
def pgr_metric():
    """`load_pgr_metric()`, loaded once per process (``evaluate.load`` re-reads and re-imports the script each call)."""
    return load_pgr_metric()


def pgr_of(predictions, references, weak: float, ceiling: float | None) -> float | None:
    """PGR (percent) of predicted class ids ``[n]`` against ``references [n]`` through the `evaluate` module;
    ``None`` without a ceiling or when ``ceiling <= weak`` (the warning is the caller's: it was already given)."""
    if ceiling is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pgr_metric().compute(predictions=list(map(int, predictions)), references=list(map(int, references)),
                                    weak_accuracy=weak, ceiling_accuracy=ceiling)["pgr"]


def student_metrics(logits, labels, report: dict | None, prefix: str = "eval") -> dict[str, float]:
    """``{prefix}_accuracy``, ``{prefix}_loss`` (cross-entropy) of logits ``[n, C]`` on labels ``[n]`` (``-1``
    unknown: not counted), and ``{prefix}_pgr`` (percent) once ``report`` holds the run's weak and ceiling."""
    import torch.nn.functional as F

    known = labels >= 0
    metrics = {}
    if bool(known.any()):
        metrics[f"{prefix}_accuracy"] = float((logits[known].argmax(-1) == labels[known]).float().mean())
        metrics[f"{prefix}_loss"] = float(F.cross_entropy(logits[known].float(), labels[known]))
    if report is not None and report.get("ceiling_accuracy") is not None and bool(known.all()):
        pgr = pgr_of(logits.argmax(-1), labels, report["weak_accuracy"], report["ceiling_accuracy"])
        if pgr is not None:
            metrics[f"{prefix}_pgr"] = pgr
    return metrics
