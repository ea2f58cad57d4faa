"""PyTorch EfficientNet-Lite as a transformers ``PreTrainedModel``.

Self-contained re-implementation of the architecture of ``efficientnet_lite_pytorch`` (itself a port of the
TensorFlow ``efficientnet/lite`` builder): ReLU6, no squeeze-excitation, TF "SAME" padding, fixed stem/head.
Only torch and transformers are needed at run time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)

try:  # transformers >= 5: init helpers that respect already-loaded weights
    from transformers import initialization as init
except ImportError:  # pragma: no cover - older transformers
    from torch.nn import init  # type: ignore[no-redef]

from .configuration_efficientnet_lite import EfficientNetLiteConfig


def round_filters(config: EfficientNetLiteConfig, num_channels: int, skip: bool = False) -> int:
    """Scale ``num_channels`` by ``config.width_coefficient`` and round to a multiple of ``config.depth_divisor``
    (never rounding down by more than 10%), exactly as the TF reference."""
    multiplier = config.width_coefficient
    if skip or not multiplier:
        return int(num_channels)
    divisor = config.depth_divisor
    min_depth = config.min_depth or divisor
    scaled = num_channels * multiplier
    new_channels = max(min_depth, int(scaled + divisor / 2) // divisor * divisor)
    if new_channels < 0.9 * scaled:
        new_channels += divisor
    return int(new_channels)


def round_repeats(config: EfficientNetLiteConfig, repeats: int) -> int:
    """Scale a stage's number of blocks by ``config.depth_coefficient`` (ceil)."""
    if not config.depth_coefficient:
        return int(repeats)
    return int(math.ceil(config.depth_coefficient * repeats))


def drop_connect(hidden_states: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth on the residual branch: drop whole samples with probability ``p`` during training."""
    if not training or p <= 0.0:
        return hidden_states
    keep_prob = 1.0 - p
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    mask = torch.floor(keep_prob + torch.rand(shape, dtype=hidden_states.dtype, device=hidden_states.device))
    return hidden_states / keep_prob * mask


class EfficientNetLiteConv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input size (output = ceil(input / stride)).

    For stride 2 and an even input the padding is asymmetric (more on the bottom/right), which plain
    ``padding=`` cannot express.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, bias=False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        in_h, in_w = hidden_states.shape[-2:]
        k_h, k_w = self.kernel_size
        s_h, s_w = self.stride
        d_h, d_w = self.dilation
        out_h, out_w = math.ceil(in_h / s_h), math.ceil(in_w / s_w)
        pad_h = max((out_h - 1) * s_h + (k_h - 1) * d_h + 1 - in_h, 0)
        pad_w = max((out_w - 1) * s_w + (k_w - 1) * d_w + 1 - in_w, 0)
        if pad_h > 0 or pad_w > 0:
            hidden_states = F.pad(hidden_states, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(hidden_states, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _batch_norm(config: EfficientNetLiteConfig, num_features: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(num_features, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum)


class EfficientNetLiteEmbeddings(nn.Module):
    """Stem: 3x3 stride-2 convolution, batch norm, activation. ``[B, C, H, W] -> [B, stem, ceil(H/2), ceil(W/2)]``."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__()
        self.out_dim = round_filters(config, config.stem_channels, skip=config.fix_head_stem)
        self.convolution = EfficientNetLiteConv2dSame(config.num_channels, self.out_dim, 3, stride=2, bias=False)
        self.batchnorm = _batch_norm(config, self.out_dim)
        self.activation = ACT2FN[config.hidden_act]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.activation(self.batchnorm(self.convolution(pixel_values)))


class EfficientNetLiteBlock(nn.Module):
    """Inverted-residual (MBConv) block without squeeze-excitation:
    1x1 expansion (if ``expand_ratio != 1``) -> depthwise kxk -> 1x1 projection (+ residual when shapes match)."""

    def __init__(
        self,
        config: EfficientNetLiteConfig,
        in_dim: int,
        out_dim: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        drop_connect_rate: float,
    ):
        super().__init__()
        self.expand = expand_ratio != 1
        self.apply_residual = stride == 1 and in_dim == out_dim
        self.drop_connect_rate = drop_connect_rate
        expand_dim = in_dim * expand_ratio
        self.activation = ACT2FN[config.hidden_act]
        if self.expand:
            self.expand_conv = nn.Conv2d(in_dim, expand_dim, kernel_size=1, bias=False)
            self.expand_bn = _batch_norm(config, expand_dim)
        self.depthwise_conv = EfficientNetLiteConv2dSame(
            expand_dim, expand_dim, kernel_size, stride=stride, groups=expand_dim, bias=False
        )
        self.depthwise_bn = _batch_norm(config, expand_dim)
        self.project_conv = nn.Conv2d(expand_dim, out_dim, kernel_size=1, bias=False)
        self.project_bn = _batch_norm(config, out_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states
        if self.expand:
            hidden_states = self.activation(self.expand_bn(self.expand_conv(hidden_states)))
        hidden_states = self.activation(self.depthwise_bn(self.depthwise_conv(hidden_states)))
        hidden_states = self.project_bn(self.project_conv(hidden_states))
        if self.apply_residual:
            hidden_states = drop_connect(hidden_states, self.drop_connect_rate, self.training) + residual
        return hidden_states


class EfficientNetLiteEncoder(nn.Module):
    """All MBConv blocks followed by the 1x1 head convolution to ``config.hidden_dim`` channels."""

    def __init__(self, config: EfficientNetLiteConfig, in_dim: int):
        super().__init__()
        num_stages = len(config.kernel_sizes)
        stage_specs = []
        for i in range(num_stages):
            out_dim = round_filters(config, config.out_channels[i])
            fixed = config.fix_head_stem and i in (0, num_stages - 1)
            repeats = config.num_block_repeats[i] if fixed else round_repeats(config, config.num_block_repeats[i])
            for j in range(repeats):
                stage_specs.append(
                    (
                        in_dim if j == 0 else out_dim,
                        out_dim,
                        config.kernel_sizes[i],
                        config.strides[i] if j == 0 else 1,
                        config.expand_ratios[i],
                    )
                )
            in_dim = out_dim
        num_blocks = len(stage_specs)
        self.blocks = nn.ModuleList(
            [
                EfficientNetLiteBlock(
                    config, *spec, drop_connect_rate=config.drop_connect_rate * idx / num_blocks
                )
                for idx, spec in enumerate(stage_specs)
            ]
        )
        self.hidden_dim = round_filters(config, config.hidden_dim, skip=config.fix_head_stem)
        self.top_conv = nn.Conv2d(in_dim, self.hidden_dim, kernel_size=1, bias=False)
        self.top_bn = _batch_norm(config, self.hidden_dim)
        self.top_activation = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor, output_hidden_states: bool = False):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for block in self.blocks:
            hidden_states = block(hidden_states)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        hidden_states = self.top_activation(self.top_bn(self.top_conv(hidden_states)))
        return hidden_states, all_hidden_states


class EfficientNetLitePreTrainedModel(PreTrainedModel):
    """Base class handling weight initialisation and checkpoint loading for EfficientNet-Lite models."""

    config_class = EfficientNetLiteConfig
    config: EfficientNetLiteConfig
    base_model_prefix = "efficientnet_lite"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["EfficientNetLiteBlock"]

    def _init_weights(self, module: nn.Module):
        """TF EfficientNet init: He-normal (fan-out) convolutions, uniform(+-1/sqrt(out)) dense layers,
        identity batch norms."""
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.out_features)
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)


