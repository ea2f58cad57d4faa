"""How a `CoSupervisedTrainer` reports on its student: ``train()``'s `TrainOutput`, ``predict`` / ``evaluate`` on the
student (the `Trainer` methods' names and meaning), and the per-round log to every ``report_to`` integration. A
mixin of the trainer."""

from __future__ import annotations

import time
from typing import Any

from transformers import Trainer
from transformers.trainer_utils import PredictionOutput, TrainOutput, speed_metrics

from .cache import TEST_SPLIT
from .errors import CSLError
from .metrics import student_metrics


class StudentEvaluationMixin:
    """Needs the trainer's ``report``, ``cache``, ``student``, ``images``, ``_mode``, ``_base_args``, ``_phase_losses``,
    ``_run_log`` and ``_steps_before_phase``."""

    def _train_output(self, start: float) -> TrainOutput:
        steps = sum(s for s, _ in self._phase_losses)
        loss = sum(s * l for s, l in self._phase_losses) / steps if steps else 0.0
        metrics = speed_metrics("train", start, num_steps=steps)
        final = self.report["rounds"][-1] if self.report["rounds"] else {}
        metrics.update({"train_loss": loss, "weak_accuracy": self.report["weak_accuracy"],
                        "ceiling_accuracy": self.report["ceiling_accuracy"],
                        "student_accuracy": final.get("student_accuracy"), "pgr": final.get("pgr")})
        return TrainOutput(steps, loss, {k: v for k, v in metrics.items() if v is not None})

    def predict(self, test_dataset=None, ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "test") -> PredictionOutput:
        """The current student's logits and metrics on ``test_dataset`` (images with a label column), or on the
        run's test split when ``None``.

        Returns:
            `PredictionOutput`: ``predictions`` float32 ``[n, C]`` logits, ``label_ids`` ``[n]``, ``metrics`` with
            ``{prefix}_accuracy``, ``{prefix}_loss`` (cross-entropy) and, once the run measured the weak teacher and
            the ceiling, ``{prefix}_pgr`` (percent).
        """
        start = time.time()
        if test_dataset is None:
            mode = self._mode or self._make_mode()
            logits, labels = mode.logits("test"), self.cache.labels[self.cache.rows(TEST_SPLIT)]
        else:
            if self.student is None:
                raise CSLError("this trainer has no student model (a head trained on cached features): predict on "
                               "images needs model=")
            logits, labels = self.images.student_logits(self.student, test_dataset, self._base_args)
        metrics = student_metrics(logits, labels, self.report, metric_key_prefix)
        metrics.update(speed_metrics(metric_key_prefix, start, num_samples=len(labels)))
        return PredictionOutput(predictions=logits.numpy(), label_ids=labels.numpy(), metrics=metrics)

    def evaluate(self, eval_dataset=None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Evaluate the current student (see `predict`), log the metrics and call ``on_evaluate`` callbacks."""
        metrics = self.predict(eval_dataset, ignore_keys, metric_key_prefix).metrics
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _log_round(self, record: dict[str, Any]) -> None:
        """Log a round's metrics to every ``report_to`` integration under ``csl/*``, with the *level* as the step
        (the x-axis of the paper's plots)."""
        step = self.state.global_step
        self.state.global_step = record["level"]
        try:
            Trainer.log(self, {f"csl/{k}": float(v) for k, v in record.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "level"})
        finally:
            self.state.global_step = step
        # In the run's history, on its step axis: after the round's training, tagged with the level.
        self._run_log.append({**self.state.log_history[-1], "level": record["level"],
                              "step": self._steps_before_phase})
