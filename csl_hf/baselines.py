"""Baseline chains trained in the same CSL run, so that every gain is visible beside what it is measured against:

* ``oracle``: each specialist level routed by the true class (or domain): what perfect routing would give, an upper
  reference that uses ground truth (not a method);
* ``ensemble``: no routing, the level's teachers averaged: what routing buys.

The single teacher is the run's own level 0. A chain starts from the run's level-0 student and goes on with its own
students, level by level, exactly as the CSL chain does (same seeds, same filter, same epochs rule). Probe mode
only: a chain costs one head trained per level. Each chain's head after every level is kept in
``OUTPUT_DIR/csl_baselines.safetensors`` so that a resumed run continues the chains from the level the progress file
records, whatever moment the interruption came at.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import rounds as R
from .atomic import atomic_write
from .metrics import pgr_of

__all__ = ["BaselineChains", "BASELINE_HEADS_NAME"]

BASELINE_HEADS_NAME = "csl_baselines.safetensors"


class BaselineChains:
    """The baseline chains of one probe-mode run (see the module docstring).

    Args:
        trainer: the `CoSupervisedTrainer` (its phases, mode and head are used, and its head restored).
        names: the chains, e.g. ``["oracle", "ensemble"]``.
    """

    def __init__(self, trainer, names: list[str]):
        self.trainer, self.names = trainer, list(names)
        self.records: dict[str, list[dict[str, Any]]] = {name: [] for name in self.names}
        self.heads: dict[str, dict[str, torch.Tensor]] = {}
        self.saved: dict[tuple[str, int], dict[str, torch.Tensor]] = {}  # (chain, level) -> its head after it

    def usable(self, level: int) -> list[str]:
        """The chains that can run at ``level``: the oracle needs the ground truth the level routes by."""
        cache, rows = self.trainer.cache, self.trainer.cache.rows(0)
        return [n for n in self.names if n != "oracle" or R.oracle_assignment(cache, level, rows) is not None]

    def start(self, level0: dict[str, Any]) -> None:
        """After level 0: every chain starts from the run's level-0 student (its head is the trainer's now)."""
        head = {k: v.detach().clone() for k, v in self.trainer._head.state_dict().items()}
        for name in self.names:
            self.records[name] = [level0]
            self.heads[name] = self.saved[(name, 0)] = {k: v.clone() for k, v in head.items()}

    def run_level(self, level: int, weak: float, ceiling: float | None) -> None:
        """Train every usable chain's round of ``level``; the trainer's head is left as it was (the CSL student)."""
        trainer, args, cache = self.trainer, self.trainer._base_args, self.trainer.cache
        mode = trainer._mode
        rows, test = cache.rows(0), cache.rows(1)
        y_train, y_test = cache.labels[rows], cache.labels[test]
        csl_head = {k: v.detach().clone() for k, v in mode.head.state_dict().items()}
        try:
            for name in self.usable(level):
                mode.head.load_state_dict(self.heads[name])
                previous = mode.student_logits()
                targets = R.plan_round(cache, level, previous, rows, assignment=name, denoise=args.denoise,
                                       denoise_neighbors=args.denoise_neighbors, soft_labels=args.soft_labels,
                                       num_epochs=args.num_train_epochs,
                                       scale_epochs_by_keep_rate=args.scale_epochs_by_keep_rate)
                trainer._run_phase(trainer._phase_for(level, f"{name} baseline"), targets.keep, targets.fit_targets(),
                                   targets.epochs, reinit=args.reinit_head_each_round)
                predictions = mode.logits("test").argmax(dim=-1)
                accuracy = float((predictions == y_test).float().mean())
                record = R.round_record(cache, targets, rows, y_train, accuracy,
                                        pgr_of(predictions, y_test, weak, ceiling), predictions)
                self.records[name].append(record)
                self.heads[name] = self.saved[(name, level)] = {k: v.detach().clone()
                                                                for k, v in mode.head.state_dict().items()}
        finally:
            mode.head.load_state_dict(csl_head)

    # ------------------------------------------------------------------------------------------------ resume
    def save(self, directory: str) -> None:
        """Every chain's head after every level so far, in one file written atomically."""
        if self.saved:
            state = {f"{name}/{level}/{k}": v.contiguous() for (name, level), head in self.saved.items()
                     for k, v in head.items()}
            atomic_write(os.path.join(directory, BASELINE_HEADS_NAME), lambda tmp: save_file(state, tmp))

    def restore(self, directory: str, records: dict[str, list[dict[str, Any]]], last_level: int) -> None:
        """The chains of an interrupted run, as they were after ``last_level`` (the progress file's last round): its
        records up to that level and each chain's head after its last record. The heads file may be a level ahead of
        the progress file (written just before it); that level is simply trained again."""
        path = os.path.join(directory, BASELINE_HEADS_NAME)
        if not records or not os.path.isfile(path):
            return
        state = load_file(path)
        for name in self.names:
            kept = [r for r in records.get(name) or [] if r["level"] <= last_level]
            heads = {}
            for r in kept:
                prefix = f"{name}/{r['level']}/"
                heads[r["level"]] = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if kept and heads[kept[-1]["level"]]:
                self.records[name], self.heads[name] = kept, heads[kept[-1]["level"]]
                self.saved.update({(name, level): head for level, head in heads.items()})
