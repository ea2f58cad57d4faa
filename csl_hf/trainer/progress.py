"""Resuming an interrupted CSL run: ``OUTPUT_DIR/csl_progress.json`` records the weak and ceiling accuracies, every
finished round and the settings that shape the results; a resumed run must use the same settings, and it reloads
the last finished round's student from its checkpoint."""

from __future__ import annotations

import json
import os
from typing import Any

from ..cache.format import CSLCache
from ..errors import CSLError
from ..utils import atomic_write_json, jsonable

__all__ = ["PROGRESS_NAME", "run_key", "save_progress", "load_progress", "check_resume_settings", "resume_directory"]

PROGRESS_NAME = "csl_progress.json"
# Settings that change a run's results: a resume must use the same ones.
_RUN_KEYS = ("seed", "assignment", "denoise", "denoise_neighbors", "soft_labels", "reinit_head_each_round",
             "scale_epochs_by_keep_rate", "student_mode", "learning_rate", "weight_decay",
             "per_device_train_batch_size", "lr_scheduler_type",
             "warmup_steps", "max_grad_norm", "optim", "max_steps", "run_ceiling", "gradient_accumulation_steps",
             "num_train_epochs", "baselines", "backbone_learning_rate", "head_warmup_epochs", "freeze_batch_norm")


def _settings_key(args) -> dict[str, Any]:
    """The settings a run's results depend on that the flags alone give (known before anything loads)."""
    return {**{k: jsonable(getattr(args, k)) for k in _RUN_KEYS}, "world_size": args.world_size}


def run_key(args, cache: CSLCache) -> dict[str, Any]:
    """The settings and data a run's results depend on (compared on resume)."""
    return {**_settings_key(args), "levels": cache.levels, "num_samples": cache.num_samples,
            "student": cache.student.get("name_or_path")}


def save_progress(args, cache: CSLCache, weak: float, ceiling: float | None, rounds: list[dict[str, Any]],
                  baselines: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """Record the run so far (main process only), atomically."""
    if args.should_save:
        atomic_write_json(os.path.join(args.output_dir, PROGRESS_NAME),
                          {"weak_accuracy": weak, "ceiling_accuracy": ceiling, "rounds": rounds,
                           "baselines": baselines or {}, "run": run_key(args, cache)})


def resume_directory(args, resume_from_checkpoint: str | bool) -> str:
    """``True`` (or ``"True"``) means the run's own output directory."""
    if resume_from_checkpoint in (True, "True", "true"):
        return args.output_dir
    return os.fspath(resume_from_checkpoint)


def load_progress(args, cache: CSLCache, directory: str) -> dict[str, Any]:
    """The recorded progress of the run in ``directory``.

    Raises:
        `CSLError` (one line): no progress file, other settings (naming the first that differs), or finished rounds
        without round checkpoints to reload.
    """
    path = os.path.join(directory, PROGRESS_NAME)
    if not os.path.isfile(path):
        raise CSLError(f"--resume_from_checkpoint: {path} does not exist; resume needs the output directory of a "
                       "CSL run started with round checkpoints")
    progress = _read(path)
    _refuse_changes(progress.get("run") or {}, run_key(args, cache), directory)
    if progress["rounds"] and not args.save_round_checkpoints:
        raise CSLError("--resume_from_checkpoint needs round checkpoints; drop --save_round_checkpoints False")
    return progress


def check_resume_settings(args, directory: str) -> None:
    """Refuse a resume whose flags differ from the recorded run's, before any data, student or teacher is loaded
    (`load_progress` checks the rest, the cache's levels and size, once the cache exists). A directory without
    ``csl_progress.json`` (a run stopped while labeling) passes: its resume simply runs.

    Raises:
        `CSLError` (one line): the first setting that differs, its recorded and new values, and the fix.
    """
    path = os.path.join(directory, PROGRESS_NAME)
    if not os.path.isfile(path):
        return
    recorded = _read(path).get("run") or {}
    if not recorded:  # written before run keys were recorded: load_progress compares what it can
        return
    wanted = _settings_key(args)
    _refuse_changes({k: recorded.get(k) for k in wanted}, wanted, directory)


def _refuse_changes(recorded: dict[str, Any], wanted: dict[str, Any], directory: str) -> None:
    changed = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
    if changed:
        first = changed[0]
        raise CSLError(f"--resume_from_checkpoint: the run in {directory} used other settings ({first}: "
                       f"{recorded.get(first)!r} there, {wanted.get(first)!r} now); resume with the same settings "
                       "or start a new --output_dir")


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            progress = json.load(f)
    except (OSError, ValueError) as err:
        raise CSLError(f"--resume_from_checkpoint: {path} cannot be read ({str(err).splitlines()[0]}); the run cannot "
                       "be resumed: start a new --output_dir") from None
    if not isinstance(progress, dict) or not isinstance(progress.get("rounds"), list):
        raise CSLError(f"--resume_from_checkpoint: {path} is not the progress record of a CSL run; start a new "
                       "--output_dir")
    return progress
