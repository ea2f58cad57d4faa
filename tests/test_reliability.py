"""Real folders and real runs: each fault kind found by trying csl_hf as users do (../shared/cases), fixed as a kind
and tested here on small inputs built on the fly.

Kinds: EXIF orientation (one decode path everywhere), resumes that must rebuild the recorded run, class folders
and camera file names that must not vanish, bad images in every split, flags that do not apply, malformed
cache.json, failed runs that must leave the output directory as it was.
"""

import importlib
import json
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from synthetic import make_cache

from csl_hf import CoSupervisedConfig, CSLCache, Preprocessing, TeacherTrainingArguments, train_teacher_hierarchy
from csl_hf.data import load_image, load_image_folder, preprocess_images
from csl_hf.data.targets import ImageTargets
from csl_hf.errors import CacheError, CSLError
from csl_hf.teachers import load_teacher_split
import csl_hf.cli.run
from scripts import COLOURS, colour_folder, run_cli, run_csl  # noqa: F401

SMALL = ["--teacher_size", 15, "--test_size", 30, "--teachers_per_level", "1,3", "--teacher_steps", 3,
         "--num_train_epochs", 1, "--student_image_size", 32, "--no_compare_label_types", "--disable_tqdm", "True"]


# ------------------------------------------------------------------------------------------------ 1. EXIF orientation
def test_every_decode_path_applies_exif_orientation(tmp_path):
    """A photo stored rotated with Orientation=6 decodes upright in every path, as datasets and transformers do."""
    upright = np.zeros((24, 32, 3), np.uint8)
    upright[:12] = 250  # bright top half
    img = Image.fromarray(upright)
    stored = img.transpose(Image.Transpose.ROTATE_90)  # sideways on disk ...
    exif = stored.getexif()
    exif[0x0112] = 6  # ... with the tag every viewer honours
    stored.save(tmp_path / "tagged.jpg", quality=100, exif=exif.tobytes())
    img.save(tmp_path / "plain.jpg", quality=100)

    tagged, plain = load_image(str(tmp_path / "tagged.jpg")), load_image(str(tmp_path / "plain.jpg"))
    assert tagged.shape == plain.shape == (3, 24, 32)
    assert (tagged.float() - plain.float()).abs().mean() < 3  # the same picture (JPEG noise only)
    reference = np.asarray(datasets.Image().decode_example({"path": str(tmp_path / "tagged.jpg"), "bytes": None}))
    assert tuple(reference.shape[:2]) == (24, 32)

    pre = Preprocessing(size=(8, 8))
    decoded = preprocess_images([str(tmp_path / "tagged.jpg"), str(tmp_path / "plain.jpg")], [pre])
    a, b = decoded.pixel_values[pre]
    assert (a - b).abs().mean() < 0.05  # labeling pass
    folder = tmp_path / "folder"
    for name in ("x", "y"):
        os.makedirs(folder / name)
        for f in ("tagged.jpg", "plain.jpg"):
            (folder / name / f).write_bytes((tmp_path / f).read_bytes())
    ds = load_image_folder(folder)
    split = load_teacher_split(ds, pre)  # teacher training and evaluation
    assert (split.pixel_values[0] - split.pixel_values[1]).abs().mean() < 0.05
    full = ImageTargets(ds, torch.arange(2), None, pre, "image")  # full fine-tuning and student evaluation
    assert (full.pixels(0) - full.pixels(1)).abs().mean() < 0.05
    # The PIL-to-tensor helper of earlier releases (a deprecated import path now) decodes the same way.
    from csl_hf.data import decode_image

    with pytest.warns(FutureWarning):
        pil_to_uint8 = importlib.reload(importlib.import_module("csl_hf.preprocessing")).pil_to_uint8
    assert torch.equal(pil_to_uint8(decode_image(str(tmp_path / "tagged.jpg"))), tagged)


def test_import_paths_from_before_the_layout_change_still_work_and_say_where_things_moved():
    from csl_hf.data.preprocessing import Preprocessing
    from csl_hf.method.hierarchy import class_hierarchy
    from csl_hf.models.teacher_mixture import TeacherMixtureConfig

    with pytest.warns(FutureWarning, match="csl_hf.method.hierarchy"):
        old = importlib.reload(importlib.import_module("csl_hf.configuration_teacher_mixture"))
    assert old.class_hierarchy is class_hierarchy and old.TeacherMixtureConfig is TeacherMixtureConfig
    with pytest.warns(FutureWarning, match="csl_hf.data.preprocessing"):
        assert importlib.reload(importlib.import_module("csl_hf.preprocessing")).Preprocessing is Preprocessing


