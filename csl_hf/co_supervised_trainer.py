"""`CoSupervisedTrainer`: the rounds of co-supervised learning on top of `transformers.Trainer` (DESIGN §1).

The trainer only orchestrates: the math lives in :mod:`csl_hf.consistency`, the data in a :class:`~csl_hf.CSLCache`.
Each phase of a run (the ground-truth ceiling, level 0, one round per further level) is one ``Trainer.train()``
call on its own targets, so every `TrainingArguments` feature (optimiser, schedule, logging, accelerate/DDP) applies.

In ``probe`` mode the Trainer's model is the student's classifier module wrapped in :class:`ClassifierProbe`, fed
with the cached features (the input of that module), so a trained head drops straight back into the student.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
from collections.abc import Iterator
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.trainer_utils import set_seed
from transformers.utils import logging

from . import consistency as C
from .cache import TEST_SPLIT, TRAIN_SPLIT, CSLCache
from .co_supervised_config import CoSupervisedConfig
from .errors import CSLError
from .report import REPORT_NAME, atomic_write_json

logger = logging.get_logger(__name__)

CLASSIFIER_ATTRIBUTES = ("classifier", "head", "fc", "score", "classification_head")
ROUND_STATE_NAME = "csl_round.json"
PROGRESS_NAME = "csl_progress.json"


# ----------------------------------------------------------------------------------------------------------------------
# The probe and the batches it eats
# ----------------------------------------------------------------------------------------------------------------------


def find_classifier(model: nn.Module) -> tuple[str, nn.Module]:
    """The classifier module of an image classifier (``classifier`` for ViT/DINOv2/ConvNeXt, ``fc``, ``head``, ...)."""
    for name in CLASSIFIER_ATTRIBUTES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module) and any(True for _ in module.parameters()):
            return name, module
    raise CSLError(
        f"cannot find the classifier module of {type(model).__name__} (looked for {', '.join(CLASSIFIER_ATTRIBUTES)}); "
        "use an AutoModelForImageClassification student"
    )


def reset_module(module: nn.Module, seed: int) -> None:
    """Re-initialise every parameterised submodule with its own ``reset_parameters``, deterministically."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()


