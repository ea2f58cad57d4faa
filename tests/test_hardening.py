"""Hardening: every input a user can get wrong fails early with one line naming the problem and the fix (no
traceback, exit code 2 from the CLI), and an interrupted run leaves the previous checkpoints loadable.

CLI cases run `examples/run_csl.cli` in-process (the same code as ``python examples/run_csl.py``: `main` inside a
`CSLError` -> ``error: ...`` on stderr, return 2); one real subprocess checks the script end to end.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from synthetic import make_cache
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, TeacherMixture, load_student
from csl_hf.data import load_image_folder
from csl_hf.errors import CSLError
from csl_hf.cache.labeling import build_cache
from csl_hf.data.preprocessing import Preprocessing

from scripts import ROOT, run_csl

PICKLE_MESSAGE = ("holds pickled weights (pytorch_model.bin); convert them to safetensors or pass "
                  "--allow_pickle_weights if you trust the file")


def tiny_vit(id2label, hidden=16, seed=0):
    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=32, image_size=16, patch_size=8, id2label=id2label))


def run_cli(capsys, *argv):
    capsys.readouterr()  # drop what the test itself printed (progress bars of save_pretrained)
    rc = run_csl.cli([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip()


def assert_one_line_error(rc, err, *words, progress_bars=False):
    """Exit code 2 and one ``error:`` line; with ``progress_bars`` the line may follow progress output."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    if progress_bars:  # loading an image folder or a model draws progress bars before the error
        assert all("error" not in line for line in lines[:-1]), err
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in err, (word, err)


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory):
    cache = make_cache(n=120)
    path = tmp_path_factory.mktemp("caches") / "good"
    cache.save(path)
    return cache, path


def _bad_cache(tmp_path, mutate):
    cache = make_cache(n=60)
    tensors = {"features": cache.features, "labels": cache.labels, "split": cache.split,
               "teacher_probs": cache.teacher_probs}
    meta = cache.metadata()
    mutate(tensors, meta)
    d = tmp_path / "bad"
    d.mkdir()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "cache.safetensors"))
    (d / "cache.json").write_text(json.dumps(meta))
    return d


# ------------------------------------------------------------------------------------------------ caches, via the CLI
BAD_CACHES = {
    "missing tensor": (lambda t, m: t.pop("split"), ["'split'"]),
    "wrong shape": (lambda t, m: t.update(features=t["features"][:, :, None]), ["'features'", "[N, D]"]),
    "wrong dtype": (lambda t, m: t.update(labels=t["labels"].float()), ["'labels'", "int64"]),
    "nan": (lambda t, m: t["features"].__setitem__((0, 0), float("nan")), ["NaN or Inf"]),
    "inf probs": (lambda t, m: t["teacher_probs"].__setitem__((0, 0, 0), float("inf")), ["NaN or Inf"]),
    "label out of range": (lambda t, m: t["labels"].__setitem__(0, 6), ["outside [-1, 5]"]),
    "logits": (lambda t, m: t.update(teacher_probs=torch.randn_like(t["teacher_probs"])), ["logits", "softmax"]),
    "missing teacher": (lambda t, m: m.update(levels=[[0], [1, 2], [3, 4, 9]]), ["teacher 9"]),
    "overlap": (lambda t, m: m["specialties"].__setitem__(2, {"classes": [0, 3, 4, 5]}), ["overlap"]),
    "uncovered": (lambda t, m: m["specialties"].__setitem__(2, {"classes": [4, 5]}), ["uncovered"]),
    "empty train": (lambda t, m: t.update(split=torch.ones_like(t["split"])), ["training split is empty"]),
    "empty test": (lambda t, m: t.update(split=torch.zeros_like(t["split"])), ["test split is empty"]),
}


@pytest.mark.parametrize("case", list(BAD_CACHES))
def test_bad_cache_is_one_line_and_writes_nothing(tmp_path, capsys, case):
    mutate, words = BAD_CACHES[case]
    bad = _bad_cache(tmp_path, mutate)
    out = tmp_path / "out"
    rc, err = run_cli(capsys, "--cache_dir", bad, "--output_dir", out)
    assert_one_line_error(rc, err, *words)
    assert not out.exists() or not any(out.iterdir())


def test_script_prints_one_line_and_exits_2(tmp_path):
    """The real script, once: exit code 2, one ``error:`` line, no traceback, no output directory."""
    bad = _bad_cache(tmp_path, BAD_CACHES["logits"][0])
    env = {**os.environ, "PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "examples/run_csl.py", "--cache_dir", str(bad), "--output_dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr.strip(), "logits")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ flags
