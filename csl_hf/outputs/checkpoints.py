"""The files of a run's students: each round's checkpoint (``OUTPUT_DIR/round-{level}/``), the final student
(``save_model``) and the report. Every one is a standard checkpoint (``save_pretrained`` in safetensors + the image
processor), written atomically: a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from torch import nn
from transformers import PreTrainedModel

from ..utils import atomic_write_json, publish_files, staged_directory
from .report import REPORT_NAME

__all__ = ["ROUND_STATE_NAME", "PROBE_HEAD_NAME", "save_round", "save_student", "write_report", "write_student"]

#: The round's record of the report, next to its checkpoint.
ROUND_STATE_NAME = "csl_round.json"
#: The trained head of a run without a student model (a standalone probe on cached features).
PROBE_HEAD_NAME = "probe_head.safetensors"


def write_student(directory: str, student: PreTrainedModel | None, processor=None, head: nn.Module | None = None,
                  state_dict: dict | None = None) -> None:
    """Save a student as a standard checkpoint (``save_pretrained`` in safetensors + its image processor); a run
    without a student model saves its trained head as ``probe_head.safetensors``."""
    if student is not None:
        student.save_pretrained(directory, state_dict=state_dict)
        if processor is not None:
            processor.save_pretrained(directory)
        return
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()},
              os.path.join(directory, PROBE_HEAD_NAME))


def save_round(output_dir: str, level: int, record: dict[str, Any], student: PreTrainedModel | None, processor,
               head: nn.Module) -> str:
    """Write the student after round ``level`` to ``output_dir/round-{level}/`` with its ``csl_round.json``, as one
    directory swapped into place. Returns its path."""
    final = os.path.join(output_dir, f"round-{level}")
    with staged_directory(final) as tmp:
        write_student(tmp, student, processor, head)
        atomic_write_json(os.path.join(tmp, ROUND_STATE_NAME), record)
    return final


def save_student(output_dir: str, student: PreTrainedModel | None, processor, head: nn.Module,
                 state_dict: dict | None = None) -> None:
    """Write the final student into ``output_dir``, file by file atomically (the directory holds the run's other
    outputs, which stay)."""
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".student-", dir=output_dir) as tmp:
        write_student(tmp, student, processor, head, state_dict)
        publish_files(tmp, output_dir)


def write_report(output_dir: str, report: dict[str, Any]) -> str:
    """``output_dir/csl_report.json``, atomically."""
    return atomic_write_json(os.path.join(output_dir, REPORT_NAME), report)
