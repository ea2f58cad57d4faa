"""The output directory is the user's, and what a run exports is what it evaluated (issue "your data, your runs"):
one run at a time, not inside the data, outputs readable under the umask, an overwritten directory holds only the new
run, recorded paths work from anywhere, push and LoRA settings checked before any work, the student learns from what
its saved processor gives, each round's card states its own metrics, the cache fingerprint covers the processor.
Each kind is tested on more than one input."""

import json
import os
import socket
import stat
import subprocess
import sys

import datasets
import pytest
import torch
from PIL import Image
from synthetic import make_cache

from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, CSLError, TeacherTrainingArguments, load_student
from csl_hf import train_teacher_hierarchy
from csl_hf.cli.output_dir import LOCK_NAME
from scripts import colour_folder, run_cli


@pytest.fixture
def cache_dir(tmp_path):
    cache = make_cache(n=240, seed=5)
    cache.source = {"dataset": "toy-colours"}  # named data: the cards get model-index metrics
    cache.save(tmp_path / "cache")
    return tmp_path / "cache"


def quick(cache, out, *more):
    return ["--cache_dir", cache, "--output_dir", out, "--num_train_epochs", 1, "--compare_label_types", "False",
            "--disable_tqdm", "True", *more]


# ------------------------------------------------------------------------------------------------ one run at a time
def test_a_directory_in_use_by_a_live_run_is_refused_and_a_crashed_runs_lock_is_taken_over(tmp_path, capsys,
                                                                                          cache_dir):
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(f"{socket.gethostname()} {other.pid}")
        rc, err = run_cli(capsys, *quick(cache_dir, out))
        assert rc == 2 and err.startswith("error: --output_dir") and "in use by another run" in err, err
        assert sorted(os.listdir(out)) == [LOCK_NAME]  # nothing written
        (out / LOCK_NAME).write_text("another-host 12345")  # a run on another machine: cannot be checked, refused
        rc, err = run_cli(capsys, *quick(cache_dir, out))
        assert rc == 2 and "another-host" in err and LOCK_NAME in err
    finally:
        other.kill()
        other.wait()
    (out / LOCK_NAME).write_text(f"{socket.gethostname()} {other.pid}")  # its process is gone: a stale lock
    rc, err = run_cli(capsys, *quick(cache_dir, out))
    assert rc == 0, err
    assert (out / "csl_report.json").is_file() and not (out / LOCK_NAME).exists()  # released when the run ends


# ------------------------------------------------------------------------------------------------ file modes
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_get_the_modes_of_the_umask(tmp_path, capsys, cache_dir, umask):
    old = os.umask(umask)
    try:
        rc, err = run_cli(capsys, *quick(cache_dir, tmp_path / "out"))
    finally:
        os.umask(old)
    assert rc == 0, err
    wrong = []
    for root, dirs, files in os.walk(tmp_path / "out"):
        for name, want in [(d, 0o777 & ~umask) for d in dirs] + [(f, 0o666 & ~umask) for f in files]:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            if mode != want:
                wrong.append((os.path.join(root, name), oct(mode)))
    assert wrong == []


# ------------------------------------------------------------------------------------------------ not inside the data
@pytest.mark.parametrize("where", ["data/out", "data/red/out", "link/out"])
def test_an_output_dir_inside_the_dataset_folder_is_refused(tmp_path, capsys, monkeypatch, where):
    monkeypatch.chdir(tmp_path)
    colour_folder(tmp_path / "data", n=6)
    os.symlink(tmp_path / "data", tmp_path / "link")
    before = sorted(str(p) for p in (tmp_path / "data").rglob("*"))
    rc, err = run_cli(capsys, "--dataset_name", "./data", "--output_dir", where, "--teacher_steps", 2)
    assert rc == 2 and "inside the dataset folder" in err and "\n" not in err, err
    assert sorted(str(p) for p in (tmp_path / "data").rglob("*")) == before  # nothing written into the data


