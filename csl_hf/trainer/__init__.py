"""`CoSupervisedTrainer` and `CoSupervisedConfig`: co-supervised learning as a `transformers.Trainer`, laid out as
TRL lays out its trainers (a config module and a trainer module), with what the trainer orchestrates beside them:
the training phase (`phase`), probe and full fine-tuning (`modes`), the baseline chains (`baselines`), resuming
(`progress`), the console (`callbacks`) and the audit of `TrainingArguments` (`arguments_audit`)."""

from .co_supervised_config import CoSupervisedConfig
from .co_supervised_trainer import CoSupervisedTrainer

__all__ = ["CoSupervisedConfig", "CoSupervisedTrainer"]
