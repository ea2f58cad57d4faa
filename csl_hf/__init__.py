"""csl_hf: co-supervised learning (Liu & Alahi, arXiv:2402.15505) for weak-to-strong generalization, on 🤗 transformers.

A strong pretrained image classifier is taught, round by round, by a hierarchy of weak specialised teachers:

    from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, TeacherMixture, load_student

    teachers = TeacherMixture.from_pretrained("out/teachers")
    student, processor = load_student("efficientnet-lite0", teachers.config.id2label, image_size=64)
    trainer = CoSupervisedTrainer(model=student, teachers=teachers, args=CoSupervisedConfig(output_dir="out"),
                                  train_dataset=splits["train"], eval_dataset=splits["test"], processing_class=processor)
    trainer.train()

The package is laid out by what each part holds: `csl_hf.method` (the paper: hierarchy, specialties, rounds, the
consistency filter), `csl_hf.cache` (the seam: format, labeling pass, reuse), `csl_hf.models` (the teacher mixture and
the bundled students), `csl_hf.teachers` (building and training weak teachers), `csl_hf.trainer` (the `Trainer`
plumbing), `csl_hf.outputs` (report, model card, Hub), `csl_hf.data`, `csl_hf.metrics` and `csl_hf.cli`.

Public names are imported lazily (as TRL does with its ``_import_structure``): ``import csl_hf`` loads only the model
architectures, which it registers with the transformers Auto classes; ``from csl_hf import CoSupervisedTrainer``
imports the trainer when it is first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# The architectures register with AutoConfig / AutoModel / AutoModelForImageClassification on import, so that
# `AutoModel.from_pretrained(teachers_dir)` works after a bare `import csl_hf`.
from . import models  # noqa: E402,F401

_import_structure: dict[str, list[str]] = {
    "cache": ["CSLCache"],
    "cache.labeling": ["build_cache"],
    "cli.arguments": ["DataArguments", "ModelArguments", "parse_run_args"],
    "data": ["WeakToStrongData", "load_csl_dataset", "load_weak_to_strong_data", "make_weak_to_strong_splits"],
    "data.preprocessing": ["Preprocessing"],
    "errors": ["CSLError", "CacheError"],
    "method.hierarchy": ["class_hierarchy", "domain_hierarchy", "validate_hierarchy"],
    "models.student": ["load_student"],
    "models.teacher_mixture": ["TeacherMixture", "TeacherMixtureConfig", "TeacherMixtureOutput"],
    "teachers": ["TeacherTrainingArguments", "cache_teacher_accuracies", "evaluate_teachers",
                 "evaluate_teachers_detailed", "load_backbone", "train_backbone_heads", "train_teacher_hierarchy"],
    "trainer": ["CoSupervisedConfig", "CoSupervisedTrainer"],
}
_name_to_module = {name: module for module, names in _import_structure.items() for name in names}

__all__ = sorted(_name_to_module)


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    module = _name_to_module.get(name)
    if module is None:
        raise AttributeError(f"module 'csl_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers and IDEs see every public name
    from .cache import CSLCache  # noqa: F401
    from .cache.labeling import build_cache  # noqa: F401
    from .cli.arguments import DataArguments, ModelArguments, parse_run_args  # noqa: F401
    from .data import WeakToStrongData, load_csl_dataset, load_weak_to_strong_data, make_weak_to_strong_splits  # noqa: F401
    from .data.preprocessing import Preprocessing  # noqa: F401
    from .errors import CacheError, CSLError  # noqa: F401
    from .method.hierarchy import class_hierarchy, domain_hierarchy, validate_hierarchy  # noqa: F401
    from .models.student import load_student  # noqa: F401
    from .models.teacher_mixture import TeacherMixture, TeacherMixtureConfig, TeacherMixtureOutput  # noqa: F401
    from .teachers import (  # noqa: F401
        TeacherTrainingArguments,
        cache_teacher_accuracies,
        evaluate_teachers,
        evaluate_teachers_detailed,
        load_backbone,
        train_teacher_hierarchy,
    )
    from .trainer import CoSupervisedConfig, CoSupervisedTrainer  # noqa: F401
