"""csl_hf: co-supervised learning (Liu & Alahi, arXiv:2402.15505) for weak-to-strong generalization, on 🤗 transformers.

A strong pretrained image classifier is taught, round by round, by a hierarchy of weak specialised teachers:

    from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, TeacherMixture, load_student

    teachers = TeacherMixture.from_pretrained("out/teachers")
    student, processor = load_student("efficientnet-lite0", teachers.config.id2label, image_size=64)
    trainer = CoSupervisedTrainer(model=student, teachers=teachers, args=CoSupervisedConfig(output_dir="out"),
                                  train_dataset=splits["train"], eval_dataset=splits["test"], processing_class=processor)
    trainer.train()
"""

__version__ = "0.2.0"

from transformers import AutoConfig, AutoModel

from .configuration_teacher_mixture import TeacherMixtureConfig
from .modeling_teacher_mixture import TeacherMixture, TeacherMixtureOutput


def _register() -> None:
    try:
        AutoConfig.register(TeacherMixtureConfig.model_type, TeacherMixtureConfig)
    except ValueError:  # already registered (module re-imported)
        pass
    try:
        AutoModel.register(TeacherMixtureConfig, TeacherMixture)
    except ValueError:
        pass


_register()

from . import models  # noqa: E402,F401  (registers the bundled EfficientNet-Lite student with the Auto classes)
from .cache import CSLCache  # noqa: E402
from .co_supervised_config import CoSupervisedConfig  # noqa: E402
from .co_supervised_trainer import CoSupervisedTrainer  # noqa: E402
from .data import WeakToStrongData, load_csl_dataset, load_weak_to_strong_data, make_weak_to_strong_splits  # noqa: E402
from .errors import CacheError, CSLError  # noqa: E402
from .hierarchy import class_hierarchy, domain_hierarchy, validate_hierarchy  # noqa: E402
from .labeling import build_cache  # noqa: E402
from .preprocessing import Preprocessing  # noqa: E402
from .script_arguments import DataArguments, ModelArguments, parse_run_args  # noqa: E402
from .student import load_student  # noqa: E402
from .teachers import (  # noqa: E402
    TeacherTrainingArguments,
    cache_teacher_accuracies,
    evaluate_teachers,
    evaluate_teachers_detailed,
    load_backbone,
    train_backbone_heads,
    train_teacher_hierarchy,
)

__all__ = [
    "CoSupervisedConfig",
    "CoSupervisedTrainer",
    "TeacherMixture",
    "TeacherMixtureConfig",
    "TeacherMixtureOutput",
    "CSLCache",
    "CSLError",
    "CacheError",
    "Preprocessing",
    "TeacherTrainingArguments",
    "train_teacher_hierarchy",
    "train_backbone_heads",
    "load_backbone",
    "evaluate_teachers",
    "evaluate_teachers_detailed",
    "cache_teacher_accuracies",
    "load_student",
    "build_cache",
    "load_csl_dataset",
    "make_weak_to_strong_splits",
    "load_weak_to_strong_data",
    "WeakToStrongData",
    "class_hierarchy",
    "domain_hierarchy",
    "validate_hierarchy",
    "DataArguments",
    "ModelArguments",
    "parse_run_args",
]
