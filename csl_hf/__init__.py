"""csl_hf: co-supervised learning (Liu & Alahi, arXiv:2402.15505) for weak-to-strong generalization, on 🤗 transformers."""

__version__ = "0.1.0"

from transformers import AutoConfig, AutoModel

from .configuration_teacher_mixture import TeacherMixtureConfig
from .modeling_teacher_mixture import TeacherMixture


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

from . import models  # noqa: E402  (registers the bundled EfficientNet-Lite student with the Auto classes)

from .cache import CSLCache  # noqa: E402
from .co_supervised_config import CoSupervisedConfig  # noqa: E402
from .co_supervised_trainer import CoSupervisedTrainer  # noqa: E402

__all__ = ["CoSupervisedConfig", "CoSupervisedTrainer", "TeacherMixture", "TeacherMixtureConfig", "CSLCache"]
