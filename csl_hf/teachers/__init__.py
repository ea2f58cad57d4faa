"""Weak teachers: build, train and evaluate a hierarchy (a generalist and levels of specialists) as one
`TeacherMixture`, from tiny image classifiers (`train_teacher_hierarchy`) or as linear heads on one shared frozen
backbone, the paper's setting (`train_backbone_heads`)."""

from .arguments import ARCHITECTURES, TeacherTrainingArguments, teacher_preprocessing
from .backbone import extract_backbone_features, load_backbone, train_backbone_heads, train_linear_head
from .evaluation import (
    cache_teacher_accuracies,
    evaluate_teachers,
    evaluate_teachers_detailed,
    gate_accuracies,
    specialty_accuracies,
)
from .gates import OTHER_LABEL, gate_training_rows, gated_specialists, train_gate_teachers
from .training import (
    TeacherSplit,
    build_teacher,
    fit_fixed_steps,
    load_teacher_split,
    train_teacher,
    train_teacher_hierarchy,
)

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