@pytest.mark.parametrize("argv, words", [
    (["--denoise", "top9"], ["--denoise", "top9", "top3"]),
    (["--assignment", "random"], ["--assignment", "random", "agreement"]),
    (["--on_bad_image", "maybe"], ["--on_bad_image", "skip"]),
    (["--denoisee", "top1"], ["--denoisee", "--help"]),
])
def test_bad_flags_are_one_line(tmp_path, capsys, good_cache, argv, words):
    rc, err = run_cli(capsys, "--cache_dir", good_cache[1], "--output_dir", tmp_path / "out", *argv)
    assert_one_line_error(rc, err, *words)


def test_output_dir_with_another_run_is_refused(tmp_path, capsys, good_cache):
    out = tmp_path / "out"
    out.mkdir()
    (out / "csl_report.json").write_text('{"previous": true}')
    rc, err = run_cli(capsys, "--cache_dir", good_cache[1], "--output_dir", out)
    assert_one_line_error(rc, err, "holds a finished run", "--overwrite_output_dir")
    assert (out / "csl_report.json").read_text() == '{"previous": true}' and len(list(out.iterdir())) == 1


# ------------------------------------------------------------------------------------------------ label spaces, weights
def test_student_with_other_label_names_is_refused(tmp_path, capsys, good_cache):
    cache, path = good_cache
    names = {i: f"animal_{i}" for i in range(cache.num_labels)}  # same count, other names
    tiny_vit(names).save_pretrained(tmp_path / "student")
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(tmp_path / "student")
    rc, err = run_cli(capsys, "--cache_dir", path, "--output_dir", tmp_path / "out",
                      "--student_model_name_or_path", tmp_path / "student")
    assert_one_line_error(rc, err, "other names", "'animal_0'", "'class_0'", "cache.json")
    # Generic LABEL_i names carry no label space: the head is simply renamed to the cache's labels.
    tiny_vit({i: f"LABEL_{i}" for i in range(cache.num_labels)}).save_pretrained(tmp_path / "generic")
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(tmp_path / "generic")
    student, _ = load_student(str(tmp_path / "generic"), cache.id2label)
    assert student.config.id2label == cache.id2label


def _pickled_checkpoint(directory, id2label):
    model = tiny_vit(id2label)
    model.config.save_pretrained(directory)
    torch.save(model.state_dict(), os.path.join(directory, "pytorch_model.bin"))
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(directory)
    return model


def test_pickled_weights_need_a_flag(tmp_path, capsys, good_cache):
    cache, path = good_cache
    pickled = tmp_path / "pickled"
    model = _pickled_checkpoint(pickled, cache.id2label)
    rc, err = run_cli(capsys, "--cache_dir", path, "--output_dir", tmp_path / "out",
                      "--student_model_name_or_path", pickled)
    assert_one_line_error(rc, err, f"{pickled} {PICKLE_MESSAGE}")
    student, _ = load_student(str(pickled), cache.id2label, allow_pickle_weights=True)
    assert torch.equal(student.classifier.weight, model.classifier.weight)


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of good images, plus (in class b) a corrupt PNG and a 1x1 PNG; RGBA and L images are good."""
    root = tmp_path / "images"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (20, 20), (40 * i, 0, 0)).save(root / "a" / f"rgb{i}.png")
        Image.new("RGB", (20, 20), (0, 40 * i, 0)).save(root / "b" / f"rgb{i}.png")
    Image.new("RGBA", (20, 20), (0, 0, 200, 100)).save(root / "a" / "rgba.png")
    Image.new("L", (20, 20), 128).save(root / "b" / "grey.png")
    (root / "b" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)
    Image.new("RGB", (1, 1)).save(root / "b" / "tiny.png")
    return root


def test_teachers_with_other_labels_or_pickled_weights_are_refused(tmp_path, capsys, image_folder):
    id2label = {0: "cat", 1: "dog"}
    mixture = TeacherMixture.from_teachers([tiny_vit(id2label)], [{"classes": [0, 1]}], [[0]], teacher_names=["g"])
    mixture.save_pretrained(tmp_path / "teachers")
    common = ["--dataset_name", image_folder, "--teacher_size", 2, "--test_size", 4, "--output_dir", tmp_path / "out"]
    rc, err = run_cli(capsys, *common, "--teachers_name_or_path", tmp_path / "teachers")
    assert_one_line_error(rc, err, "other labels", "'cat'", "'a'", "train teachers on this dataset",
                          progress_bars=True)
    pickled = tmp_path / "pickled_teachers"
    pickled.mkdir()
    mixture.config.save_pretrained(pickled)
    torch.save(mixture.state_dict(), pickled / "pytorch_model.bin")
    rc, err = run_cli(capsys, *common, "--teachers_name_or_path", pickled)
    assert_one_line_error(rc, err, f"{pickled} {PICKLE_MESSAGE}", progress_bars=True)
    rc, err = run_cli(capsys, "--dataset_name", tmp_path / "nowhere", "--output_dir", tmp_path / "out")
    assert_one_line_error(rc, err, "does not exist", "image folder")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ bad images
def _labeling_models():
    id2label = {0: "a", 1: "b"}
    teachers = TeacherMixture.from_teachers([tiny_vit(id2label, seed=1)], [{"classes": [0, 1]}], [[0]],
                                            teacher_names=["g"], preprocessing=[Preprocessing(size=(16, 16))])
    return teachers, tiny_vit(id2label, seed=2)


@pytest.mark.parametrize("streaming", [False, True])
def test_bad_images_are_skipped_and_counted_or_fail(image_folder, streaming):
    teachers, student = _labeling_models()
    pre = Preprocessing(size=(16, 16))

    def splits():
        return {"train": load_image_folder(image_folder, streaming=streaming),
                "test": load_image_folder(image_folder, streaming=streaming)}

    cache, stats = build_cache(splits(), teachers, student, pre, batch_size=4, show_progress=False)
    # The corrupt and the 1x1 image are skipped in each split; the RGBA and the greyscale image are labeled.
    assert stats.skipped == {"train": 2, "test": 2} and stats.labeled == {"train": 8, "test": 8}
    assert cache.num_samples == 16 and cache.features.shape == (16, 16)
    with pytest.raises(CSLError, match="--on_bad_image skip") as err:
        build_cache(splits(), teachers, student, pre, batch_size=4, on_bad_image="fail", show_progress=False)
    message = str(err.value)
    assert "\n" not in message and ("corrupt image" in message or "too small" in message)
    assert ("corrupt.png" in message) or ("tiny.png" in message)


# ------------------------------------------------------------------------------------------------ interrupted runs
def rounds(out):
    """The round entries of an output directory, temporaries (round-1.tmp, round-0.old) included."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith("round-"))


