"""The inputs of a `CoSupervisedTrainer`, checked when it is built: before any teacher runs or image is decoded, a
missing or inconsistent input is one line that names the fix."""

from __future__ import annotations

from typing import Any

from ..data.source import ImageSource
from ..errors import CSLError
from ..method.rounds import check_assignment_fits
from ..models.student import check_head, check_lora_targets, find_classifier
from .co_supervised_config import CoSupervisedConfig

__all__ = ["check_inputs"]


def check_inputs(model, args, teachers, train_dataset, eval_dataset, cache, processing_class,
                 peft_config: Any) -> ImageSource | None:
    """Check the arguments of `CoSupervisedTrainer` (same names) against each other.

    Returns:
        The run's images (`ImageSource`), or ``None`` for a run from a cache alone.

    Raises:
        `CSLError` (one line): args that are not a `CoSupervisedConfig`; neither a cache nor teachers with both
        datasets; full mode without a student and images; LoRA outside full mode; an assignment the hierarchy
        cannot run (`csl_hf.method.rounds.check_assignment_fits`); gradient checkpointing on a student without
        it; a student whose classifier or class names do not fit the data.
    """
    if not isinstance(args, CoSupervisedConfig):
        raise CSLError("CoSupervisedTrainer needs a CoSupervisedConfig as args (it holds the CSL settings)")
    images = None
    if train_dataset is not None or eval_dataset is not None:
        images = ImageSource.from_datasets(train_dataset, eval_dataset, processing_class, teachers=teachers,
                                           cache=cache)
    if cache is None and (teachers is None or images is None):
        raise CSLError("CoSupervisedTrainer needs either cache= (a CSLCache) or teachers= with train_dataset= and "
                       "eval_dataset= (images the teachers label)")
    if args.student_mode == "full" and (model is None or images is None):
        raise CSLError("student_mode='full' fine-tunes the whole student on images: pass model= and the "
                       "train_dataset= / eval_dataset= the cache was labeled from")
    if peft_config is not None and args.student_mode != "full":
        raise CSLError("peft_config (--use_peft) applies to student_mode='full': probe mode trains only the "
                       "classifier; add --student_mode full or drop the LoRA settings")
    # refused now, not after the labeling pass and the first rounds
    check_assignment_fits(args.assignment, cache=cache, teachers=teachers)
    if (args.gradient_checkpointing or args.activation_checkpointing) and model is not None and \
            not getattr(model, "supports_gradient_checkpointing", False):
        raise CSLError(f"--gradient_checkpointing: {type(model).__name__} does not support gradient checkpointing; "
                       "drop the flag")
    if model is not None:
        num_labels = cache.num_labels if cache is not None else teachers.config.num_labels
        check_head(find_classifier(model)[1], num_labels, cache.feature_dim if cache is not None else None)
        if images is not None:
            images.check_student(model)
        check_lora_targets(model, peft_config)
    return images
