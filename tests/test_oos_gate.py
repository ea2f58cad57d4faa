"""``--assignment oos_gate``: gate teachers (specialists that know their specialty, docs/routing_research.md §5)
from training through the mixture, the labeling pass and the cache to the rounds, and the one-line refusals."""

import dataclasses
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from synthetic import make_cache
from transformers import AutoModel, ViTConfig, ViTForImageClassification
from transformers.utils import logging as hf_logging

from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, CSLCache, Preprocessing, TeacherMixture
from csl_hf.method import rounds as R
from csl_hf.data import load_csl_dataset
from csl_hf.errors import CacheError, CSLError
from csl_hf.cache.labeling import build_cache
from csl_hf.teachers import (TeacherTrainingArguments, gate_training_rows, load_teacher_split,
                             train_teacher_hierarchy)
from csl_hf.teachers.gates import gate_seed

from scripts import run_csl
from test_trainer_api import NAMES, PREP, colour_images

hf_logging.disable_progress_bar()

GATE_PREP = Preprocessing(size=(32, 32))


def tiny_vit(seed: int, names=NAMES, size: int = 16) -> ViTForImageClassification:
    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=32, image_size=size, patch_size=8,
                                               id2label=dict(enumerate(names))))


def gated_mixture(gates: bool = True) -> TeacherMixture:
    """A generalist and specialists {red, green} | {blue, yellow}; the second gate reads 32-px inputs of its own."""
    extra = dict(gate_teachers=[tiny_vit(10, NAMES + ["other"]), tiny_vit(11, NAMES + ["other"], size=32)],
                 gate_specialists=[1, 2], gate_preprocessing=[PREP, GATE_PREP]) if gates else {}
    return TeacherMixture.from_teachers([tiny_vit(k) for k in range(3)],
                                        [{"classes": [0, 1, 2, 3]}, {"classes": [0, 1]}, {"classes": [2, 3]}],
                                        [[0], [1, 2]], preprocessing=[PREP] * 3, **extra)


def expected_in_specialty(mixture: TeacherMixture, images: torch.Tensor) -> torch.Tensor:
    """``[3, n]`` by hand: 1 for the generalist, 1 - softmax over (own classes, other) of each gate's logits."""
    out = torch.ones(3, len(images))
    with torch.no_grad():
        for gate, k, prep, own in zip(mixture.gate_teachers, [1, 2], [PREP, GATE_PREP], [[0, 1], [2, 3]]):
            logits = gate(pixel_values=prep(images)).logits[:, own + [4]]
            out[k] = 1 - logits.softmax(-1)[:, -1]
    return out


# ------------------------------------------------------------------------------------------------ the rounds
def gate_cache(in_specialty):
    cache = make_cache(n=2, num_labels=4, teachers_per_level=(1, 2))
    cache.specialties = [{"classes": [0, 1, 2, 3]}, {"classes": [0, 1]}, {"classes": [2, 3]}]
    cache.levels = [[0], [1, 2]]
    a, b = torch.tensor([0.9, 0.1, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.6, 0.4])
    cache.teacher_probs = torch.stack([torch.full((2, 4), 0.25), a.expand(2, 4), b.expand(2, 4)])
    cache.in_specialty = in_specialty
    return cache