# ------------------------------------------------------------------------------------------------ 3. class folders
def test_underscore_names_stay_junk_goes_and_empty_classes_are_kept_loudly(tmp_path, caplog):
    root = colour_folder(tmp_path / "data", n=4)
    os.makedirs(root / "_unsure")
    Image.new("RGB", (8, 8)).save(root / "_unsure" / "_DSC0001.JPG")  # camera names start with "_"
    Image.new("RGB", (8, 8)).save(root / "red" / "_MG_0002.jpg")
    os.makedirs(root / "dog")
    (root / "dog" / ".DS_Store").write_bytes(b"x")  # only Finder metadata
    os.makedirs(root / "eel")  # empty
    os.makedirs(root / "__MACOSX" / "red")  # zip residue: junk, not a class
    (root / "Thumbs.db").write_bytes(b"x")
    with caplog.at_level("WARNING"):
        ds = load_image_folder(root)
    names = ds.features["label"].names
    assert names == ["_unsure", "blue", "dog", "eel", "green", "red"]
    assert len(ds) == 3 * 4 + 2
    assert "dog, eel" in caplog.text and "hold no image" in caplog.text
    # Teachers still train: the classes without images join the smallest blocks, no specialist is left empty.
    mixture = train_teacher_hierarchy(ds, TeacherTrainingArguments(teachers_per_level="1,3", teacher_steps=1))
    blocks = [set(s["classes"]) for s in mixture.config.specialties[1:]]
    assert sorted(c for b in blocks for c in b) == list(range(6))
    assert all(b - {2, 3} for b in blocks)  # every block has a class with images


