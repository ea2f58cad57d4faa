"""EfficientNet-Lite (offline strong student) as transformers models."""

from .configuration_efficientnet_lite import LITE_VARIANTS, EfficientNetLiteConfig
from .convert import (
    LITE_WHEELS,
    convert_lite0_weights,
    convert_lite_weights,
    get_lite0_checkpoint,
    get_lite_checkpoint,
    lite_image_processor,
)
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
    "LITE_WHEELS",
    "convert_lite0_weights",
    "convert_lite_weights",
    "get_lite0_checkpoint",
    "get_lite_checkpoint",
    "lite_image_processor",
]