# ------------------------------------------------------------------------------------------------ overwrite
def test_an_overwritten_directory_holds_only_the_new_run(tmp_path, capsys, cache_dir):
    out = tmp_path / "out"
    assert run_cli(capsys, *quick(cache_dir, out))[0] == 0
    assert {"round-0", "round-1", "round-2"} <= set(os.listdir(out))
    (out / "my_notes.txt").write_text("mine")
    rc, err = run_cli(capsys, *quick(cache_dir, out, "--max_levels", 2, "--overwrite_output_dir", "True"))
    assert rc == 0, err
    assert sorted(n for n in os.listdir(out) if n.startswith("round-")) == ["round-0", "round-1"]
    assert (out / "my_notes.txt").read_text() == "mine" and not any(n.startswith(".csl") for n in os.listdir(out))
    assert len(json.loads((out / "csl_report.json").read_text())["rounds"]) == 2


def test_an_overwrite_that_fails_before_saving_anything_puts_the_old_run_back(tmp_path, capsys, cache_dir,
                                                                              monkeypatch):
    out = tmp_path / "out"
    assert run_cli(capsys, *quick(cache_dir, out))[0] == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    import csl_hf.trainer.co_supervised_trainer as T

    def broken(self, *a, **k):
        raise CSLError("simulated failure in the ceiling phase")

    monkeypatch.setattr(T.CoSupervisedTrainer, "_train_ceiling", broken)
    rc, err = run_cli(capsys, *quick(cache_dir, out, "--overwrite_output_dir", "True", "--seed", 3))
    assert rc == 2 and "simulated failure" in err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------------------------ finished or not
def test_a_finished_run_and_an_unfinished_one_are_named_as_such(tmp_path, capsys, cache_dir):
    out = tmp_path / "out"
    assert run_cli(capsys, *quick(cache_dir, out))[0] == 0
    rc, err = run_cli(capsys, *quick(cache_dir, out))
    assert rc == 2 and "holds a finished run" in err and "resume" not in err
    # Resuming a finished run is not an error: there is nothing to do, and it says so.
    rc, err = run_cli(capsys, "--resume_from_checkpoint", out)
    assert rc == 0, err
    os.remove(out / "csl_report.json")  # as if it had stopped after its rounds were recorded
    rc, err = run_cli(capsys, *quick(cache_dir, out))
    assert rc == 2 and "holds an unfinished run" in err and f"--resume_from_checkpoint {out}" in err


