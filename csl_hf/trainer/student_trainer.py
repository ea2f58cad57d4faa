"""`StudentTrainer`: the base of `CoSupervisedTrainer`. It owns what outlives a run's phases (the strong student,
its classifier, the images and the CSL cache they were labeled into, the run's report) and gives the `Trainer`
surface its meaning for that student: `label` (the labeling pass), `predict` / `evaluate`, `save_model`,
`create_model_card` and `push_to_hub`. The rounds themselves are `CoSupervisedTrainer`'s."""

from __future__ import annotations

import os
import time
from typing import Any

from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import PredictionOutput, speed_metrics

from ..cache import TEST_SPLIT, CSLCache
from ..errors import CSLError
from ..metrics import student_metrics
from ..models.student import ClassifierProbe, check_head, find_classifier
from ..models.teacher_mixture import TeacherMixture
from ..outputs import checkpoints
from .co_supervised_config import CoSupervisedConfig
from .inputs import check_inputs
from .modes import FullMode, ProbeMode, make_mode

__all__ = ["StudentTrainer"]


class StudentTrainer(Trainer):
    """A `Trainer` around one strong student and the CSL cache it learns from (see the module docstring; the
    arguments are `CoSupervisedTrainer`'s).

    Attributes:
        student: the student model (``None`` for a head trained on cached features alone).
        head, head_name: its classifier module and the attribute that holds it (``None`` without a student).
        teachers, images: the weak teachers and the run's images (`csl_hf.data.source.ImageSource`), when given.
        report: the run report once `train` has run (``csl_report.json``), else ``None``.
    """

    def __init__(self, model: PreTrainedModel | None, args: CoSupervisedConfig | None, teachers: TeacherMixture | None,
                 train_dataset, eval_dataset, cache: CSLCache | None, processing_class: Any, callbacks, peft_config):
        args = CoSupervisedConfig() if args is None else args
        self.images = check_inputs(model, args, teachers, train_dataset, eval_dataset, cache, processing_class,
                                   peft_config)
        self.student, self.teachers, self.peft_config = model, teachers, peft_config
        num_labels = cache.num_labels if cache is not None else teachers.config.num_labels
        if model is not None:
            self.head_name, self.head = find_classifier(model)
        else:
            self.head_name, self.head = None, nn.Linear(cache.feature_dim, num_labels)
        self._cache, self._base_args = cache, args
        super().__init__(model=model if model is not None else ClassifierProbe(self.head), args=args,
                         processing_class=processing_class, callbacks=callbacks)
        self._mode: ProbeMode | FullMode | None = None  # how the student trains and predicts (set by the run)
        self.report: dict[str, Any] | None = None

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """The Hub repo is created by `push_to_hub` when it pushes, not when the trainer is built: a run can be
        started offline and pushed later."""

    # ================================================================================================ the cache
    def label(self) -> CSLCache:
        """The labeling pass: every teacher and the student's backbone on each image of ``train_dataset`` and
        ``eval_dataset``, once, into ``OUTPUT_DIR/cache`` (or that cache reused when it was labeled from the same
        teachers, student and data: `csl_hf.cache.reuse.label_or_reuse`). The first step of `train`; a no-op when the
        trainer was given a cache or has labeled already. Returns the cache."""
        if self._cache is None:
            from ..cache.reuse import label_or_reuse

            self._cache = label_or_reuse(self.images, self.teachers, self.student, self._base_args)
            check_head(self.head, self._cache.num_labels, self._cache.feature_dim)
        return self._cache

    @property
    def cache(self) -> CSLCache:
        """The run's `CSLCache`: the one given, or the one `label` made.

        Raises:
            `CSLError`: the images have not been labeled yet (call `label` or `train`)."""
        if self._cache is None:
            raise CSLError("this trainer has not labeled its images yet: call trainer.label() (or trainer.train(), "
                           "which labels first)")
        return self._cache

    # ================================================================================================ the student
    def predict(self, test_dataset=None, ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "test") -> PredictionOutput:
        """The current student's logits, and its metrics where the images have labels, on ``test_dataset`` (a
        ``datasets`` dataset of images, or a list of PIL images, paths or arrays), or on the run's test split when
        ``None``. A dataset's labels are matched to the student's classes by name.

        Returns:
            `PredictionOutput`: ``predictions`` float32 ``[n, C]`` logits; ``label_ids`` ``[n]`` (``None`` for
            images without labels, as for any `Trainer`); ``metrics`` with ``{prefix}_accuracy``,
            ``{prefix}_loss`` (cross-entropy) and, once the run measured the weak teacher and the ceiling,
            ``{prefix}_pgr`` (percent) where there are labels, and the speed metrics.
        """
        start = time.time()
        if test_dataset is None:
            cache = self.label()
            mode = self._mode or make_mode(self, self._base_args)
            logits, labels = mode.logits("test"), cache.labels[cache.rows(TEST_SPLIT)]
        else:
            if self.student is None:
                raise CSLError("this trainer has no student model (a head trained on cached features): predict on "
                               "images needs model=")
            what = "eval_dataset" if metric_key_prefix == "eval" else "test_dataset"
            logits, labels = self.images.student_logits(self.student, test_dataset, self._base_args, what)
        metrics = {} if labels is None else student_metrics(logits, labels, self.report, metric_key_prefix)
        metrics.update(speed_metrics(metric_key_prefix, start, num_samples=len(logits)))
        return PredictionOutput(predictions=logits.numpy(), label_ids=None if labels is None else labels.numpy(),
                                metrics=metrics)

    def evaluate(self, eval_dataset=None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Evaluate the current student (see `predict`), log the metrics and call ``on_evaluate`` callbacks."""
        metrics = self.predict(eval_dataset, ignore_keys, metric_key_prefix).metrics
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ================================================================================================ outputs
    def _student_to_save(self) -> nn.Module | None:
        """The student as a standard checkpoint: with LoRA adapters, a copy with them merged in."""
        return self._mode.merged_student() if isinstance(self._mode, FullMode) else self.student

    def save_round(self, level: int, record: dict[str, Any]) -> str | None:
        """Write the current student to ``OUTPUT_DIR/round-{level}/`` with its ``csl_round.json``, atomically."""
        if not self._base_args.should_save:
            return None
        return checkpoints.save_round(self._base_args.output_dir, level, record, self._student_to_save(),
                                      self.processing_class, self.head)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """`save_model` writes the student (``save_pretrained`` + its image processor; or the trained head of a run
        without a student), file by file atomically. No pickled ``training_args.bin``: the run's settings are in
        ``csl_report.json``."""
        if self._base_args.should_save:
            checkpoints.save_student(output_dir or self._base_args.output_dir, self._student_to_save(),
                                     self.processing_class, self.head, state_dict)

    def create_model_card(self, language: str | None = None, license: str | None = None,
                          tags: str | list[str] | None = None, model_name: str | None = None,
                          finetuned_from: str | None = None, tasks: str | list[str] | None = None,
                          dataset_tags: str | list[str] | None = None, dataset: str | list[str] | None = None,
                          dataset_args: str | list[str] | None = None) -> None:
        """Write the CSL model card (``README.md``: teachers, settings, per-round table, PGR plot when ``pgr.png``
        is there, loading snippet, citation) into ``OUTPUT_DIR`` and every ``round-{level}/``."""
        if not self.is_world_process_zero() or self.report is None:
            return
        from ..outputs.model_card import write_run_model_cards

        write_run_model_cards(self._base_args.output_dir, self.report, cache=self.cache,
                              hub_model_id=self._base_args.hub_model_id, license=license or "apache-2.0", tags=tags,
                              model_name=model_name, base_model=finetuned_from,
                              dataset_name=dataset[0] if isinstance(dataset, list) and dataset else dataset or None)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, **kwargs):
        """Push the final student to ``main`` and each round's student to branch ``round-{level}`` of
        ``args.hub_model_id`` (default: the output directory's name), with the model card.

        Returns:
            The `huggingface_hub.CommitInfo` of the ``main`` commit (each branch's commit is logged).
        """
        if not self.is_world_process_zero():
            return None
        from ..outputs.hub import push_csl_outputs

        self.save_model(_internal_call=True)
        self.create_model_card(**{k: v for k, v in kwargs.items()
                                  if k in ("license", "tags", "model_name", "finetuned_from", "dataset")})
        args = self._base_args
        repo_id = args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir))
        return push_csl_outputs(args.output_dir, repo_id, token=token or args.hub_token, commit_message=commit_message,
                                private=private if private is not None else args.hub_private_repo).get("main")