def test_oos_gate_multiplies_the_students_mass_by_each_specialists_own_in_specialty():
    # Classes {0, 1} (A: [0.9, 0.1, 0, 0]) | {2, 3} (B: [0, 0, 0.6, 0.4]). The student's mass on A / B is 0.25 / 0.75
    # (sample 0) and 0.8 / 0.2 (sample 1); soft_gate labels them 2 and 0 (tests/test_trainer.py). The gate teachers
    # say A: 0.9, 0.1 and B: 0.1, 0.9 in-specialty, so the gate is
    #   sample 0: A 0.25 * 0.9 = 0.225, B 0.75 * 0.1 = 0.075 -> 0.75 / 0.25 -> [0.675, 0.075, 0.15, 0.1]: class 0 (A)
    #   sample 1: A 0.8 * 0.1 = 0.08, B 0.2 * 0.9 = 0.18 -> 4/13 / 9/13 -> [3.6, 0.4, 5.4, 3.6] / 13: class 2 (B)
    cache = gate_cache(torch.tensor([[1.0, 1.0], [0.9, 0.1], [0.1, 0.9]]))
    student = torch.log(torch.tensor([[0.125, 0.125, 0.375, 0.375], [0.4, 0.4, 0.1, 0.1]]))
    targets = R.plan_round(cache, 1, student, torch.arange(2), assignment="oos_gate", denoise="all", soft_labels=True)
    expected = torch.tensor([[0.675, 0.075, 0.15, 0.1], [3.6 / 13, 0.4 / 13, 5.4 / 13, 3.6 / 13]])
    torch.testing.assert_close(targets.soft_targets, expected, atol=1e-6, rtol=0)
    assert targets.target_class.tolist() == [0, 2] and targets.assignment.tolist() == [0, 1]
    assert targets.method == "oos_gate"
    hard = R.plan_round(cache, 1, student, torch.arange(2), assignment="oos_gate", denoise="all")
    assert hard.target_class.tolist() == [0, 2] and hard.soft_targets is None
    # Gates that know nothing (all in-specialty 1) are soft_gate exactly.
    cache.in_specialty = torch.ones(3, 2)
    assert R.plan_round(cache, 1, student, torch.arange(2), assignment="oos_gate",
                        denoise="all").target_class.tolist() == [2, 0]


def test_oos_gate_without_in_specialty_or_on_domains_is_one_line(tmp_path, capsys):
    cache = make_cache(n=120)
    with pytest.raises(CSLError, match="--specialty_gates") as err:
        R.plan_round(cache, 1, torch.zeros(len(cache.rows(0)), 6), cache.rows(0), assignment="oos_gate")
    assert "\n" not in str(err.value)
    args = CoSupervisedConfig(output_dir=str(tmp_path / "api"), assignment="oos_gate", disable_tqdm=True)
    with pytest.raises(CSLError, match="this cache holds no 'in_specialty'; train the teachers with --specialty_gates"):
        CoSupervisedTrainer(args=args, cache=cache)  # refused when built: nothing is trained
    with pytest.raises(CSLError, match="these teachers have no gate teachers"):
        CoSupervisedTrainer(args=args, teachers=gated_mixture(gates=False), train_dataset=colour_images(8, 0),
                            eval_dataset=colour_images(8, 1), processing_class=PREP.to_image_processor())
    domains = make_cache(n=120)
    domains.specialties = [{"classes": list(range(6))}, {"domain": "a"}, {"domain": "b"}, {"classes": [0, 1]},
                           {"classes": [2, 3]}, {"classes": [4, 5]}]
    domains.domain_names, domains.in_specialty = ["a", "b"], torch.ones(6, 120)
    with pytest.raises(CSLError, match="level 1 holds domain specialists: --assignment oos_gate"):
        CoSupervisedTrainer(args=args, cache=domains)
    # every assignment that routes by the student's classes is refused when built, not at level 1 mid-run
    for assignment in ("student", "soft_gate"):
        with pytest.raises(CSLError, match=f"level 1 holds domain specialists: --assignment {assignment} routes by"):
            CoSupervisedTrainer(args=dataclasses.replace(args, assignment=assignment), cache=domains)
    for assignment in ("agreement", "oracle", "ensemble", "auto"):
        CoSupervisedTrainer(args=dataclasses.replace(args, assignment=assignment), cache=domains)
    cache.save(tmp_path / "cache")
    capsys.readouterr()
    rc = run_csl.cli(["--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out"),
                      "--assignment", "oos_gate"])
    err = capsys.readouterr().err.strip().splitlines()  # a warning that the synthetic student does not load comes first
    assert rc == 2 and "Traceback" not in "".join(err) and [line for line in err if line.startswith("error")] == err[-1:]
    assert err[-1].startswith("error: --assignment oos_gate routes by the gate teachers' in-specialty probabilities")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_trainer_routes_by_gates_and_gates_change_nothing_else(tmp_path):
    def run(name, teachers, assignment):
        args = CoSupervisedConfig(output_dir=str(tmp_path / name), num_train_epochs=3, learning_rate=1e-2,
                                  disable_tqdm=True, report_to="none", seed=1, assignment=assignment)
        trainer = CoSupervisedTrainer(model=tiny_vit(7), teachers=teachers, args=args,
                                      train_dataset=colour_images(60, 0), eval_dataset=colour_images(30, 1),
                                      processing_class=PREP.to_image_processor())
        trainer.train()
        return trainer

    gated = run("gated", gated_mixture(), "oos_gate")
    assert [r["assignment"] for r in gated.report["rounds"]] == ["none", "oos_gate"]
    assert gated.report["config"]["assignment"] == "oos_gate"
    assert CSLCache.load(tmp_path / "gated" / "cache").in_specialty.shape == (3, 90)
    # The same teachers with gates, routed by `student`, train exactly what they train without gates.
    with_gates, without = run("student", gated_mixture(), "student"), run("plain", gated_mixture(False), "student")
    assert with_gates.report["rounds"] == without.report["rounds"]


