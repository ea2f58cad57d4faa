"""A training phase of a CSL run: one ``Trainer.train()`` of the student (or of its classifier) on one set of
targets. A run's phases are the ground-truth ceiling, level 0, one round per further level, every baseline chain's
rounds and, in full mode, the head warm-up before each of them.

`Phase.active` is the one place where the trainer is switched to a phase and back: the phase's own copy of the
`TrainingArguments` (its epochs, its data seed), the module that trains, the phase's batches as ``train_dataset``
(read by the trainer's ``get_train_dataloader`` hook, as any `Trainer` reads its data) and a fresh optimizer and
scheduler. Everything is restored when the block ends, whatever happened inside it.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .. import _compat
from .modes import FullMode, ProbeMode, accelerator_available

__all__ = ["Phase", "phase_label"]


def phase_label(num_teachers: int, level: int, suffix: str = "") -> str:
    """How progress bars and logs name a level's phase: ``level 2 (4 teachers)``, ``level 2 (4 teachers, oracle
    baseline)``."""
    extra = f", {suffix}" if suffix else ""
    return f"level {level} ({num_teachers} teacher{'s' if num_teachers > 1 else ''}{extra})"


@dataclass
class Phase:
    """One ``Trainer.train()`` on the kept samples of a round.

    Attributes:
        label: how the console names it (``"ceiling (ground truth)"``, ``"level 2 (4 teachers)"``, ...).
        level: the hierarchy level (``-1`` for the ceiling).
        mode: what trains: a `ProbeMode` (the classifier on cached features) or a `FullMode` (the whole student).
        args: the phase's own `CoSupervisedConfig` (a copy of the run's: its epochs, seeds and step caps).
        train_dataset: its batches: `TensorBatches` of cached features (probe, already batched) or a dataset of
            images with their targets (full, batched by the `Trainer`'s own ``DataLoader``).
    """

    label: str
    level: int
    mode: ProbeMode | FullMode
    args: Any
    train_dataset: Any

    @classmethod
    def build(cls, label: str, level: int, mode: ProbeMode | FullMode, base_args, keep: torch.Tensor,
              targets: torch.Tensor, epochs: float, seed: int, batch_size: int, head_warmup: bool = False) -> "Phase":
        """The phase that trains ``mode`` on the kept samples ``keep [n]`` with ``targets`` (``[k]`` class ids or
        ``[k, C]`` probabilities) for ``epochs``, its batch order seeded by ``seed``.

        ``head_warmup``: a full-mode run's head warm-up on cached features, with the probe's own schedule (no
        warmup steps, no step cap).
        """
        args = copy.copy(base_args)  # the run's args are never modified
        args.num_train_epochs = epochs
        if isinstance(mode, ProbeMode):
            data = mode.phase_data(keep, targets, seed, batch_size, base_args.process_index, base_args.world_size)
            if head_warmup:
                args.warmup_steps, args.max_steps = 0, -1
        else:
            data = mode.phase_data(keep, targets, seed)
            args.data_seed = seed
            # Pinned memory only helps copies to an accelerator; without one torch warns on every phase.
            args.dataloader_pin_memory = base_args.dataloader_pin_memory and accelerator_available()
            if mode.is_stream():  # a stream has no length: give the Trainer the step count the epochs mean
                per_step = batch_size * max(1, base_args.world_size) * base_args.gradient_accumulation_steps
                args.max_steps = math.ceil(int(keep.sum()) / per_step) * max(1, int(epochs))
        return cls(label, level, mode, args, data)

    @contextlib.contextmanager
    def active(self, trainer) -> Iterator["Phase"]:
        """Switch ``trainer`` to this phase for the block (see the module docstring), then back.

        A fresh optimizer per phase: the `Trainer` keeps ``trainer.optimizer`` across ``train()`` calls, and Adam
        moments from the previous round must not steer a new head. Probe phases also run with
        `csl_hf._compat.probe_phase_speedups`; full-mode phases with the mode's own training context (frozen
        batch-norm statistics)."""
        saved = (trainer.args, trainer.model, trainer.model_wrapped, trainer.train_dataset)
        trainer.optimizer, trainer.lr_scheduler = None, None
        trainer.args, trainer.train_dataset, trainer.current_phase = self.args, self.train_dataset, self
        trainer.model = trainer.model_wrapped = self.mode.module
        speedups = (_compat.probe_phase_speedups(trainer) if isinstance(self.mode, ProbeMode)
                    else self.mode.training_context())
        try:
            with speedups:
                yield self
        finally:
            trainer.args, trainer.model, trainer.model_wrapped, trainer.train_dataset = saved
            trainer.current_phase = None
            trainer.optimizer, trainer.lr_scheduler = None, None
