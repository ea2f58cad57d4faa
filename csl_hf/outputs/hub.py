"""Pushing a CSL run to the Hugging Face Hub.

A run (`CoSupervisedTrainer`) leaves in ``OUTPUT_DIR`` the final student (``model.safetensors``, ``config.json``,
``preprocessor_config.json``, the modeling code of a custom architecture), ``README.md`` (the model card),
``csl_report.json``, ``pgr.png``, and one ``round-{level}/`` checkpoint per round. `push_csl_outputs` puts the final
student on ``main`` and each round on its own branch ``round-{level}``, so ``from_pretrained(repo_id,
revision="round-1")`` loads the student after round 1. Only `huggingface_hub.HfApi` is used (no git, no git-lfs).
"""

from __future__ import annotations

import os
from typing import Any

from huggingface_hub import HfApi
from transformers.utils import logging

from ..errors import CSLError
from .model_card import CARD_NAME, round_directories
from .report import REPORT_NAME

logger = logging.get_logger(__name__)

__all__ = ["check_push_possible", "check_repo_id", "push_csl_outputs", "MAIN_ALLOW_PATTERNS", "MAIN_IGNORE_PATTERNS", "ROUND_IGNORE_PATTERNS"]

# What goes to `main`: the final student and the run's summary, top-level files only.
MAIN_ALLOW_PATTERNS = [
    "*.safetensors",  # model.safetensors, shards, or probe_head.safetensors of a run without a student
    "model.safetensors.index.json",
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "*.py",  # the modeling code of a custom architecture (auto_map; loaded with trust_remote_code=True)
    CARD_NAME,
    REPORT_NAME,
    "*.png",
]
# Never to `main`: anything inside a folder (round-*/, teachers/, cache/, checkpoint-*/, runs/), hidden/temp files.
MAIN_IGNORE_PATTERNS = ["*/*", "round-*", "teachers/*", "cache/*", "checkpoint-*", "runs/*", ".*", "*.tmp"]
ROUND_IGNORE_PATTERNS = [".*", "*.tmp", "*/.*"]


def check_repo_id(repo_id: str) -> str:
    """Refuse a repo id the Hub would reject, in one line, before anything is pushed (or trained):
    `huggingface_hub.utils.validate_repo_id`'s rules (``name`` or ``namespace/name``; letters, digits, ``-``, ``_``,
    ``.``; no ``--`` or ``..``; at most 96 characters).

    Raises:
        `CSLError`: naming the id, what is wrong with it and the flag that sets it.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        first = str(err).strip().splitlines()[0]
        raise CSLError(f"the Hub repo id {repo_id!r} is not valid ({first}); pass --hub_model_id user/name with "
                       "letters, digits, '-', '_' or '.' only") from None
    return repo_id


def check_push_possible(repo_id: str, token: str | None = None, output_dir: str = "OUTPUT_DIR",
                        command: str = "--push_to_hub") -> None:
    """Before any work, when a run (``--push_to_hub``) or ``csl-hf push`` is asked to push: the repo id is one the
    Hub accepts (`check_repo_id`), and the Hub answers with an account for ``token`` (``HfApi.whoami``).

    Raises:
        `CSLError` (one line): a bad repo id, offline mode, no network, or no login; for a run, each says how to push
        the finished run later instead (``csl-hf push``).
    """
    check_repo_id(repo_id)
    try:
        HfApi(token=token).whoami()
    except Exception as err:  # noqa: BLE001 - offline mode, no network, no token or a bad one: each one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        then = (f", or run without --push_to_hub and push the finished run later with: csl-hf push {output_dir} "
                f"--hub_model_id {repo_id}" if command == "--push_to_hub" else
                f" and run the command again (nothing in {output_dir} was changed)")
        raise CSLError(f"{command}: the Hub cannot be reached or no account is logged in ({first}); log in "
                       f"(`hf auth login` or HF_TOKEN; unset HF_HUB_OFFLINE){then}") from None


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
        ``{branch: huggingface_hub.CommitInfo}`` for ``main`` and every ``round-{level}``.

    Raises:
        `CSLError`: ``output_dir`` holds neither round checkpoints nor a final student.
    """
    if not os.path.isdir(output_dir):
        raise CSLError(f"{output_dir} is not a directory; pass the output_dir of a CSL run")
    rounds = round_directories(output_dir)
    top_files = [n for n in os.listdir(output_dir) if os.path.isfile(os.path.join(output_dir, n))]
    if not rounds and "config.json" not in top_files:
        raise CSLError(f"{output_dir} holds neither round-*/ checkpoints nor a final student (config.json); run CoSupervisedTrainer.train() with save_round_checkpoints first")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    results: dict[str, Any] = {}
    for level, path in rounds:
        branch = f"round-{level}"
        api.create_branch(repo_id, branch=branch, revision="main", exist_ok=True, repo_type="model")
        message = f"{commit_message} ({branch})" if commit_message else f"CSL student after round {level}"
        info = api.upload_folder(
            repo_id=repo_id, folder_path=path, revision=branch, repo_type="model", commit_message=message,
            ignore_patterns=list(ROUND_IGNORE_PATTERNS), delete_patterns=["*"],
        )
        results[branch] = info
        logger.info(f"pushed {path} to {repo_id}@{branch}: {getattr(info, 'commit_url', info)}")
    if "config.json" in top_files or any(n.endswith(".safetensors") for n in top_files):
        final_level = rounds[-1][0] if rounds else None
        message = commit_message or ("CSL final student" + (f" (after round {final_level})" if final_level is not None else ""))
        info = api.upload_folder(
            repo_id=repo_id, folder_path=output_dir, revision="main", repo_type="model", commit_message=message,
            allow_patterns=list(MAIN_ALLOW_PATTERNS), ignore_patterns=list(MAIN_IGNORE_PATTERNS),
        )
        results["main"] = info
        logger.info(f"pushed the final student in {output_dir} to {repo_id}@main: {getattr(info, 'commit_url', info)}")
    else:
        logger.warning(f"{output_dir} holds no final student at its top level (no config.json); only the round branches were pushed")
    return results
