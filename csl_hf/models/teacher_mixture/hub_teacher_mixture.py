"""A `TeacherMixture` on the Hub: its model card (``README.md``), written by its `save_pretrained`, and its
`push_to_hub` (weights, config, modeling code and the card, in one commit).

Shipped with every saved mixture beside its modeling code, so a mixture loaded with ``trust_remote_code=True`` (no
csl_hf) writes the same card when it is saved or pushed again. The card is built from the config alone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from huggingface_hub import HfApi

__all__ = ["CARD_NAME", "card_dataset_text", "push_with_card", "teacher_mixture_card", "write_model_card"]

CARD_NAME = "README.md"


def teacher_mixture_card(config: Any, repo_id: str = "path/to/teachers",
                         tags: Sequence[str] | None = None) -> str:
    """The model card (``README.md``) of a mixture, from its config alone: the teachers by level with their
    specialties and architectures, the gate teachers, the data they were trained on (``config.training_data``) and
    how to load them."""
    names = {int(k): v for k, v in (config.id2label or {}).items()}
    num_labels = config.num_labels
    all_tags = ["csl_hf", "teacher-mixture", "weak-to-strong", "image-classification", *(tags or [])]
    lines = ["---", "library_name: transformers", "tags:"] + [f"- {t}" for t in dict.fromkeys(all_tags)] + ["---", ""]
    lines += [f"# Teacher mixture: {config.num_teachers} weak teachers in {len(config.levels)} levels", "",
              "A hierarchy of weak image classifiers for co-supervised learning (Liu & Alahi, "
              "[arXiv:2402.15505](https://arxiv.org/abs/2402.15505)), saved as one `TeacherMixture` by "
              "csl_hf: level 0 is a generalist over all "
              f"{num_labels} classes, every later level splits the work between specialists. Each teacher outputs "
              "probabilities over the global label space; a class specialist's are exactly zero outside its "
              "classes.", ""]
    lines += ["## Teachers", "", "| level | teacher | specialty | model | input |", "|---|---|---|---|---|"]
    inputs = config.preprocessing or [None] * config.num_teachers
    teacher_names = config.teacher_names or [f"teacher_{k}" for k in range(config.num_teachers)]
    for level, members in enumerate(config.levels):
        for k in members:
            specialty = _specialty_text(config.specialties[k], names, num_labels)
            lines.append(f"| {level} | {teacher_names[k]} | {specialty} "
                         f"| {_model_text(config, k)} | {_input_text(inputs[k] if k < len(inputs) else None)} |")
    if config.num_gates:
        gated = ", ".join(teacher_names[k] for k in config.gate_specialists)
        lines += ["", f"Gate teachers ({config.num_gates}): one per class specialist ({gated}), each telling whether "
                  "an image belongs to its specialist's classes (`in_specialty` in the output; "
                  "`--assignment oos_gate` routes by it)."]
    lines += ["", "## Data the teachers were trained on", ""] + _training_data_lines(config.training_data or {})
    h, w = ((inputs[0] or {}).get("size") if inputs else None) or (224, 224)
    lines += ["", "## Use", "", "```python", "import torch", "from transformers import AutoModel", "",
              f"teachers = AutoModel.from_pretrained({repo_id!r}, trust_remote_code=True)  # csl_hf not needed",
              f"out = teachers(pixel_values=torch.randn(2, 3, {h}, {w}))  # each teacher's resize and normalisation: "
              "config.preprocessing",
              "out.probs  # [batch, teachers, classes]", "```", "",
              f"With csl_hf: `TeacherMixture.from_pretrained({repo_id!r})`, or reuse the teachers in a run with "
              f"`csl-hf run --teachers_name_or_path {repo_id} --dataset_name ...` (a run refuses data whose test or "
              "training images the teachers saw)."]
    return "\n".join(lines) + "\n"


def _specialty_text(spec: dict, names: dict[int, str], num_labels: int) -> str:
    if "domain" in spec:
        return f"domain {spec['domain']}"
    classes = list(spec.get("classes", range(num_labels)))
    if sorted(classes) == list(range(num_labels)):
        return f"all {num_labels} classes"
    shown = ", ".join(str(names.get(c, c)) for c in classes[:8])
    return f"{len(classes)} classes: {shown}" + (", ..." if len(classes) > 8 else "")


def _model_text(config: Any, k: int) -> str:
    if config.shares_backbone:
        return f"linear head on a shared frozen {config.backbone_config.get('model_type', 'backbone')}"
    return str(config.teacher_configs[k].get("model_type", "?"))


def _input_text(spec: dict | None) -> str:
    if not spec:
        return "as given"
    h, w = spec.get("size", ("?", "?"))
    return f"{h}x{w}"


def card_dataset_text(name: str) -> str:
    """A dataset as a card names it: a local folder by its last part only (a card pushed to the Hub should not carry a
    path of the machine that made it; ``config.json`` / ``cache.json`` keep it for the overlap and reuse checks)."""
    if os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name):
        return f"`{os.path.basename(os.path.normpath(name))}` (a local dataset; its path is not on the card)"
    return f"`{name}`"


def _training_data_lines(data: dict) -> list[str]:
    if not data:
        return ["Not recorded (`config.training_data` is empty)."]
    out = []
    if data.get("dataset"):
        out.append(f"- dataset: {card_dataset_text(str(data['dataset']))}")
    if data.get("num_images") is not None:
        skipped = data.get("skipped_images")
        out.append(f"- images: {data['num_images']}" + (f" (skipped as unreadable: {skipped})" if skipped else ""))
    if data.get("example_ids") is not None:
        total = f" of {data['num_rows']}" if data.get("num_rows") is not None else ""
        out.append(f"- source rows: {len(data['example_ids'])}{total}, split seed {data.get('split_seed')}; listed in "
                   "`config.json` (`training_data.example_ids`), so that a run refuses test or training splits that "
                   "overlap them")
    elif data.get("split_seed") is not None:
        out.append(f"- split seed: {data['split_seed']}")
    if data.get("specialties"):
        out.append(f"- specialties chosen by: {data['specialties']}")
    return out or ["Not recorded (`config.training_data` is empty)."]


def write_model_card(config: Any, directory: str | os.PathLike, repo_id: str | None = None,
                     tags: Sequence[str] | None = None) -> str:
    """Write the card (`teacher_mixture_card`) as ``directory/README.md``; returns its path."""
    path = os.path.join(os.fspath(directory), CARD_NAME)
    with open(path, "w", encoding="utf-8") as f:
        f.write(teacher_mixture_card(config, repo_id or os.fspath(directory), tags))
    return path


def push_with_card(save: Callable[[str], None], config: Any, repo_id: str, *, commit_message: str | None = None,
                   commit_description: str | None = None, private: bool | None = None, token: bool | str | None = None,
                   revision: str | None = None, create_pr: bool = False, tags: list[str] | None = None):
    """Create the model repo ``repo_id`` if needed, ``save`` into a temporary folder, write the card for the repo
    there, and upload the folder in one commit (to ``revision``, created if needed). Returns the
    `huggingface_hub.CommitInfo`."""
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None and not revision.startswith("refs/pr"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save(tmp)
        write_model_card(config, tmp, repo_id, tags)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision, create_pr=create_pr,
                                 commit_message=commit_message or "Upload TeacherMixture",
                                 commit_description=commit_description)
