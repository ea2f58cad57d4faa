"""Console output of a CSL run: a progress bar per training phase that says which phase it is, and loss logs as
one readable line instead of a dict of strings. They replace the Trainer's `ProgressCallback` (or, with
``disable_tqdm``, its `PrinterCallback`) in `CoSupervisedTrainer`."""

from __future__ import annotations

from transformers import ProgressCallback, TrainerCallback
from transformers.utils import logging

__all__ = ["PhaseProgressCallback", "PhaseLogCallback", "format_log_line"]

logger = logging.get_logger("csl_hf")

# Per-phase summary keys the Trainer logs at the end of each train(); the run prints its own per-round summary.
_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")


def format_log_line(phase: str | None, logs: dict, step: int, max_steps: int | None) -> str | None:
    """``"level 2 (4 teachers) | step 500/1360 | loss 0.5053 | lr 7.03e-04 | epoch 7.35"``; ``None`` for logs that
    are not training progress (a phase's closing summary, round metrics)."""
    if any(k in logs for k in _SUMMARY_KEYS) or any(str(k).startswith("csl/") for k in logs):
        return None
    parts = [phase or "train", f"step {step}" + (f"/{max_steps}" if max_steps else "")]
    for key, name, fmt in (("loss", "loss", ".4f"), ("learning_rate", "lr", ".2e"), ("grad_norm", "grad norm", ".3g"),
                           ("epoch", "epoch", ".2f")):
        if isinstance(logs.get(key), (int, float)):
            parts.append(f"{name} {logs[key]:{fmt}}")
    extra = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items()
             if k not in ("loss", "learning_rate", "grad_norm", "epoch", "level")]
    return " | ".join(parts + extra)


def _phase_step(trainer, state) -> int:
    """The step within the phase (the trainer logs on one run-wide step axis, offset by earlier phases)."""
    return state.global_step - (trainer.phase_step_offset if trainer.phase_label else 0)


class PhaseProgressCallback(ProgressCallback):
    """The Trainer's progress bar, described by the phase it trains (``ceiling``, ``level 0 (1 teacher)``, ...)."""

    def __init__(self, trainer):
        super().__init__()
        self._trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self._trainer.phase_label or "train")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            line = format_log_line(self._trainer.phase_label, logs, _phase_step(self._trainer, state), state.max_steps)
            if line:
                self.training_bar.write(line)


class PhaseLogCallback(TrainerCallback):
    """With ``disable_tqdm``: the loss logs as readable lines through the ``csl_hf`` logger (main process only)."""

    def __init__(self, trainer):
        self._trainer = trainer

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            line = format_log_line(self._trainer.phase_label, logs, _phase_step(self._trainer, state), state.max_steps)
            if line:
                logger.info(line)
