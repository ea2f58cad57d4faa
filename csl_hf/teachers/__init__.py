"""Weak teachers: build, train and evaluate a hierarchy (a generalist and levels of specialists) as one
`TeacherMixture`, with one call (`train_teacher_hierarchy`) and one arguments dataclass (`TeacherTrainingArguments`)
for independent tiny image classifiers and for linear heads on one shared frozen backbone (the paper's setting).

* `arguments`: `TeacherTrainingArguments`; `training`: `train_teacher_hierarchy`; `backbone`: heads on a backbone;
* `fitting`: building one tiny teacher and the fixed step budget every teacher trains with; `split`: the teacher
  split decoded once; `gates`: gate teachers (specialists that know their specialty); `evaluation`: how good they are.
"""

from .arguments import ARCHITECTURES, TeacherTrainingArguments, teacher_preprocessing
from .backbone import extract_backbone_features, load_backbone, train_backbone_heads
from .evaluation import (
    cache_teacher_accuracies,
    evaluate_teachers,
    evaluate_teachers_detailed,
    gate_accuracies,
    specialty_accuracies,
)
from .fitting import build_teacher, fit_fixed_steps, train_linear_head, train_teacher
from .gates import OTHER_LABEL, gate_training_rows, gated_specialists, train_gate_teachers
from .split import TeacherSplit, load_teacher_split
from .training import train_teacher_hierarchy

__all__ = [
    "ARCHITECTURES",
    "TeacherTrainingArguments",
    "teacher_preprocessing",
    "extract_backbone_features",
    "load_backbone",
    "train_backbone_heads",
    "train_linear_head",
    "OTHER_LABEL",
    "gate_training_rows",
    "gated_specialists",
    "train_gate_teachers",
    "cache_teacher_accuracies",
    "evaluate_teachers",
    "evaluate_teachers_detailed",
    "gate_accuracies",
    "specialty_accuracies",
    "TeacherSplit",
    "build_teacher",
    "fit_fixed_steps",
    "load_teacher_split",
    "train_teacher",
    "train_teacher_hierarchy",
]