def test_resume_of_a_finished_run_prints_where_it_is(tmp_path, capsys, cache_dir):
    out = tmp_path / "out"
    assert run_cli(capsys, *quick(cache_dir, out))[0] == 0
    report = (out / "csl_report.json").read_bytes()
    capsys.readouterr()
    from scripts import run_csl

    assert run_csl.cli(["--resume_from_checkpoint", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "is finished" in printed and "nothing to resume" in printed and str(out / "csl_report.json") in printed
    assert (out / "csl_report.json").read_bytes() == report


# ------------------------------------------------------------------------------------------------ recorded paths
def test_recorded_paths_work_from_another_directory_and_after_a_move(tmp_path, capsys, monkeypatch):
    first = tmp_path / "first"
    first.mkdir()
    make_cache(n=240, seed=6).save(first / "cache")
    monkeypatch.chdir(first)
    assert run_cli(capsys, *quick("cache", "out"))[0] == 0  # relative paths
    recorded = (first / "out" / "run_config.yaml").read_text()
    assert f"cache_dir: {first / 'cache'}" in recorded
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # rerun the recorded run from another working directory
    rc, err = run_cli(capsys, first / "out" / "run_config.yaml", "--output_dir", "again")
    assert rc == 0, err
    a = json.loads((first / "out" / "csl_report.json").read_text())
    b = json.loads((elsewhere / "again" / "csl_report.json").read_text())
    assert a["rounds"] == b["rounds"]


# ------------------------------------------------------------------------------------------------ push, checked early
@pytest.mark.parametrize("repo", ["results (v2)", "a--b", "x" * 97])
def test_a_repo_id_the_hub_would_reject_is_refused_before_any_work(tmp_path, capsys, cache_dir, repo):
    rc, err = run_cli(capsys, *quick(cache_dir, tmp_path / "out", "--push_to_hub", "True", "--hub_model_id", repo))
    assert rc == 2 and "is not valid" in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()


def test_push_without_the_hub_is_refused_before_any_work(tmp_path, capsys, cache_dir):
    # The tests run offline (HF_HUB_OFFLINE=1): the Hub cannot be reached.
    rc, err = run_cli(capsys, *quick(cache_dir, tmp_path / "out", "--push_to_hub", "True", "--hub_model_id", "me/x"))
    assert rc == 2 and "cannot be reached" in err and "csl-hf push" in err, err
    assert not (tmp_path / "out").exists()


def test_a_push_that_fails_at_the_end_says_the_run_is_saved_and_how_to_push_it(tmp_path, capsys, cache_dir,
                                                                               local_hub, monkeypatch):
    from huggingface_hub import HfApi

    def no_network(*args, **kwargs):
        raise ConnectionError("the network went away")

    monkeypatch.setattr(HfApi, "upload_folder", no_network)
    out = tmp_path / "out"
    rc, err = run_cli(capsys, *quick(cache_dir, out, "--push_to_hub", "True", "--hub_model_id", "me/csl"))
    assert rc == 2 and "the network went away" in err and f"csl-hf push {out} --hub_model_id me/csl" in err, err
    assert (out / "csl_report.json").is_file() and (out / "round-2").is_dir()  # the run itself is whole


def test_csl_hf_push_without_the_hub_or_with_a_failing_push_is_one_line_and_changes_no_card(tmp_path, capsys,
                                                                                           cache_dir, local_hub,
                                                                                           monkeypatch):
    # `csl-hf push` offline once ended in a traceback, after rewriting every card for a repo never created.
    from huggingface_hub import HfApi

    from csl_hf.cli import push

    out = tmp_path / "out"
    assert run_cli(capsys, *quick(cache_dir, out))[0] == 0
    cards = {p: p.read_text() for p in out.rglob("README.md")}

    def offline(*args, **kwargs):
        raise ConnectionError("offline mode is enabled")

    def no_network(*args, **kwargs):
        raise ConnectionError("the network went away")

    with monkeypatch.context() as m:
        m.setattr(HfApi, "whoami", offline)
        rc, err = run_cli(capsys, out, "--hub_model_id", "someone/x", script=push)
    assert rc == 2 and "\n" not in err and err.startswith("error: csl-hf push: the Hub cannot be reached"), err
    assert {p: p.read_text() for p in out.rglob("README.md")} == cards
    rc, err = run_cli(capsys, out, "--hub_model_id", "a--b", script=push)
    assert rc == 2 and "\n" not in err and "is not valid" in err, err
    monkeypatch.setattr(HfApi, "upload_folder", no_network)
    rc, err = run_cli(capsys, out, "--hub_model_id", "someone/x", script=push)
    assert rc == 2 and "\n" not in err and "the network went away" in err and "run the command again" in err, err


def test_the_card_metadata_names_no_local_path(tmp_path):
    from csl_hf.outputs.model_card import create_csl_model_card

    report = {"weak_accuracy": 0.5, "ceiling_accuracy": 0.9, "seed": 0, "config": {},
              "rounds": [{"level": 0, "num_teachers": 1, "assignment": "none", "student_accuracy": 0.6, "pgr": 25.0,
                          "keep_rate": 1.0, "precision": None, "recall": None, "teacher_accuracy": None}]}
    (tmp_path / "my photos").mkdir()
    for name in (str(tmp_path / "my photos"), "./my_images", "animal_mnist"):
        card = create_csl_model_card(report, None, name, ["generalist"], [[0]])
        assert card.data.datasets is None, name
    # nor does the card's text: a local dataset by its folder's name only
    for name, shown in ((str(tmp_path / "my photos"), "`my photos`, a local dataset"),
                        ("./my_images", "`my_images`, a local dataset"),
                        ("animal_mnist", "`animal_mnist` (bundled with csl_hf)")):
        text = create_csl_model_card(report, None, name, ["generalist"], [[0]]).text
        assert f"**Training data:** {shown}" in text and str(tmp_path) not in text, text
    card = create_csl_model_card(report, None, "zalando-datasets/fashion_mnist", ["generalist"], [[0]])
    assert card.data.datasets == ["zalando-datasets/fashion_mnist"]
    assert ("**Training data:** [`zalando-datasets/fashion_mnist`]"
            "(https://huggingface.co/datasets/zalando-datasets/fashion_mnist)") in card.text


# ------------------------------------------------------------------------------------------------ LoRA targets, early
def _vit(tmp_path, names=("a", "b", "c")):
    from transformers import ViTConfig, ViTForImageClassification

    return ViTForImageClassification(ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=32,
                                               id2label=dict(enumerate(names))))


@pytest.mark.parametrize("targets", [["query", "value"], ["q_proj", "nope"], "encoder.*attn.*dense"])
def test_lora_targets_that_name_no_layer_are_refused_with_the_layer_names(tmp_path, targets):
    peft = pytest.importorskip("peft")
    from csl_hf.models.student import check_lora_targets

    with pytest.raises(CSLError, match="names no layer.*q_proj"):
        check_lora_targets(_vit(tmp_path), peft.LoraConfig(target_modules=targets))
    check_lora_targets(_vit(tmp_path), peft.LoraConfig(target_modules=["q_proj", "v_proj"]))  # these exist
    check_lora_targets(_vit(tmp_path), peft.LoraConfig(target_modules=".*attention.*_proj"))  # a regex that matches


def test_the_trainer_refuses_lora_targets_before_labeling(tmp_path):
    peft = pytest.importorskip("peft")
    images = [Image.new("RGB", (16, 16), c) for c in ("red", "green", "blue")] * 4
    ds = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 2] * 4}, features=datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])}))
    teachers = train_teacher_hierarchy(ds, TeacherTrainingArguments(teachers_per_level="1,3", teacher_steps=1,
                                                                     teacher_image_size=16))
    from transformers import ViTImageProcessor

    with pytest.raises(CSLError, match="'query' names no layer"):
        CoSupervisedTrainer(model=_vit(tmp_path), teachers=teachers, train_dataset=ds, eval_dataset=ds,
                            processing_class=ViTImageProcessor(size={"height": 16, "width": 16}),
                            args=CoSupervisedConfig(output_dir=str(tmp_path / "out"), student_mode="full"),
                            peft_config=peft.LoraConfig(target_modules=["query"]))
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ train = serve
def _panoramas(n, start, names=("red", "green", "blue")):
    import numpy as np

    cols = [(220, 40, 40), (40, 200, 40), (40, 40, 220)]
    rows = {"image": [], "label": []}
    for c in range(len(names)):
        for i in range(start, start + n):  # the colour at the two ends, grey clutter in the middle
            rng = np.random.default_rng(c * 1000 + i)
            a = np.full((24, 72, 3), 128.0) + rng.normal(0, 20, (24, 72, 3))
            a[:, :24] += np.array(cols[c]) - 128.0
            a[:, 48:] += np.array(cols[c]) - 128.0
            rows["image"].append(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
            rows["label"].append(c)
    return datasets.Dataset.from_dict(rows, features=datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))}))


