"""EfficientNet-Lite as a native transformers `EfficientNetForImageClassification`, so that a saved student loads
with plain transformers (``pipeline("image-classification", model=path)``), no csl_hf and no remote code.

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6 (Tan & Le, "EfficientNet-Lite",
tensorflow/tpu models/official/efficientnet/lite). transformers' EfficientNet always applies squeeze-and-excitation;
here it is made an exact identity: its projections are zero and its gate bias is 30, so the gate is
``sigmoid(30) = 1.0`` in float32 and every feature map is multiplied by exactly 1 (a ~0.6 % parameter overhead).
The gradient through a saturated gate is ~1e-13, so fine-tuning leaves it an identity too.

Padding: both implementations use TensorFlow "SAME" padding; they agree exactly when every stride-2 layer sees an
even input, i.e. for input sides that are multiples of 32 (the bundled student runs at 64 px; ImageNet at 224 px).
`tests/test_models_efficientnet_lite.py` checks the logits match (Lite1 and Lite2:
`tests/test_efficientnet_lite_variants.py`).
"""

from __future__ import annotations

import re

import torch
from transformers import EfficientNetConfig, EfficientNetForImageClassification

from .modeling_efficientnet_lite import EfficientNetLiteForImageClassification, round_filters, round_repeats

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


def _scaled_layout(c) -> tuple[int, list[int], list[int], int]:
    """``(stem, stage out channels, stage repeats, head)`` of a Lite config, after width and depth scaling (the stem,
    the head and the first and last stages' repeats stay fixed with ``fix_head_stem``), as the Lite model builds."""
    stages = len(c.kernel_sizes)
    out = [round_filters(c, ch) for ch in c.out_channels]
    repeats = [n if c.fix_head_stem and i in (0, stages - 1) else round_repeats(c, n)
               for i, n in enumerate(c.num_block_repeats)]
    return (round_filters(c, c.stem_channels, skip=c.fix_head_stem), out, repeats,
            round_filters(c, c.hidden_dim, skip=c.fix_head_stem))


def native_config(lite_config) -> EfficientNetConfig:
    """The `EfficientNetConfig` of the same network (ReLU6, the Lite stages, a one-channel identity SE). The scaling
    of Lite1..4 is applied here (explicit channels and repeats with width and depth 1.0): transformers' EfficientNet
    would also scale the stem and head, which the Lite variants keep at 32 and 1280 channels."""
    c = lite_config
    stem, out, repeats, head = _scaled_layout(c)
    return EfficientNetConfig(
        num_channels=c.num_channels, image_size=c.image_size, width_coefficient=1.0, depth_coefficient=1.0,
        depth_divisor=c.depth_divisor, kernel_sizes=list(c.kernel_sizes),
        in_channels=[stem, *out[:-1]], out_channels=out, depthwise_padding=[],
        strides=list(c.strides), num_block_repeats=repeats, expand_ratios=list(c.expand_ratios),
        squeeze_expansion_ratio=1e-9,  # max(1, int(in_dim * ratio)) = 1 channel: the smallest possible identity SE
        hidden_act=c.hidden_act, hidden_dim=head, pooling_type="mean", batch_norm_eps=c.batch_norm_eps,
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
        ValueError: a Lite model whose stem is not 32 channels or whose head is not 1280 (transformers' EfficientNet
        fixes both at width 1.0; EfficientNet-Lite0 to Lite4 keep them fixed), or whose weights do not map.
    """
    c = lite.config
    stem, out, _, head = _scaled_layout(c)
    if (stem, head) != (32, 1280) or any(ch % c.depth_divisor for ch in out):
        raise ValueError(f"only EfficientNet-Lite0 to Lite4 (a fixed 32-channel stem and 1280-channel head) map onto "
                         f"transformers' EfficientNet, got a {stem}-channel stem and a {head}-channel head")
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
