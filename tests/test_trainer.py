"""CoSupervisedTrainer end to end on small caches built from a fixed generator."""

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file
from synthetic import make_cache
from transformers import AutoModelForImageClassification, TrainerCallback, ViTConfig, ViTForImageClassification

from csl_hf import CoSupervisedConfig, CoSupervisedTrainer
from csl_hf.method import consistency as C
from csl_hf.errors import CSLError


class PhaseSpy(TrainerCallback):
    """Records the level of every training phase (its ``trainer`` is set after the trainer is built); raises
    `KeyboardInterrupt` when a phase of ``crash_at_level`` begins, as Ctrl-C would."""

    def __init__(self, crash_at_level: int | None = None):
        self.trainer, self.crash_at_level, self.levels = None, crash_at_level, []

    def on_train_begin(self, args, state, control, **kwargs):
        level = self.trainer.current_phase.level
        if level == self.crash_at_level:
            raise KeyboardInterrupt(f"killed during round {level}")
        self.levels.append(level)


class NeverPredicts(TrainerCallback):
    """At the end of every phase, sets the classifier's bias so that the student never predicts class ``c``."""

    def __init__(self, c: int):
        self.c = c

    def on_train_end(self, args, state, control, model=None, **kwargs):
        bias = model.head.bias.data
        bias.zero_()
        bias[self.c] = -1e4


def run(tmp_path, cache=None, **kwargs):
    cache = cache or make_cache()
    options = dict(output_dir=str(tmp_path / "out"), num_train_epochs=4, learning_rate=1e-2, disable_tqdm=True, seed=3)
    options.update(kwargs)
    trainer = CoSupervisedTrainer(args=CoSupervisedConfig(**options), cache=cache)
    trainer.train()
    return trainer.report, trainer, cache


@pytest.fixture(scope="module")
def hard_run(tmp_path_factory):
    return run(tmp_path_factory.mktemp("hard"))


