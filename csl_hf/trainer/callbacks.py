"""Console output of a CSL run: a progress bar per training phase that says which phase it is, loss logs as one
readable line instead of a dict of strings, and one line per finished round (its keep rate, precision, test accuracy
and PGR). They replace the Trainer's `ProgressCallback` (or, with ``disable_tqdm``, its `PrinterCallback`) in
`CoSupervisedTrainer` and print as those do, on the main process, whatever the logging setup: a run from Python says
per round what the command line says."""

from __future__ import annotations

from transformers import ProgressCallback, TrainerCallback

from ..outputs.report import format_round_line

__all__ = ["PhaseProgressCallback", "PhaseLogCallback", "format_log_line", "console_line"]

# Per-phase summary keys the Trainer logs at the end of each train(); the run prints its own per-round summary.
_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")


def format_log_line(phase: str | None, logs: dict, step: int, max_steps: int | None) -> str | None:
    """``"level 2 (4 teachers) | step 500/1360 | loss 0.5053 | lr 7.03e-04 | epoch 7.35"``; ``None`` for logs that
    are not training progress (a phase's closing summary, round metrics)."""
    if any(k in logs for k in _SUMMARY_KEYS) or any(str(k).startswith("csl/") for k in logs):
        return None
    if phase is None and any(str(k).startswith("eval_") for k in logs):
        # evaluate() outside a phase: the step counters belong to the last phase, not to this evaluation
        parts = ["evaluate"]
    else:
        parts = [phase or "train", f"step {step}" + (f"/{max_steps}" if max_steps and step <= max_steps else "")]
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


def console_line(trainer, state, logs: dict) -> str | None:
    """What the console prints for one ``on_log``: a finished round's line (`format_round_line` of the trainer's
    last round record) for round metrics, a progress line for a phase's loss logs, ``None`` for anything else."""
    if "csl/level" in logs:
        records = trainer.round_records
        return format_round_line(records[-1]) if records else None
    return format_log_line(trainer.phase_label, logs, _phase_step(trainer, state), state.max_steps)


class PhaseProgressCallback(ProgressCallback):
    """The Trainer's progress bar, described by the phase it trains (``ceiling``, ``level 0 (1 teacher)``, ...), with
    the loss logs and each finished round's line written above it."""

    def __init__(self, trainer):
        super().__init__()
        self._trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self._trainer.phase_label or "train")

    def close_bars(self) -> None:
        """Close the bars a phase left open (an interrupted ``train()`` never reaches ``on_train_end``), so that an
        interrupt's last line is not followed by a bar redrawn at exit."""
        for name in ("training_bar", "prediction_bar"):
            bar = getattr(self, name, None)
            if bar is not None:
                bar.close()
                setattr(self, name, None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            line = console_line(self._trainer, state, logs)
            if line and self.training_bar is not None:
                self.training_bar.write(line)
            elif line:  # between phases (a round's line): no bar to write above
                print(line, flush=True)


class PhaseLogCallback(TrainerCallback):
    """With ``disable_tqdm``: the loss logs and each round's line as printed lines (main process only), as the
    Trainer's `PrinterCallback` prints its logs."""

    def __init__(self, trainer):
        self._trainer = trainer

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            line = console_line(self._trainer, state, logs)
            if line:
                print(line, flush=True)
