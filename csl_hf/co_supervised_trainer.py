"""`CoSupervisedTrainer`: co-supervised learning (Liu & Alahi, arXiv:2402.15505) as a `transformers.Trainer`.

The trainer orchestrates; everything it orchestrates is a library call of its own: the labeling pass
(`csl_hf.labeling`), one round's targets and filter (`csl_hf.rounds`, on the tensor math of `csl_hf.consistency`),
how a phase trains the student (`csl_hf.training_modes`), the report and the model card (`csl_hf.report`,
`csl_hf.hub`). Each phase of a run (the ground-truth ceiling, level 0, one round per further level) is one
``Trainer.train()`` on its own targets, so every `TrainingArguments` feature that applies (optimiser, schedule,
logging, accelerate/DDP) works as usual.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PrinterCallback, ProgressCallback, Trainer, TrainerCallback
from transformers.trainer_utils import TrainOutput, set_seed
from transformers.utils import logging

from . import _compat
from . import consistency as C
from . import rounds as R
from .atomic import atomic_write_json
from .baselines import BaselineChains
from .cache import TEST_SPLIT, TRAIN_SPLIT, CSLCache
from .callbacks import PhaseLogCallback, PhaseProgressCallback
from .co_supervised_config import CoSupervisedConfig
from .data.source import ImageSource
from .errors import CSLError
from .metrics import pgr_of
from .modeling_teacher_mixture import TeacherMixture
from .progress import load_progress, resume_directory, save_progress
from .report import REPORT_NAME, format_round_line, report_config
from .student import ClassifierProbe, check_head, find_classifier, parameter_groups
from .trainer_evaluation import StudentEvaluationMixin
from .trainer_outputs import StudentOutputsMixin
from .training_modes import FullMode, ProbeMode, accelerator_available, peft_config_for_student

logger = logging.get_logger(__name__)


@dataclass
class _Phase:
    """The training phase in progress: its label for progress bars and logs, and its level (-1: the ceiling)."""

    label: str
    level: int


class CoSupervisedTrainer(StudentEvaluationMixin, StudentOutputsMixin, Trainer):
    """Co-supervised learning: a strong student taught round by round by a hierarchy of weak teachers.

    Liu & Alahi, *Co-Supervised Learning: Improving Weak-to-Strong Generalization with Hierarchical Mixture of
    Experts*, arXiv:2402.15505 (2024). The method as implemented is described in docs/algorithm.md. A run is:

    1. **labeling** (images only): one pass over ``train_dataset`` and ``eval_dataset`` runs every teacher and the
       student's backbone on each image once and writes ``OUTPUT_DIR/cache`` (reused by later runs when it matches
       the same teachers, student preprocessing and data);
    2. **ceiling**: the student trained on the training split's ground truth (for PGR; skipped with
       ``run_ceiling=False`` or unknown labels);
    3. **level 0**: the student trained on the generalist's labels (the single-teacher weak-to-strong baseline);
    4. **one round per further level**: each training sample is routed to one specialist of the level
       (``assignment``), its label is kept only if it agrees with the previous round's student (``denoise``), and the
       student is trained again on the kept labels.

    After `train`, the trainer's model is the final student: `evaluate`, `predict`, `save_model`, `create_model_card`
    and `push_to_hub` all mean that student, as for any `Trainer`. Each round's student is also written to
    ``OUTPUT_DIR/round-{level}/`` (``save_round_checkpoints``) and `push_to_hub` sends each round to its own branch.

    Args:
        model (`PreTrainedModel`, *optional*):
            The strong student: any ``AutoModelForImageClassification`` whose classifier outputs as many classes as
            the teachers (load it with ``num_labels=...`` / ``id2label=...`` and ``ignore_mismatched_sizes=True``, or
            with `csl_hf.load_student`). ``None`` is allowed only with ``cache`` in probe mode: a standalone linear
            head is trained on the cached features (round checkpoints then hold ``probe_head.safetensors``).
        args (`CoSupervisedConfig`, *optional*):
            The run's settings (defaults: the paper's probe recipe). Never modified: each phase trains on a copy.
        teachers (`TeacherMixture`, *optional*):
            The weak teachers; with ``train_dataset`` and ``eval_dataset`` the trainer labels the images itself.
        train_dataset (`datasets.Dataset` or `datasets.IterableDataset`, *optional*):
            The weak-to-strong training split: images (column ``image``, or any ``datasets.Image`` column) whose
            labels come from the teachers. Its ground truth (``label``), when present, is used only for the ceiling
            and the label-quality diagnostics. An optional ``domain`` column enables oracle routing by domain.
        eval_dataset (`datasets.Dataset` or `datasets.IterableDataset`, *optional*):
            The labeled test split: every round's student is evaluated on it.
        cache (`CSLCache`, *optional*):
            Start from precomputed student features and teacher probabilities instead of images (the cache format is
            in docs/cache.md). With ``student_mode="full"`` the images are still needed (``train_dataset`` /
            ``eval_dataset``, the datasets the cache was labeled from).
        processing_class (image processor, *optional*):
            The student's image processor; required with images (it defines the student's input preprocessing) and
            saved with every checkpoint.
        callbacks (`list[TrainerCallback]`, *optional*):
            Passed to `Trainer`; they see every phase (``on_train_begin``/``on_train_end`` once per phase).
        peft_config (`peft.PeftConfig`, *optional*):
            With ``student_mode="full"``: train LoRA adapters (e.g. ``peft.LoraConfig(r=16, target_modules=...)``)
            and the classifier instead of every weight, for large students. Checkpoints hold the student with the
            adapters merged: a standard checkpoint of its own architecture (``peft`` is an optional dependency).

    Raises:
        `CSLError` (one line): a missing input (no cache and no teachers/datasets, no processor for images, no images
        in full mode), teachers, student and data that disagree on the label space, a student whose classifier does
        not fit the data, args that are not a `CoSupervisedConfig`, or ``assignment="oos_gate"`` with a cache or
        teachers that have no gate teachers (`csl_hf.rounds.check_gates_available`).
    """

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        args: CoSupervisedConfig | None = None,
        teachers: TeacherMixture | None = None,
        train_dataset: datasets.Dataset | datasets.IterableDataset | None = None,
        eval_dataset: datasets.Dataset | datasets.IterableDataset | None = None,
        cache: CSLCache | None = None,
        processing_class: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        peft_config: Any = None,
    ):
        if args is None:
            args = CoSupervisedConfig()
        if not isinstance(args, CoSupervisedConfig):
            raise CSLError("CoSupervisedTrainer needs a CoSupervisedConfig as args (it holds the CSL settings)")
        images = None
        if train_dataset is not None or eval_dataset is not None:
            images = ImageSource.from_datasets(train_dataset, eval_dataset, processing_class, teachers=teachers,
                                               cache=cache)
        if cache is None and (teachers is None or images is None):
            raise CSLError("CoSupervisedTrainer needs either cache= (a CSLCache) or teachers= with train_dataset= and "
                           "eval_dataset= (images the teachers label)")
        if args.student_mode == "full" and (model is None or images is None):
            raise CSLError("student_mode='full' fine-tunes the whole student on images: pass model= and the "
                           "train_dataset= / eval_dataset= the cache was labeled from")
        if peft_config is not None and args.student_mode != "full":
            raise CSLError("peft_config (--use_peft) applies to student_mode='full': probe mode trains only the "
                           "classifier; add --student_mode full or drop the LoRA settings")
        self.peft_config = peft_config
        if args.assignment == "oos_gate":  # refused now, not after the labeling pass and the first rounds
            R.check_gates_available(cache=cache, teachers=teachers)
        num_labels = cache.num_labels if cache is not None else teachers.config.num_labels
        if (args.gradient_checkpointing or args.activation_checkpointing) and model is not None and \
                not getattr(model, "supports_gradient_checkpointing", False):
            raise CSLError(f"--gradient_checkpointing: {type(model).__name__} does not support gradient checkpointing; "
                           "drop the flag")
        if model is not None:
            self.head_name, head = find_classifier(model)
            check_head(head, num_labels, cache.feature_dim if cache is not None else None)
            if images is not None:
                images.check_student(model)
        else:
            self.head_name, head = None, nn.Linear(cache.feature_dim, num_labels)
        self.student, self.teachers, self.images = model, teachers, images
        self._head = head
        self._cache = cache
        self._base_args = args
        super().__init__(model=model if model is not None else ClassifierProbe(head), args=args,
                         processing_class=processing_class, callbacks=callbacks)
        self._user_model = self.model
        self._phase: _Phase | None = None
        self._mode: ProbeMode | FullMode | None = None
        self._training: ProbeMode | FullMode | None = None  # the mode of the phase training now
        self._phase_data = None
        self._steps_before_phase = 0
        self._phase_losses: list[tuple[int, float]] = []
        self._run_log: list[dict[str, Any]] = []  # the whole run's log history (each phase's state starts empty)
        self.report: dict[str, Any] | None = None
        # Progress bars and printed logs that name the phase (ceiling, level 0, ...) instead of raw dicts.
        for stock in (ProgressCallback, PrinterCallback):
            self.remove_callback(stock)
        self.add_callback(PhaseLogCallback(self) if args.disable_tqdm else PhaseProgressCallback(self))

    # ================================================================================================ Trainer hooks
    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """The Hub repo is created by `push_to_hub` when it pushes, not when the trainer is built: a run can be
        started offline and pushed later."""

    def get_train_dataloader(self):
        """The current phase's batches: slices of the cached features (probe) or the Trainer's own ``DataLoader``
        over the phase's images (full)."""
        if self._phase is None:
            raise CSLError("CoSupervisedTrainer trains through train(), which runs the rounds; it has no plain "
                           "training dataset")
        if isinstance(self._training, ProbeMode):
            return self._phase_data
        return super().get_train_dataloader()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy against class ids ``[B]`` (hard labels) or probabilities ``[B, C]`` (soft labels), with
        ``label_smoothing_factor``."""
        if "pixel_values" in inputs:
            logits = model(pixel_values=inputs["pixel_values"]).logits
        else:
            logits = model(inputs["features"])["logits"]
        targets = inputs["labels"]
        loss = F.cross_entropy(logits, targets, reduction="sum", label_smoothing=self.args.label_smoothing_factor)
        if num_items_in_batch is not None and targets.dim() == 2:
            # The Trainer counts label *elements* across accumulated micro-batches: C per soft-label sample.
            num_items_in_batch = num_items_in_batch / targets.shape[-1]
        loss = loss / (num_items_in_batch if num_items_in_batch is not None else logits.shape[0])
        return (loss, {"logits": logits}) if return_outputs else loss

    def create_optimizer(self, model=None):
        """Full mode: the classifier at ``learning_rate``, everything else at ``backbone_learning_rate`` (weight decay
        as usual: not on biases and norms). Probe mode, or one rate for all: the Trainer's own optimizer."""
        args = self.args
        if not isinstance(self._training, FullMode) or args.backbone_learning_rate in (None, args.learning_rate):
            return super().create_optimizer(model)
        if self.optimizer is None:
            model = self.model if model is None else model
            cls, kwargs = self.get_optimizer_cls_and_kwargs(args, model)
            groups = parameter_groups(model, self._head, set(self.get_decay_parameter_names(model)),
                                      args.learning_rate, args.backbone_learning_rate, args.weight_decay)
            kwargs = {k: v for k, v in kwargs.items() if k not in ("lr", "weight_decay")}
            self.optimizer = cls(groups, lr=args.learning_rate, **kwargs)
        return self.optimizer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Log on one step axis for the whole run: a phase's steps continue where the previous phase stopped (each
        ``Trainer.train()`` counts from 0), and every entry carries the phase's ``level`` (-1 for the ceiling)."""
        if self._phase is None:
            return super().log(logs, start_time)
        step = self.state.global_step
        self.state.global_step = self._steps_before_phase + step
        try:
            super().log({**logs, "level": self._phase.level}, start_time)
        finally:
            self.state.global_step = step
        self._run_log.append(self.state.log_history[-1])

    @property
    def phase_step_offset(self) -> int:
        """Optimiser steps of the phases before the current one (the run-wide step axis starts each phase there)."""
        return self._steps_before_phase

    @property
    def phase_label(self) -> str | None:
        """``"ceiling"``, ``"level 2 (4 teachers)"``, ... while a phase trains; ``None`` otherwise."""
        return None if self._phase is None else self._phase.label

    # ================================================================================================ the cache
    @property
    def cache(self) -> CSLCache:
        """The run's `CSLCache`: the one given, or the one labeled from the images (on first use)."""
        if self._cache is None:
            from .run_cache import label_or_reuse

            self._cache = label_or_reuse(self.images, self.teachers, self.student, self._base_args)
            check_head(self._head, self._cache.num_labels, self._cache.feature_dim)
        return self._cache

    def _make_mode(self) -> ProbeMode | FullMode:
        args = self._base_args
        if args.student_mode == "full":
            return FullMode(self.student, self._head, self.cache, self.images.datasets, self.images.preprocessing,
                            self.images.image_column, args.per_device_eval_batch_size, args.device,
                            peft_config=peft_config_for_student(self.peft_config, self.head_name),
                            image_cache_mb=args.image_cache_mb, freeze_batch_norm=args.freeze_batch_norm)
        return ProbeMode(self._head, self.cache, args.device, args.per_device_eval_batch_size)

    # ================================================================================================ the run
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None,
              **kwargs) -> TrainOutput:
        """Run the ceiling, level 0 and one round per further level; write the report and the round checkpoints.

        Args:
            resume_from_checkpoint (`str` or `bool`, *optional*): the output directory of an interrupted CSL run
                (``True``: ``args.output_dir``). Finished rounds are reloaded from their checkpoints and the run goes
                on with the next one; the settings must be the same (else `CSLError`).

        Returns:
            `TrainOutput`: ``global_step`` counts the optimiser steps of all phases, ``training_loss`` is their mean
            loss, ``metrics`` holds the final student's accuracy and PGR and the run's runtime. The full report (see
            docs/algorithm.md) is in ``self.report`` and ``OUTPUT_DIR/csl_report.json``.
        """
        start = time.time()
        args, cache = self._base_args, self.cache
        set_seed(args.seed)
        self._mode = self._make_mode()
        train_rows, test_rows = cache.rows(TRAIN_SPLIT), cache.rows(TEST_SPLIT)
        y_train, y_test = cache.labels[train_rows], cache.labels[test_rows]
        num_levels = len(cache.levels) if args.max_levels is None else min(args.max_levels, len(cache.levels))
        self._steps_before_phase, self._phase_losses, self._run_log = 0, [], []

        rounds: list[dict[str, Any]] = []
        previous_logits = None
        chains = BaselineChains(self, args.baseline_list()) if args.baseline_list() else None
        if resume_from_checkpoint:
            directory = resume_directory(args, resume_from_checkpoint)
            progress = load_progress(args, cache, directory)
            weak, ceiling, rounds = progress["weak_accuracy"], progress["ceiling_accuracy"], progress["rounds"]
            if chains is not None:
                chains.restore(directory, progress.get("baselines") or {}, rounds[-1]["level"] if rounds else -1)
            if rounds:
                self._mode.load_round(os.path.join(directory, f"round-{rounds[-1]['level']}"), self.head_name)
                previous_logits = self._mode.student_logits()
            logger.info(f"resuming after {'level ' + str(rounds[-1]['level']) if rounds else 'the ceiling'} "
                        f"from {directory}")
        else:
            weak = C.accuracy(cache.probs(cache.levels[0][0], test_rows), y_test)
            ceiling = self._ceiling(y_train, y_test, weak)
            save_progress(args, cache, weak, ceiling, rounds)

        for level in range(len(rounds), num_levels):
            targets = R.plan_round(cache, level, previous_logits, train_rows, assignment=args.assignment,
                                   denoise=args.denoise, denoise_neighbors=args.denoise_neighbors,
                                   soft_labels=args.soft_labels, num_epochs=args.num_train_epochs,
                                   scale_epochs_by_keep_rate=args.scale_epochs_by_keep_rate)
            self._run_phase(self._phase_for(level), targets.keep, targets.fit_targets(), targets.epochs,
                            reinit=level == 0 or args.reinit_head_each_round)
            previous_logits = self._mode.student_logits()
            test_predictions = self._mode.logits("test").argmax(dim=-1)
            accuracy = float((test_predictions == y_test).float().mean())  # every test label is known (validated)
            record = R.round_record(cache, targets, train_rows, y_train, accuracy,
                                    pgr_of(test_predictions, y_test, weak, ceiling), test_predictions)
            rounds.append(record)
            self._log_round(record)
            logger.info(format_round_line(record))
            if args.save_round_checkpoints:
                self.save_round(level, record)
            if chains is not None:
                chains.start(record) if level == 0 else chains.run_level(level, weak, ceiling)
                if args.should_save:
                    chains.save(args.output_dir)
            save_progress(args, cache, weak, ceiling, rounds, chains.records if chains is not None else None)

        self.report = {"weak_accuracy": weak, "ceiling_accuracy": ceiling, "seed": args.seed,
                       "config": report_config(args, cache), "rounds": rounds}
        if chains is not None:
            self.report["baselines"] = {name: recs for name, recs in chains.records.items() if len(recs) > 1}
            for name, recs in self.report["baselines"].items():
                logger.info(f"{name} baseline, PGR by level: " + ", ".join(
                    "-" if r["pgr"] is None else f"{r['pgr']:.1f}" for r in recs))
        skipped = dict((cache.source or {}).get("skipped_images") or {})
        teacher_data = getattr(self.teachers.config, "training_data", None) if self.teachers is not None else None
        if teacher_data and "skipped_images" in teacher_data:
            skipped["teacher"] = teacher_data["skipped_images"]
        if skipped:
            self.report["skipped_images"] = skipped
        if args.should_save:
            atomic_write_json(os.path.join(args.output_dir, REPORT_NAME), self.report)
        # The trainer's state after train() describes the whole run, as after a plain Trainer.train().
        self.state.global_step, self.state.log_history = self._steps_before_phase, self._run_log
        return self._train_output(start)

    def _phase_for(self, level: int, suffix: str = "") -> _Phase:
        """The phase of a level's training, labelled for progress bars: ``level 2 (4 teachers)``,
        ``level 2 (4 teachers, oracle baseline)``."""
        members = len(self.cache.levels[level])
        extra = f", {suffix}" if suffix else ""
        return _Phase(f"level {level} ({members} teacher{'s' if members > 1 else ''}{extra})", level)

    def _ceiling(self, y_train: torch.Tensor, y_test: torch.Tensor, weak: float) -> float | None:
        """The student trained on the training split's ground truth (``None`` when off or labels are unknown)."""
        args = self._base_args
        if not args.run_ceiling:
            return None
        if not bool((y_train >= 0).all()):
            logger.warning("the training split has unknown labels (-1): no ceiling, so PGR is null")
            return None
        everything = torch.ones(len(y_train), dtype=torch.bool)
        self._run_phase(_Phase("ceiling (ground truth)", -1), everything, y_train, args.num_train_epochs, reinit=True)
        ceiling = C.accuracy(self._mode.logits("test"), y_test)
        logger.info(f"ceiling (ground truth) accuracy: {ceiling:.4f}")
        if ceiling <= weak:
            logger.warning(f"the ceiling ({ceiling:.4f}) is not above the weak teacher ({weak:.4f}): PGR is undefined "
                           "(null); use a stronger student or weaker teachers")
        return ceiling

    def _run_phase(self, phase: _Phase, keep: torch.Tensor, targets: torch.Tensor, epochs: float,
                   reinit: bool) -> None:
        """One phase: reset the head (or the whole student in full mode), then one ``Trainer.train()`` on a copy of
        the args with the phase's epochs and seed. In full mode the fresh head is first fitted on the cached
        features (``head_warmup_epochs``, LP-FT). The seeds depend only on ``args.seed`` and the level, so a resumed
        run trains exactly what the uninterrupted run would have."""
        base = self._base_args
        self._mode.reset(seed=base.seed * 1009 + phase.level + 1, reinit=reinit)
        seed = base.seed * 7919 + phase.level + 1
        if isinstance(self._mode, FullMode) and base.head_warmup_epochs:
            # The pretrained student's features are the cache's, so its head can be fitted on them in seconds.
            warmup = _Phase(f"{phase.label}, head warm-up", phase.level)
            self._train_phase(self._mode.head_probe(self.cache), warmup, keep, targets, base.head_warmup_epochs, seed)
        self._train_phase(self._mode, phase, keep, targets, epochs, seed)

    def _train_phase(self, mode: ProbeMode | FullMode, phase: _Phase, keep: torch.Tensor, targets: torch.Tensor,
                     epochs: float, seed: int) -> None:
        """One ``Trainer.train()`` of ``mode.module`` on the kept samples."""
        base = self._base_args
        phase_args = copy.copy(base)
        phase_args.num_train_epochs = epochs
        if isinstance(mode, ProbeMode):
            self._phase_data = mode.phase_data(keep, targets, seed, self._train_batch_size, base.process_index,
                                               base.world_size)
            if isinstance(self._mode, FullMode):  # a full-mode head warm-up: the probe's own recipe
                phase_args.warmup_steps, phase_args.max_steps = 0, -1
            speedups = _compat.probe_phase_speedups(self)
        else:
            self.train_dataset = mode.phase_data(keep, targets, seed)
            phase_args.data_seed = seed
            # Pinned memory only helps copies to an accelerator; without one torch warns on every phase.
            phase_args.dataloader_pin_memory = base.dataloader_pin_memory and accelerator_available()
            if mode.is_stream():  # a stream has no length: give the Trainer the step count the epochs mean
                per_step = self._train_batch_size * max(1, base.world_size) * base.gradient_accumulation_steps
                phase_args.max_steps = math.ceil(int(keep.sum()) / per_step) * max(1, int(epochs))
            speedups = mode.training_context()
        # A fresh optimiser per phase: the Trainer keeps `self.optimizer` across train() calls, and Adam moments from
        # the previous round must not steer a new head.
        self.optimizer, self.lr_scheduler = None, None
        self.args, self._phase, self._training = phase_args, phase, mode
        self.model = self.model_wrapped = mode.module
        try:
            with speedups:
                output = super().train()
            self._phase_losses.append((output.global_step, output.training_loss))
            self._steps_before_phase += output.global_step
        finally:
            self.args, self._phase, self._phase_data, self.train_dataset = base, None, None, None
            self._training = None
            self.model = self.model_wrapped = self._user_model