class ClassifierProbe(nn.Module):
    """Wraps the student's classifier module: ``features [B, D] -> logits [B, C]``. The parameters are the
    student's own, so training the probe trains the student's head in place."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.head(features)}


class TensorBatches:
    """Batches by slicing tensors already on the device, in a seeded permutation per epoch.

    This replaces a `DataLoader` over per-sample dicts and its collation, which dominate the step time of a linear
    probe. Under several processes each takes a strided share of the permutation, padded to equal length so every
    process runs the same number of steps (DDP needs that).
    """

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, seed: int, process_index: int = 0,
                 num_processes: int = 1):
        self.tensors = tensors
        self.batch_size = batch_size
        self.seed = seed
        self.process_index, self.num_processes = process_index, num_processes
        self.num_samples = next(iter(tensors.values())).shape[0]
        self.epoch = 0
        self.per_process = math.ceil(self.num_samples / num_processes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.per_process / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        if self.num_processes > 1:
            pad = self.per_process * self.num_processes - self.num_samples
            order = torch.cat([order, order[:pad]])[self.process_index :: self.num_processes]
        device = next(iter(self.tensors.values())).device
        order = order.to(device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield {name: t[index] for name, t in self.tensors.items()}


def _cache_accelerate_availability_checks() -> None:
    """`AcceleratedOptimizer.step` asks importlib whether ``lomo_optim`` is installed on every step (two
    ``find_spec`` scans of ``sys.path``, ~0.4 ms: longer than a probe's whole optimiser step). Installed packages do
    not change during a run, so memoise the answer once, as accelerate already does for its other checks."""
    import accelerate.optimizer

    check = accelerate.optimizer.is_lomo_available
    if not hasattr(check, "cache_info"):
        accelerate.optimizer.is_lomo_available = functools.lru_cache(maxsize=None)(check)


class _QuietMemoryRelease:
    """Stands in for `Accelerator.free_memory` at the start of each phase's ``Trainer.train()``: it drops the same
    references (the previous phase's prepared optimizer and scheduler) but skips ``gc.collect()``, which costs
    ~0.3 s with transformers loaded, more than a whole probe phase. A run allocates no reference cycles worth it."""

    def __init__(self, accelerator):
        self.accelerator = accelerator

    def __call__(self, *objects):
        acc = self.accelerator
        acc._schedulers, acc._optimizers, acc._models, acc._dataloaders = [], [], [], []
        acc.deepspeed_engine_wrapped = None
        acc.step = 0
        return objects


# ----------------------------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------------------------


class CoSupervisedTrainer(Trainer):
    """Runs co-supervised learning over a teacher hierarchy stored in a `CSLCache`.

    Args:
        model (`PreTrainedModel`, *optional*):
            The strong student (any `AutoModelForImageClassification`) whose classifier is trained, with
            ``num_labels`` equal to the cache's. ``None`` trains a standalone linear head on the cached features
            (round checkpoints then hold the head only).
        args (`CoSupervisedConfig`):
            The run's settings.
        cache (`CSLCache`):
            Student features, teacher probabilities, labels and splits (DESIGN §4).
        processing_class (*optional*):
            The student's image processor, saved with every round checkpoint.
        callbacks (`list[TrainerCallback]`, *optional*):
            Passed to `Trainer`; they see every phase.

    ``train()`` returns the report (DESIGN §4) and writes it to ``OUTPUT_DIR/csl_report.json``.
    """

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        args: CoSupervisedConfig | None = None,
        cache: CSLCache | None = None,
        processing_class: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        teachers: PreTrainedModel | None = None,
        images: dict[str, Any] | None = None,
        image_preprocessing: Any = None,
        image_column: str = "image",
    ):
        if args is None:
            args = CoSupervisedConfig()
        if not isinstance(args, CoSupervisedConfig):
            raise CSLError("CoSupervisedTrainer needs a CoSupervisedConfig as args (it holds the CSL settings)")
        if cache is None:
            raise CSLError("CoSupervisedTrainer needs a cache (a CSLCache with features, labels and teacher outputs)")
        self.full = args.student_mode == "full"
        if self.full and (model is None or images is None or image_preprocessing is None):
            raise CSLError("--student_mode full fine-tunes the whole student on images: it needs a student, the "
                           "images of the cache's splits and their preprocessing (run examples/run_csl.py on a "
                           "dataset, not --cache_dir)")
        _cache_accelerate_availability_checks()
        # The stock Trainer would push its own model (the probe wrapper); `finalize` pushes the student and every
        # round instead, each round to its own branch.
        self._push_requested = args.push_to_hub
        args.push_to_hub = False
        self.cache = cache
        self.student = model
        self.teachers = teachers
        if model is not None:
            self.head_name, head = find_classifier(model)
            _check_head(head, cache)
        else:
            self.head_name, head = "classifier", nn.Linear(cache.feature_dim, cache.num_labels)
        if self.full:
            self.images, self.image_preprocessing, self.image_column = images, image_preprocessing, image_column
            # Every round restarts from the pretrained student (see docs/algorithm.md): keep its weights.
            self._pretrained_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            trained: nn.Module = model
        else:
            trained = ClassifierProbe(head)
        self._head = head
        super().__init__(model=trained, args=args, processing_class=processing_class, callbacks=callbacks)
        self.report: dict[str, Any] | None = None
        self._epochs_per_round = args.num_train_epochs
        self._phase_data: dict[str, torch.Tensor] | None = None
        self._phase_seed = args.seed

    # ------------------------------------------------------------------------------------------ Trainer hooks
    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        self.accelerator.free_memory = _QuietMemoryRelease(self.accelerator)

    def get_train_dataloader(self):
        """Probe mode: batches sliced from the current phase's tensors (no per-sample collation). Full mode: the
        Trainer's own dataloader over the phase's images."""
        if self.full:
            return super().get_train_dataloader()
        if self._phase_data is None:
            raise CSLError("CoSupervisedTrainer.train() runs the rounds; it has no plain training dataset")
        return TensorBatches(
            self._phase_data, batch_size=self._train_batch_size, seed=self._phase_seed,
            process_index=self.args.process_index, num_processes=self.args.world_size,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy against a class index (hard labels) or a probability vector (soft labels)."""
        if "pixel_values" in inputs:
            logits = model(pixel_values=inputs["pixel_values"]).logits
        else:
            logits = model(inputs["features"])["logits"]
        targets = inputs["labels"]
        loss = F.cross_entropy(logits, targets, reduction="sum")
        if num_items_in_batch is not None and targets.dim() == 2:
            # The Trainer counts label *elements* across accumulated micro-batches: C per soft-label sample.
            num_items_in_batch = num_items_in_batch / targets.shape[-1]
        loss = loss / (num_items_in_batch if num_items_in_batch is not None else logits.shape[0])
        return (loss, {"logits": logits}) if return_outputs else loss

    def _get_grad_norm(self, model, grad_norm=None):
        # Without clipping, the Trainer would compute a full gradient norm every step only to log it; a probe step is
        # so cheap that this doubles its cost. Keep the norm when clipping computed it anyway.
        if grad_norm is None and self.args.max_grad_norm <= 0:
            return None
        return super()._get_grad_norm(model, grad_norm=grad_norm)

    # ------------------------------------------------------------------------------------------ the rounds
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs) -> dict[str, Any]:  # type: ignore[override]
        """Run the ceiling, level 0 and one round per further level; write the report and checkpoints.

        Returns:
            The report dict (DESIGN §4), also written to ``OUTPUT_DIR/csl_report.json``.
        """
        args, cache = self.args, self.cache
        set_seed(args.seed)
        train_rows, test_rows = cache.rows(TRAIN_SPLIT), cache.rows(TEST_SPLIT)
        device = args.device
        if self.full:  # positions of the cache's rows in the image datasets
            x_train, x_test = self._image_positions(train_rows, test_rows)
        else:
            x_train = cache.features[train_rows].to(device)
            x_test = cache.features[test_rows].to(device)
        y_train, y_test = cache.labels[train_rows], cache.labels[test_rows]
        num_levels = len(cache.levels) if args.max_levels is None else min(args.max_levels, len(cache.levels))
        generalist = cache.levels[0][0]

        rounds: list[dict[str, Any]] = []
        previous_logits: torch.Tensor | None = None
        progress = self._load_progress(resume_from_checkpoint)
        if progress is not None:
            weak, ceiling, rounds = progress["weak_accuracy"], progress["ceiling_accuracy"], progress["rounds"]
            if rounds:
                self._load_round_head(rounds[-1]["level"])
                previous_logits = self._logits(x_train).cpu()
            logger.info(f"resuming after level {rounds[-1]['level'] if rounds else 'ceiling'} from {args.output_dir}")
        else:
            weak = C.accuracy(cache.probs(generalist, test_rows), y_test)
            ceiling = None
            if args.run_ceiling and bool((y_train >= 0).all()):
                self._fit(x_train, y_train.to(device), args.num_train_epochs, phase=-1, reinit=True)
                ceiling = C.accuracy(self._logits(x_test, "test"), y_test)
                logger.info(f"ceiling (ground truth) accuracy: {ceiling:.4f}")
            elif args.run_ceiling:
                logger.warning("the training split has unknown labels (-1): no ceiling, so PGR is null")
            if ceiling is not None and ceiling <= weak:
                logger.warning(
                    f"the ceiling ({ceiling:.4f}) is not above the weak teacher ({weak:.4f}): PGR is undefined (null); "
                    "use a stronger student or weaker teachers"
                )
            self._save_progress(weak, ceiling, rounds)

        for level in range(len(rounds), num_levels):
            record, previous_logits = self._run_round(level, previous_logits, x_train, x_test, train_rows, y_train,
                                                      y_test, weak, ceiling)
            rounds.append(record)
            self._log_round(record)
            if args.save_round_checkpoints:
                self.save_round(level, record)
            self._save_progress(weak, ceiling, rounds)

        self.report = {
            "weak_accuracy": weak,
            "ceiling_accuracy": ceiling,
            "seed": args.seed,
            "config": self._report_config(),
            "rounds": rounds,
        }
        if args.should_save:
            os.makedirs(args.output_dir, exist_ok=True)
            atomic_write_json(os.path.join(args.output_dir, REPORT_NAME), self.report)
        return self.report

    def _run_round(self, level: int, previous_logits: torch.Tensor | None, x_train: torch.Tensor,
                   x_test: torch.Tensor, train_rows: torch.Tensor, y_train: torch.Tensor, y_test: torch.Tensor,
                   weak: float, ceiling: float | None) -> tuple[dict[str, Any], torch.Tensor]:
        """One level (DESIGN §1 steps 1-4): targets, consistency filter, training, evaluation.

        Returns the round's report record and the new student's logits on the training split ``[n, C]``.
        """
        args, cache = self.args, self.cache
        members = cache.levels[level]
        if level == 0:
            method, assignment = "none", torch.zeros(len(train_rows), dtype=torch.long)
        else:
            method = self._assignment_method(level)
            assignment = self._assign(level, method, previous_logits, train_rows)
        targets = self._assigned_targets(members, assignment, train_rows)  # [n, C]
        target_class = targets.argmax(dim=-1)
        if level == 0:
            keep, keep_rate = torch.ones(len(train_rows), dtype=torch.bool), 1.0
        else:
            keep, keep_rate = C.consistency_filter(previous_logits, target_class, args.denoise)
        if int(keep.sum()) == 0 or keep_rate <= 0:
            raise CSLError(
                f"level {level}: the consistency filter kept no sample (keep rate 0: no target is in the previous "
                f"student's {args.denoise}); use a looser --denoise (e.g. top3 or all) or check the level's teachers"
            )
        scale = args.scale_epochs_by_keep_rate and level > 0
        epochs = C.scaled_epochs(args.num_train_epochs, keep_rate) if scale else args.num_train_epochs
        fit_targets = targets if args.soft_labels else target_class
        reinit = level == 0 or args.reinit_head_each_round
        self._fit(x_train[keep.to(x_train.device)], fit_targets[keep].to(x_train.device), epochs, phase=level,
                  reinit=reinit)
        logits_train = self._logits(x_train).cpu()
        test_predictions = self._logits(x_test, "test").argmax(dim=-1).cpu()
        student_acc = float((test_predictions == y_test).float().mean())  # every test label is known (validated)
        teacher_acc, precision, recall = C.label_quality(target_class, y_train, keep)
        record = {
            "level": level,
            "num_teachers": len(members),
            "assignment": method,
            "teacher_accuracy": teacher_acc,
            "keep_rate": keep_rate,
            "precision": precision,
            "recall": recall,
            "student_accuracy": student_acc,
            "pgr": self._pgr(test_predictions, y_test, weak, ceiling),
            "num_kept": int(keep.sum()),
            "epochs": epochs,
        }
        oracle = self._oracle_assignment(level, train_rows) if level > 0 else None
        if oracle is not None:
            record["assignment_accuracy"] = float((assignment == oracle).float().mean())
        logger.info(
            f"level {level} ({len(members)} teachers, {method}): keep {keep_rate:.3f}, precision "
            f"{_pct(precision)}, student {student_acc:.4f}, PGR {_pct(record['pgr'])}"
        )
        return record, logits_train

    # ------------------------------------------------------------------------------------------ metrics, logs, resume
    def _pgr(self, predictions: torch.Tensor, references: torch.Tensor, weak: float, ceiling: float | None):
        """PGR through the `evaluate` module `csl_hf/metrics/pgr` (loaded by local path, once)."""
        if ceiling is None:
            return None
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ceiling <= weak was already explained once
            return _pgr_metric().compute(predictions=predictions.tolist(), references=references.tolist(),
                                            weak_accuracy=weak, ceiling_accuracy=ceiling)["pgr"]

    def _log_round(self, record: dict[str, Any]) -> None:
        """Log a round's metrics to every `report_to` integration with the *level* as the step."""
        step = self.state.global_step
        self.state.global_step = record["level"]
        try:
            self.log({f"csl/{k}": float(v) for k, v in record.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None and k != "level"})
        finally:
            self.state.global_step = step

    def _progress_key(self) -> dict[str, Any]:
        a = self.args
        key = {k: _jsonable(getattr(a, k)) for k in (
            "seed", "assignment", "denoise", "soft_labels", "reinit_head_each_round", "scale_epochs_by_keep_rate",
            "student_mode", "learning_rate", "weight_decay", "per_device_train_batch_size", "lr_scheduler_type",
            "warmup_steps", "max_grad_norm", "optim", "max_steps", "run_ceiling")}
        key.update(num_train_epochs=self._epochs_per_round, world_size=a.world_size, levels=self.cache.levels,
                   num_samples=self.cache.num_samples)
        return key

    def _save_progress(self, weak: float, ceiling: float | None, rounds: list[dict[str, Any]]) -> None:
        if self.args.should_save:
            atomic_write_json(os.path.join(self.args.output_dir, PROGRESS_NAME), {
                "weak_accuracy": weak, "ceiling_accuracy": ceiling, "rounds": rounds, "run": self._progress_key()})

    def _load_progress(self, resume_from_checkpoint: str | bool | None) -> dict[str, Any] | None:
        if not resume_from_checkpoint:
            return None
        directory = self.args.output_dir if resume_from_checkpoint is True else os.fspath(resume_from_checkpoint)
        path = os.path.join(directory, PROGRESS_NAME)
        if not os.path.isfile(path):
            raise CSLError(f"--resume_from_checkpoint: {path} does not exist; resume needs the output directory of a "
                           "CSL run started with round checkpoints")
        import json

        with open(path) as f:
            progress = json.load(f)
        if progress.get("run") != self._progress_key():
            raise CSLError(f"--resume_from_checkpoint: the run in {directory} used other settings or another cache "
                           f"({progress.get('run')}); resume with the same flags or start a new --output_dir")
        if progress["rounds"] and not self.args.save_round_checkpoints:
            raise CSLError("--resume_from_checkpoint needs round checkpoints; drop --save_round_checkpoints False")
        self._resume_dir = directory
        return progress

    def _load_round_head(self, level: int) -> None:
        """Put round ``level``'s trained head back into the probe (from its checkpoint)."""
        from safetensors.torch import load_file

        directory = os.path.join(getattr(self, "_resume_dir", self.args.output_dir), f"round-{level}")
        if self.full:
            self.student.load_state_dict(load_file(os.path.join(directory, "model.safetensors")), strict=False)
            return
        if self.student is None:
            state = load_file(os.path.join(directory, "probe_head.safetensors"))
        else:
            prefix = self.head_name + "."
            full = load_file(os.path.join(directory, "model.safetensors"))
            state = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
        self._head.load_state_dict(state)

    # ------------------------------------------------------------------------------------------ helpers
    def _fit(self, inputs: torch.Tensor, targets: torch.Tensor, epochs: float, phase: int, reinit: bool) -> None:
        """One phase: (re)initialise, then a plain ``Trainer.train()``. ``inputs`` are features ``[n, D]`` (probe)
        or positions ``[n]`` in the training images (full)."""
        if self.full:
            # Full mode restarts each phase from the pretrained student (a fresh head on the pretrained backbone).
            self.student.load_state_dict(self._pretrained_state)
        if reinit or self.full:
            reset_module(self._head, seed=self.args.seed * 1009 + phase + 1)
        # A fresh optimiser per phase: the Trainer keeps `self.optimizer` across train() calls, and Adam moments from
        # the previous round must not steer a new head.
        self.optimizer, self.lr_scheduler = None, None
        max_steps = self.args.max_steps
        if self.full:
            seed = self.args.seed * 7919 + phase + 1
            source = self.images["train"]
            if isinstance(source, datasets.IterableDataset):
                self.train_dataset = _StreamImageTargets(source, inputs, targets, self.image_preprocessing,
                                                         self.image_column, seed=seed)
                # A stream has no length: give the Trainer the step count the epochs mean.
                per_step = self._train_batch_size * max(1, self.args.world_size)
                self.args.max_steps = math.ceil(len(inputs) / per_step) * max(1, int(epochs))
            else:
                self.train_dataset = _ImageTargets(source, inputs, targets, self.image_preprocessing, self.image_column)
            self.args.data_seed = seed
        else:
            self._phase_data = {"features": inputs, "labels": targets}
            self._phase_seed = self.args.seed * 7919 + phase + 1
        self.args.num_train_epochs = epochs
        try:
            super().train()
        finally:
            self.args.num_train_epochs = self._epochs_per_round
            self.args.max_steps = max_steps
            self._phase_data = None

    @torch.no_grad()
    def _logits(self, inputs: torch.Tensor, split: str = "train") -> torch.Tensor:
        """Logits ``[n, C]`` (float32) of the current head on features (probe) or of the student on the images of
        ``split`` at positions ``inputs`` (full), in chunks of ``per_device_eval_batch_size``."""
        module = self.student if self.full else self._head
        was_training = module.training
        module.eval()
        step = max(1, self.args.per_device_eval_batch_size)
        out = []
        if self.full and isinstance(self.images[split], datasets.IterableDataset):
            stream = _StreamImageTargets(self.images[split], inputs, None, self.image_preprocessing, self.image_column)
            for batch in stream.ordered_batches(step):
                out.append(self.student(pixel_values=batch.to(self.args.device)).logits.float().cpu())
            module.train(was_training)
            return torch.cat(out)
        for i in range(0, inputs.shape[0], step):
            if self.full:
                batch = _ImageTargets(self.images[split], inputs[i : i + step], None, self.image_preprocessing,
                                      self.image_column).pixel_batch()
                out.append(self.student(pixel_values=batch.to(self.args.device)).logits.float().cpu())
            else:
                out.append(self._head(inputs[i : i + step]).float())
        module.train(was_training)
        return torch.cat(out)

    def _image_positions(self, train_rows: torch.Tensor, test_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each cache row's image sits in ``images["train"]`` / ``images["test"]`` (map-style or stream)."""
        index, sizes = self.cache.source_index, self.cache.source_sizes
        if index is not None:
            n_train = sizes["train"] if sizes else len(self.images["train"])
            return index[train_rows], index[test_rows] - n_train
        n_train, n_test = len(self.images["train"]), len(self.images["test"])
        if (len(train_rows), len(test_rows)) != (n_train, n_test):
            raise CSLError("the cache's splits do not match the images given for --student_mode full "
                           f"({len(train_rows)}/{len(test_rows)} rows vs {n_train}/{n_test} images); relabel the data")
        return torch.arange(n_train), torch.arange(n_test)

    def _assignment_method(self, level: int) -> str:
        kind = self.cache.level_kind(level)
        method = self.args.assignment
        if method == "auto":
            return "agreement" if kind == "domain" else "student"
        if method == "student" and kind == "domain":
            raise CSLError(f"level {level} holds domain specialists: --assignment student routes by class; use agreement, oracle or auto")
        return method

    # Teacher outputs are read per teacher or per chunk of rows: a level's [T, N, C] never sits in memory at once
    # (8 teachers x 1.28M images x 1000 classes would be 41 GB of float32).
    _CHUNK = 65536

    def _assign(self, level: int, method: str, previous_logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Each training sample's teacher (index into the level), ``[n]``."""
        cache = self.cache
        members = cache.levels[level]
        if method == "student":
            specs = [cache.specialties[t] for t in members]
            return C.assign_by_student(previous_logits, C.class_masks(specs, cache.num_labels))
        if method == "agreement":
            return torch.cat([
                C.assign_by_agreement(previous_logits[i : i + self._CHUNK], cache.probs(members, rows[i : i + self._CHUNK]))
                for i in range(0, len(rows), self._CHUNK)
            ])
        oracle = self._oracle_assignment(level, rows)
        if oracle is None:
            raise CSLError(f"level {level}: oracle assignment needs ground truth ({'domains' if cache.level_kind(level) == 'domain' else 'labels'}) for every training sample; use --assignment auto")
        return oracle

    def _assigned_targets(self, members: list[int], assignment: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The assigned teacher's probabilities for every sample, ``[n, C]``, reading one teacher at a time."""
        targets = torch.empty(len(rows), self.cache.num_labels)
        for i, teacher in enumerate(members):
            mine = (assignment == i).nonzero(as_tuple=True)[0]
            if len(mine):
                targets[mine] = self.cache.probs(teacher, rows[mine])
        return targets

    def _oracle_assignment(self, level: int, rows: torch.Tensor) -> torch.Tensor | None:
        """Assignment by ground truth (true class or domain), or ``None`` where it is unknown."""
        cache = self.cache
        if cache.level_kind(level) == "domain":
            if cache.domains is None:
                return None
            return C.assign_by_oracle_domain(cache.domains[rows], cache.teacher_domain_ids(level))
        labels = cache.labels[rows]
        if bool((labels < 0).any()):
            return None
        specs = [cache.specialties[t] for t in cache.levels[level]]
        return C.assign_by_oracle_class(labels, C.class_masks(specs, cache.num_labels))

    def _report_config(self) -> dict[str, Any]:
        a = self.args
        keys = ("assignment", "denoise", "soft_labels", "reinit_head_each_round", "scale_epochs_by_keep_rate",
                "student_mode", "learning_rate", "weight_decay", "per_device_train_batch_size", "lr_scheduler_type",
                "warmup_steps", "max_grad_norm", "optim", "max_steps")
        config = {k: _jsonable(getattr(a, k)) for k in keys}
        config["num_train_epochs"] = self._epochs_per_round
        config["world_size"] = a.world_size
        config["levels"] = self.cache.levels
        config["teacher_names"] = self.cache.teacher_names
        config["student"] = self.cache.student.get("name_or_path")
        return config

    # ------------------------------------------------------------------------------------------ saving
    def save_round(self, level: int, record: dict[str, Any]) -> str | None:
        """Write ``OUTPUT_DIR/round-{level}/`` atomically (temporary directory, then rename)."""
        if not self.args.should_save:
            return None
        final = os.path.join(self.args.output_dir, f"round-{level}")
        tmp = final + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        try:
            self._save_student(tmp)
            atomic_write_json(os.path.join(tmp, ROUND_STATE_NAME), record)
            _replace_dir(tmp, final)
        finally:  # a failed save leaves no half-written round-{level}.tmp behind
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _save_student(self, directory: str) -> None:
        if self.student is not None:
            self.student.save_pretrained(directory)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(directory)
        else:
            from safetensors.torch import save_file

            save_file({k: v.detach().contiguous().cpu() for k, v in self._head.state_dict().items()},
                      os.path.join(directory, "probe_head.safetensors"))


    def finalize(self, dataset_name: str | None = None, plot_path: str | None = None) -> str | None:
        """After `train`: save the final student in ``OUTPUT_DIR`` itself with a model card (also in every round
        directory), and push everything when ``--push_to_hub`` (rounds to branches ``round-{level}``)."""
        from .hub import create_csl_model_card, push_csl_outputs, round_directories, write_model_card

        if self.report is None:
            raise CSLError("finalize() needs a finished run; call train() first")
        if not self.args.should_save:
            return None
        out = self.args.output_dir
        tmp = os.path.join(out, ".final.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        try:
            self._save_student(tmp)
            for name in os.listdir(tmp):  # one rename per file: each file is whole at any time
                os.replace(os.path.join(tmp, name), os.path.join(out, name))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        card = lambda plot: create_csl_model_card(  # noqa: E731
            self.report, base_model=self.cache.student.get("name_or_path"), dataset_name=dataset_name,
            teacher_names=self.cache.teacher_names, levels=self.cache.levels,
            hub_model_id=self.args.hub_model_id, plot_path=plot)
        write_model_card(out, card(plot_path))
        for _, directory in round_directories(out):
            write_model_card(directory, card(None))
        if self._push_requested:
            repo_id = self.args.hub_model_id or os.path.basename(os.path.abspath(out))
            refs = push_csl_outputs(out, repo_id, token=self.args.hub_token,
                                    private=getattr(self.args, "hub_private_repo", None))
            logger.info(f"pushed to {repo_id}: {refs}")
        return out


class _ImageTargets(torch.utils.data.Dataset):
    """Images of one split at given positions, preprocessed, with their CSL targets (full mode)."""

    def __init__(self, dataset, positions: torch.Tensor, targets: torch.Tensor | None, preprocessing, image_column: str):
        self.dataset, self.positions, self.targets = dataset, positions.tolist(), targets
        self.preprocessing, self.image_column = preprocessing, image_column

    def __len__(self) -> int:
        return len(self.positions)

    def _pixels(self, i: int) -> torch.Tensor:
        from .data import decode_image
        from .preprocessing import pil_to_uint8

        image = pil_to_uint8(decode_image(self.dataset[self.positions[i]][self.image_column]))
        return self.preprocessing(image.unsqueeze(0))[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self._pixels(i), "labels": self.targets[i].cpu()}

    def pixel_batch(self) -> torch.Tensor:
        return torch.stack([self._pixels(i) for i in range(len(self))])


class _StreamImageTargets(torch.utils.data.IterableDataset):
    """The images of a streamed split at given positions, with their CSL targets (full mode on ``--streaming``).

    Positions count the stream's samples in order (as the labeling pass numbered them). Training reads the stream
    once per epoch, keeps the wanted positions and shuffles them through a seeded buffer; `ordered_batches` reads it
    once in cache-row order for predictions. Nothing but the buffer is held in memory.
    """

    def __init__(self, stream, positions: torch.Tensor, targets: torch.Tensor | None, preprocessing, image_column: str,
                 seed: int = 0, buffer_size: int = 1000):
        from .labeling import _undecoded

        # Raw bytes: a bad image the labeling pass skipped must not stop the stream when datasets decodes it.
        self.stream = _undecoded(stream, image_column)
        self.preprocessing, self.image_column = preprocessing, image_column
        self.row_of = {int(p): i for i, p in enumerate(positions.tolist())}
        self.targets, self.seed, self.buffer_size, self.epoch = targets, seed, buffer_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _wanted(self):
        for position, example in enumerate(self.stream):
            row = self.row_of.get(position)
            if row is not None:
                yield row, example

    def _pixels(self, example) -> torch.Tensor:
        from .data import decode_image
        from .preprocessing import pil_to_uint8

        image = pil_to_uint8(decode_image(example[self.image_column]))
        return self.preprocessing(image.unsqueeze(0))[0]

    def __iter__(self):
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        buffer = []
        for row, example in self._wanted():
            buffer.append((row, example))
            if len(buffer) >= self.buffer_size:
                row, example = buffer.pop(int(torch.randint(len(buffer), (1,), generator=rng)))
                yield {"pixel_values": self._pixels(example), "labels": self.targets[row].cpu()}
        while buffer:
            row, example = buffer.pop(int(torch.randint(len(buffer), (1,), generator=rng)))
            yield {"pixel_values": self._pixels(example), "labels": self.targets[row].cpu()}

    def ordered_batches(self, batch_size: int):
        """Pixel batches in the order of ``positions`` (one read of the stream; out-of-order rows wait in memory as
        preprocessed tensors only until their turn)."""
        pending: dict[int, torch.Tensor] = {}
        next_row, n = 0, len(self.row_of)
        batch: list[torch.Tensor] = []
        for row, example in self._wanted():
            pending[row] = self._pixels(example)
            while next_row in pending:
                batch.append(pending.pop(next_row))
                next_row += 1
                if len(batch) == batch_size:
                    yield torch.stack(batch)
                    batch = []
        if next_row != n:
            raise CSLError(f"the stream ended after {next_row} of the {n} images in the cache; stream the same split "
                           "the cache was labeled from")
        if batch:
            yield torch.stack(batch)


@functools.lru_cache(maxsize=1)
def _pgr_metric():
    """The PGR `evaluate` module, loaded once per process (``evaluate.load`` re-reads and re-imports it each call)."""
    from .metrics import load_pgr_metric

    return load_pgr_metric()


def _replace_dir(src: str, dst: str) -> None:
    """Move ``src`` onto ``dst``; the previous ``dst`` stays whole until the new one is in place."""
    if os.path.isdir(dst):
        old = dst + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(old, dst)  # put the previous checkpoint back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def _check_head(head: nn.Module, cache: CSLCache) -> None:
    out_features = getattr(head, "out_features", None)
    in_features = getattr(head, "in_features", None)
    if out_features is not None and out_features != cache.num_labels:
        raise CSLError(f"the student's classifier outputs {out_features} classes but the cache has {cache.num_labels}; load the student with num_labels={cache.num_labels} (and ignore_mismatched_sizes=True)")
    if in_features is not None and in_features != cache.feature_dim:
        raise CSLError(f"the student's classifier takes {in_features}-dim inputs but the cache's features are {cache.feature_dim}-dim; the cache was made with another student")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _jsonable(v: Any) -> Any:
    import enum

    if isinstance(v, enum.Enum):  # SchedulerType, OptimizerNames: str enums whose str() is "SchedulerType.COSINE"
        return v.value
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(getattr(v, "value", v))
