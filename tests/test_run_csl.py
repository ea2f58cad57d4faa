"""examples/run_csl.py: --help, the cache path, and a reduced images run end to end (bundled data, offline)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from synthetic import make_cache
from transformers import AutoModelForImageClassification, pipeline

from scripts import ROOT, run_csl, run_without_csl_hf

from csl_hf import TeacherMixture  # noqa: E402


def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "run_csl.py"), "--help"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ("--cache_dir", "--assignment", "--denoise", "--soft_labels", "--student_mode", "--dataset_name",
                 "--teachers_name_or_path", "--student_model_name_or_path", "--max_train_samples", "--learning_rate",
                 "--push_to_hub", "--teacher_steps", "--on_bad_image", "--compact_cache_topk"):
        assert flag in out.stdout, flag
    # The number a run is about is defined before any flag's help uses it.
    text = " ".join(out.stdout.split())
    assert text.index("PGR, the performance gap recovered") == text.index("PGR"), text[:600]
    assert "100 x (student - weak) / (ceiling - weak)" in text


def test_cache_path_with_trainer_flags(tmp_path):
    make_cache(n=400, seed=5).save(tmp_path / "cache")
    out = tmp_path / "out"
    report = run_csl.main([
        "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(out), "--max_grad_norm", "0",
        "--lr_scheduler_type", "cosine", "--warmup_steps", "0", "--num_train_epochs", "2", "--learning_rate", "0.01",
        "--per_device_train_batch_size", "50", "--seed", "7", "--disable_tqdm", "True", "--denoise", "top2",
    ])
    on_disk = json.loads((out / "csl_report.json").read_text())
    assert on_disk == report and report["seed"] == 7 and report["config"]["denoise"] == "top2"
    assert report["config"]["per_device_train_batch_size"] == 50 and report["config"]["max_grad_norm"] == 0
    assert len(report["rounds"]) == 3
    # No student loads offline for this cache: the rounds keep the trained head.
    assert (out / "round-2" / "probe_head.safetensors").is_file()
    assert (out / "pgr.png").is_file() and (out / "soft_labels" / "csl_report.json").is_file()


def test_compact_cache_flag_reads_transparently(tmp_path):
    make_cache(n=300, seed=6).save(tmp_path / "cache")
    report = run_csl.main(["--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out"),
                           "--compact_cache_topk", "2", "--num_train_epochs", "1", "--disable_tqdm", "True",
                           "--compare_label_types", "False"])
    assert len(report["rounds"]) == 3


def test_reduced_animal_mnist_run_end_to_end(tmp_path):
    out = tmp_path / "run"
    common = ["--dataset_name", "animal_mnist", "--max_train_samples", "240", "--max_eval_samples", "120",
              "--teacher_size", "200", "--test_size", "200", "--teacher_steps", "4", "--teachers_per_level", "1,2",
              "--num_train_epochs", "1", "--student_image_size", "32", "--disable_tqdm", "True",
              "--compare_label_types", "False"]
    report = run_csl.main([*common, "--output_dir", str(out)])
    assert [r["num_teachers"] for r in report["rounds"]] == [1, 2]
    cache = json.loads((out / "cache" / "cache.json").read_text())
    assert cache["num_labels"] == 10 and cache["levels"] == [[0], [1, 2]] and cache["id2label"]["0"] == "bear"
    # Every round and the final student are standard checkpoints with the label names and a processor.
    for directory in (out / "round-0", out / "round-1", out):
        model = AutoModelForImageClassification.from_pretrained(directory)
        assert model.config.id2label[0] == "bear"
        assert (directory / "README.md").is_file()
    classify = pipeline("image-classification", model=str(out / "round-1"))
    prediction = classify(Image.new("L", (28, 28), color=128))
    assert prediction[0]["label"] in set(cache["id2label"].values())
    # The final student is round 1's.
    a = AutoModelForImageClassification.from_pretrained(out)
    b = AutoModelForImageClassification.from_pretrained(out / "round-1")
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    # The saved teachers are reused as they are by a second run.
    teachers = TeacherMixture.from_pretrained(out / "teachers")
    assert teachers.config.teacher_names[0] == "generalist"
    without_teacher_flags = [a for a in common if a not in ("--teacher_steps", "4", "--teachers_per_level", "1,2")]
    again = run_csl.main([*without_teacher_flags, "--output_dir", str(tmp_path / "again"), "--teachers_name_or_path",
                          str(out / "teachers")])
    assert again["weak_accuracy"] == report["weak_accuracy"]
    assert not (tmp_path / "again" / "teachers").exists()
    # The model card's own snippet works as written, in a fresh interpreter that never imports csl_hf.
    card = (out / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0].replace("path/to/this/directory", str(out))
    snippet = snippet.replace('"path/to/image.png"', "Image.new('L', (28, 28), 128)")
    assert "card snippet ok" in run_without_csl_hf("from PIL import Image\n" + snippet + "\nprint('card snippet ok')\n",
                                                  tmp_path)
    assert "trust_remote_code" not in card  # the bundled student is a native transformers EfficientNet


@pytest.mark.parametrize("streaming", [False, True])
def test_full_mode_fine_tunes_the_whole_student_from_images(tmp_path, streaming):
    out = tmp_path / "full"
    run_csl.main(["--dataset_name", "animal_mnist", "--streaming", str(streaming), "--max_train_samples", "96", "--max_eval_samples", "48",
                  "--teacher_size", "100", "--test_size", "100", "--teacher_steps", "2", "--teachers_per_level", "1,2",
                  "--num_train_epochs", "1", "--student_image_size", "32", "--disable_tqdm", "True",
                  "--compare_label_types", "False", "--student_mode", "full", "--per_device_train_batch_size", "32",
                  "--output_dir", str(out)])
    from csl_hf.models import resolve_student_name_or_path

    pretrained = AutoModelForImageClassification.from_pretrained(resolve_student_name_or_path("efficientnet-lite0"))
    for level in (0, 1):
        student = AutoModelForImageClassification.from_pretrained(out / f"round-{level}")
        stem = "efficientnet_lite.stem.conv.weight"
        a, b = dict(student.named_parameters()), dict(pretrained.named_parameters())
        name = stem if stem in a else next(n for n in a if n.endswith("weight") and "classifier" not in n)
        assert not torch.equal(a[name], b[name]), "full mode must train the backbone too"
    report = json.loads((out / "csl_report.json").read_text())
    assert [r["num_teachers"] for r in report["rounds"]] == [1, 2] and report["config"]["student_mode"] == "full"


def test_user_multi_domain_image_folder_gets_domain_specialists(tmp_path):
    """A folder laid out domain/class/image: the teachers are a generalist plus one specialist per domain, and the
    specialist round routes by agreement."""
    import numpy as np

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for d, domain in enumerate(("photo", "sketch")):
        for c, cls in enumerate(("cat", "dog", "fox")):
            folder = root / domain / cls
            folder.mkdir(parents=True)
            for i in range(16):
                pixels = rng.integers(0, 60, (20, 20), dtype=np.uint8) + 60 * c + 30 * d
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    report = run_csl.main(["--dataset_name", str(root), "--teacher_size", "30", "--test_size", "30",
                           "--teacher_steps", "3", "--num_train_epochs", "1", "--student_image_size", "32",
                           "--disable_tqdm", "True", "--compare_label_types", "False", "--output_dir", str(out)])
    cache = json.loads((out / "cache" / "cache.json").read_text())
    assert cache["specialties"][1:] == [{"domain": "photo"}, {"domain": "sketch"}]
    assert cache["domain_names"] == ["photo", "sketch"] and cache["id2label"] == {"0": "cat", "1": "dog", "2": "fox"}
    assert [r["assignment"] for r in report["rounds"]] == ["none", "agreement"]
    assert 0.0 <= report["rounds"][1]["assignment_accuracy"] <= 1.0


def _tiny_vit_student(path, id2label):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                intermediate_size=64, image_size=16, patch_size=8, id2label=id2label))
    model.save_pretrained(path)
    from csl_hf.data.preprocessing import Preprocessing

    Preprocessing(size=(16, 16)).to_image_processor().save_pretrained(path)


def _run_with_vit_student(tmp_path, seed, *extra):
    """Two levels on a small cache with a saved tiny ViT student; returns (cache, output_dir)."""
    cache = make_cache(n=300, dim=32, seed=seed)
    cache.save(tmp_path / "cache")
    _tiny_vit_student(tmp_path / "student", cache.id2label)
    out = tmp_path / "out"
    run_csl.main(["--cache_dir", str(tmp_path / "cache"), "--student_model_name_or_path", str(tmp_path / "student"),
                  "--output_dir", str(out), "--num_train_epochs", "1", "--disable_tqdm", "True",
                  "--compare_label_types", "False", "--max_levels", "2", *extra])
    return cache, out


def test_report_to_tensorboard_logs_rounds_on_the_run_step_axis_with_the_level_as_a_value(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_cache(n=300, seed=8).save(tmp_path / "cache")
    out = tmp_path / "out"
    report = run_csl.main(["--cache_dir", str(tmp_path / "cache"), "--output_dir", str(out), "--num_train_epochs", "1",
                           "--disable_tqdm", "True", "--compare_label_types", "False", "--report_to", "tensorboard"])
    runs = [os.path.join(d, "") for d, _, files in os.walk(out / "runs") if any("tfevents" in f for f in files)]
    assert len(runs) == 1
    events = EventAccumulator(runs[0]).Reload()
    scalars = events.Scalars("train/csl/student_accuracy")  # the Trainer prefixes logged metrics with train/
    levels = events.Scalars("train/csl/level")
    losses = events.Scalars("train/loss") if "train/loss" in events.Tags()["scalars"] else []
    # One curve per metric on the run-wide step axis: each round logs once its phase is done, at the step the run
    # has reached (after the ceiling and every phase before it), so the steps grow with the levels.
    steps = [s.step for s in scalars]
    assert steps == sorted(steps) and len(set(steps)) == 3 and steps[0] > 0
    assert [s.step for s in levels] == steps and [s.value for s in levels] == [0, 1, 2]
    assert all(loss.step <= steps[-1] for loss in losses)
    assert [round(s.value, 5) for s in scalars] == [round(r["student_accuracy"], 5) for r in report["rounds"]]


def test_push_to_hub_sends_rounds_to_branches(tmp_path, local_hub):
    _, out = _run_with_vit_student(tmp_path, 9, "--push_to_hub", "True", "--hub_model_id", "stub-user/csl-tiny")
    assert local_hub.branches("stub-user/csl-tiny") == {"main", "round-0", "round-1"}
    for revision, local in (("round-0", out / "round-0"), ("round-1", out / "round-1"), ("main", out)):
        remote = AutoModelForImageClassification.from_pretrained("stub-user/csl-tiny", revision=revision)
        here = AutoModelForImageClassification.from_pretrained(local)
        assert torch.equal(remote.classifier.weight, here.classifier.weight)
    for level in (0, 1):  # a round branch holds exactly its folder (plus the Hub's .gitattributes)
        folder = out / f"round-{level}"
        expected = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} | {".gitattributes"}
        assert local_hub.files("stub-user/csl-tiny", f"round-{level}") == expected
    files = local_hub.files("stub-user/csl-tiny")  # main
    assert {"README.md", "csl_report.json", "model.safetensors", "config.json"} <= files
    assert not any("/" in f for f in files)  # top-level files only: no round-*/, cache/, teachers/


def test_vit_round_checkpoints_load_without_csl_hf(tmp_path):
    """A ViT student's rounds are plain transformers checkpoints: a fresh interpreter that never imports csl_hf
    loads them with pipeline(), with the label names and the processor."""
    cache, out = _run_with_vit_student(tmp_path, 10)
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "from transformers import pipeline\n"
        f"p = pipeline('image-classification', model={str(out / 'round-1')!r})\n"
        "labels = [r['label'] for r in p(Image.new('RGB', (16, 16)), top_k=6)]\n"
        "assert 'csl_hf' not in sys.modules, 'csl_hf was imported'\n"
        "print(sorted(labels))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(sorted(cache.id2label.values()))


HELP_OF_EVERY_SCRIPT = r"""
import contextlib, io, json, runpy, sys
out = {}
for path in json.loads(sys.argv[1]):
    sys.argv = [path, "--help"]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        runpy.run_path(path, run_name="__main__")
    out[path] = buffer.getvalue()
print(json.dumps(out))
"""


def test_every_script_that_speaks_of_pgr_defines_it_in_its_help():
    # A reader of any --help that uses the number meets its definition first (or is told where it is).
    scripts = sorted(str(p) for d in ("examples", "benchmarks") for p in Path(ROOT, d).glob("*.py")
                     if "PGR" in p.read_text(encoding="utf-8") and "__main__" in p.read_text(encoding="utf-8"))
    done = subprocess.run([sys.executable, "-c", HELP_OF_EVERY_SCRIPT, json.dumps(scripts)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    helps = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(helps) == scripts
    for script, help_text in helps.items():
        text = " ".join(help_text.split())
        assert text.startswith("usage:"), (script, text[:200])
        if "PGR" in text:  # "PGR, the performance gap recovered" or "performance gap recovered (PGR)"
            definition = text.find("performance gap recovered")
            assert 0 <= definition <= text.index("PGR") + 10, (script, text[:800])
