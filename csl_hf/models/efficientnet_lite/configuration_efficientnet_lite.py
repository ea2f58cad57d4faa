"""Configuration for the EfficientNet-Lite image models used as the offline strong student."""

from __future__ import annotations

from transformers import PretrainedConfig

# Stage layout of EfficientNet-Lite (identical to EfficientNet-B0 without squeeze-excitation),
# from ``efficientnet/lite/efficientnet_lite_builder.py`` of the TensorFlow reference.
_LITE_KERNEL_SIZES = [3, 3, 5, 3, 5, 5, 3]
_LITE_OUT_CHANNELS = [16, 24, 40, 80, 112, 192, 320]
_LITE_STRIDES = [1, 2, 2, 2, 1, 2, 1]
_LITE_EXPAND_RATIOS = [1, 6, 6, 6, 6, 6, 6]
_LITE_NUM_BLOCK_REPEATS = [1, 2, 2, 3, 3, 4, 1]

# (width_coefficient, depth_coefficient, resolution, dropout_rate) per variant.
LITE_VARIANTS = {
    "efficientnet-lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet-lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet-lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet-lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet-lite4": (1.4, 1.8, 300, 0.3),
}


class EfficientNetLiteConfig(PretrainedConfig):
    r"""
    Configuration of an EfficientNet-Lite model ([`EfficientNetLiteModel`],
    [`EfficientNetLiteForImageClassification`]). The defaults reproduce EfficientNet-Lite0
    (4.65M parameters, ImageNet-1k head).

    EfficientNet-Lite differs from EfficientNet-B* by: ReLU6 instead of swish, no squeeze-and-excitation,
    and a stem / head whose widths (and the repeats of the first and last stage) are not scaled
    (``fix_head_stem=True``).

    Args:
        num_channels (`int`, *optional*, defaults to 3):
            Number of input image channels.
        image_size (`int`, *optional*, defaults to 224):
            Resolution the model was trained at (informational: convolutions use dynamic TF "SAME" padding,
            so any input size works).
        width_coefficient (`float`, *optional*, defaults to 1.0):
            Channel multiplier of the blocks (and of stem/head when ``fix_head_stem=False``).
        depth_coefficient (`float`, *optional*, defaults to 1.0):
            Multiplier of the number of repeated blocks per stage.
        depth_divisor (`int`, *optional*, defaults to 8):
            Channels are rounded to a multiple of this number.
        min_depth (`int`, *optional*):
            Minimum number of channels after rounding (defaults to ``depth_divisor``).
        stem_channels (`int`, *optional*, defaults to 32):
            Output channels of the stem convolution (before width scaling).
        kernel_sizes (`list[int]`), out_channels (`list[int]`), strides (`list[int]`),
        expand_ratios (`list[int]`), num_block_repeats (`list[int]`):
            Per-stage settings of the inverted-residual (MBConv) blocks, before scaling.
        hidden_dim (`int`, *optional*, defaults to 1280):
            Channels of the final 1x1 "head" convolution, i.e. the size of the pooled features.
        fix_head_stem (`bool`, *optional*, defaults to `True`):
            Do not scale the stem, the head, nor the repeats of the first and last stages.
        hidden_act (`str`, *optional*, defaults to `"relu6"`):
            Activation function (a key of `transformers.activations.ACT2FN`).
        batch_norm_eps (`float`, *optional*, defaults to 1e-3):
            Epsilon of the batch-normalisation layers.
        batch_norm_momentum (`float`, *optional*, defaults to 0.01):
            PyTorch-convention momentum of the batch-normalisation layers (TF decay 0.99).
        dropout_rate (`float`, *optional*, defaults to 0.2):
            Dropout applied to the pooled features before the classifier.
        drop_connect_rate (`float`, *optional*, defaults to 0.2):
            Maximal stochastic-depth rate; block ``i`` of ``n`` uses ``drop_connect_rate * i / n`` (training only).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Kept for API compatibility (convolutions use He/fan-out init, the classifier a uniform init).

    Example:

    ```python
    >>> from csl_hf.models import EfficientNetLiteConfig, EfficientNetLiteForImageClassification
    >>> config = EfficientNetLiteConfig(num_labels=3, width_coefficient=0.25, hidden_dim=64)
    >>> model = EfficientNetLiteForImageClassification(config)
    ```
    """

    model_type = "csl_efficientnet_lite"

    def __init__(
        self,
        num_channels: int = 3,
        image_size: int = 224,
        width_coefficient: float = 1.0,
        depth_coefficient: float = 1.0,
        depth_divisor: int = 8,
        min_depth: int | None = None,
        stem_channels: int = 32,
        kernel_sizes: list[int] | None = None,
        out_channels: list[int] | None = None,
        strides: list[int] | None = None,
        expand_ratios: list[int] | None = None,
        num_block_repeats: list[int] | None = None,
        hidden_dim: int = 1280,
        fix_head_stem: bool = True,
        hidden_act: str = "relu6",
        batch_norm_eps: float = 1e-3,
        batch_norm_momentum: float = 0.01,
        dropout_rate: float = 0.2,
        drop_connect_rate: float = 0.2,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.num_channels = num_channels
        self.image_size = image_size
        self.width_coefficient = width_coefficient
        self.depth_coefficient = depth_coefficient
        self.depth_divisor = depth_divisor
        self.min_depth = min_depth
        self.stem_channels = stem_channels
        self.kernel_sizes = list(kernel_sizes if kernel_sizes is not None else _LITE_KERNEL_SIZES)
        self.out_channels = list(out_channels if out_channels is not None else _LITE_OUT_CHANNELS)
        self.strides = list(strides if strides is not None else _LITE_STRIDES)
        self.expand_ratios = list(expand_ratios if expand_ratios is not None else _LITE_EXPAND_RATIOS)
        self.num_block_repeats = list(
            num_block_repeats if num_block_repeats is not None else _LITE_NUM_BLOCK_REPEATS
        )
        n = len(self.kernel_sizes)
        for name in ("out_channels", "strides", "expand_ratios", "num_block_repeats"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"`{name}` has {len(getattr(self, name))} entries but `kernel_sizes` has {n}; "
                    "all per-stage lists must have the same length."
                )
        self.hidden_dim = hidden_dim
        self.fix_head_stem = fix_head_stem
        self.hidden_act = hidden_act
        self.batch_norm_eps = batch_norm_eps
        self.batch_norm_momentum = batch_norm_momentum
        self.dropout_rate = dropout_rate
        self.drop_connect_rate = drop_connect_rate
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @classmethod
    def from_variant(cls, name: str = "efficientnet-lite0", **kwargs) -> "EfficientNetLiteConfig":
        """Build the config of a named variant (``efficientnet-lite0`` ... ``efficientnet-lite4``)."""
        if name not in LITE_VARIANTS:
            raise ValueError(f"Unknown EfficientNet-Lite variant {name!r}; known: {sorted(LITE_VARIANTS)}")
        w, d, res, p = LITE_VARIANTS[name]
        defaults = dict(width_coefficient=w, depth_coefficient=d, image_size=res, dropout_rate=p)
        defaults.update(kwargs)
        return cls(**defaults)


__all__ = ["EfficientNetLiteConfig", "LITE_VARIANTS"]