# ------------------------------------------------------------------------------------------------ the cache
def test_cache_round_trip_keeps_in_specialty_dense_and_compact(tmp_path):
    cache = make_cache(n=50)
    cache.in_specialty = torch.rand(6, 50, generator=torch.Generator().manual_seed(0))
    cache.save(tmp_path / "dense")
    assert load_file(tmp_path / "dense" / "cache.safetensors")["in_specialty"].shape == (6, 50)
    back = CSLCache.load(tmp_path / "dense")
    assert torch.equal(back.in_specialty, cache.in_specialty)
    assert torch.equal(back.in_specialty_of([1, 2], torch.tensor([3, 7])), cache.in_specialty[[1, 2]][:, [3, 7]])
    cache.to_compact(2).save(tmp_path / "compact")
    compact = CSLCache.load(tmp_path / "compact")
    assert compact.in_specialty.dtype == torch.float16
    torch.testing.assert_close(compact.in_specialty.float(), cache.in_specialty, atol=1e-3, rtol=0)
    assert CSLCache.load(tmp_path / "dense").in_specialty is not None
    make_cache(n=50).save(tmp_path / "plain")  # a cache without gates has no such tensor and loads as before
    assert "in_specialty" not in load_file(tmp_path / "plain" / "cache.safetensors")
    assert CSLCache.load(tmp_path / "plain").in_specialty is None
    for bad, message in ((torch.rand(5, 50), r"\[K=6, N=50\]"), (torch.full((6, 50), 2.0), r"\[0, 1\]")):
        cache.in_specialty = bad
        with pytest.raises(CacheError, match=message):
            cache.validate()