def test_report_schema_and_level0(hard_run):
    report, trainer, cache = hard_run
    on_disk = json.loads((trainer.args.output_dir + "/csl_report.json") and open(trainer.args.output_dir + "/csl_report.json").read())
    assert on_disk == report
    assert [r["level"] for r in report["rounds"]] == [0, 1, 2]
    assert [r["num_teachers"] for r in report["rounds"]] == [1, 2, 3]
    assert [r["assignment"] for r in report["rounds"]] == ["none", "student", "student"]
    level0 = report["rounds"][0]
    train, test = cache.rows(0), cache.rows(1)
    generalist = cache.teacher_probs[0]
    assert report["weak_accuracy"] == pytest.approx(float((generalist[test].argmax(-1) == cache.labels[test]).float().mean()))
    teacher_acc = float((generalist[train].argmax(-1) == cache.labels[train]).float().mean())
    assert level0["keep_rate"] == 1.0 and level0["recall"] == 1.0
    assert level0["teacher_accuracy"] == pytest.approx(teacher_acc) and level0["precision"] == pytest.approx(teacher_acc)
    for key in ("weak_accuracy", "ceiling_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    assert report["seed"] == 3 and report["config"]["denoise"] == "auto"


def test_pgr_formula(hard_run):
    report, _, _ = hard_run
    weak, ceiling = report["weak_accuracy"], report["ceiling_accuracy"]
    assert ceiling > weak
    for r in report["rounds"]:
        assert r["pgr"] == pytest.approx(100 * (r["student_accuracy"] - weak) / (ceiling - weak))


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    return run(tmp_path_factory.mktemp("paper"), denoise="top3")


@pytest.mark.parametrize("name", ["paper_run", "hard_run"])
def test_keep_rates_recomputed_from_previous_round_checkpoint(name, request):
    """Recompute each round's keep rate from the previous round's saved head: the top-3 agreement between the
    previous student and the targets of the `student` assignment (the paper's ``top3``), or the share of targets that
    their 10 nearest training samples' targets agree with (the default on class levels, ``knn``)."""
    report, trainer, cache = request.getfixturevalue(name)
    train = cache.rows(0)
    x, labels = cache.features[train], cache.labels[train]
    for level in (1, 2):
        head = load_file(f"{trainer.args.output_dir}/round-{level - 1}/probe_head.safetensors")
        logits = x @ head["weight"].T + head["bias"]
        members = cache.levels[level]
        owner = torch.zeros(cache.num_labels, dtype=torch.long)
        for i, t in enumerate(members):
            owner[cache.specialties[t]["classes"]] = i
        chosen = torch.tensor(members)[owner[logits.argmax(-1)]]
        targets = cache.teacher_probs[chosen, train].argmax(-1)
        if name == "paper_run":
            kept = (logits.topk(3, dim=-1).indices == targets[:, None]).any(-1)
        else:
            kept = C.neighbor_agreement(targets, C.nearest_neighbors(x, 10), cache.num_labels)
        r = report["rounds"][level]
        assert r["denoise"] == ("top3" if name == "paper_run" else "knn")
        assert r["keep_rate"] == pytest.approx(float(kept.float().mean()), abs=1e-6)
        assert r["num_kept"] == round(r["keep_rate"] * len(train))
        assert r["epochs"] == math.floor(4 / r["keep_rate"] + 1e-9)
        assert r["teacher_accuracy"] == pytest.approx(float((targets == labels).float().mean()))


def test_specialists_and_filter_help_on_this_data(hard_run):
    report, _, _ = hard_run
    rounds = report["rounds"]
    # The specialists' labels are more accurate and the filter raises precision above the raw label accuracy.
    assert rounds[2]["teacher_accuracy"] > rounds[0]["teacher_accuracy"]
    assert rounds[1]["precision"] > rounds[1]["teacher_accuracy"]
    assert rounds[2]["student_accuracy"] > rounds[0]["student_accuracy"]


def test_same_seed_same_report(tmp_path, hard_run):
    report, _, _ = hard_run
    again, _, _ = run(tmp_path)
    assert again["rounds"] == report["rounds"] and again["ceiling_accuracy"] == report["ceiling_accuracy"]


def test_soft_labels_and_no_filter(tmp_path):
    report, _, _ = run(tmp_path, soft_labels=True, denoise="all", max_levels=2, run_ceiling=False)
    assert len(report["rounds"]) == 2 and report["ceiling_accuracy"] is None
    assert all(r["keep_rate"] == 1.0 and r["pgr"] is None for r in report["rounds"])


def test_oracle_assignment_matches_true_blocks(tmp_path):
    report, _, _ = run(tmp_path, assignment="oracle", max_levels=2)
    r = report["rounds"][1]
    assert r["assignment"] == "oracle" and r["assignment_accuracy"] == 1.0


def test_ceiling_not_above_weak_gives_null_pgr(tmp_path):
    cache = make_cache(generalist_accuracy=1.0)  # the weak teacher is perfect: nothing to recover
    report, _, _ = run(tmp_path, cache=cache, max_levels=1)
    assert report["ceiling_accuracy"] <= report["weak_accuracy"]
    assert report["rounds"][0]["pgr"] is None


def test_empty_keep_set_is_an_error_naming_the_level(tmp_path):
    cache = make_cache(specialist_accuracy=0.0, n=300)
    # top1 with specialists that are always wrong inside their block: agreement with the student can vanish.
    cache.teacher_probs[1:] = 0
    cache.teacher_probs[1:, :, 0] = 1.0  # every specialist says class 0 ...
    cache.specialties[1] = {"classes": [0, 1, 2]}
    # ... and the previous student is made to never predict class 0 (its classifier's bias, after every phase).
    trainer = CoSupervisedTrainer(args=CoSupervisedConfig(output_dir=str(tmp_path), denoise="top1",
                                                          num_train_epochs=1, disable_tqdm=True), cache=cache,
                                  callbacks=[NeverPredicts(0)])
    with pytest.raises(CSLError, match="level 1"):
        trainer.train()


def test_vit_student_gets_the_trained_head(tmp_path):
    cache = make_cache(dim=32)
    student = ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                  intermediate_size=64, image_size=16, patch_size=8,
                                                  id2label=cache.id2label))
    trainer = CoSupervisedTrainer(model=student, cache=cache, args=CoSupervisedConfig(
        output_dir=str(tmp_path), num_train_epochs=2, learning_rate=1e-2, disable_tqdm=True, max_levels=2))
    trainer.train()
    report = trainer.report
    back = AutoModelForImageClassification.from_pretrained(tmp_path / "round-1")
    assert torch.equal(back.classifier.weight, student.classifier.weight)
    test = cache.rows(1)
    with torch.no_grad():
        acc = C.accuracy(back.classifier(cache.features[test]), cache.labels[test])
    assert acc == pytest.approx(report["rounds"][1]["student_accuracy"])
    assert back(pixel_values=torch.randn(1, 3, 16, 16)).logits.shape == (1, cache.num_labels)


