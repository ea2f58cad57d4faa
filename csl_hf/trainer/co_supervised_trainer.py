"""`CoSupervisedTrainer`: co-supervised learning (Liu & Alahi, arXiv:2402.15505) as a `transformers.Trainer`.

It orchestrates library calls: the labeling pass (`csl_hf.cache`), each round's targets and consistency filter
(`csl_hf.method`), the training phases (`csl_hf.trainer.phase`, probe or full: `csl_hf.trainer.modes`), the baseline
chains and what a run writes (`csl_hf.outputs`). Each phase is one ``Trainer.train()`` on its own targets, so every
`TrainingArguments` feature that applies (optimiser, schedule, logging, accelerate/DDP) works as usual.
"""

from __future__ import annotations

import os
import time
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PrinterCallback, ProgressCallback, TrainerCallback
from transformers.trainer_utils import TrainOutput, set_seed
from transformers.utils import logging

from ..cache import TEST_SPLIT, TRAIN_SPLIT, CSLCache
from ..errors import CSLError
from ..method import consistency as C
from ..method import rounds as R
from ..metrics import pgr_of
from ..models.student import parameter_groups
from ..models.teacher_mixture import TeacherMixture
from ..outputs import checkpoints
from ..outputs.report import build_report, missing_class_lines, train_output
from .baselines import BaselineChains
from .callbacks import PhaseLogCallback, PhaseProgressCallback
from .co_supervised_config import CoSupervisedConfig
from .modes import FullMode, TensorBatches, make_mode
from .phase import Phase, phase_label
from .progress import load_progress, resume_directory, save_progress
from .student_trainer import StudentTrainer

logger = logging.get_logger(__name__)


