"""CoSupervisedTrainer as a transformers Trainer, from Python: images in, a Hub-ready student out.

A tiny image dataset (4 colour classes), tiny ViT teachers and a tiny ViT student, all from configs: `train()`
labels once and returns a `TrainOutput`, `evaluate()`/`predict()` mean the student, `save_model()` writes a student
that `from_pretrained` and `pipeline()` load, `push_to_hub()` sends it (rounds to branches), the caller's args are
left alone, and the loss logs run on one step axis.
"""

import json
import os

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModelForImageClassification, ViTConfig, ViTForImageClassification, pipeline
from transformers.trainer_utils import TrainOutput

from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, CSLCache, Preprocessing, TeacherMixture, class_hierarchy
from csl_hf.errors import CSLError

NAMES = ["red", "green", "blue", "yellow"]
COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 220, 40)]
PREP = Preprocessing(size=(16, 16), image_mean=(0.5,) * 3, image_std=(0.5,) * 3)


def colour_images(n: int, seed: int) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    labels = [i % 4 for i in range(n)]
    images = [np.clip(np.array(COLOURS[y], float) + rng.normal(0, 60, (16, 16, 3)), 0, 255).astype(np.uint8)
              for y in labels]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def tiny_vit(seed: int, num_labels: int = 4) -> ViTForImageClassification:
    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=32, image_size=16, patch_size=8,
                                               num_labels=num_labels))


def teachers() -> TeacherMixture:
    specialties, levels = class_hierarchy(4, [1, 2])
    models = [tiny_vit(k) for k in range(3)]
    for m in models:
        m.config.id2label, m.config.label2id = dict(enumerate(NAMES)), {n: i for i, n in enumerate(NAMES)}
    return TeacherMixture.from_teachers(models, specialties, levels, preprocessing=[PREP] * 3)


def make_trainer(output_dir, **overrides) -> tuple[CoSupervisedTrainer, CoSupervisedConfig]:
    options = dict(output_dir=str(output_dir), num_train_epochs=3, learning_rate=1e-2, disable_tqdm=True,
                   report_to="none", logging_steps=1, seed=1)
    options.update(overrides)
    args = CoSupervisedConfig(**options)
    trainer = CoSupervisedTrainer(model=tiny_vit(7), teachers=teachers(), args=args,
                                  train_dataset=colour_images(80, 0), eval_dataset=colour_images(40, 1),
                                  processing_class=PREP.to_image_processor())
    return trainer, args


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    trainer, args = make_trainer(out)
    before = args.to_json_string()
    output = trainer.train()
    return trainer, args, before, output, out


def test_train_returns_a_train_output_and_keeps_the_report(finished):
    trainer, _, _, output, out = finished
    assert isinstance(output, TrainOutput)
    report = trainer.report
    assert report == json.loads((out / "csl_report.json").read_text())
    assert [r["num_teachers"] for r in report["rounds"]] == [1, 2]
    losses = [e for e in trainer.state.log_history if "loss" in e]
    assert output.global_step == losses[-1]["step"] > 0
    assert output.metrics["student_accuracy"] == report["rounds"][-1]["student_accuracy"]
    assert output.metrics["pgr"] == pytest.approx(report["rounds"][-1]["pgr"])
    # The labeling pass ran inside train() and left the cache and the teachers with the run.
    cache = CSLCache.load(out / "cache")
    assert cache.num_samples == 120 and cache.source["skipped_images"] == {"train": 0, "test": 0}
    assert (out / "teachers" / "model.safetensors").is_file()


def test_the_callers_args_are_never_modified(finished):
    _, args, before, _, _ = finished
    assert args.to_json_string() == before


def test_loss_logs_share_one_increasing_step_axis(finished):
    trainer = finished[0]
    losses = [e for e in trainer.state.log_history if "loss" in e]
    steps = [e["step"] for e in losses]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # no phase restarts at step 1
    assert {e["level"] for e in losses} == {-1, 0, 1}  # the ceiling and both levels, each tagged


def test_evaluate_and_predict_mean_the_student(finished):
    trainer = finished[0]
    metrics = trainer.evaluate()
    last = trainer.report["rounds"][-1]
    assert metrics["eval_accuracy"] == pytest.approx(last["student_accuracy"])
    assert metrics["eval_pgr"] == pytest.approx(last["pgr"])
    assert "eval_loss" in metrics and trainer.state.log_history[-1]["eval_accuracy"] == metrics["eval_accuracy"]
    # On images: the student itself, decoded and preprocessed as in the labeling pass.
    on_images = trainer.predict(colour_images(40, 1))
    assert on_images.predictions.shape == (40, 4)
    assert on_images.metrics["test_accuracy"] == pytest.approx(last["student_accuracy"], abs=1e-6)


def test_save_model_writes_a_student_that_loads_anywhere(finished, tmp_path):
    trainer = finished[0]
    trainer.save_model(str(tmp_path / "final"))
    names = set(os.listdir(tmp_path / "final"))
    assert {"model.safetensors", "config.json", "preprocessor_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)  # nothing pickled
    back = AutoModelForImageClassification.from_pretrained(tmp_path / "final")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(back(pixel_values=x).logits, trainer.model(pixel_values=x).logits)
    assert back.config.id2label[0] == "red"
    prediction = pipeline("image-classification", model=str(tmp_path / "final"))(colour_images(1, 5)[0]["image"])
    assert prediction[0]["label"] in NAMES


def test_push_to_hub_sends_the_student_and_its_rounds(finished, local_hub):
    trainer = finished[0]
    trainer._base_args.hub_model_id = "stub-user/api-run"  # as if passed in args (the fixture's user)
    try:
        info = trainer.push_to_hub()
    finally:
        trainer._base_args.hub_model_id = None
    assert local_hub.branches("stub-user/api-run") == {"main", "round-0", "round-1"}
    assert info.oid == local_hub.sha("stub-user/api-run", "main")
    assert {"model.safetensors", "config.json", "README.md", "csl_report.json"} <= local_hub.files("stub-user/api-run")


def test_a_second_run_reuses_the_matching_cache(finished, tmp_path, monkeypatch):
    _, _, _, _, out = finished
    import csl_hf.cache.reuse

    calls = []
    monkeypatch.setattr(csl_hf.cache.reuse, "build_cache", lambda *a, **k: calls.append(1))
    again, _ = make_trainer(out, overwrite_output_dir=True, max_levels=1, save_round_checkpoints=False)
    again.train()
    assert calls == []  # same teachers, student, preprocessing and data: no second labeling pass


def test_missing_inputs_are_one_line_errors(tmp_path):
    args = CoSupervisedConfig(output_dir=str(tmp_path))
    with pytest.raises(CSLError, match="cache= .* or teachers="):
        CoSupervisedTrainer(model=tiny_vit(0), args=args)
    with pytest.raises(CSLError, match="processing_class"):
        CoSupervisedTrainer(model=tiny_vit(0), teachers=teachers(), args=args, train_dataset=colour_images(8, 0),
                            eval_dataset=colour_images(8, 1))
    with pytest.raises(CSLError, match="num_labels=4"):
        CoSupervisedTrainer(model=tiny_vit(0, num_labels=3), teachers=teachers(), args=args,
                            train_dataset=colour_images(8, 0), eval_dataset=colour_images(8, 1),
                            processing_class=PREP.to_image_processor())
