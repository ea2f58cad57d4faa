"""EfficientNet-Lite (offline strong student) as transformers models."""

from .configuration_efficientnet_lite import LITE_VARIANTS, EfficientNetLiteConfig
from .convert import convert_lite0_weights, get_lite0_checkpoint, lite_image_processor
from .modeling_efficientnet_lite import (
    EfficientNetLiteForImageClassification,
    EfficientNetLiteModel,
    EfficientNetLitePreTrainedModel,
)

__all__ = [
    "LITE_VARIANTS",
    "EfficientNetLiteConfig",
    "EfficientNetLiteForImageClassification",
    "EfficientNetLiteModel",
    "EfficientNetLitePreTrainedModel",
    "convert_lite0_weights",
    "get_lite0_checkpoint",
    "lite_image_processor",
]
