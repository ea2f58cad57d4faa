"""Full fine-tuning (student_mode="full"): its own recipe (a lower backbone learning rate, warmup, fewer epochs),
LoRA through peft with merged standard checkpoints, and every combination of flags the probe mode accepts either
finishing or refused up front."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from test_trainer_api import PREP, colour_images, teachers, tiny_vit
from transformers import AutoModelForImageClassification, TrainerCallback

from csl_hf import CoSupervisedConfig, CoSupervisedTrainer
from csl_hf.cli.console import run_command
from csl_hf.errors import CSLError
from scripts import run_csl

peft = pytest.importorskip("peft")


class LearningRates(TrainerCallback):
    """Records each phase's label, its optimiser's learning rates, and the student's classifier weight at the start
    and the end of the phase."""

    def __init__(self):
        self.trainer, self.seen, self.labels, self.heads = None, [], [], []

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.seen.append(sorted({g.get("initial_lr", g["lr"]) for g in optimizer.param_groups}))  # before warmup
        self.labels.append(self.trainer.phase_label)
        self.heads.append([self.trainer.head.weight.detach().clone()])

    def on_train_end(self, args, state, control, **kwargs):
        self.heads[-1].append(self.trainer.head.weight.detach().clone())

    def full_phases(self):
        return [rates for label, rates in zip(self.labels, self.seen) if not label.endswith("head warm-up")]


def full_trainer(output_dir, peft_config=None, **overrides):
    options = dict(output_dir=str(output_dir), student_mode="full", learning_rate=1e-2, disable_tqdm=True,
                   report_to="none", per_device_train_batch_size=16, seed=2)
    options.update(overrides)
    lrs = LearningRates()
    trainer = CoSupervisedTrainer(model=tiny_vit(7), teachers=teachers(), args=CoSupervisedConfig(**options),
                                  train_dataset=colour_images(48, 0), eval_dataset=colour_images(24, 1),
                                  processing_class=PREP.to_image_processor(), callbacks=[lrs], peft_config=peft_config)
    lrs.trainer = trainer
    return trainer, lrs


def test_full_mode_has_its_own_recipe():
    args = CoSupervisedConfig(output_dir="x", student_mode="full", learning_rate=1e-3)
    assert args.num_train_epochs == 3 and args.warmup_steps == 0.1 and args.backbone_learning_rate == 1e-4
    kept = CoSupervisedConfig(output_dir="x", student_mode="full", num_train_epochs=7, backbone_learning_rate=1e-5)
    assert kept.num_train_epochs == 7 and kept.backbone_learning_rate == 1e-5
    probe = CoSupervisedConfig(output_dir="x")
    assert probe.num_train_epochs == 20 and probe.backbone_learning_rate is None
    assert args.head_warmup_epochs == 20 and probe.head_warmup_epochs is None
    assert args.freeze_batch_norm is True and probe.freeze_batch_norm is None
    with pytest.raises(CSLError, match="--freeze_batch_norm applies to --student_mode full only"):
        CoSupervisedConfig(output_dir="x", freeze_batch_norm=False)
    with pytest.raises(CSLError, match="--head_warmup_epochs applies to --student_mode full only"):
        CoSupervisedConfig(output_dir="x", head_warmup_epochs=5)
    with pytest.raises(CSLError, match="--head_warmup_epochs must be 0 or more"):
        CoSupervisedConfig(output_dir="x", student_mode="full", head_warmup_epochs=-1)


def test_full_mode_fits_the_fresh_head_on_cached_features_first(tmp_path):
    """LP-FT: every full phase is preceded by a probe phase of the same (fresh) head on the cached features, and the
    full phase starts from the head that warm-up left."""
    trainer, lrs = full_trainer(tmp_path / "out", num_train_epochs=1, head_warmup_epochs=3)
    trainer.train()
    levels = ["ceiling (ground truth)"] + [r for r in ("level 0 (1 teacher)", "level 1 (2 teachers)")]
    assert lrs.labels == [x for label in levels for x in (f"{label}, head warm-up", label)]
    for warmup, full in zip(lrs.heads[0::2], lrs.heads[1::2]):
        assert not torch.equal(warmup[0], warmup[1])  # the warm-up trained the head ...
        assert torch.equal(full[0], warmup[1])  # ... and fine-tuning starts from it
    assert lrs.seen[0::2] == [[1e-2]] * 3  # the warm-up trains the head alone, at the head's rate
    assert trainer.report["config"]["head_warmup_epochs"] == 3

    off, lrs_off = full_trainer(tmp_path / "off", num_train_epochs=1, head_warmup_epochs=0)
    off.train()
    assert lrs_off.labels == levels


def tiny_resnet(seed: int = 0):
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    return ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                     num_labels=4))


@pytest.mark.parametrize("freeze", [True, False])
def test_full_mode_keeps_batch_norm_statistics_unless_told_not_to(tmp_path, freeze):
    student = tiny_resnet()
    stats = {k: v.clone() for k, v in student.state_dict().items() if "running_" in k}
    args = CoSupervisedConfig(output_dir=str(tmp_path / "out"), student_mode="full", num_train_epochs=1,
                              disable_tqdm=True, report_to="none", per_device_train_batch_size=16, seed=2,
                              freeze_batch_norm=freeze, max_levels=1)
    trainer = CoSupervisedTrainer(model=student, teachers=teachers(), args=args, train_dataset=colour_images(48, 0),
                                  eval_dataset=colour_images(24, 1), processing_class=PREP.to_image_processor())
    trainer.train()
    saved = load_file(str(tmp_path / "out" / "round-0" / "model.safetensors"))
    same = [torch.equal(saved[k], v) for k, v in stats.items()]
    assert stats and (all(same) if freeze else not any(same))
    assert not any(m._forward_pre_hooks for m in student.modules())  # nothing left on the caller's model
    assert trainer.report["config"]["freeze_batch_norm"] is freeze


def test_full_mode_trains_backbone_slower_than_head(tmp_path):
    trainer, lrs = full_trainer(tmp_path / "out", num_train_epochs=1)
    pretrained = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert lrs.full_phases() and all(rates == [1e-3, 1e-2] for rates in lrs.full_phases())  # backbone lr / 10, head
    round1 = AutoModelForImageClassification.from_pretrained(tmp_path / "out" / "round-1")
    changed = [k for k, v in round1.state_dict().items() if not torch.equal(v, pretrained[k])]
    assert any("classifier" in k for k in changed) and any("layers" in k for k in changed)  # the whole student


def test_lora_trains_adapters_and_saves_a_merged_standard_checkpoint(tmp_path):
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    trainer, _ = full_trainer(tmp_path / "out", peft_config=config, num_train_epochs=1)
    pretrained = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    raw = load_file(tmp_path / "out" / "round-1" / "model.safetensors")
    assert not any("lora" in k or "base_layer" in k for k in raw)  # merged: the student's own architecture
    back = AutoModelForImageClassification.from_pretrained(tmp_path / "out" / "round-1")
    assert type(back).__name__ == "ViTForImageClassification"
    saved = back.state_dict()
    assert set(saved) == set(pretrained)
    adapted = [k for k in saved if ("q_proj.weight" in k or "v_proj.weight" in k)]
    untouched = [k for k in saved if "k_proj.weight" in k or "layernorm" in k or "mlp" in k]
    assert adapted and all(not torch.equal(saved[k], pretrained[k]) for k in adapted)
    assert untouched and all(torch.equal(saved[k], pretrained[k]) for k in untouched)
    assert not torch.equal(saved["classifier.weight"], pretrained["classifier.weight"])  # the head trained whole
    assert trainer.evaluate()["eval_accuracy"] == pytest.approx(trainer.report["rounds"][-1]["student_accuracy"])


def test_lora_needs_full_mode(tmp_path):
    with pytest.raises(CSLError, match="student_mode='full'"):
        CoSupervisedTrainer(model=tiny_vit(7), teachers=teachers(), args=CoSupervisedConfig(output_dir=str(tmp_path)),
                            train_dataset=colour_images(8, 0), eval_dataset=colour_images(8, 1),
                            processing_class=PREP.to_image_processor(), peft_config=peft.LoraConfig(r=2))


FULL = ["--dataset_name", "animal_mnist", "--max_train_samples", "64", "--max_eval_samples", "32", "--teacher_size",
        "100", "--test_size", "100", "--teacher_steps", "2", "--teachers_per_level", "1,2", "--num_train_epochs", "1",
        "--student_image_size", "32", "--disable_tqdm", "True", "--student_mode", "full",
        "--per_device_train_batch_size", "32"]


@pytest.mark.parametrize("extra", [
    ["--compare_label_types", "True"],  # the comparison rerun trains a fresh student on the same images
    ["--soft_labels", "True", "--denoise", "all", "--max_levels", "2", "--compact_cache_topk", "3"],
])
def test_full_mode_finishes_with_the_flags_probe_mode_accepts(tmp_path, extra):
    out = tmp_path / "full"
    report = run_csl.main([*FULL, *extra, "--output_dir", str(out)])
    assert [r["num_teachers"] for r in report["rounds"]] == [1, 2]
    assert report["config"]["student_mode"] == "full"
    if "--compare_label_types" in extra:
        other = json.loads((out / "soft_labels" / "csl_report.json").read_text())
        assert other["config"]["soft_labels"] is True and len(other["rounds"]) == 2


def test_full_mode_resumes(tmp_path):
    out = tmp_path / "full"
    first = run_csl.main([*FULL, "--output_dir", str(out)])
    (out / "csl_report.json").unlink()
    import shutil

    shutil.rmtree(out / "round-1")
    progress = json.loads((out / "csl_progress.json").read_text())
    progress["rounds"] = progress["rounds"][:1]
    (out / "csl_progress.json").write_text(json.dumps(progress))
    again = run_csl.main(["--resume_from_checkpoint", str(out), "--output_dir", str(out)])
    assert again["rounds"][0] == first["rounds"][0] and len(again["rounds"]) == 2
    assert os.path.isdir(out / "round-1")


@pytest.mark.parametrize("argv, words", [
    (["--use_peft"], "--use_peft applies to --student_mode full"),
    (["--lora_r", "8"], "--lora_r does not apply without --use_peft"),
    (["--student_mode", "full", "--reinit_head_each_round", "False"], "restarts from the pretrained student"),
    (["--backbone_learning_rate", "1e-4"], "applies to --student_mode full only"),
])
def test_full_mode_flag_mistakes_are_refused_up_front(tmp_path, capsys, argv, words):
    rc = run_command(run_csl.main, ["--output_dir", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and words in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cache_mb, per_image", [(64, 2), (0, None)])
def test_images_are_decoded_once_per_run_when_they_fit(tmp_path, monkeypatch, cache_mb, per_image):
    """With the image cache every image is decoded twice per run (labeling pass + once for training), whatever the
    number of rounds and epochs; without it, once per epoch and prediction."""
    import csl_hf.data.images as images

    decodes = []
    real = images.load_image
    monkeypatch.setattr(images, "load_image", lambda *a, **k: (decodes.append(1), real(*a, **k))[1])
    monkeypatch.setattr("csl_hf.data.targets.load_image", images.load_image)
    trainer, _ = full_trainer(tmp_path / "out", num_train_epochs=2, image_cache_mb=cache_mb)
    trainer.train()
    n = 48 + 24
    if per_image is not None:
        assert len(decodes) == per_image * n
    else:
        assert len(decodes) > 6 * n  # 3 phases x 2 epochs of training images, plus predictions