# ------------------------------------------------------------------------------------------------ the mixture
def test_mixture_with_gates_outputs_in_specialty_and_round_trips(tmp_path):
    mixture = gated_mixture()
    images = torch.randint(0, 256, (5, 3, 20, 20), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        out = mixture(pixel_values_per_teacher=[PREP(images)] * 3,
                      pixel_values_per_gate=[PREP(images), GATE_PREP(images)])
    torch.testing.assert_close(out.in_specialty, expected_in_specialty(mixture, images).T)
    assert out.probs.shape == (5, 3, 4) and mixture.gate_preprocessings() == [PREP, GATE_PREP]
    mixture.save_pretrained(tmp_path)
    back = AutoModel.from_pretrained(tmp_path)
    assert back.has_gates and back.config.gate_specialists == [1, 2] and back.gate_preprocessings() == [PREP, GATE_PREP]
    ref, got = mixture.state_dict(), back.state_dict()
    assert ref.keys() == got.keys() and any(k.startswith("gate_teachers.") for k in ref)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    # A mixture without gates (every checkpoint before gates): no gate weights, no in_specialty, outputs unchanged.
    plain = gated_mixture(gates=False)
    plain.save_pretrained(tmp_path / "plain")
    old = AutoModel.from_pretrained(tmp_path / "plain")
    assert not old.has_gates and not any(k.startswith("gate_") for k in old.state_dict())
    with torch.no_grad():
        result = old(pixel_values=PREP(images))
    assert result.in_specialty is None and len(result.to_tuple()) == 2
    assert torch.equal(result.probs, out.probs)  # the same teachers give the same probabilities, gates or not
    with pytest.raises(CSLError, match="not a class specialist"):
        TeacherMixture.from_teachers([tiny_vit(k) for k in range(3)], plain.config.specialties, plain.config.levels,
                                     gate_teachers=[tiny_vit(10, NAMES + ["other"])], gate_specialists=[0])
    with pytest.raises(CSLError, match="plus 'out of specialty' last"):
        TeacherMixture.from_teachers([tiny_vit(k) for k in range(3)], plain.config.specialties, plain.config.levels,
                                     gate_teachers=[tiny_vit(10)], gate_specialists=[1])


# ------------------------------------------------------------------------------------------------ labeling
def test_labeling_writes_in_specialty_on_every_path(monkeypatch):
    mixture, student = gated_mixture(), tiny_vit(7)
    splits = {"train": colour_images(12, 0), "test": colour_images(6, 1)}
    cache, _ = build_cache(splits, mixture, student, PREP, batch_size=5, show_progress=False)
    images = torch.stack([torch.as_tensor(np.array(im)).permute(2, 0, 1)
                          for split in ("train", "test") for im in splits[split]["image"]])
    torch.testing.assert_close(cache.in_specialty, expected_in_specialty(mixture, images))
    streams = {k: v.to_iterable_dataset(num_shards=2) for k, v in splits.items()}
    streamed, _ = build_cache(streams, mixture, student, PREP, batch_size=5, show_progress=False)
    assert torch.equal(streamed.in_specialty, cache.in_specialty)
    # Two processes: each labels its shard, `_gather` joins them (gather_object replayed from the other process).
    import accelerate.utils

    class State:
        def __init__(self, rank):
            self.device, self.num_processes, self.process_index, self.is_main_process = "cpu", 2, rank, rank == 0

    sent = []
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda obj: sent.append(obj[0]) or obj)
    build_cache(splits, mixture, student, PREP, batch_size=5, show_progress=False, accelerator=State(1))
    replies = iter(sent)
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda obj: [obj[0], next(replies)])
    gathered, _ = build_cache(splits, mixture, student, PREP, batch_size=5, show_progress=False, accelerator=State(0))
    torch.testing.assert_close(gathered.in_specialty, cache.in_specialty)  # other batches: float rounding only
    plain, _ = build_cache(splits, gated_mixture(gates=False), student, PREP, batch_size=5, show_progress=False)
    assert plain.in_specialty is None and torch.equal(plain.teacher_probs, cache.teacher_probs)


def test_the_labeling_fingerprint_tells_teachers_with_and_without_gates_apart():
    from csl_hf.data.source import ImageSource
    from csl_hf.cache.reuse import labeling_fingerprint

    images = ImageSource.from_datasets(colour_images(8, 0), colour_images(8, 1), PREP.to_image_processor(),
                                       teachers=gated_mixture())
    gated, plain = (labeling_fingerprint(images, m, tiny_vit(7), None) for m in (gated_mixture(), gated_mixture(False)))
    assert gated["teachers"] != plain["teachers"] and gated["gate_teachers"] == 2 and "gate_teachers" not in plain
    # Unset gate fields are left out of the hash: a mixture without gates hashes as before gates existed.
    from csl_hf.cache.reuse import _teachers_config

    assert not any(k.startswith("gate_") for k in _teachers_config(gated_mixture(False)))


def test_teachers_fingerprint_the_same_after_save_and_load(tmp_path):
    # A resume loads the teachers the run saved: their cache must be reused, not labeled again.
    from csl_hf import TeacherMixture
    from csl_hf.cache.reuse import teachers_fingerprint

    for gates in (False, True):
        mixture = gated_mixture(gates)
        before = teachers_fingerprint(mixture)
        mixture.save_pretrained(tmp_path / str(gates))
        assert teachers_fingerprint(TeacherMixture.from_pretrained(tmp_path / str(gates))) == before
        assert teachers_fingerprint(mixture) == before  # saving changes nothing either