def test_student_with_wrong_head_size_is_refused(tmp_path):
    cache = make_cache(dim=32)
    student = ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                  intermediate_size=64, image_size=16, patch_size=8, num_labels=3))
    with pytest.raises(CSLError, match="num_labels=6"):
        CoSupervisedTrainer(model=student, cache=cache, args=CoSupervisedConfig(output_dir=str(tmp_path)))


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(CSLError, match="auto, top1, top2, top3, knn, all"):
        CoSupervisedConfig(output_dir=str(tmp_path), denoise="top4")
    with pytest.raises(CSLError, match="--assignment"):
        CoSupervisedConfig(output_dir=str(tmp_path), assignment="random")
    with pytest.raises(CSLError, match="--denoise_neighbors must be at least 1"):
        CoSupervisedConfig(output_dir=str(tmp_path), denoise_neighbors=0)


def test_resume_after_a_crash_gives_the_uninterrupted_report(tmp_path, hard_run):
    report, _, cache = hard_run
    args = CoSupervisedConfig(output_dir=str(tmp_path), num_train_epochs=4, learning_rate=1e-2, disable_tqdm=True, seed=3)
    crashing = CoSupervisedTrainer(args=args, cache=cache, callbacks=[PhaseSpy(crash_at_level=2)])
    next(c for c in crashing.callback_handler.callbacks if isinstance(c, PhaseSpy)).trainer = crashing
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    assert (tmp_path / "round-1").is_dir() and not (tmp_path / "round-2").exists()
    assert not (tmp_path / "csl_report.json").exists()
    spy = PhaseSpy()
    resumed = CoSupervisedTrainer(args=CoSupervisedConfig(output_dir=str(tmp_path), num_train_epochs=4,
                                                          learning_rate=1e-2, disable_tqdm=True, seed=3), cache=cache,
                                  callbacks=[spy])
    spy.trainer = resumed
    resumed.train(resume_from_checkpoint=True)
    again = resumed.report
    assert spy.levels == [2, 2, 2]  # only level 2: CSL, then its oracle and ensemble baselines; nothing trained twice
    assert again["rounds"] == report["rounds"] and again["ceiling_accuracy"] == report["ceiling_accuracy"]
    assert again["baselines"] == report["baselines"]  # the baseline chains resumed too


def test_resume_when_the_baseline_heads_are_a_level_ahead_of_the_progress_file(tmp_path, hard_run):
    """Killed after the baseline heads of level 2 were written but before the progress file was: the resume trains
    level 2 again (CSL and both chains, from their level-1 heads) and gives the uninterrupted report."""
    import json
    import shutil

    report, trainer, cache = hard_run
    for name in os.listdir(trainer.args.output_dir):
        src = os.path.join(trainer.args.output_dir, name)
        shutil.copytree(src, tmp_path / name) if os.path.isdir(src) else shutil.copy(src, tmp_path / name)
    progress = json.loads((tmp_path / "csl_progress.json").read_text())
    progress["rounds"] = progress["rounds"][:2]  # the baseline records and heads still reach level 2
    (tmp_path / "csl_progress.json").write_text(json.dumps(progress))
    (tmp_path / "csl_report.json").unlink()
    resumed = CoSupervisedTrainer(args=CoSupervisedConfig(output_dir=str(tmp_path), num_train_epochs=4,
                                                          learning_rate=1e-2, disable_tqdm=True, seed=3), cache=cache)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.report["rounds"] == report["rounds"]
    assert resumed.report["baselines"] == report["baselines"]  # one record per level, none twice


def test_resume_with_other_settings_is_refused(tmp_path, hard_run):
    _, trainer, cache = hard_run
    other = CoSupervisedTrainer(args=CoSupervisedConfig(output_dir=trainer.args.output_dir, denoise="top1",
                                                        num_train_epochs=4, learning_rate=1e-2, seed=3), cache=cache)
    with pytest.raises(CSLError, match="other settings"):
        other.train(resume_from_checkpoint=True)


def test_unequal_non_contiguous_partitions_and_a_deep_hierarchy(tmp_path):
    """Four levels; level 1 splits the 6 classes 1 + 5 with non-contiguous members, level 2 is 3 uneven blocks."""
    cache = make_cache(teachers_per_level=(1, 2, 3, 6))
    specs = list(cache.specialties)
    specs[1], specs[2] = {"classes": [4]}, {"classes": [0, 1, 2, 3, 5]}
    specs[3], specs[4], specs[5] = {"classes": [5, 0]}, {"classes": [1, 3, 4]}, {"classes": [2]}
    cache.specialties = specs
    # Rebuild the specialists' outputs for the new class sets: restrict the level's probabilities to each set.
    for t in range(1, 6):
        mask = torch.zeros(cache.num_labels, dtype=torch.bool)
        mask[specs[t]["classes"]] = True
        p = cache.teacher_probs[0] * mask + 1e-6 * mask
        cache.teacher_probs[t] = p / p.sum(-1, keepdim=True)
    cache.validate()
    report, _, _ = run(tmp_path, cache=cache, assignment="oracle")
    assert [r["num_teachers"] for r in report["rounds"]] == [1, 2, 3, 6]
    assert all(r["assignment_accuracy"] == 1.0 for r in report["rounds"][1:])