@pytest.mark.parametrize("processor_kind,mode", [("crop", "probe"), ("resize", "probe"), ("crop", "full")])
def test_evaluate_equals_pipeline_on_the_saved_checkpoint(tmp_path, processor_kind, mode):
    from transformers import BitImageProcessor, ViTImageProcessor, pipeline

    from csl_hf.data.preprocessing import Preprocessing, ProcessorPreprocessing, preprocessing_for

    processor = (BitImageProcessor(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24},
                                   do_center_crop=True) if processor_kind == "crop"
                 else ViTImageProcessor(size={"height": 24, "width": 24}))
    expected = ProcessorPreprocessing if processor_kind == "crop" else Preprocessing
    assert isinstance(preprocessing_for(processor), expected)
    names = ("red", "green", "blue")
    teacher, train, test = _panoramas(12, 0), _panoramas(20, 100), _panoramas(10, 500)
    teachers = train_teacher_hierarchy(teacher, TeacherTrainingArguments(teachers_per_level="1,3", teacher_steps=20))
    student, _ = load_student("tiny-vit", dict(enumerate(names)), image_size=24)
    args = CoSupervisedConfig(output_dir=str(tmp_path / "out"), num_train_epochs=3, disable_tqdm=True,
                              student_mode=mode, learning_rate=1e-2, baselines="none")
    trainer = CoSupervisedTrainer(model=student, teachers=teachers, args=args, train_dataset=train,
                                  eval_dataset=test, processing_class=processor)
    trainer.train()
    evaluated = trainer.evaluate()["eval_accuracy"]
    predicted = trainer.predict(test).predictions.argmax(-1)
    trainer.save_model()
    classify = pipeline("image-classification", model=str(tmp_path / "out"))
    served = [names.index(classify(ex["image"], top_k=1)[0]["label"]) for ex in test]
    assert (torch.tensor(served) == torch.as_tensor(predicted)).float().mean() >= 0.95
    assert abs(sum(s == y for s, y in zip(served, test["label"])) / len(test) - evaluated) <= 0.05