@pytest.mark.parametrize("num_classes, gates", [(10, True), (12, False), (23, True)])
def test_teachers_fingerprint_the_same_after_save_and_load_from_eleven_labels_on(tmp_path, num_classes, gates):
    # From 11 labels on (10 classes and a gate's "other", or 12 classes), sorted int keys (2, 10) and the sorted
    # string keys a loaded config has ("10", "2") came out in other orders: every resume relabeled its whole cache.
    from csl_hf import TeacherMixture
    from csl_hf.cache.reuse import teachers_fingerprint

    names = [f"class {i}" for i in range(num_classes)]
    half = num_classes // 2
    specialties = [{"classes": list(range(num_classes))}, {"classes": list(range(half))},
                   {"classes": list(range(half, num_classes))}]
    extra = dict(gate_teachers=[tiny_vit(10 + g, names + ["other"]) for g in range(2)], gate_specialists=[1, 2],
                 gate_preprocessing=[PREP, PREP]) if gates else {}
    mixture = TeacherMixture.from_teachers([tiny_vit(k, names) for k in range(3)], specialties, [[0], [1, 2]],
                                           preprocessing=[PREP] * 3, **extra)
    before = teachers_fingerprint(mixture)
    mixture.save_pretrained(tmp_path)
    assert teachers_fingerprint(TeacherMixture.from_pretrained(tmp_path)) == before


# ------------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def animal_small():
    return load_csl_dataset("animal_mnist").shuffle(seed=0).select(range(200))


def test_gate_training_rows_oversample_the_specialty():
    # 3 of 8 images are in {0, 1}: they are listed round(5 / 3) = 2 times, the 5 others once, as "other" (4).
    rows, targets = gate_training_rows(torch.tensor([0, 0, 1, 2, 2, 2, 3, 3]), [0, 1], 4)
    assert rows.tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7]
    assert targets.tolist() == [0, 0, 1, 4, 4, 4, 4, 4]


def test_specialty_gates_train_one_gate_per_class_specialist(animal_small, tmp_path):
    fast = dict(teachers_per_level="1,2,5", teacher_steps=5, teacher_batch_size=16, specialties="blocks")
    plain = train_teacher_hierarchy(animal_small, TeacherTrainingArguments(**fast))
    args = TeacherTrainingArguments(specialty_gates=True, **fast)
    gated = train_teacher_hierarchy(animal_small, args)
    assert gated.config.gate_specialists == [1, 2, 3, 4, 5, 6, 7] and gated.config.num_teachers == 8
    assert gated.gate_teachers[0].config.num_labels == 11 and gated.gate_teachers[0].config.id2label[10] == \
        "<out of specialty>"
    # The teachers are exactly those trained without gates; the gates are seeded apart from every teacher.
    ref = plain.state_dict()
    assert all(torch.equal(ref[k], gated.state_dict()[k]) for k in ref)
    assert [gate_seed(args, 8, g) for g in range(7)] == list(range(8, 15))
    again = train_teacher_hierarchy(animal_small, args).state_dict()
    assert all(torch.equal(v, again[k]) for k, v in gated.state_dict().items())
    x = load_teacher_split(animal_small.select(range(6)), gated.preprocessings()[0]).pixel_values
    with torch.no_grad():
        inside = gated(pixel_values=x).in_specialty
    assert inside.shape == (6, 8) and torch.all(inside[:, 0] == 1) and torch.all(((inside > 0) & (inside < 1))[:, 1:])
    with pytest.raises(CSLError, match="--specialty_gates gates class specialists"):
        TeacherTrainingArguments(specialty_gates=True, teacher_domain_level=True)