class EfficientNetLiteModel(EfficientNetLitePreTrainedModel):
    """Bare EfficientNet-Lite backbone: stem, MBConv blocks, head convolution and global average pooling."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self.embeddings = EfficientNetLiteEmbeddings(config)
        self.encoder = EfficientNetLiteEncoder(config, self.embeddings.out_dim)
        self.pooler = nn.AdaptiveAvgPool2d(1)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | BaseModelOutputWithPoolingAndNoAttention:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Normalised images (see the checkpoint's image processor). Any height/width works.
            output_hidden_states (`bool`, *optional*):
                Also return the stem output and the output of every block.
            return_dict (`bool`, *optional*):
                Return a `ModelOutput` instead of a tuple.

        Returns:
            `BaseModelOutputWithPoolingAndNoAttention` with
            `last_hidden_state` `(batch_size, hidden_dim, ceil(height/32), ceil(width/32))`,
            `pooler_output` `(batch_size, hidden_dim)` (1280 for Lite0) and optionally `hidden_states`
            (tuple of `(batch_size, channels_i, h_i, w_i)`, stem output first).
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")

        embedding_output = self.embeddings(pixel_values)
        last_hidden_state, hidden_states = self.encoder(embedding_output, output_hidden_states=output_hidden_states)
        pooled_output = self.pooler(last_hidden_state).flatten(1)

        if not return_dict:
            return tuple(v for v in (last_hidden_state, pooled_output, hidden_states) if v is not None)
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled_output,
            hidden_states=hidden_states,
        )


class EfficientNetLiteForImageClassification(EfficientNetLitePreTrainedModel):
    """EfficientNet-Lite with an image-classification head: pooled features -> dropout -> ``classifier``
    (``nn.Linear(hidden_dim, num_labels)``). The input of ``classifier`` is the feature vector a linear probe
    should be trained on."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.efficientnet_lite = EfficientNetLiteModel(config)
        self.dropout = nn.Dropout(p=config.dropout_rate)
        hidden_dim = self.efficientnet_lite.encoder.hidden_dim
        self.classifier = nn.Linear(hidden_dim, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | ImageClassifierOutputWithNoAttention:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Normalised images.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices in `[0, config.num_labels)` for a cross-entropy loss (or floats for regression /
                multi-label, following `config.problem_type`).
            output_hidden_states (`bool`, *optional*):
                Also return the backbone's hidden states.
            return_dict (`bool`, *optional*):
                Return a `ModelOutput` instead of a tuple.

        Returns:
            `ImageClassifierOutputWithNoAttention` with `logits` `(batch_size, num_labels)`, `loss` (scalar, when
            `labels` is given) and optionally `hidden_states`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.efficientnet_lite(
            pixel_values, output_hidden_states=output_hidden_states, return_dict=True
        )
        pooled_output = self.dropout(outputs.pooler_output)
        logits = self.classifier(pooled_output)

        loss = None
        if labels is not None:
            loss = self.loss_function(labels, logits, self.config)

        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


__all__ = [
    "EfficientNetLiteForImageClassification",
    "EfficientNetLiteModel",
    "EfficientNetLitePreTrainedModel",
    "round_filters",
    "round_repeats",
]
