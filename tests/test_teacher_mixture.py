"""TeacherMixture with tiny ViT and ConvNeXt teachers: masking, preprocessing, shared backbone, save/load."""

import shutil

import pytest
import torch
from torch import nn
from transformers import (AutoModel, ConvNextConfig, ConvNextForImageClassification, ConvNextModel, ViTConfig,
                          ViTForImageClassification)

import csl_hf  # noqa: F401  (registers the Auto classes)
from csl_hf import TeacherMixture, TeacherMixtureConfig
from csl_hf.errors import CSLError
from csl_hf.data.preprocessing import Preprocessing

ID2LABEL = {0: "a", 1: "b", 2: "c", 3: "d"}
SPECS = [{"classes": [0, 1, 2, 3]}, {"classes": [0, 2]}, {"classes": [1, 3]}]
LEVELS = [[0], [1, 2]]


def tiny_vit(size=16):
    torch.manual_seed(0)
    return ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=64, image_size=size, patch_size=8, id2label=ID2LABEL))


def tiny_convnext():
    torch.manual_seed(1)
    return ConvNextForImageClassification(ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], patch_size=2,
                                                         id2label=ID2LABEL))


def mixture():
    teachers = [tiny_vit(16), tiny_convnext(), tiny_vit(32)]
    pre = [Preprocessing(size=(16, 16)), Preprocessing(size=(24, 24), image_mean=(0.5,) * 3, image_std=(0.5,) * 3),
           Preprocessing(size=(32, 32))]
    return TeacherMixture.from_teachers(teachers, SPECS, LEVELS, teacher_names=["g", "even", "odd"],
                                        preprocessing=pre), teachers, pre


def inputs(pre, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (3, 3, 20, 20), generator=g, dtype=torch.uint8)
    return [p(images) for p in pre]


def test_specialists_are_masked_and_renormalised():
    model, teachers, pre = mixture()
    x = inputs(pre)
    probs = model(pixel_values_per_teacher=x).probs
    assert probs.shape == (3, 3, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(3, 3))
    assert torch.all(probs[:, 1, [1, 3]] == 0) and torch.all(probs[:, 2, [0, 2]] == 0)
    # The generalist is a plain softmax of its own model; the specialist a softmax over its classes of its logits.
    with torch.no_grad():
        g_logits, s_logits = teachers[0](pixel_values=x[0]).logits, teachers[1](pixel_values=x[1]).logits
    assert torch.allclose(probs[:, 0], g_logits.softmax(-1), atol=1e-6)
    assert torch.allclose(probs[:, 1, [0, 2]], s_logits[:, [0, 2]].softmax(-1), atol=1e-6)


def test_save_is_safetensors_and_reload_is_bit_identical(tmp_path):
    model, _, pre = mixture()
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    back = AutoModel.from_pretrained(tmp_path)
    assert isinstance(back, TeacherMixture)
    assert back.preprocessings() == pre and back.config.teacher_names == ["g", "even", "odd"]
    x = inputs(pre, seed=3)
    with torch.no_grad():
        assert torch.equal(model(pixel_values_per_teacher=x).probs, back(pixel_values_per_teacher=x).probs)


def test_shared_backbone_runs_once_and_scatters_small_heads(tmp_path):
    torch.manual_seed(0)
    backbone = ConvNextModel(ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], patch_size=2))
    heads = [nn.Linear(16, 4), nn.Linear(16, 2), nn.Linear(16, 2)]
    model = TeacherMixture.from_backbone(backbone, heads, SPECS, LEVELS, id2label=ID2LABEL)
    calls = []
    model.backbone.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 3, 16, 16)
    out = model(pixel_values=x)
    assert len(calls) == 1 and out.features.shape == (2, 16)
    # Head 1 covers classes [0, 2] in that order: its two outputs land on classes 0 and 2.
    expected = heads[1](out.features).softmax(-1)
    assert torch.allclose(out.probs[:, 1, [0, 2]], expected, atol=1e-6) and torch.all(out.probs[:, 1, [1, 3]] == 0)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.save_pretrained(tmp_path)
    back = AutoModel.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(back(pixel_values=x).probs, model(pixel_values=x).probs)
    card = (tmp_path / "README.md").read_text()  # the card save_pretrained writes, for this layout
    assert "| 1 | teacher_1 | 2 classes: a, c | linear head on a shared frozen convnext | as given |" in card
    assert "Not recorded (`config.training_data` is empty)." in card