class CoSupervisedTrainer(StudentTrainer):
    """Co-supervised learning: a strong student taught round by round by a hierarchy of weak teachers.

    Liu & Alahi, *Co-Supervised Learning: Improving Weak-to-Strong Generalization with Hierarchical Mixture of
    Experts*, arXiv:2402.15505 (2024). The method as implemented is described in docs/algorithm.md. ``train()`` is:

    1. **labeling** (`label`; images only): one pass over ``train_dataset`` and ``eval_dataset`` runs every teacher
       and the student's backbone on each image once and writes ``OUTPUT_DIR/cache`` (reused by later runs when it
       matches the same teachers, student preprocessing and data);
    2. **ceiling**: the student trained on the training split's ground truth (for PGR; skipped with
       ``run_ceiling=False`` or unknown labels);
    3. **level 0**: the student trained on the generalist's labels (the single-teacher weak-to-strong baseline);
    4. **one round per further level** (`train_round`): each training sample is routed to one specialist of the level
       (``assignment``), its label is kept only if it agrees with the previous round's student (``denoise``), and the
       student is trained again on the kept labels. Baseline chains (``baselines``) run the same round body.

    After `train`, the trainer's model is the final student: `evaluate`, `predict`, `save_model`, `create_model_card`
    and `push_to_hub` all mean that student, as for any `Trainer`. Each round's student is also written to
    ``OUTPUT_DIR/round-{level}/`` (``save_round_checkpoints``) and `push_to_hub` sends each round to its own branch.

    Args:
        model (`PreTrainedModel`, *optional*):
            The strong student: any ``AutoModelForImageClassification`` whose classifier outputs as many classes as
            the teachers (load it with `csl_hf.load_student`, or with ``id2label=...`` and
            ``ignore_mismatched_sizes=True``). ``None`` only with ``cache`` in probe mode: a standalone linear head
            is trained on the cached features (round checkpoints then hold ``probe_head.safetensors``).
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
            Precomputed student features and teacher probabilities instead of images (docs/cache.md). With
            ``student_mode="full"`` the images are still needed (the datasets the cache was labeled from).
        processing_class (image processor, *optional*):
            The student's image processor; required with images (it defines the student's input preprocessing) and
            saved with every checkpoint.
        callbacks (`list[TrainerCallback]`, *optional*):
            Passed to `Trainer`; they see every phase (``on_train_begin``/``on_train_end`` once per phase).
        peft_config (`peft.PeftConfig`, *optional*):
            With ``student_mode="full"``: train LoRA adapters and the classifier instead of every weight.
            Checkpoints hold the student with the adapters merged: a standard checkpoint of its own architecture.

    Raises:
        `CSLError` (one line): a missing input (no cache and no teachers/datasets, no processor for images, no images
        in full mode), teachers, student and data that disagree on the label space, a student whose classifier does
        not fit the data, args that are not a `CoSupervisedConfig`, or ``assignment="oos_gate"`` without gate
        teachers (see `csl_hf.trainer.inputs.check_inputs`).
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
        super().__init__(model, args, teachers, train_dataset, eval_dataset, cache, processing_class, callbacks,
                         peft_config)
        self.current_phase: Phase | None = None  # set by `Phase.active` while a phase trains
        self._steps_before_phase = 0
        self._phase_losses: list[tuple[int, float]] = []
        self._run_log: list[dict[str, Any]] = []  # the whole run's log history (each phase's state starts empty)
        self._weak = self._ceiling = None
        self.round_records: list[dict[str, Any]] = []  # this run's round records so far (the report's "rounds")
        # Progress bars and printed logs that name the phase (ceiling, level 0, ...) instead of raw dicts.
        for stock in (ProgressCallback, PrinterCallback):
            self.remove_callback(stock)
        self.add_callback(PhaseLogCallback(self) if args.disable_tqdm else PhaseProgressCallback(self))

    # ================================================================================================ Trainer hooks
    def get_train_dataloader(self):
        """The current phase's batches (``train_dataset``): probe batches are sliced from the cached features already
        on the device (a ``DataLoader`` would only collate them again); image datasets go through the `Trainer`'s own
        ``DataLoader``."""
        if self.current_phase is None:
            raise CSLError("CoSupervisedTrainer trains through train(), which runs the rounds; it has no plain "
                           "training dataset")
        if isinstance(self.train_dataset, TensorBatches):
            return self.train_dataset
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
        args, phase = self.args, self.current_phase
        full = phase is not None and isinstance(phase.mode, FullMode)
        if not full or args.backbone_learning_rate in (None, args.learning_rate):
            return super().create_optimizer(model)
        if self.optimizer is None:
            model = self.model if model is None else model
            cls, kwargs = self.get_optimizer_cls_and_kwargs(args, model)
            groups = parameter_groups(model, self.head, set(self.get_decay_parameter_names(model)),
                                      args.learning_rate, args.backbone_learning_rate, args.weight_decay)
            kwargs = {k: v for k, v in kwargs.items() if k not in ("lr", "weight_decay")}
            self.optimizer = cls(groups, lr=args.learning_rate, **kwargs)
        return self.optimizer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Log on one step axis for the whole run: a phase's steps continue where the previous phase stopped (each
        ``Trainer.train()`` counts from 0), and every entry carries the phase's ``level`` (-1 for the ceiling)."""
        if self.current_phase is None:
            return super().log(logs, start_time)
        step = self.state.global_step
        self.state.global_step = self._steps_before_phase + step
        try:
            super().log({**logs, "level": self.current_phase.level}, start_time)
        finally:
            self.state.global_step = step
        self._run_log.append(self.state.log_history[-1])

    @property
    def phase_step_offset(self) -> int:
        """Optimiser steps of the phases before the current one (the run-wide step axis starts each phase there)."""
        return self._steps_before_phase

    @property
    def phase_label(self) -> str | None:
        """``"ceiling (ground truth)"``, ``"level 2 (4 teachers)"``, ... while a phase trains; ``None`` otherwise."""
        return None if self.current_phase is None else self.current_phase.label

    # ================================================================================================ the run
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None,
              **kwargs) -> TrainOutput:
        """Label (`label`), then run the ceiling, level 0 and one round per further level; write the report and the
        round checkpoints.

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
        args, cache = self._base_args, self.label()
        set_seed(args.seed)
        self._mode = make_mode(self, args)
        test_rows = cache.rows(TEST_SPLIT)
        num_levels = len(cache.levels) if args.max_levels is None else min(args.max_levels, len(cache.levels))
        self._steps_before_phase, self._phase_losses, self._run_log = 0, [], []
        rounds = self.round_records = []
        previous = None
        chains = BaselineChains(args.baseline_list(), cache) if args.baseline_list() else None
        if resume_from_checkpoint:
            directory = resume_directory(args, resume_from_checkpoint)
            progress = load_progress(args, cache, directory)
            self._weak, self._ceiling = progress["weak_accuracy"], progress["ceiling_accuracy"]
            rounds = self.round_records = progress["rounds"]
            if chains is not None:
                chains.restore(directory, progress.get("baselines") or {}, rounds[-1]["level"] if rounds else -1)
            if rounds:
                self._mode.load_round(os.path.join(directory, f"round-{rounds[-1]['level']}"), self.head_name)
                previous = self._mode.student_logits()
            logger.info(f"resuming after {'level ' + str(rounds[-1]['level']) if rounds else 'the ceiling'} "
                        f"from {directory}")
        else:
            self._weak = C.accuracy(cache.probs(cache.levels[0][0], test_rows), cache.labels[test_rows])
            self._ceiling = self._train_ceiling()
            save_progress(args, cache, self._weak, self._ceiling, rounds)

        for level in range(len(rounds), num_levels):
            record = self.train_round(level, previous)
            previous = self._mode.student_logits()
            rounds.append(record)
            self._log_round(record)  # the console callbacks print the round's line
            for line in missing_class_lines({"rounds": [record]}):
                logger.warning(line)
            if args.save_round_checkpoints:
                self.save_round(level, record)
            if chains is not None:
                chains.start(record, self.head) if level == 0 else chains.run_level(level, self._mode, self.train_round)
                if args.should_save:
                    chains.save(args.output_dir)
            save_progress(args, cache, self._weak, self._ceiling, rounds, chains.records if chains is not None else None)

        teacher_data = getattr(self.teachers.config, "training_data", None) if self.teachers is not None else None
        self.report = build_report(args, cache, self._weak, self._ceiling, rounds,
                                   chains.records if chains is not None else None, teacher_data)
        if args.should_save:
            checkpoints.write_report(args.output_dir, self.report)
        # The trainer's state after train() describes the whole run, as after a plain Trainer.train(); no epoch (the
        # phases' epochs add up to nothing meaningful, so evaluate() reports none).
        self.state.global_step, self.state.log_history = self._steps_before_phase, self._run_log
        self.state.epoch = None
        return train_output(start, self._phase_losses, self.report)

    def train_round(self, level: int, previous: R.StudentLogits | None, assignment: str | None = None,
                    label_suffix: str = "") -> dict[str, Any]:
        """One round of the method (docs/algorithm.md, steps 1-4): the targets and consistency filter of ``level``
        under the ``previous`` round's student (`csl_hf.method.rounds.plan_round`), the student trained on the kept
        samples, then evaluated on the test split. The round body of the CSL chain and of every baseline chain.

        Args:
            level: the hierarchy level (0: the generalist's labels for every sample).
            previous: the previous round's student on the training split (``None`` at level 0).
            assignment: the teacher assignment (default ``args.assignment``; a baseline chain passes its own).
            label_suffix: appended to the phase's name in the console (``"oracle baseline"``).

        Returns:
            The round's record of ``csl_report.json`` (`csl_hf.method.rounds.round_record`).
        """
        args, cache = self._base_args, self.cache
        rows, test_rows = cache.rows(TRAIN_SPLIT), cache.rows(TEST_SPLIT)
        targets = R.plan_round(cache, level, previous, rows, assignment=assignment or args.assignment,
                               denoise=args.denoise, denoise_neighbors=args.denoise_neighbors,
                               soft_labels=args.soft_labels, num_epochs=args.num_train_epochs,
                               scale_epochs_by_keep_rate=args.scale_epochs_by_keep_rate)
        label = phase_label(len(cache.levels[level]), level, label_suffix)
        self._train_phase(label, level, targets.keep, targets.fit_targets(), targets.epochs,
                          reinit=level == 0 or args.reinit_head_each_round)
        predictions = self._mode.logits("test").argmax(dim=-1)
        pgr = pgr_of(predictions, cache.labels[test_rows], self._weak, self._ceiling)
        return R.round_record(cache, targets, rows, predictions, pgr)

    def _train_ceiling(self) -> float | None:
        """The student trained on the training split's ground truth (``None`` when off or labels are unknown)."""
        args, cache = self._base_args, self.cache
        y_train = cache.labels[cache.rows(TRAIN_SPLIT)]
        if not args.run_ceiling:
            return None
        if not bool((y_train >= 0).all()):
            logger.warning("the training split has unknown labels (-1): no ceiling, so PGR is null")
            return None
        everything = torch.ones(len(y_train), dtype=torch.bool)
        self._train_phase("ceiling (ground truth)", -1, everything, y_train, args.num_train_epochs, reinit=True)
        ceiling = C.accuracy(self._mode.logits("test"), cache.labels[cache.rows(TEST_SPLIT)])
        logger.info(f"ceiling (ground truth) accuracy: {ceiling:.4f}")
        if ceiling <= self._weak:
            logger.warning(f"the ceiling ({ceiling:.4f}) is not above the weak teacher ({self._weak:.4f}): PGR is "
                           "undefined (null); use a stronger student or weaker teachers")
        return ceiling

    def _train_phase(self, label: str, level: int, keep: torch.Tensor, targets: torch.Tensor, epochs: float,
                     reinit: bool) -> None:
        """Reset the head (or the whole student in full mode), then one ``Trainer.train()`` per `Phase`: in full mode
        the fresh head is first fitted on the cached features (``head_warmup_epochs``, LP-FT). The seeds depend only
        on ``args.seed`` and the level, so a resumed run trains exactly what the uninterrupted run would have."""
        base = self._base_args
        self._mode.reset(seed=base.seed * 1009 + level + 1, reinit=reinit)
        seed = base.seed * 7919 + level + 1
        runs = [(self._mode, label, epochs, False)]
        if isinstance(self._mode, FullMode) and base.head_warmup_epochs:
            # The pretrained student's features are the cache's, so its head can be fitted on them in seconds.
            runs.insert(0, (self._mode.head_probe(self.cache), f"{label}, head warm-up", base.head_warmup_epochs, True))
        for mode, name, phase_epochs, warmup in runs:
            phase = Phase.build(name, level, mode, base, keep, targets, phase_epochs, seed, self._train_batch_size,
                                head_warmup=warmup)
            with phase.active(self):
                try:
                    output = super().train()
                except BaseException:
                    for callback in self.callback_handler.callbacks:
                        if isinstance(callback, PhaseProgressCallback):
                            callback.close_bars()
                    raise
            self._phase_losses.append((output.global_step, output.training_loss))
            self._steps_before_phase += output.global_step

    def _log_round(self, record: dict[str, Any]) -> None:
        """Log a round's metrics to every ``report_to`` integration under ``csl/*``, on the run-wide step axis (one
        curve per metric), with the level as a value (``csl/level``)."""
        metrics = {f"csl/{k}": float(v) for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        step = self.state.global_step
        self.state.global_step = self._steps_before_phase
        try:
            super().log(metrics)
        finally:
            self.state.global_step = step
        self._run_log.append({**self.state.log_history[-1], "level": record["level"]})