# ------------------------------------------------------------------------------------------------ 5. bad images anywhere
def test_bad_images_in_teacher_and_test_splits_are_skipped_and_counted(tmp_path, capsys):
    root = colour_folder(tmp_path / "data")
    for name in COLOURS:
        good = (root / name / "000.png").read_bytes()
        (root / name / "zz_truncated.png").write_bytes(good[: len(good) // 2])
        (root / name / "zz_empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    rc, err = run_cli(capsys, "--dataset_name", root, "--output_dir", out, *SMALL)
    assert rc == 0, err
    report = json.loads((out / "csl_report.json").read_text())
    skipped = report["skipped_images"]
    assert sum(skipped.values()) == 6 and set(skipped) == {"teacher", "train", "test"}
    # ... and logged: the teacher split's as a warning, the labeling pass's with the cache.
    if skipped["teacher"]:
        assert f"teacher split: skipped {skipped['teacher']} bad image(s)" in err
    assert f"skipped {{'train': {skipped['train']}, 'test': {skipped['test']}}}" in err


# ------------------------------------------------------------------------------------------------ 7. flags
@pytest.mark.parametrize("flag", [["--label_smoothing_factor", "0.1"]])
def test_flags_that_apply_are_honoured(tmp_path, capsys, flag):
    make_cache(n=200).save(tmp_path / "cache")
    rc, err = run_cli(capsys, "--cache_dir", tmp_path / "cache", "--output_dir", tmp_path / "out",
                      "--num_train_epochs", 1, "--no_compare_label_types", "--disable_tqdm", "True", *flag)
    assert rc == 0, err


@pytest.mark.parametrize("flag, words", [
    (["--gradient_checkpointing", "True"], "--student_mode full"),
    (["--eval_strategy", "epoch"], "evaluated on the test split"),
    (["--save_strategy", "steps"], "round-{level}"),
    (["--load_best_model_at_end", "True"], "test split"),
    (["--dataloader_drop_last", "True"], "no DataLoader"),
    (["--max_train_samples", "0"], "positive"),
    (["--max_eval_samples", "-5"], "positive"),
    (["--labeling_batch_size", "0"], "at least 1"),
    (["--num_train_epochs", "-1"], "--num_train_epochs must be positive"),
    (["--num_train_epochs", "0"], "--num_train_epochs must be positive"),
    (["--learning_rate", "0"], "--learning_rate must be positive"),
    (["--per_device_train_batch_size", "0"], "at least 1"),
    (["--gradient_accumulation_steps", "0"], "at least 1"),
    (["--weight_decay", "-0.1"], "0 or more"),
    (["--teacher_size", "0"], "count"),
    (["--student_image_size", "-1"], "pixels"),
])
def test_flags_that_do_not_apply_are_refused_before_any_work(tmp_path, capsys, flag, words):
    root = colour_folder(tmp_path / "data", n=6)
    out = tmp_path / "out"
    rc, err = run_cli(capsys, "--dataset_name", root, "--output_dir", out, *SMALL, *flag)
    assert rc == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and words in lines[0], err
    assert not out.exists()  # refused at parse time: nothing written


# ------------------------------------------------------------------------------------------------ 8. cache.json
@pytest.mark.parametrize("edit, words", [
    (lambda m: m.update(id2label=["c0", "c1", "c2", "c3", "c4", "c5"]), "'id2label' must be an object"),
    (lambda m: m.update(id2label={f"n{i}": f"c{i}" for i in range(6)}), "not by names"),
    (lambda m: m.update(student="my-student"), "'student' must be an object"),
    (lambda m: m.update(num_labels="6"), "'num_labels' must be an integer"),
    (lambda m: m.update(levels=[0, [1, 2]]), "'levels' must be a list of lists"),
    (lambda m: m["specialties"].__setitem__(1, {"classes": "0-2"}), "specialty 1's 'classes'"),
    (lambda m: m.update(teacher_names="g"), "'teacher_names' must be a list of strings"),
    (lambda m: m.update(id2label={str(i): i for i in range(6)}), "must be a string"),
])
def test_malformed_cache_json_is_one_line(tmp_path, capsys, edit, words):
    make_cache(n=120).save(tmp_path / "cache")
    meta = json.loads((tmp_path / "cache" / "cache.json").read_text())
    edit(meta)
    (tmp_path / "cache" / "cache.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="cache.json"):
        CSLCache.load(tmp_path / "cache")
    rc, err = run_cli(capsys, "--cache_dir", tmp_path / "cache", "--output_dir", tmp_path / "out")
    assert rc == 2 and err.startswith("error: ") and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ 9. failed runs
def test_a_run_that_fails_before_progress_leaves_no_trace(tmp_path, capsys, monkeypatch):
    make_cache(n=200).save(tmp_path / "cache")
    out = tmp_path / "out"
    import csl_hf.trainer.co_supervised_trainer as T

    def broken(self, *a, **k):
        raise CSLError("simulated failure in the ceiling phase")

    monkeypatch.setattr(T.CoSupervisedTrainer, "_train_ceiling", broken)
    rc, err = run_cli(capsys, "--cache_dir", tmp_path / "cache", "--output_dir", out, "--num_train_epochs", 1)
    assert rc == 2 and "simulated failure" in err
    assert not out.exists()  # it did not exist before: it does not exist after
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, err = run_cli(capsys, "--cache_dir", tmp_path / "cache", "--output_dir", out, "--num_train_epochs", 1)
    assert rc == 2 and os.listdir(out) == ["notes.txt"]  # what was there stays, what the run made goes


def test_a_run_that_fails_after_a_round_stays_resumable(tmp_path, capsys, monkeypatch):
    make_cache(n=200).save(tmp_path / "cache")
    out = tmp_path / "out"
    import csl_hf.trainer.co_supervised_trainer as T

    original = T.CoSupervisedTrainer.train_round

    def fail_at_level_2(self, level, *a, **k):
        if level == 2:
            raise CSLError("simulated failure in level 2")
        return original(self, level, *a, **k)

    monkeypatch.setattr(T.CoSupervisedTrainer, "train_round", fail_at_level_2)
    common = ["--cache_dir", tmp_path / "cache", "--output_dir", out, "--num_train_epochs", 1,
              "--no_compare_label_types", "--disable_tqdm", "True"]
    rc, err = run_cli(capsys, *common)
    assert rc == 2 and "--resume_from_checkpoint" in err  # the log says how to finish it
    assert {"round-0", "round-1", "csl_progress.json", "run_config.yaml"} <= set(os.listdir(out))
    monkeypatch.setattr(T.CoSupervisedTrainer, "train_round", original)
    rc, err = run_cli(capsys, *common, "--resume_from_checkpoint", out)
    assert rc == 0, err
    assert len(json.loads((out / "csl_report.json").read_text())["rounds"]) == 3


def test_resume_rebuilds_the_recorded_run_and_reuses_its_cache(tmp_path, capsys):
    """Resuming with only --resume_from_checkpoint: the user's own student (not the bundled default), the same
    teachers and the same cache file (not labeled again), and the rounds the uninterrupted run would have trained."""
    from transformers import ViTConfig, ViTForImageClassification

    root = colour_folder(tmp_path / "data", n=30)
    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, image_size=32, patch_size=8)).save_pretrained(
        tmp_path / "student")
    Preprocessing(size=(32, 32)).to_image_processor().save_pretrained(tmp_path / "student")
    out = tmp_path / "out"
    rc, err = run_cli(capsys, "--dataset_name", root, "--output_dir", out, "--student_model_name_or_path",
                      tmp_path / "student", *SMALL)
    assert rc == 0, err
    first = json.loads((out / "csl_report.json").read_text())
    cache_file = out / "cache" / "cache.safetensors"
    labeled_at = cache_file.stat().st_mtime_ns
    (out / "csl_report.json").unlink()  # interrupted after level 0
    import shutil

    shutil.rmtree(out / "round-1")
    progress = json.loads((out / "csl_progress.json").read_text())
    progress["rounds"] = progress["rounds"][:1]
    (out / "csl_progress.json").write_text(json.dumps(progress))
    rc, err = run_cli(capsys, "--resume_from_checkpoint", out)
    assert rc == 0, err
    again = json.loads((out / "csl_report.json").read_text())
    assert again["rounds"] == first["rounds"] and again["config"]["student"] == str(tmp_path / "student")
    assert json.loads((out / "round-1" / "config.json").read_text())["model_type"] == "vit"
    assert cache_file.stat().st_mtime_ns == labeled_at  # the cache was reused, not labeled again
    moved = tmp_path / "moved"
    out.rename(moved)  # a run directory moved elsewhere still resumes in place, with only the flag
    (moved / "csl_report.json").unlink()
    rc, err = run_cli(capsys, "--resume_from_checkpoint", moved)
    assert rc == 0, err
    assert json.loads((moved / "csl_report.json").read_text())["rounds"] == first["rounds"]


def test_resume_from_a_directory_without_progress_fails_before_any_work(tmp_path, capsys, monkeypatch):
    # A resume of nothing is refused before the teachers are trained or a single image is labeled.
    monkeypatch.setattr(csl_hf.cli.run, "prepare_teachers", lambda *a, **k: pytest.fail("teachers trained before the check"))
    out = tmp_path / "out"
    for target in (tmp_path / "nope", out):  # a path that does not exist; True-like: the run's own empty output_dir
        rc, err = run_cli(capsys, "--max_train_samples", 50, "--max_eval_samples", 20, "--output_dir", out,
                          "--resume_from_checkpoint", target)
        assert rc == 2 and "\n" not in err and "holds no run that can be resumed" in err, err
        assert not out.exists()  # nothing left behind


def test_output_dir_that_is_a_file_or_not_the_resumed_run_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(csl_hf.cli.run, "prepare_teachers", lambda *a, **k: pytest.fail("teachers trained before the check"))
    a_file = tmp_path / "afile"
    a_file.write_text("notes")
    rc, err = run_cli(capsys, "--output_dir", a_file)
    assert rc == 2 and "\n" not in err and "is a file, not a directory" in err, err
    assert a_file.read_text() == "notes"
    finished = tmp_path / "run"
    finished.mkdir()
    (finished / "csl_progress.json").write_text("{}")
    rc, err = run_cli(capsys, "--resume_from_checkpoint", finished, "--output_dir", tmp_path / "elsewhere")
    assert rc == 2 and "\n" not in err and "a resume finishes the run in its own directory" in err, err
    assert not (tmp_path / "elsewhere").exists()


def test_every_trainingarguments_field_is_listed_in_the_troubleshooting_table():
    # The doc's table is the generated one, so a field added by a transformers upgrade (or a new refusal) shows up
    # as a failing test until docs/troubleshooting.md is regenerated.
    import dataclasses

    from transformers import TrainingArguments

    from csl_hf.trainer.arguments_audit import REFUSED, REFUSED_IN_PROBE, audit_table

    table = audit_table()
    doc = (Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md").read_text()
    assert table in doc
    fields = [f.name for f in dataclasses.fields(TrainingArguments) if f.init]
    assert all(f"| `{name}` |" in table for name in fields)
    assert not set(REFUSED) & set(REFUSED_IN_PROBE)


def test_a_refused_flag_is_refused_in_python_too_and_probe_only_ones_apply_in_full_mode(tmp_path):
    with pytest.raises(CSLError, match="--dataloader_drop_last does not apply"):
        CoSupervisedConfig(output_dir=str(tmp_path), dataloader_drop_last=True)
    assert CoSupervisedConfig(output_dir=str(tmp_path), student_mode="full", dataloader_drop_last=True).dataloader_drop_last