def test_the_card_names_domains_gates_and_the_data(tmp_path):
    from csl_hf.models.teacher_mixture.hub_teacher_mixture import teacher_mixture_card

    config = TeacherMixtureConfig(
        teacher_configs=[{"model_type": "vit"}, {"model_type": "convnext"}, {"model_type": "convnext"}],
        specialties=[{"classes": [0, 1, 2, 3]}, {"domain": "photo"}, {"domain": "sketch"}], levels=LEVELS,
        teacher_names=["generalist", "domain photo", "domain sketch"], id2label=ID2LABEL,
        preprocessing=[Preprocessing(size=(28, 28)).to_dict()] * 3,
        training_data={"dataset": "./folders", "num_images": 90, "skipped_images": 2, "split_seed": 42,
                       "specialties": "domains"})
    card = teacher_mixture_card(config, "user/domain-teachers", tags=["animals"])
    for line in ("- animals", "# Teacher mixture: 3 weak teachers in 2 levels",
                 "| 0 | generalist | all 4 classes | vit | 28x28 |",
                 "| 1 | domain sketch | domain sketch | convnext | 28x28 |",
                 "- dataset: `folders` (a local dataset; its path is not on the card)",
                 "- images: 90 (skipped as unreadable: 2)", "- split seed: 42", "- specialties chosen by: domains",
                 "pixel_values=torch.randn(2, 3, 28, 28)", "AutoModel.from_pretrained('user/domain-teachers', "
                 "trust_remote_code=True)"):
        assert line in card, line
    assert "Gate teachers" not in card
    gated = TeacherMixtureConfig(**{**config.to_dict(), "specialties": [{"classes": [0, 1, 2, 3]}, {"classes": [0, 1]},
                                                                        {"classes": [2, 3]}],
                                    "gate_teacher_configs": [{"model_type": "vit"}], "gate_specialists": [2]})
    assert "Gate teachers (1): one per class specialist (domain sketch)" in teacher_mixture_card(gated)


def test_a_runs_saved_teachers_card_names_their_final_folder_and_no_local_path(tmp_path):
    # Was: OUTPUT_DIR/teachers/README.md told to load '.../.teachers.tmp-xxxx' (the staging folder, renamed after the
    # save), and named the dataset by its absolute path.
    from csl_hf.cache.reuse import save_teachers

    model = mixture()[0]
    for where in ("/home/someone/photos", "./photos", str(tmp_path / "photos")):
        model.config.training_data = {"dataset": where, "num_images": 12}
        out = tmp_path / "run"
        assert save_teachers(model, str(out)) == "teachers"
        card = (out / "teachers" / "README.md").read_text()
        assert ".tmp-" not in card and f"AutoModel.from_pretrained('{out / 'teachers'}'" in card, card
        assert "- dataset: `photos` (a local dataset; its path is not on the card)" in card
        assert "/home/someone" not in card and str(tmp_path / "photos") not in card
        shutil.rmtree(out)
    model.config.training_data = {"dataset": "zalando-datasets/fashion_mnist"}  # a Hub id is named as it is
    save_teachers(model, str(tmp_path / "hub"))
    assert "- dataset: `zalando-datasets/fashion_mnist`" in (tmp_path / "hub" / "teachers" / "README.md").read_text()


def test_teachers_must_share_the_label_space():
    other = ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                intermediate_size=64, image_size=16, patch_size=8, num_labels=5))
    with pytest.raises(CSLError, match="labels"):
        TeacherMixture.from_teachers([tiny_vit(), other], [{"classes": [0, 1, 2, 3]}, {"classes": [0]}], [[0], [1]])
    renamed = tiny_vit()
    renamed.config.id2label = {0: "a", 1: "b", 2: "c", 3: "zebra"}
    with pytest.raises(CSLError, match="label names"):
        TeacherMixture.from_teachers([tiny_vit(), renamed], [{"classes": [0, 1, 2, 3]}, {"classes": [0, 1, 2, 3]}],
                                     [[0], [1]])


@pytest.mark.parametrize(
    "specs, levels, message",
    [
        ([{"classes": [0, 1, 2, 3]}, {"classes": [0, 1]}, {"classes": [1, 2, 3]}], [[0], [1, 2]], "overlap"),
        ([{"classes": [0, 1, 2, 3]}, {"classes": [0]}, {"classes": [2, 3]}], [[0], [1, 2]], "uncovered"),
        ([{"classes": [0, 1, 2, 3]}, {"classes": [0, 2]}, {"classes": [1, 3]}], [[0, 1], [2]], "single generalist"),
        ([{"classes": [0, 1, 2, 3]}, {"domain": "x"}, {"domain": "x"}], [[0], [1, 2]], "twice"),
        ([{"classes": [0, 1, 2, 3]}, {"domain": "x"}, {"classes": [0, 1, 2, 3]}], [[0], [1, 2]], "mixes"),
        ([{"classes": [0, 1, 2, 3]}, {"classes": [0, 2]}, {"classes": [1, 3]}], [[0], [1, 5]], "teacher 5"),
    ],
)
def test_hierarchy_validation(specs, levels, message):
    with pytest.raises(CSLError, match=message):
        TeacherMixture.from_teachers([tiny_vit(), tiny_vit(), tiny_vit()], specs, levels)


def test_config_round_trip_keeps_hierarchy(tmp_path):
    model, _, _ = mixture()
    model.config.save_pretrained(tmp_path)
    config = TeacherMixtureConfig.from_pretrained(tmp_path)
    assert config.levels == LEVELS and config.specialties == SPECS and config.num_teachers == 3
    assert config.id2label == ID2LABEL
