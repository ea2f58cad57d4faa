"""Deprecated import path: `csl_hf.configuration_teacher_mixture` moved to
`csl_hf.models.teacher_mixture.configuration_teacher_mixture`, and the hierarchy helpers it re-exported live in
`csl_hf.method.hierarchy` (kept for scripts written against csl_hf 0.2; it will be removed in 0.4)."""

import warnings

from .method.hierarchy import class_hierarchy, domain_hierarchy, validate_hierarchy  # noqa: F401
from .models.teacher_mixture.configuration_teacher_mixture import TeacherMixtureConfig  # noqa: F401

warnings.warn("csl_hf.configuration_teacher_mixture moved to csl_hf.models.teacher_mixture (TeacherMixtureConfig) and "
              "csl_hf.method.hierarchy (class_hierarchy, domain_hierarchy); the old path will be removed in csl_hf 0.4",
              FutureWarning, stacklevel=2)
