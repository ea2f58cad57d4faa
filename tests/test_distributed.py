"""One cache whatever the number of processes: a tiny Animal-MNIST run in one process, under `accelerate launch` with
two CPU processes (gloo DDP for the rounds), and streamed, give the same cache in dataset order.

Launching: `accelerate launch --cpu --num_processes 2` starts a single process (accelerate's simple launcher only
fans out CPU processes through mpirun), so two CPU processes are launched with torchrun's launcher
(``--multi_gpu``) and the Trainer flag ``--use_cpu True`` (gloo, `DistributedType.MULTI_CPU`).

Streaming: `stream_splits` cuts a stream with a buffer shuffle, not `make_weak_to_strong_splits`' stratified
permutation, so a ``--streaming`` run labels other images than the map-style run. The streamed comparison therefore
streams the *same* splits (``to_iterable_dataset`` of the map-style run's train/test, with the run's teachers and
student) through `build_cache`; the ``--streaming`` CLI run is checked end to end on its own.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from csl_hf import CSLCache, TeacherMixture, load_student

from scripts import ROOT, run_csl

COMMON = ["--dataset_name", "animal_mnist", "--max_train_samples", "64", "--max_eval_samples", "32",
          "--teacher_size", "100", "--test_size", "100", "--teacher_steps", "2", "--teachers_per_level", "1,2",
          "--num_train_epochs", "1", "--student_image_size", "32", "--compare_label_types", "False",
          "--disable_tqdm", "True", "--seed", "3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_cache(a: CSLCache, b: CSLCache):
    assert a.num_samples == b.num_samples
    assert torch.allclose(a.features, b.features, atol=1e-4)
    assert torch.allclose(a.teacher_probs, b.teacher_probs, atol=1e-4)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.split, b.split)
    assert torch.equal(a.source_index, b.source_index)
    # The same cache, whatever the reading: only its recorded source (which dataset object) may differ.
    assert {k: v for k, v in a.metadata().items() if k != "source"} == \
        {k: v for k, v in b.metadata().items() if k != "source"}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    run_csl.main([*COMMON, "--output_dir", str(out)])
    return out


def test_two_processes_write_the_one_process_cache(one_process, tmp_path):
    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), os.path.join(ROOT, "examples", "run_csl.py"),
           *COMMON, "--use_cpu", "True", "--output_dir", str(out)]
    env = {**os.environ, "PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_cache(CSLCache.load(one_process / "cache"), CSLCache.load(out / "cache"))
    # Both ranks labeled a share; the main process alone printed and wrote the run.
    assert "labeled {'train': 64, 'test': 32}" in proc.stdout + proc.stderr
    assert proc.stdout.count("outputs:") == 1
    assert sorted(os.listdir(out / "teachers")) == [  # weights, config, card and the code the mixture ships
        "README.md", "config.json", "configuration_teacher_mixture.py", "hierarchy_rules.py", "hub_teacher_mixture.py",
        "model.safetensors", "modeling_teacher_mixture.py"]
    report = json.loads((out / "csl_report.json").read_text())
    assert [r["num_teachers"] for r in report["rounds"]] == [1, 2]
    assert (out / "round-1" / "model.safetensors").is_file() and (out / "model.safetensors").is_file()
    assert not [n for n in os.listdir(out) if n.endswith((".tmp", ".old")) or n.startswith(".")]


def test_streamed_labeling_of_the_same_splits_writes_the_same_cache(one_process):
    from csl_hf.data import cap, infer_columns, load_csl_dataset, make_weak_to_strong_splits
    from csl_hf.cache.labeling import build_cache
    from csl_hf.data.preprocessing import Preprocessing

    ref = CSLCache.load(one_process / "cache")
    dataset = load_csl_dataset("animal_mnist")
    image_col, label_col, _ = infer_columns(dataset)
    splits = make_weak_to_strong_splits(dataset, seed=3, teacher_size=100, test_size=100, stratify_by=label_col)
    train, test = cap(splits["train"], 64, seed=3), cap(splits["test"], 32, seed=3)
    teachers = TeacherMixture.from_pretrained(one_process / "teachers")
    student, _ = load_student("efficientnet-lite0", ref.id2label)
    from transformers import AutoImageProcessor

    base = Preprocessing.from_image_processor(AutoImageProcessor.from_pretrained(one_process))
    streams = {"train": train.to_iterable_dataset(num_shards=4), "test": test.to_iterable_dataset()}
    cache, stats = build_cache(streams, teachers, student, base, image_col=image_col, label_col=label_col,
                               batch_size=128, student_name="efficientnet-lite0", show_progress=False)
    assert stats.labeled == {"train": 64, "test": 32}
    assert_same_cache(ref, cache)


def test_streaming_cli_run_labels_the_same_samples(one_process, tmp_path):
    """--streaming on local data reads the very samples a map-style run with the same flags reads, lazily."""
    out = tmp_path / "stream"
    report = run_csl.main([*COMMON, "--streaming", "True", "--output_dir", str(out)])
    assert [r["num_teachers"] for r in report["rounds"]] == [1, 2]
    assert_same_cache(CSLCache.load(one_process / "cache"), CSLCache.load(out / "cache"))


def test_teachers_are_trained_on_the_main_process_only(monkeypatch, tmp_path):
    # A non-main process must not train (its teachers would differ from the main process's with any nondeterminism,
    # and the time would be spent twice): it takes what the main process broadcasts.
    import accelerate
    import accelerate.utils

    from csl_hf.teachers import TeacherTrainingArguments, train_teacher_hierarchy
    from csl_hf.teachers import training as T

    class WorkerState:
        is_main_process, num_processes = False, 2

    sent = object()

    def broadcast(box):
        box[0] = sent

    def must_not_train(*args, **kwargs):
        raise AssertionError("a non-main process trained teachers")

    monkeypatch.setattr(accelerate, "PartialState", WorkerState)
    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", broadcast)
    monkeypatch.setattr(T, "_train_independent_teachers", must_not_train)
    monkeypatch.setattr(T, "train_backbone_heads", must_not_train)
    assert train_teacher_hierarchy(None, TeacherTrainingArguments()) is sent
    assert train_teacher_hierarchy(None, TeacherTrainingArguments(teacher_backbone="tiny-convnext")) is sent


@pytest.mark.parametrize("created", ["before construction", "between construction and entry", "never"])
def test_every_process_checks_the_output_directory_as_it_is_when_entered(tmp_path, created):
    # Under a launch the main process creates the output directory while the others are starting: a process that
    # compared the path with what it had seen a moment before took the new directory for a file (exit 2 on rank 1,
    # rank 0 left waiting in the barrier). Each process now reads the path when it enters, and a real file is refused
    # on every process alike.
    from types import SimpleNamespace

    from csl_hf import CSLError
    from csl_hf.cli.output_dir import OutputDirectory

    barrier = []
    out = tmp_path / "out"
    other = SimpleNamespace(output_dir=str(out), overwrite_output_dir=False, resume_from_checkpoint=None,
                            should_save=False, distributed_state=SimpleNamespace(
                                wait_for_everyone=lambda: barrier.append(1)))
    if created == "before construction":
        out.mkdir()
    directory = OutputDirectory(other)
    if created == "between construction and entry":
        out.mkdir()
    with directory:
        pass
    assert barrier == [1]
    assert out.is_dir() == (created != "never")  # a process other than the main one creates nothing
    a_file = tmp_path / "afile"
    a_file.write_text("notes")
    with pytest.raises(CSLError, match="is a file, not a directory"):
        OutputDirectory(SimpleNamespace(**{**vars(other), "output_dir": str(a_file)})).__enter__()
    assert barrier == [1] and a_file.read_text() == "notes"