def test_run_trains_gates_for_oos_gate_and_refuses_saved_teachers_without(tmp_path, capsys):
    data = ["--dataset_name", "animal_mnist", "--max_train_samples", "200", "--max_eval_samples", "100",
            "--teacher_size", "200", "--test_size", "200", "--num_train_epochs", "1", "--student_image_size", "32",
            "--disable_tqdm", "True", "--compare_label_types", "False", "--baselines", "none"]
    common = [*data, "--teacher_steps", "4", "--teachers_per_level", "1,2"]
    report = run_csl.main([*common, "--output_dir", str(tmp_path / "gated"), "--assignment", "oos_gate"])
    assert [r["assignment"] for r in report["rounds"]] == ["none", "oos_gate"]
    assert TeacherMixture.from_pretrained(tmp_path / "gated" / "teachers").config.gate_specialists == [1, 2]
    cache = CSLCache.load(tmp_path / "gated" / "cache")
    assert cache.in_specialty.shape == (3, cache.num_samples) and torch.all(cache.in_specialty[0] == 1)
    run_csl.main([*common, "--output_dir", str(tmp_path / "plain"), "--assignment", "student"])
    plain = TeacherMixture.from_pretrained(tmp_path / "plain" / "teachers")
    assert not plain.has_gates  # the paper's rule trains no gate teacher
    # The default (auto) trains them and routes class levels by them; the teachers themselves are the same.
    default = run_csl.main([*common, "--output_dir", str(tmp_path / "default")])
    assert [r["assignment"] for r in default["rounds"]] == ["none", "oos_gate"]
    gated_default = TeacherMixture.from_pretrained(tmp_path / "default" / "teachers")
    assert gated_default.config.gate_specialists == [1, 2]
    assert all(torch.equal(v, gated_default.teachers[k].state_dict()[name])
               for k, teacher in enumerate(plain.teachers) for name, v in teacher.state_dict().items())
    # auto with saved teachers that have no gate teachers: the student routes, as the paper's rule.
    reused = run_csl.main([*data, "--output_dir", str(tmp_path / "auto_plain"),
                           "--teachers_name_or_path", str(tmp_path / "plain" / "teachers")])
    assert [r["assignment"] for r in reused["rounds"]] == ["none", "student"]
    capsys.readouterr()
    # auto with saved teachers that have gate teachers: they route, and the log says so before the rounds
    routed = run_csl.main([*data, "--output_dir", str(tmp_path / "auto_gated"),
                           "--teachers_name_or_path", str(tmp_path / "default" / "teachers")])
    assert [r["assignment"] for r in routed["rounds"]] == ["none", "oos_gate"]
    assert "have gate teachers, which class levels route by (oos_gate" in capsys.readouterr().err
    rc = run_csl.cli([*data, "--output_dir", str(tmp_path / "reuse"), "--assignment", "oos_gate",
                      "--teachers_name_or_path", str(tmp_path / "plain" / "teachers")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err and err.splitlines()[-1].startswith("error: --assignment oos_gate"), err
    assert "--specialty_gates" in err


def test_auto_trains_gate_teachers_only_where_class_specialists_can_have_them():
    # The command line's default (auto) adds gate teachers to a class hierarchy of independent teachers; domain
    # specialists, heads on one backbone and a hierarchy without a specialist level get none (and auto routes them as
    # before: agreement, or the student).
    from types import SimpleNamespace

    from csl_hf.cli.steps import gates_possible

    ten = [str(c) for c in range(10)]
    classes, domains = SimpleNamespace(domain_column=None, class_names=ten), \
        SimpleNamespace(domain_column="domain", class_names=ten)
    assert gates_possible(TeacherTrainingArguments(teachers_per_level="1,2,4,5"), classes)
    assert not gates_possible(TeacherTrainingArguments(teachers_per_level="1,2,4,5"), domains)
    assert not gates_possible(TeacherTrainingArguments(teachers_per_level="1"), classes)
    # 'auto' is read against the classes (it was parsed as integers: a ValueError traceback under the default)
    assert gates_possible(TeacherTrainingArguments(teachers_per_level="auto"), classes)
    assert not gates_possible(TeacherTrainingArguments(teachers_per_level="auto"),
                              SimpleNamespace(domain_column=None, class_names=["a", "b", "c"]))  # auto: 1 level
    assert not gates_possible(TeacherTrainingArguments(teachers_per_level="1,1"), classes)
    assert not gates_possible(TeacherTrainingArguments(teachers_per_level="1,2", teacher_domain_level=True), classes)
    assert not gates_possible(TeacherTrainingArguments(teachers_per_level="1,2", teacher_backbone="tiny-convnext"),
                              classes)
