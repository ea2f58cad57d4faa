"""EfficientNet-Lite as a native transformers `EfficientNetForImageClassification`, so that a saved student loads
with plain transformers (``pipeline("image-classification", model=path)``), no csl_hf and no remote code.

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6 (Tan & Le, "EfficientNet-Lite",
tensorflow/tpu models/official/efficientnet/lite). transformers' EfficientNet always applies squeeze-and-excitation;
here it is made an exact identity: its projections are zero and its gate bias is 30, so the gate is
``sigmoid(30) = 1.0`` in float32 and every feature map is multiplied by exactly 1 (a ~0.6 % parameter overhead).
The gradient through a saturated gate is ~1e-13, so fine-tuning leaves it an identity too.

Padding: both implementations use TensorFlow "SAME" padding; they agree exactly when every stride-2 layer sees an
even input, i.e. for input sides that are multiples of 32 (the bundled student runs at 64 px; ImageNet at 224 px).
`tests/test_models_efficientnet_lite.py` checks the logits match.
"""

from __future__ import annotations

import re

import torch
from transformers import EfficientNetConfig, EfficientNetForImageClassification

from .modeling_efficientnet_lite import EfficientNetLiteForImageClassification

__all__ = ["to_native_efficientnet", "SE_GATE_BIAS"]

#: Bias of the squeeze-and-excitation gate: sigmoid(30) rounds to exactly 1.0 in float32 (and bfloat16/float16).
SE_GATE_BIAS = 30.0

_BLOCK_MODULES = {
    "expand_conv": "expansion.expand_conv",
    "expand_bn": "expansion.expand_bn",
    "depthwise_conv": "depthwise_conv.depthwise_conv",
    "depthwise_bn": "depthwise_conv.depthwise_norm",
    "project_conv": "projection.project_conv",
    "project_bn": "projection.project_bn",
}
_BLOCK_KEY = re.compile(r"^efficientnet\.encoder\.blocks\.(\d+)\.(\w+)\.(\w+)$")


def native_config(lite_config) -> EfficientNetConfig:
    """The `EfficientNetConfig` of the same network (ReLU6, the Lite stages, a one-channel identity SE)."""
    c = lite_config
    return EfficientNetConfig(
        num_channels=c.num_channels, image_size=c.image_size, width_coefficient=1.0, depth_coefficient=1.0,
        depth_divisor=c.depth_divisor, kernel_sizes=list(c.kernel_sizes),
        in_channels=[c.stem_channels, *c.out_channels[:-1]], out_channels=list(c.out_channels), depthwise_padding=[],
        strides=list(c.strides), num_block_repeats=list(c.num_block_repeats), expand_ratios=list(c.expand_ratios),
        squeeze_expansion_ratio=1e-9,  # max(1, int(in_dim * ratio)) = 1 channel: the smallest possible identity SE
        hidden_act=c.hidden_act, hidden_dim=c.hidden_dim, pooling_type="mean", batch_norm_eps=c.batch_norm_eps,
        # transformers' EfficientNet hands this straight to nn.BatchNorm2d, i.e. in PyTorch's convention: the TF
        # decay 0.99 there would make the running statistics those of the last batch, and any fine-tuning would wreck
        # them (the bug torchvision fixed for MaxViT, pytorch/vision#8312). Ours is already PyTorch's 0.01.
        batch_norm_momentum=c.batch_norm_momentum, dropout_rate=getattr(c, "dropout_rate", 0.2),
        drop_connect_rate=c.drop_connect_rate, num_labels=c.num_labels, id2label=dict(c.id2label),
        label2id=dict(c.label2id),
    )


def to_native_efficientnet(lite: EfficientNetLiteForImageClassification) -> EfficientNetForImageClassification:
    """The same network and weights as a transformers `EfficientNetForImageClassification` (eval mode).

    Raises:
        ValueError: a Lite model whose stem or head is scaled (``width_coefficient`` or ``depth_coefficient`` other
        than 1: only Lite0 maps one to one) or whose weights do not map.
    """
    c = lite.config
    if (c.width_coefficient, c.depth_coefficient) != (1.0, 1.0):
        raise ValueError(f"only EfficientNet-Lite0 (width and depth 1.0) maps onto transformers' EfficientNet, got "
                         f"width {c.width_coefficient}, depth {c.depth_coefficient}")
    model = EfficientNetForImageClassification(native_config(c))
    target = model.state_dict()
    state = {}
    for key, value in lite.state_dict().items():
        key = key.replace("efficientnet_lite.", "efficientnet.", 1)
        m = _BLOCK_KEY.match(key)
        if m:
            key = f"efficientnet.encoder.blocks.{m.group(1)}.{_BLOCK_MODULES[m.group(2)]}.{m.group(3)}"
        state[key] = value
    for key in set(target) - set(state):
        if ".squeeze_excite." not in key:
            raise ValueError(f"EfficientNet-Lite -> EfficientNet: no weight for {key}")
        state[key] = torch.full_like(target[key], SE_GATE_BIAS if key.endswith("expand.bias") else 0.0)
    unexpected = set(state) - set(target)
    if unexpected:
        raise ValueError(f"EfficientNet-Lite -> EfficientNet: unexpected weights {sorted(unexpected)[:5]}")
    model.load_state_dict(state, strict=True)
    return model.eval()