def test_baselines_run_beside_csl_and_equal_separate_runs(tmp_path, hard_run):
    """The oracle and ensemble chains of one run are exactly what a separate run with --assignment oracle / ensemble
    gives (same seeds), start from the run's own level 0, and leave the CSL student as it was."""
    report, trainer, cache = hard_run
    assert set(report["baselines"]) == {"oracle", "ensemble"}
    oracle, ensemble = report["baselines"]["oracle"], report["baselines"]["ensemble"]
    assert oracle[0] == ensemble[0] == report["rounds"][0]  # the single teacher is level 0
    assert all(r["assignment"] == "oracle" and r["assignment_accuracy"] == 1.0 for r in oracle[1:])
    assert all(r["assignment"] == "ensemble" and "assignment_accuracy" not in r for r in ensemble[1:])
    for name, chain in (("oracle", oracle), ("ensemble", ensemble)):
        alone, _, _ = run(tmp_path / name, assignment=name, baselines="none")
        assert alone["rounds"] == chain, name
    # The trainer's student is the CSL one: evaluate() gives the CSL chain's last accuracy, not a baseline's.
    assert trainer.evaluate()["eval_accuracy"] == pytest.approx(report["rounds"][-1]["student_accuracy"])
    # Per-class accuracy, by class name, in every round.
    per_class = report["rounds"][2]["per_class_accuracy"]
    assert set(per_class) == set(cache.id2label.values()) and all(0 <= v <= 1 for v in per_class.values())


def test_ensemble_targets_average_the_level():
    cache = make_cache(n=200)
    rows = cache.rows(0)
    from csl_hf.method import rounds as R

    chosen, target, soft = R.mixture_targets(cache, cache.levels[1], rows, soft=True)
    probs = cache.probs(cache.levels[1], rows)  # [2, n, C], each specialist zero outside its classes
    expected = probs.sum(0) / probs.sum(0).sum(-1, keepdim=True)
    torch.testing.assert_close(soft, expected)
    assert torch.equal(target, expected.argmax(-1))
    owner = torch.zeros(cache.num_labels, dtype=torch.long)
    owner[cache.specialties[cache.levels[1][1]]["classes"]] = 1
    assert torch.equal(chosen, owner[target])



def test_soft_gate_weights_each_specialist_by_the_students_mass():
    # Two samples, classes {0, 1} | {2, 3}. Specialist A: [0.9, 0.1, 0, 0]; B: [0, 0, 0.6, 0.4] for both samples.
    # Student logits put 0.25 / 0.75 mass on B's classes (sample 0) and 0.8 / 0.2 (sample 1), so the mixture is
    # sample 0: [0.225, 0.025, 0.45, 0.3] -> class 2 (B); sample 1: [0.72, 0.08, 0.12, 0.08] -> class 0 (A).
    from csl_hf.method import rounds as R

    cache = make_cache(n=2, num_labels=4, teachers_per_level=(1, 2))
    cache.specialties = [{"classes": [0, 1, 2, 3]}, {"classes": [0, 1]}, {"classes": [2, 3]}]
    cache.levels = [[0], [1, 2]]
    a, b = torch.tensor([0.9, 0.1, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.6, 0.4])
    cache.teacher_probs = torch.stack([torch.full((2, 4), 0.25), a.expand(2, 4), b.expand(2, 4)]).to(
        cache.teacher_probs.dtype)
    rows = torch.arange(2)
    student = torch.log(torch.tensor([[0.125, 0.125, 0.375, 0.375], [0.4, 0.4, 0.1, 0.1]]))
    targets = R.plan_round(cache, 1, student, rows, assignment="soft_gate", denoise="all", soft_labels=True)
    expected = torch.tensor([[0.225, 0.025, 0.45, 0.3], [0.72, 0.08, 0.12, 0.08]])
    torch.testing.assert_close(targets.soft_targets, expected, atol=1e-3, rtol=0)
    assert targets.target_class.tolist() == [2, 0] and targets.assignment.tolist() == [1, 0]
    assert targets.method == "soft_gate"

def test_baselines_are_probe_only_and_named(tmp_path):
    with pytest.raises(CSLError, match="does not exist"):
        CoSupervisedConfig(output_dir=str(tmp_path), baselines="oracle,random")
    with pytest.raises(CSLError, match="--student_mode probe"):
        CoSupervisedConfig(output_dir=str(tmp_path), baselines="oracle", student_mode="full")
    assert CoSupervisedConfig(output_dir=str(tmp_path), student_mode="full").baselines == "none"
