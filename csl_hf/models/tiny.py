"""Tiny random stand-ins for the paper's ImageNet recipe, built from configs (no download): a ConvNeXt backbone
for the teacher heads and a ViT student. They let every stage of the recipe run offline on a CPU; their accuracies
mean nothing."""

from __future__ import annotations

import torch
from transformers import ConvNextConfig, ConvNextModel, ViTConfig, ViTForImageClassification

from ..data.preprocessing import Preprocessing

__all__ = ["TINY_BACKBONE", "TINY_STUDENT", "tiny_backbone", "tiny_student"]

#: Names of the stand-ins where a backbone or a student is named by a string (``--teacher_backbone tiny-convnext``).
TINY_BACKBONE = "tiny-convnext"
TINY_STUDENT = "tiny-vit"


def _prep(image_size: int) -> Preprocessing:
    s = int(image_size)
    return Preprocessing(size=(s, s), image_mean=(0.5,) * 3, image_std=(0.5,) * 3)


def tiny_backbone(image_size: int = 28) -> tuple[ConvNextModel, Preprocessing]:
    """A tiny random ConvNeXt ``AutoModel`` (2 stages, 16/32 channels, seed 0) and its preprocessing."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], patch_size=4,
                                image_size=image_size, drop_path_rate=0.0)
        return ConvNextModel(config).eval(), _prep(image_size)


def tiny_student(id2label: dict[int, str], image_size: int = 28) -> tuple[ViTForImageClassification, Preprocessing]:
    """A tiny random ``ViTForImageClassification`` over ``id2label`` (seed 1) and its preprocessing."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        config = ViTConfig(image_size=image_size, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=128, num_labels=len(id2label), id2label=id2label,
                           label2id={v: k for k, v in id2label.items()})
        return ViTForImageClassification(config).eval(), _prep(image_size)
