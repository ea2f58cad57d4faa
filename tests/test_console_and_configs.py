"""A run a person can read and steer: --help, config files and the resolved config of every run, reused teachers
that must not have seen this run's images, flags that would be ignored, fail-fast checks, the PGR caveat, the
console lines and the plot."""

import json
import subprocess
import sys
import time

import pytest
import yaml
from synthetic import make_cache

from csl_hf.trainer.callbacks import format_log_line
from csl_hf.cli.console import run_command
from csl_hf.errors import CSLError
from csl_hf.outputs.model_card import create_csl_model_card
from csl_hf.outputs.report import format_report_table, pgr_reliability, plot_pgr
from scripts import ROOT, load_example, run_csl

SMALL = ["--dataset_name", "animal_mnist", "--max_train_samples", "120", "--max_eval_samples", "60", "--teacher_size",
         "100", "--test_size", "100", "--teacher_steps", "3", "--teachers_per_level", "1,2", "--num_train_epochs", "1",
         "--student_image_size", "32", "--disable_tqdm", "True", "--no_compare_label_types"]


def test_help_leads_with_the_csl_flags_and_explains_them():
    out = subprocess.run([sys.executable, f"{ROOT}/examples/run_csl.py", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    lines = text.splitlines()
    assert lines[0].startswith("usage: python examples/run_csl.py [CONFIG.yaml|CONFIG.json]")
    assert "Three ways in" in text and "DESIGN" not in text
    assert lines[2].startswith("csl-hf run: co-supervised learning") and "``" not in text  # the docstring's reST
    groups = [line for line in lines if line.endswith(":") and not line.startswith(" ")]
    assert groups[:6] == ["Data:", "Student and teachers:", "Teacher architecture (tiny models built from a config):",
                          "Rounds:", "Training of each round (TrainingArguments with the paper's probe defaults):",
                          "Outputs:"]
    assert text.index("--assignment") < text.index("Every other transformers.TrainingArguments flag")
    assignment = text[text.index("--assignment"):text.index("--denoise")]
    for value in ("student", "agreement", "oracle", "auto"):
        assert value in assignment  # every choice is explained
    assert "--no_" not in text.split("Every other")[0]  # no negated duplicates of the boolean flags
    # Our own flags' help stays short; the lists of transformers' flags below it grow with each transformers release.
    own = text.split("Every other transformers.TrainingArguments flag")[0].splitlines()
    assert len(own) < 270, len(own)
    assert len(lines) < 330, len(lines)


@pytest.mark.parametrize("script", ["run_csl", "train_teachers", "imagenet_recipe"])
def test_examples_without_the_package_installed_say_how_to_install_it(script, tmp_path):
    # `python -S` hides site-packages: the checkout's example cannot import csl_hf (nor torch), as before `pip install`.
    out = subprocess.run([sys.executable, "-S", f"{ROOT}/examples/{script}.py", "--help"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: No module named") and "pip install -e ." in out.stderr
    assert out.stderr.count("\n") == 1


@pytest.mark.parametrize("script", ["run_csl", "train_teachers"])
def test_every_csl_flag_is_explained_in_help(script):
    # Flags of our own dataclasses (not TrainingArguments') must have their help in --help, not only in --help_all.
    import dataclasses

    import scripts
    from transformers import TrainingArguments

    module = getattr(scripts, script)
    parser = module.build_parser()
    stock = {f.name for f in dataclasses.fields(TrainingArguments)}
    shown = {name for _, names in module.HELP_GROUPS for name in names}
    refused = set(getattr(module, "NOT_HERE", ()))  # flags a script refuses by name need no help of their own
    assert set(parser._fields()) - stock - refused <= shown, sorted(set(parser._fields()) - stock - refused - shown)


@pytest.mark.parametrize("flag", ["--cache_dir", "--max_train_samples", "--streaming"])
def test_train_teachers_refuses_the_data_flags_it_would_ignore(tmp_path, capsys, flag):
    import scripts

    value = {"--cache_dir": str(tmp_path), "--max_train_samples": "10", "--streaming": "True"}[flag]
    rc = run_command(scripts.train_teachers.main, [flag, value, "--output_dir", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"error: {flag} does not apply to python examples/train_teachers.py") and "\n" not in err
    assert not (tmp_path / "t").exists()


def test_csl_hf_teachers_marks_its_warnings(tmp_path, capsys):
    # Was: csl-hf teachers set up no console, so its warnings printed as bare sentences (or not at all).
    from PIL import Image

    from csl_hf.cli.teachers import cli

    for c, name in enumerate(("ant", "bee", "fly")):
        (tmp_path / "three" / name).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (16, 16), (80 * c, 20 * i, 0)).save(tmp_path / "three" / name / f"{i}.png")
    rc = cli(["--dataset_name", str(tmp_path / "three"), "--teacher_steps", "2", "--output_dir", str(tmp_path / "t")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.err.splitlines()
    assert any(line.startswith("warning: the default teachers_per_level 1,2,4,5 suits 10 classes; on these 3 "
                               "classes it is 1,2") for line in lines), captured.err
    assert any(line.startswith("warning: --dataset_name") and "fewer than the default" in line for line in lines)
    assert "trained 3 teachers" in captured.out and (tmp_path / "t" / "teachers" / "config.json").is_file()


def test_a_run_writes_its_config_and_the_config_reruns_it(tmp_path):
    first = run_csl.main([*SMALL, "--output_dir", str(tmp_path / "a"), "--seed", "3"])
    config = yaml.safe_load((tmp_path / "a" / "run_config.yaml").read_text())
    assert config["seed"] == 3 and config["teachers_per_level"] == "1,2" and "hub_token" not in config
    again = run_csl.main([str(tmp_path / "a" / "run_config.yaml"), "--output_dir", str(tmp_path / "b")])
    assert again["rounds"] == first["rounds"] and again["ceiling_accuracy"] == first["ceiling_accuracy"]
    # JSON works too, and flags after the file override it.
    (tmp_path / "c.json").write_text(json.dumps({**config, "max_levels": 1}))
    third = run_csl.main([str(tmp_path / "c.json"), "--output_dir", str(tmp_path / "c"), "--seed", "3"])
    assert len(third["rounds"]) == 1


def test_config_file_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("learning_rat: 0.1\n")
    assert run_command(run_csl.main, [str(tmp_path / "bad.yaml")]) == 2
    assert "unknown key(s) learning_rat" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    assert run_command(run_csl.main, [str(tmp_path / "broken.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: config file")


def test_bundled_recipes_parse(tmp_path):
    for name in ("animal_mnist.yaml", "digits_domains.yaml"):
        parser = run_csl.build_parser()
        from csl_hf.cli.arguments import parse_run_args

        data, model, teachers, args = parse_run_args(parser, [f"{ROOT}/examples/configs/{name}",
                                                               "--output_dir", str(tmp_path)])
        assert data.dataset_name in name


@pytest.mark.parametrize("argv, expected", [
    (["--compare_label_types"], (True, None)),
    (["--teacher_domain_level"], (None, True)),
    (["--compare-label-types", "--teacher_domain_level", "--seed", "3"], (True, True)),
    (["--teacher_domain_level", "False", "--compare_label_types", "False"], (False, False)),
    (["--no_teacher_domain_level", "--no_compare_label_types"], (False, False)),
    ([], (None, None)),
])
def test_every_boolean_flag_alone_means_true(tmp_path, argv, expected):
    # Was: a boolean whose default is None (decided by the mode or the data) answered `--compare_label_types` alone
    # with "expected one argument", unlike every other boolean.
    from csl_hf.cli.arguments import parse_run_args

    data, model, teachers, args = parse_run_args(run_csl.build_parser(), [*argv, "--output_dir", str(tmp_path)])
    assert (model.compare_label_types, teachers.teacher_domain_level) == expected


def test_reused_teachers_that_saw_this_runs_images_are_refused(tmp_path, capsys):
    train_teachers = load_example("train_teachers")
    sizes = ["--teacher_size", "100", "--test_size", "100"]
    assert run_command(train_teachers.main, ["--output_dir", str(tmp_path / "t"), "--seed", "0", "--teacher_steps", "2",
                                             "--teachers_per_level", "1,2", *sizes]) == 0
    capsys.readouterr()
    common = [a for a in SMALL if a not in ("--teacher_steps", "3", "--teachers_per_level", "1,2")]
    common = [*common, "--teachers_name_or_path", str(tmp_path / "t" / "teachers")]
    rc = run_command(run_csl.main, [*common, "--output_dir", str(tmp_path / "leak"), "--seed", "5"])
    err = capsys.readouterr().err
    assert rc == 2 and "were trained on" in err and "--seed 0" in err, err
    assert not (tmp_path / "leak").exists()
    # The split the teachers came from (same seed and sizes) is accepted.
    assert run_command(run_csl.main, [*common, "--output_dir", str(tmp_path / "ok"), "--seed", "0"]) == 0


@pytest.mark.parametrize("argv, words", [
    (["--dataset_name", "digits_domains", "--teachers_per_level", "1,3"], "--teachers_per_level does not apply"),
    (["--cache_dir", "CACHE", "--teacher_steps", "5"], "--teacher_steps does not apply with --cache_dir"),
    (["--cache_dir", "CACHE", "--max_train_samples", "5"], "--max_train_samples does not apply with --cache_dir"),
    (["--teachers_name_or_path", "T", "--teacher_steps", "5"], "does not apply with --teachers_name_or_path"),
])
def test_flags_that_would_be_ignored_are_refused_by_name(tmp_path, capsys, argv, words):
    make_cache(n=120).save(tmp_path / "cache")
    argv = [str(tmp_path / "cache") if a == "CACHE" else str(tmp_path) if a == "T" else a for a in argv]
    rc = run_command(run_csl.main, [*argv, "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and words in err, err
    assert not (tmp_path / "out").exists()


def test_a_bad_student_fails_before_any_teacher_is_trained(tmp_path, monkeypatch):
    import csl_hf.cli.run

    def must_not_train(*a, **k):
        raise AssertionError("teachers were trained before the student was checked")

    monkeypatch.setattr(csl_hf.cli.run, "prepare_teachers", must_not_train)
    start = time.perf_counter()
    with pytest.raises(CSLError, match="cannot load the student"):
        run_csl.main([*SMALL, "--output_dir", str(tmp_path / "out"), "--student_model_name_or_path",
                      str(tmp_path / "no_such_student")])
    assert time.perf_counter() - start < 10  # data loading and checks only
    assert not (tmp_path / "out").exists()


@pytest.fixture
def student_must_not_load(monkeypatch):
    """Loading the student fails the test: what is checked must be refused before it."""
    import csl_hf.cli.run

    def must_not_load(*a, **k):
        raise AssertionError("the student was loaded before the check")

    monkeypatch.setattr(csl_hf.cli.run, "load_student", must_not_load)


@pytest.mark.parametrize("argv, words", [
    (["--dataset_name", "digits_domains", "--assignment", "student"],
     "--assignment student routes by the student's class predictions, and digits_domains has a 'domain' column"),
    (["--dataset_name", "digits_domains", "--assignment", "soft_gate"], "--assignment soft_gate routes by the student"),
    (["--dataset_name", "digits_domains", "--assignment", "oos_gate"], "--assignment oos_gate routes by the student"),
    (["--dataset_name", "digits_domains", "--teacher_domain_level", "True", "--assignment", "student"],
     "with --teacher_domain_level the specialists are domain specialists"),
    (["--teacher_domain_level", "True"], "--teacher_domain_level builds one specialist per domain, and animal_mnist"),
])
def test_an_assignment_the_hierarchy_cannot_run_is_refused_before_the_student_loads(tmp_path, capsys,
                                                                                      student_must_not_load, argv,
                                                                                      words):
    # Was: trained the teachers, labeled, trained the ceiling and round 0, then failed at level 1 and pointed to a
    # resume that failed the same way.
    rc = run_command(run_csl.main, [*argv, "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert "use --assignment agreement, oracle or auto" in err[0] or "drop it" in err[0]
    assert not (tmp_path / "out").exists()
    # agreement, oracle, ensemble and auto pass the check on domains
    for assignment in ("agreement", "oracle", "ensemble", "auto"):
        with pytest.raises(AssertionError, match="the student was loaded"):
            run_csl.main(["--dataset_name", "digits_domains", "--assignment", assignment,
                          "--output_dir", str(tmp_path / assignment)])
    # class specialists asked for on data with domains: routing by class and their flags apply
    with pytest.raises(AssertionError, match="the student was loaded"):
        run_csl.main(["--dataset_name", "digits_domains", "--teacher_domain_level", "False", "--assignment", "student",
                      "--teachers_per_level", "1,2,5", "--specialty_gates", "True",
                      "--output_dir", str(tmp_path / "classes")])


@pytest.mark.parametrize("argv, words", [
    (["--teachers_per_level", "1,2,11"], "teachers_per_level='1,2,11' asks for 11 specialists but there are only 10 "
                                         "classes; use at most 10 per level (or 'auto')"),
    (["--teachers_per_level", "1,12"], "asks for 12 specialists but there are only 10 classes"),
    (["--teachers_per_level", "2,4"], "teachers_per_level='2,4' must start with 1 (level 0 is one generalist)"),
    (["--teachers_per_level", "1,two"], "teachers_per_level='1,two' must be comma-separated integers"),
    (["--dataset_name", "digits_domains", "--specialty_gates", "True"],
     "--specialty_gates does not apply to digits_domains: it has a 'domain' column"),
    (["--dataset_name", "digits_domains", "--teachers_per_level", "1,2"],
     "--teachers_per_level does not apply to digits_domains: it has a 'domain' column"),
])
def test_a_hierarchy_the_data_cannot_have_is_refused_before_the_student_loads(tmp_path, capsys,
                                                                              student_must_not_load, argv, words):
    # Was: the error came from the teacher training, after the student's weights had loaded (a bar, then a line).
    rc = run_command(run_csl.main, [*argv, "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert not (tmp_path / "out").exists()
    # what fits the data passes the check
    for fits in (["--teachers_per_level", "1,2,10"], ["--teachers_per_level", "auto"]):
        with pytest.raises(AssertionError, match="the student was loaded"):
            run_csl.main([*fits, "--output_dir", str(tmp_path / "fits")])


def test_pgr_is_flagged_when_the_gap_is_too_small():
    report = {"weak_accuracy": 0.60, "ceiling_accuracy": 0.62, "seed": 0, "config": {},
              "rounds": [{"level": 0, "num_teachers": 1, "assignment": "none", "teacher_accuracy": 0.6,
                          "keep_rate": 1.0, "precision": 0.6, "recall": 1.0, "student_accuracy": 0.63, "pgr": 150.0}]}
    warning = pgr_reliability(report)
    assert warning and "2.0 points" in warning and "50 points" in warning
    table = format_report_table(report)
    assert "PGR (unreliable)" in table and table.splitlines()[-1].startswith("note: PGR is unreliable")
    assert "PGR (performance gap recovered) = (student acc - weak) / (ceiling - weak)" in table  # said, not assumed
    card = create_csl_model_card(report, None, "animal_mnist", ["generalist"], [[0]])
    assert "**Note:** PGR is unreliable" in card.text
    assert pgr_reliability({**report, "ceiling_accuracy": 0.9}) is None


def test_a_pgr_that_rounds_to_zero_prints_as_0_0():
    # Was: "-0.0" in the closing lines, the baseline table and the card for a PGR of, e.g., -0.02.
    from csl_hf.outputs.model_card import baseline_table
    from csl_hf.outputs.report import format_pgr

    assert [format_pgr(x) for x in (-0.04, -0.0, 0.04, -0.06, 57.84, None)] == ["0.0", "0.0", "0.0", "-0.1", "57.8", "-"]
    report = {"rounds": [{"level": 0, "num_teachers": 1, "pgr": -0.02}, {"level": 1, "num_teachers": 2, "pgr": 3.0}],
              "baselines": {"oracle": [{"pgr": -0.02}, {"pgr": -0.03}]}}
    table = baseline_table(report)
    assert "-0.0" not in table and "| 1 | 2 | 0.0 | 3.0 | 0.0 |" in table, table


def test_log_lines_name_the_phase():
    line = format_log_line("level 2 (4 teachers)", {"loss": 0.50531, "learning_rate": 7.03e-4, "epoch": 7.35,
                                                    "level": 2}, 500, 1360)
    assert line == "level 2 (4 teachers) | step 500/1360 | loss 0.5053 | lr 7.03e-04 | epoch 7.35"
    assert format_log_line("ceiling", {"train_runtime": 1.0, "train_loss": 0.3}, 10, 10) is None
    # evaluate() after train(): no phase, and the step counters are the last phase's, not this evaluation's
    assert format_log_line(None, {"eval_loss": 0.61234, "eval_accuracy": 0.5, "epoch": 3.0}, 17, 3) == \
        "evaluate | epoch 3.00 | eval_loss 0.6123 | eval_accuracy 0.5"
    assert format_log_line(None, {"loss": 0.5}, 17, 3) == "train | step 17 | loss 0.5000"


@pytest.mark.parametrize("library", ["huggingface_hub", "datasets"])
def test_a_library_warning_prints_once_on_the_console(library):
    """huggingface_hub and datasets log through handlers of their own and propagate to the root logger, where the
    console has its own: a Hub retry used to print twice. A process of its own, since the libraries' handlers hold
    the stderr of the moment they were imported."""
    code = (f"import types, {library}\n"
            "from csl_hf.cli.console import setup_logging\n"
            "setup_logging(types.SimpleNamespace(should_log=True, disable_tqdm=True))\n"
            f"{library}.utils.logging.get_logger('{library}.probe').warning('Retrying in 1s [Retry 1/5].')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Retrying in 1s") == 1, done.stderr


@pytest.mark.parametrize("pgrs,best", [((11.8, 51.9, 59.8, 56.3), 2), ((8.1, 32.3, 52.5, 57.9), None),
                                        ((40.0, 30.0, None, 20.0), 0)])
def test_the_summary_says_which_round_the_final_student_is(tmp_path, pgrs, best):
    from csl_hf.cli.steps import run_summary

    rounds = [{"level": k, "num_teachers": n, "pgr": p, "assignment": "student", "teacher_accuracy": 0.6,
               "keep_rate": 0.7, "precision": 0.75, "recall": 0.9, "student_accuracy": 0.66, "num_kept": 500,
               "epochs": 20, "denoise": "knn"} for k, (n, p) in enumerate(zip((1, 2, 4, 5), pgrs))]
    for k in range(4):
        (tmp_path / f"round-{k}").mkdir()
    report = {"weak_accuracy": 0.6, "ceiling_accuracy": 0.9, "rounds": rounds}
    args = type("Args", (), {"output_dir": str(tmp_path)})()
    text = run_summary(args, {"hard labels": report}, None)
    last = rounds[-1]
    assert (f"the final student is the last round's (level 3, 5 teachers, PGR {last['pgr']:.1f})") in text
    if best is None:  # the last round is the best: nothing more to say
        assert "the highest PGR" not in text
    else:
        assert f"the highest PGR, {pgrs[best]:.1f}, is level {best}'s ({tmp_path / f'round-{best}'})" in text
    assert "oracle:" not in text and "ensemble:" not in text  # no baselines ran: none is explained
    # Each baseline that ran is said in words under its numbers (a newcomer met "-157.6" with no meaning).
    for names in (("oracle",), ("ensemble",), ("oracle", "ensemble")):
        report["baselines"] = {n: [{**r, "pgr": -50.0} for r in rounds] for n in names}
        lines = run_summary(args, {"hard labels": report}, None).splitlines()
        at = max(i for i, line in enumerate(lines) if "baseline, hard labels) by number of teachers" in line)
        legend = lines[at + 1]
        assert legend.startswith("  ") and all((n + ":") in legend for n in names)
        assert ("oracle:" in legend) == ("oracle" in names) and ("ensemble:" in legend) == ("ensemble" in names)


def test_plot_has_both_panels_and_names_the_data(tmp_path):
    report = {"weak_accuracy": 0.5, "ceiling_accuracy": 0.9, "rounds": [
        {"level": 0, "num_teachers": 1, "pgr": 10.0, "student_accuracy": 0.54},
        {"level": 1, "num_teachers": 2, "pgr": 30.0, "student_accuracy": 0.62}]}
    path = plot_pgr({"hard labels": report, "soft labels": report}, str(tmp_path / "pgr.png"), title="CSL on x")
    from PIL import Image

    width, height = Image.open(path).size
    assert width > 1.8 * height  # two panels side by side


def test_card_teacher_table_separates_the_specialists_of_a_level():
    # Was: "cat, dog, fox, owl" for two specialists, which reads as one; the console separates them with " | ".
    report = {"weak_accuracy": 0.5, "ceiling_accuracy": 0.9, "seed": 0, "config": {},
              "rounds": [{"level": 0, "num_teachers": 1, "assignment": "none", "teacher_accuracy": 0.5,
                          "keep_rate": 1.0, "precision": 0.5, "recall": 1.0, "student_accuracy": 0.6, "pgr": 25.0}]}
    card = create_csl_model_card(report, None, "animal_mnist", ["generalist", "cat, dog", "fox, owl +1", "domain a"],
                                 [[0], [1, 2], [3]])
    assert "| 1 | 2 | cat, dog \\| fox, owl +1 |" in card.text
    assert "| 0 | 1 | generalist |" in card.text and "| 2 | 1 | domain a |" in card.text
