"""`CoSupervisedConfig`: the training arguments of co-supervised learning (a `TrainingArguments` subclass)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..errors import CSLError
from ..method.consistency import ASSIGNMENTS, DENOISE_MODES
from .arguments_audit import check_training_arguments

STUDENT_MODES = ("probe", "full")
BASELINES = ("oracle", "ensemble")
#: ``setting: (probe default, full-mode default)``: a full-mode run whose setting is still the probe default gets the
#: full-mode one. The probe trains a fresh linear head for many cheap epochs; fine-tuning a whole pretrained network
#: overfits the weak labels within a few epochs and needs a warmup so the fresh head does not wreck the backbone.
FULL_MODE_DEFAULTS = {"num_train_epochs": (20.0, 3.0), "warmup_steps": (0, 0.1)}


@dataclass
class CoSupervisedConfig(TrainingArguments):
    r"""
    Configuration of [`CoSupervisedTrainer`]: the `TrainingArguments` of each training phase plus the settings of
    the rounds. The defaults follow the paper's linear-probe recipe (Liu & Alahi 2024, see docs/algorithm.md): Adam without weight decay, cosine schedule per step, no gradient
    clipping, batch 100, 20 epochs per round, hard labels, ``top3`` filter, a fresh head each round. One exception:
    the learning rate defaults to 1e-3, tuned for the bundled EfficientNet-Lite0 features; the paper used 1e-4 on
    DINOv2 features (pass ``--learning_rate 1e-4`` for its recipe).

    Parameters that control the rounds:

        assignment (`str`, defaults to `"auto"`):
            How a sample is routed to one teacher of a specialist level: ``student`` (the teacher whose classes hold
            the previous student's argmax; the paper), ``agreement`` (the teacher minimising KL(student || teacher)),
            ``soft_gate`` (the level's class specialists mixed, each weighted by the previous student's mass on its
            classes), ``oos_gate`` (as ``soft_gate``, each weight also multiplied by the specialist's gate teacher's
            in-specialty probability; needs a cache or teachers with gate teachers, ``--specialty_gates``; this
            package's extension, docs/routing_research.md §5), ``oracle`` (by the true class or domain; a diagnostic
            upper reference), ``ensemble`` (no routing, a baseline) or ``auto`` (``agreement`` for domain levels;
            ``oos_gate`` for class levels when the cache or teachers have gate teachers, else ``student``).
        denoise (`str`, defaults to `"auto"`):
            Consistency filter: ``topK`` (the paper; ``top1``/``top2``/``top3``): keep rate = fraction of samples
            whose target is in the previous student's top-k, then keep that fraction with the smallest loss;
            ``knn``: keep a sample when its label is a most frequent label among its ``denoise_neighbors`` nearest
            neighbours' labels in the student's features (this package's extension, docs/denoise_research.md);
            ``auto``: ``knn`` on class levels, ``top3`` on domain levels; ``all`` keeps everything.
        denoise_neighbors (`int`, defaults to 10):
            ``--denoise knn``: how many nearest neighbours vote on each label.
        soft_labels (`bool`, defaults to `False`):
            Train on the assigned teacher's probability vector (cross-entropy against probabilities) instead of its
            one-hot argmax.
        reinit_head_each_round (`bool`, defaults to `True`):
            Start each round from a freshly initialised head (the paper's choice) instead of the previous round's.
        scale_epochs_by_keep_rate (`bool`, defaults to `True`):
            Train ``floor(E / keep_rate)`` epochs on the kept samples so the number of optimiser steps stays about
            constant across rounds.
        student_mode (`str`, defaults to `"probe"`):
            ``probe`` trains the student's classifier head on cached features (fast; the paper's setting); ``full``
            fine-tunes the whole student on images with the cached targets.
        run_ceiling (`bool`, defaults to `True`):
            Train the same student on the training split's ground truth to measure the ceiling (needs labels).
        max_levels (`int`, *optional*):
            Run only the first ``max_levels`` levels of the hierarchy.
        save_round_checkpoints (`bool`, defaults to `True`):
            Write ``OUTPUT_DIR/round-{level}/`` after each round.
        overwrite_output_dir (`bool`, defaults to `False`):
            Allow writing into an output directory that already holds a different run.
        compact_cache_topk (`int`, *optional*):
            Write the labeling pass's cache in compact form: each teacher's top-k probabilities in float16 with
            their class indices.
        labeling_batch_size (`int`, defaults to 64):
            Images per batch in the labeling pass: a smaller batch holds fewer activations at once, the features do
            not depend on it (the forward pass is per image); raise it on a GPU.
        labeling_bf16 (`bool`, defaults to `False`):
            Run the labeling pass under bfloat16 autocast on a GPU (ignored on a CPU).
        baselines (`str`, *optional*):
            Comparison chains run on the same cache beside CSL: ``oracle``, ``ensemble`` (comma-separated) or
            ``none``; default ``oracle,ensemble`` in probe mode when the training split has ground truth.
        backbone_learning_rate (`float`, *optional*):
            Full mode: the learning rate of everything but the classifier (default ``learning_rate / 10``).
        head_warmup_epochs (`float`, *optional*):
            Full mode: before each phase fine-tunes the whole student, fit its fresh classifier on the cached features
            of the phase's samples and targets for this many epochs (linear probing, then fine-tuning: LP-FT, Kumar
            et al. 2022, arXiv:2202.10054); default 20 (the probe's epochs), 0 turns it off.
        freeze_batch_norm (`bool`, *optional*):
            Full mode: batch-norm layers keep their pretrained running statistics (they normalise as in evaluation)
            while everything else is fine-tuned; default `True`.
        image_cache_mb (`float`):
            Full mode: keep the preprocessed images in memory up to this size (MiB), so each is decoded once per run.
        on_bad_image (`str`, defaults to `"skip"`):
            A corrupt or degenerate image in the labeling pass: ``skip`` (counted in the log and the cache's
            ``source.skipped_images``) or ``fail`` (stop with an error naming the file).

    Raises:
        `CSLError` (one line): a value out of range or a choice that does not exist.
    """

    # ---- CSL rounds
    assignment: str = field(
        default="auto",
        metadata={"help": "How each training image is routed to one teacher of a specialist level. student: the "
                  "specialist whose classes hold the previous round's student prediction (the paper's choice for "
                  "class specialists); agreement: the teacher whose probabilities are closest to the previous "
                  "student's (smallest KL; for domain specialists); soft_gate: each class specialist weighted by the "
                  "previous student's probability mass on its classes (class levels; no better than student, "
                  "docs/benchmark.md); oos_gate: soft_gate times each specialist's gate-teacher probability that the "
                  "image is in its specialty (class levels; needs --specialty_gates, on by itself when the run trains "
                  "its teachers; docs/routing_research.md); oracle: by the true class or domain (a "
                  "diagnostic upper reference that uses ground truth, not a method); ensemble: no routing, every "
                  "teacher of the level averaged (a baseline); auto: agreement for domain levels; for class "
                  "levels oos_gate when the teachers have gate teachers (the command line trains them for auto: one "
                  "more tiny teacher per class specialist; +2.2 PGR over student on fresh Animal-MNIST seeds 24-29, "
                  "docs/routing_research.md section 12), else student.", "choices": list(ASSIGNMENTS)},
    )
    denoise: str = field(
        default="auto",
        metadata={"help": "Consistency filter of each round. topK (the paper's, e.g. top3): keep the r*N images "
                  "whose label the previous student finds most likely, r being the share of labels among its K most "
                  "likely classes. knn: keep a label when it is the most frequent among its --denoise_neighbors "
                  "nearest images (cosine of the student's features): the other images' teachers judge it, not the "
                  "student that routed it (+9 PGR over top3 on fresh Animal-MNIST seeds, docs/denoise_research.md). "
                  "auto: knn for class levels, top3 for domain levels. all: keep every label.",
                  "choices": list(DENOISE_MODES)},
    )
    denoise_neighbors: int = field(
        default=10, metadata={"help": "--denoise knn (and auto on class levels): how many nearest neighbours in the "
                                       "student's feature space vote on each label."}
    )
    soft_labels: bool = field(
        default=False, metadata={"help": "Train on the assigned teacher's probabilities (soft labels) instead of "
                                          "its most likely class (hard labels, the default)."}
    )
    reinit_head_each_round: bool = field(
        default=True, metadata={"help": "Start every round from a fresh classifier (False: continue from the "
                                         "previous round's)."}
    )
    scale_epochs_by_keep_rate: bool = field(
        default=True, metadata={"help": "Train floor(E / keep rate) epochs on the kept images, so every round takes "
                                         "about as many optimiser steps."}
    )
    student_mode: str = field(
        default="probe",
        metadata={"help": "probe: train only the student's classifier on cached features (fast; the paper's "
                  "setting); full: fine-tune the whole student on the images every round (slow; see "
                  "docs/scale.md).", "choices": list(STUDENT_MODES)},
    )
    run_ceiling: bool = field(
        default=True, metadata={"help": "Measure the ceiling (the student trained on the training split's ground "
                                         "truth), which PGR needs."}
    )
    max_levels: int | None = field(
        default=None, metadata={"help": "Run only the first N levels of the teacher hierarchy."}
    )
    save_round_checkpoints: bool = field(
        default=True, metadata={"help": "Save OUTPUT_DIR/round-{level}/ after every round."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Write into an output directory that already holds a different run."}
    )
    compact_cache_topk: int | None = field(
        default=None,
        metadata={"help": "Store only each teacher's k most likely classes (float16 + class ids) in the cache: "
                  "for many classes (e.g. 5 of 1000 for ImageNet) the cache shrinks ~100x."},
    )

    baselines: str | None = field(
        default=None,
        metadata={"help": "Comparison chains trained in the same run, beside CSL, for every specialist level: "
                  "oracle (routing by the true class or domain: what perfect routing would give), ensemble (no "
                  "routing: the level's teachers averaged). Comma-separated, or none (oracle needs the training split's ground truth; "
                  "a few seconds each in probe mode). Reported under 'baselines' in csl_report.json, the table, the plot and the model card."},
    )
    backbone_learning_rate: float | None = field(
        default=None,
        metadata={"help": "--student_mode full: learning rate of everything but the classifier. A pretrained backbone needs far smaller steps than a fresh head: at the "
                  "head's rate it forgets its features before the head has learned anything."},
    )

    head_warmup_epochs: float | None = field(
        default=None,
        metadata={"help": "--student_mode full: before each phase fine-tunes the whole student, fit its fresh "
                  "classifier on the cached features for this many epochs (a few seconds), then fine-tune everything "
                  "(LP-FT, arXiv:2202.10054): a random head's large early gradients distort the pretrained features. "
                  "0: no warm-up."},
    )
    freeze_batch_norm: bool | None = field(
        default=None,
        metadata={"help": "--student_mode full: batch-norm layers keep their pretrained statistics and normalise as "
                  "at evaluation while the rest is fine-tuned. Updating them on a few thousand small "
                  "images makes training and evaluation normalise differently (benchmarks/full_mode_recipe.py "
                  "measures it; docs/scale.md)."},
    )
    image_cache_mb: float = field(
        default=2048,
        metadata={"help": "--student_mode full: keep up to this many MiB of preprocessed training and test images in "
                  "memory, decoded once per run instead of once per epoch and round (0: always decode; streams "
                  "always are)."},
    )

    labeling_batch_size: int = field(default=64, metadata={"help": "Images per batch in the labeling pass (raise it on a GPU)."})
    labeling_bf16: bool = field(
        default=False,
        metadata={"help": "Label under bfloat16 autocast (the teachers and the student's backbone; GPU only, "
                  "ignored on a CPU): about twice float32's throughput on recent GPUs, bf16-precise cached values."},
    )
    on_bad_image: str = field(
        default="skip",
        metadata={"help": "A corrupt or tiny image: skip it and count it (in the log and the report), or fail on the "
                  "first one.", "choices": ["skip", "fail"]},
    )

    # ---- TrainingArguments defaults that follow the paper's probe recipe
    output_dir: str | None = field(
        default="csl_output", metadata={"help": "Where the report, round checkpoints and the final student go."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate of each round."})
    num_train_epochs: float = field(
        default=20.0, metadata={"help": "Epochs E per round (rounds train floor(E / keep_rate) epochs)."}
    )
    per_device_train_batch_size: int = field(default=100, metadata={"help": "Batch size per device."})
    per_device_eval_batch_size: int = field(default=1000, metadata={"help": "Batch size for predictions."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule, stepped per batch."})
    weight_decay: float = field(default=0.0, metadata={"help": "Weight decay (0: plain Adam)."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Gradient clipping (0: none, as in the paper)."})
    save_strategy: str = field(
        default="no", metadata={"help": "Trainer checkpoints within a round (rounds are saved regardless)."}
    )
    logging_steps: float = field(default=500, metadata={"help": "Log the loss every N optimiser steps."})
    report_to: None | str | list[str] = field(
        default="none",
        metadata={"help": "Integrations that receive the loss of every phase (one step axis for the whole run) and "
                  "each round's metrics under csl/ with the level as step, e.g. tensorboard; 'none' for none."},
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "The output directory of an interrupted run: finish it. The run's recorded settings "
                  "(OUTPUT_DIR/run_config.yaml), student, teachers and cache are reused; finished rounds are not "
                  "trained again."},
    )
    push_to_hub: bool = field(
        default=False,
        metadata={"help": "When the run is done, push the final student (with its model card) to the main branch of "
                  "--hub_model_id and each round's student to its own branch round-{level}."},
    )
    hub_model_id: str | None = field(
        default=None,
        metadata={"help": "The Hub repository to push to (user/name; default: the output directory's name)."},
    )

    def __post_init__(self):
        if self.assignment not in ASSIGNMENTS:
            raise CSLError(f"--assignment {self.assignment!r} does not exist; use one of {', '.join(ASSIGNMENTS)}")
        if self.denoise not in DENOISE_MODES:
            raise CSLError(f"--denoise {self.denoise!r} does not exist; use one of {', '.join(DENOISE_MODES)}")
        if self.denoise_neighbors < 1:
            raise CSLError(f"--denoise_neighbors must be at least 1, got {self.denoise_neighbors}")
        if self.student_mode not in STUDENT_MODES:
            raise CSLError(f"--student_mode {self.student_mode!r} does not exist; use one of {', '.join(STUDENT_MODES)}")
        if self.max_levels is not None and self.max_levels < 1:
            raise CSLError(f"--max_levels must be at least 1 (level 0), got {self.max_levels}")
        if self.image_cache_mb < 0:
            raise CSLError(f"--image_cache_mb must be 0 or more, got {self.image_cache_mb}")
        if self.labeling_batch_size < 1:
            raise CSLError(f"--labeling_batch_size must be at least 1, got {self.labeling_batch_size}")
        if self.on_bad_image not in ("skip", "fail"):
            raise CSLError(f"--on_bad_image {self.on_bad_image!r} does not exist; use skip or fail")
        if self.compact_cache_topk is not None and self.compact_cache_topk < 1:
            raise CSLError(f"--compact_cache_topk must be a positive number of classes, got {self.compact_cache_topk}")
        self.baselines = self._parse_baselines()
        if self.student_mode == "full":
            self._apply_full_mode_defaults()
            if not self.reinit_head_each_round:
                raise CSLError("--reinit_head_each_round False does not apply to --student_mode full: every round "
                               "restarts from the pretrained student with a fresh classifier; drop it")
        else:
            for name in ("backbone_learning_rate", "head_warmup_epochs", "freeze_batch_norm"):
                if getattr(self, name) is not None:
                    raise CSLError(f"--{name} applies to --student_mode full only (probe mode trains only the "
                                   "classifier, on the cached features); drop it")
        if self.backbone_learning_rate is not None and not self.backbone_learning_rate > 0:
            raise CSLError(f"--backbone_learning_rate must be positive, got {self.backbone_learning_rate}")
        if self.head_warmup_epochs is not None and not self.head_warmup_epochs >= 0:
            raise CSLError(f"--head_warmup_epochs must be 0 or more, got {self.head_warmup_epochs}")
        check_training_arguments(self)  # before TrainingArguments' own checks: one line, before any work
        super().__post_init__()

    def _parse_baselines(self) -> str:
        """``None`` (the default): ``oracle,ensemble`` in probe mode, ``none`` in full mode. Returns the comma string."""
        value = self.baselines
        if value is None:
            return "oracle,ensemble" if self.student_mode == "probe" else "none"
        names = [v.strip() for v in str(value).split(",") if v.strip() and v.strip() != "none"]
        bad = [v for v in names if v not in BASELINES]
        if bad:
            raise CSLError(f"--baselines {bad[0]!r} does not exist; use a comma-separated subset of "
                           f"{', '.join(BASELINES)}, or none")
        if names and self.student_mode == "full":
            raise CSLError("--baselines applies to --student_mode probe (in full mode each baseline would fine-tune the "
                           "whole student again for every level); run the full mode again with --assignment oracle")
        return ",".join(names) or "none"

    def baseline_list(self) -> list[str]:
        return [b for b in self.baselines.split(",") if b and b != "none"]

    def _apply_full_mode_defaults(self) -> None:
        """Full fine-tuning's own recipe where the probe's is wrong (docs/scale.md gives the measurements): a
        setting still at its probe default takes the full-mode default."""
        for name, (probe, full) in FULL_MODE_DEFAULTS.items():
            if getattr(self, name) == probe:
                setattr(self, name, full)
        if self.backbone_learning_rate is None:
            self.backbone_learning_rate = self.learning_rate / 10
        if self.head_warmup_epochs is None:
            self.head_warmup_epochs = 20.0
        if self.freeze_batch_norm is None:
            self.freeze_batch_norm = True
