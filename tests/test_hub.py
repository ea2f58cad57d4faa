"""Hub-ready outputs: the CSL model card and pushing a run (rounds on branches, final student on main) to a local
stand-in of the Hub; TeacherMixture push/load round trip."""

import json
import os

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from PIL import Image
from transformers import (
    AutoModel,
    AutoModelForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
    pipeline,
)

from csl_hf import TeacherMixture
from csl_hf.errors import CSLError
from csl_hf.hub import CITATION, create_csl_model_card, push_csl_outputs, write_csl_model_card, write_model_card
from csl_hf.report import format_report_table

from hub_stub import local_hub  # noqa: F401  (pytest fixture)

ID2LABEL = {0: "cat", 1: "dog", 2: "bird"}
TEACHER_NAMES = ["generalist", "specialist-a", "specialist-b"]
LEVELS = [[0], [1, 2]]


def tiny_vit(seed: int, num_labels: int = 3, id2label=None) -> ViTForImageClassification:
    id2label = id2label or ({i: f"class_{i}" for i in range(num_labels)})
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16,
                       patch_size=8, num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()})
    torch.manual_seed(seed)
    return ViTForImageClassification(config).eval()


def make_report() -> dict:
    return {
        "weak_accuracy": 0.5,
        "ceiling_accuracy": 0.9,
        "seed": 7,
        "config": {"assignment": "auto", "denoise": "top3", "soft_labels": False, "learning_rate": 0.001,
                   "num_train_epochs": 3, "levels": LEVELS, "teacher_names": TEACHER_NAMES, "student": "tiny-vit"},
        "rounds": [
            {"level": 0, "num_teachers": 1, "assignment": "none", "teacher_accuracy": 0.55, "keep_rate": 1.0,
             "precision": 0.55, "recall": 1.0, "student_accuracy": 0.62, "pgr": 30.0},
            {"level": 1, "num_teachers": 2, "assignment": "student", "teacher_accuracy": 0.7, "keep_rate": 0.8,
             "precision": 0.8, "recall": 0.9, "student_accuracy": 0.7, "pgr": 50.0},
        ],
    }


@torch.no_grad()
def logits(model, pixels):
    return model(pixel_values=pixels).logits


@pytest.fixture
def output_dir(tmp_path):
    """A fake CSL output_dir: round-0/, round-1/, the final student (= round 1) at the root, report, card, plot,
    plus folders that must never reach main (teachers/, cache/)."""
    out = tmp_path / "run"
    processor = ViTImageProcessor(size={"height": 16, "width": 16}, do_resize=True)
    models = {0: tiny_vit(0, id2label=ID2LABEL), 1: tiny_vit(1, id2label=ID2LABEL)}
    report = make_report()
    for level, model in models.items():
        model.save_pretrained(out / f"round-{level}")
        processor.save_pretrained(out / f"round-{level}")
        (out / f"round-{level}" / "csl_round.json").write_text(json.dumps(report["rounds"][level]))
    models[1].save_pretrained(out)
    processor.save_pretrained(out)
    (out / "csl_report.json").write_text(json.dumps(report))
    for junk in ("teachers", "cache"):
        (out / junk).mkdir()
        (out / junk / "model.safetensors").write_bytes(b"not for main")
    (out / "training_args.bin").write_bytes(b"x")
    return out, models, report


def test_model_card_content(tmp_path):
    report = make_report()
    plot = str(tmp_path / "pgr.png")
    card = create_csl_model_card(report, "google/vit-base-patch16-224", "animal-mnist", TEACHER_NAMES, LEVELS,
                                 hub_model_id="me/csl-vit", plot_path=plot)
    assert isinstance(card, ModelCard)
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0"
    assert meta["base_model"] == "google/vit-base-patch16-224"
    assert meta["datasets"] == ["animal-mnist"]
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "image-classification"
    assert set(meta["tags"]) == {"co-supervised-learning", "weak-to-strong", "csl_hf", "image-classification"}
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"accuracy": 0.7, "pgr": 50.0}  # the final round's numbers, nothing else
    text = card.text
    for row in format_report_table(report, markdown=True).splitlines()[2:]:
        assert row in text  # the per-round table with PGR
    assert "| 1 | 2 | specialist-a, specialist-b |" in text  # teachers and levels
    assert "`denoise` | top3" in text  # CSL settings from report["config"]
    assert "![PGR](pgr.png)" in text
    assert 'pipeline("image-classification", model="me/csl-vit")' in text
    assert CITATION in text and "arXiv:2402.15505" in text and "Liu, Yuejiang and Alahi, Alexandre" in text
    # a round-trip through README.md keeps metadata and text
    path = write_model_card(str(tmp_path / "card"), card)
    assert os.listdir(tmp_path / "card") == ["README.md"]  # no temp file left behind
    loaded = ModelCard.load(path)
    assert loaded.data.tags == card.data.tags and loaded.text.strip() == text.strip()

    # local paths stay out of base_model metadata; no dataset -> no model-index; no plot -> no image
    bare = create_csl_model_card(report, str(tmp_path), None, TEACHER_NAMES, LEVELS)
    assert "base_model" not in bare.data.to_dict() and "model-index" not in bare.data.to_dict()
    assert "![PGR]" not in bare.text and str(tmp_path) in bare.text
    with pytest.raises(CSLError, match="level 1 references teacher 2"):
        create_csl_model_card(report, None, None, TEACHER_NAMES[:2], LEVELS)