# ------------------------------------------------------------------------------------------------ cards per round
def test_each_round_card_states_its_own_metrics(tmp_path, capsys, cache_dir):
    out = tmp_path / "out"
    assert run_cli(capsys, *quick(cache_dir, out))[0] == 0
    from huggingface_hub import ModelCard

    report = json.loads((out / "csl_report.json").read_text())
    for record in report["rounds"]:
        card = ModelCard.load(out / f"round-{record['level']}" / "README.md")
        accuracy = next(m.metric_value for m in card.data.eval_results if m.metric_type == "accuracy")
        assert accuracy == pytest.approx(record["student_accuracy"])
        assert f"round {record['level']} of {len(report['rounds'])}" in card.text
        assert f"(round-{record['level']})" in card.text.splitlines()[0] or f"round-{record['level']}" in card.text
    final = ModelCard.load(out / "README.md")
    assert "the final student" in final.text


# ------------------------------------------------------------------------------------------------ fingerprint
def test_the_cache_fingerprint_covers_the_processor(tmp_path):
    from transformers import BitImageProcessor, ViTImageProcessor

    from csl_hf.cache.reuse import labeling_fingerprint
    from csl_hf.data.source import ImageSource

    ds = _panoramas(2, 0)
    teachers = train_teacher_hierarchy(ds, TeacherTrainingArguments(teachers_per_level="1,3", teacher_steps=1))
    student, _ = load_student("tiny-vit", dict(enumerate(("red", "green", "blue"))), image_size=24)
    keys = []
    for processor in (ViTImageProcessor(size={"height": 24, "width": 24}),
                      ViTImageProcessor(size={"height": 24, "width": 24}, image_mean=[0.4] * 3),
                      BitImageProcessor(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24}),
                      BitImageProcessor(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24},
                                        resample=0)):
        images = ImageSource.from_datasets(ds, ds, processor, teachers=teachers)
        keys.append(json.dumps(labeling_fingerprint(images, teachers, student, None), sort_keys=True))
    assert len(set(keys)) == 4
