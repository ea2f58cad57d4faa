"""What a `CoSupervisedTrainer` writes: round checkpoints, the student for ``save_model``, the model card and the
push to the Hub. A mixin of the trainer, so that these keep the `Trainer` methods' names and meaning."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from transformers.utils import logging

from .atomic import atomic_write_json, publish_files, staged_directory
from .student import write_student

logger = logging.get_logger(__name__)

ROUND_STATE_NAME = "csl_round.json"


class StudentOutputsMixin:
    """Needs the trainer's ``student``, ``processing_class``, ``_head``, ``_base_args``, ``report`` and ``cache``."""

    def _student_to_save(self):
        """The student as a standard checkpoint: with LoRA adapters, a copy with them merged in."""
        mode = getattr(self, "_mode", None)
        return mode.merged_student() if hasattr(mode, "merged_student") else self.student

    def save_round(self, level: int, record: dict[str, Any]) -> str | None:
        """Write the current student to ``OUTPUT_DIR/round-{level}/`` with its ``csl_round.json``, atomically."""
        if not self._base_args.should_save:
            return None
        final = os.path.join(self._base_args.output_dir, f"round-{level}")
        with staged_directory(final) as tmp:
            write_student(tmp, self._student_to_save(), self.processing_class, self._head)
            atomic_write_json(os.path.join(tmp, ROUND_STATE_NAME), record)
        return final

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """`save_model` writes the student (``save_pretrained`` + its image processor; or the trained head of a run
        without a student), file by file atomically. No pickled ``training_args.bin``: the run's settings are in
        ``csl_report.json``."""
        output_dir = output_dir if output_dir is not None else self._base_args.output_dir
        if not self._base_args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".student-", dir=output_dir) as tmp:
            write_student(tmp, self._student_to_save(), self.processing_class, self._head, state_dict)
            publish_files(tmp, output_dir)

    def create_model_card(self, language: str | None = None, license: str | None = None,
                          tags: str | list[str] | None = None, model_name: str | None = None,
                          finetuned_from: str | None = None, tasks: str | list[str] | None = None,
                          dataset_tags: str | list[str] | None = None, dataset: str | list[str] | None = None,
                          dataset_args: str | list[str] | None = None) -> None:
        """Write the CSL model card (``README.md``: teachers, settings, per-round table, PGR plot when
        ``pgr.png`` is there, loading snippet, citation) into ``OUTPUT_DIR`` and every ``round-{level}/``."""
        if not self.is_world_process_zero() or self.report is None:
            return
        from .model_card import write_run_model_cards

        if isinstance(dataset, list):
            dataset = dataset[0] if dataset else None
        source = self.cache.source or {}
        write_run_model_cards(
            self._base_args.output_dir, self.report, base_model=finetuned_from or self.cache.student.get("name_or_path"),
            dataset_name=dataset or source.get("dataset"), teacher_names=self.cache.teacher_names,
            levels=self.cache.levels, hub_model_id=self._base_args.hub_model_id, license=license or "apache-2.0",
            tags=[tags] if isinstance(tags, str) else tags, model_name=model_name)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, **kwargs):
        """Push the final student to ``main`` and each round's student to branch ``round-{level}`` of
        ``args.hub_model_id`` (default: the output directory's name), with the model card.

        Returns:
            The `huggingface_hub.CommitInfo` of the ``main`` commit (each branch's commit is logged).
        """
        if not self.is_world_process_zero():
            return None
        from .hub import push_csl_outputs

        self.save_model(_internal_call=True)
        self.create_model_card(**{k: v for k, v in kwargs.items() if k in ("license", "tags", "model_name",
                                                                             "finetuned_from", "dataset")})
        out = self._base_args.output_dir
        repo_id = self._base_args.hub_model_id or os.path.basename(os.path.abspath(out))
        commits = push_csl_outputs(out, repo_id, token=token or self._base_args.hub_token,
                                   private=private if private is not None else self._base_args.hub_private_repo,
                                   commit_message=commit_message)
        for branch, info in commits.items():
            logger.info(f"pushed {repo_id}@{branch}: {getattr(info, 'commit_url', info)}")
        return commits.get("main")