def test_push_csl_outputs_round_trip(local_hub, output_dir):
    out, models, report = output_dir
    write_csl_model_card(str(out), dataset_name="animal-mnist", hub_model_id="stub-user/csl-tiny")
    assert (out / "README.md").is_file() and (out / "pgr.png").is_file()

    result = push_csl_outputs(str(out), "csl-tiny", private=True)
    assert set(result) == {"main", "round-0", "round-1"}
    api = HfApi()
    repo_id = "stub-user/csl-tiny"
    refs = {b.name: b.target_commit for b in api.list_repo_refs(repo_id).branches}
    assert set(refs) == {"main", "round-0", "round-1"}
    assert all(result[b].endswith(refs[b]) for b in refs)

    main_files = set(api.list_repo_files(repo_id))
    assert main_files == {".gitattributes", "model.safetensors", "config.json", "preprocessor_config.json",
                          "README.md", "csl_report.json", "pgr.png"}  # no round-*/, teachers/, cache/, junk
    remote_card = ModelCard.load(repo_id)  # the card on main is the one written into output_dir
    assert "csl_hf" in remote_card.data.tags and "![PGR](pgr.png)" in remote_card.text
    round_files = set(api.list_repo_files(repo_id, revision="round-1"))
    assert round_files == {".gitattributes", "model.safetensors", "config.json", "preprocessor_config.json",
                           "csl_round.json"}

    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for revision, local in (("round-0", models[0]), ("round-1", models[1]), ("main", models[1])):
        remote = AutoModelForImageClassification.from_pretrained(repo_id, revision=revision).eval()
        assert torch.equal(logits(remote, pixels), logits(local, pixels)), revision  # bit-identical
        assert remote.config.id2label == ID2LABEL

    classifier = pipeline("image-classification", model=repo_id, revision="round-1", device="cpu")
    preds = classifier(Image.new("RGB", (20, 20), (200, 30, 30)), top_k=3)
    assert {p["label"] for p in preds} == set(ID2LABEL.values())

    # re-pushing is idempotent; round branches keep exactly their round directory even when branched from main
    again = push_csl_outputs(str(out), repo_id)
    assert set(api.list_repo_files(repo_id, revision="round-0")) == round_files
    assert set(again) == set(result)
    assert local_hub.unhandled == [] and local_hub.blocked == []


def test_teacher_mixture_push_and_load(local_hub):
    g, s1, s2 = (tiny_vit(seed, num_labels=4) for seed in (10, 11, 12))
    mixture = TeacherMixture.from_teachers(
        [g, s1, s2], specialties=[{"classes": [0, 1, 2, 3]}, {"classes": [0, 1]}, {"classes": [2, 3]}],
        levels=[[0], [1, 2]], teacher_names=TEACHER_NAMES,
    )
    mixture.push_to_hub("stub-user/tiny-teachers")
    loaded = AutoModel.from_pretrained("stub-user/tiny-teachers").eval()
    assert isinstance(loaded, TeacherMixture)
    assert loaded.config.levels == [[0], [1, 2]] and loaded.config.teacher_names == TEACHER_NAMES
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = mixture(pixel_values=pixels).probs, loaded(pixel_values=pixels).probs
    assert torch.equal(got, expected)
    assert torch.all(got[:, 1, 2:] == 0) and torch.all(got[:, 2, :2] == 0)  # specialists masked to their classes
    assert local_hub.unhandled == [] and local_hub.blocked == []


def test_push_rejects_a_directory_without_outputs(tmp_path):
    with pytest.raises(CSLError, match="neither round"):
        push_csl_outputs(str(tmp_path), "stub-user/nothing")