def test_failed_checkpoint_write_keeps_the_previous_round(tmp_path, monkeypatch):
    cache = make_cache(n=300)
    out = tmp_path / "out"

    def trainer(**kwargs):
        args = CoSupervisedConfig(output_dir=str(out), num_train_epochs=1, learning_rate=1e-2, disable_tqdm=True,
                                  max_levels=2, run_ceiling=False, **kwargs)
        return CoSupervisedTrainer(args=args, cache=cache)

    real_replace = os.replace

    def failing_replace(failing):
        def replace(src, dst, *a, **k):  # a round is built in ".round-{level}.tmp-*", then renamed into place
            if os.path.basename(os.fspath(src)).startswith(f".{failing}"):
                raise OSError(28, "No space left on device")
            return real_replace(src, dst, *a, **k)
        return replace

    # 1. The disk fills up while round 1 is renamed into place: round 0 stays whole, no temporary is left.
    monkeypatch.setattr(os, "replace", failing_replace("round-1.tmp"))
    with pytest.raises(OSError, match="No space"):
        trainer().train()
    assert rounds(out) == ["round-0"]
    head0 = load_file(out / "round-0" / "probe_head.safetensors")
    assert head0["weight"].shape == (cache.num_labels, cache.feature_dim)

    # 2. A rerun (allowed to overwrite) fails replacing round 0: the previous round 0 is put back unchanged.
    monkeypatch.setattr(os, "replace", failing_replace("round-0.tmp"))
    with pytest.raises(OSError):
        trainer(overwrite_output_dir=True, seed=5).train()
    assert rounds(out) == ["round-0"]
    assert torch.equal(load_file(out / "round-0" / "probe_head.safetensors")["weight"], head0["weight"])

    # 3. With the disk back, a rerun completes over the leftovers.
    monkeypatch.setattr(os, "replace", real_replace)
    done = trainer(overwrite_output_dir=True)
    done.train()
    assert len(done.report["rounds"]) == 2
    assert rounds(out) == ["round-0", "round-1"] and (out / "csl_report.json").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary or set-aside copy left


def test_a_failed_labeling_pass_leaves_no_run_behind(tmp_path, capsys, image_folder):
    """--on_bad_image fail stops at the corrupt image before anything is saved: the same command then runs with
    --on_bad_image skip into the same directory, no --overwrite_output_dir needed."""
    out = tmp_path / "out"
    common = ["--dataset_name", image_folder, "--teacher_size", 2, "--test_size", 4, "--teachers_per_level", "1",
              "--teacher_steps", 1, "--num_train_epochs", 1, "--student_image_size", 32, "--compare_label_types",
              "False", "--disable_tqdm", "True", "--output_dir", out]
    rc, err = run_cli(capsys, *common, "--on_bad_image", "fail")
    assert_one_line_error(rc, err, "--on_bad_image skip", progress_bars=True)
    assert not out.exists() or not {"teachers", "cache", "csl_report.json"} & {p.name for p in out.iterdir()}
    rc, err = run_cli(capsys, *common, "--on_bad_image", "skip")
    assert rc == 0, err
    assert (out / "teachers").is_dir() and (out / "csl_report.json").is_file()
