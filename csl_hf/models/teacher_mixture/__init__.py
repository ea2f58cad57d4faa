"""`TeacherMixture`: a hierarchy of weak teachers as one `PreTrainedModel` (see docs/teachers.md)."""

from .configuration_teacher_mixture import TeacherMixtureConfig
from .modeling_teacher_mixture import TeacherMixture, TeacherMixtureOutput, TeacherMixturePreTrainedModel

__all__ = ["TeacherMixture", "TeacherMixtureConfig", "TeacherMixtureOutput", "TeacherMixturePreTrainedModel"]
