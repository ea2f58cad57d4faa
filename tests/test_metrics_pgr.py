"""PGR: the pure function and the `evaluate` module loaded by local path (never from the Hub)."""

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import warnings

import pytest

from csl_hf.metrics import PGR_METRIC_PATH, load_pgr_metric, performance_gap_recovered


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- pure function


@pytest.mark.parametrize(
    "student, weak, ceiling, expected",
    [
        (0.75, 0.5, 1.0, 50.0),  # half the gap
        (0.5, 0.5, 1.0, 0.0),  # no better than the teacher
        (0.9, 0.6, 0.9, 100.0),  # reached the ceiling
        (0.95, 0.6, 0.9, 350.0 / 3.0),  # beyond the ceiling: 100 * 0.35 / 0.3
        (0.55, 0.6, 0.8, -25.0),  # worse than the teacher
        (0.666, 0.566, 0.74, 100.0 * 0.1 / 0.174),  # OpenAI's AlexNet -> ViT-B/8 numbers
    ],
)
def test_performance_gap_recovered_hand_computed(student, weak, ceiling, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert performance_gap_recovered(student, weak, ceiling) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("weak, ceiling", [(0.7, 0.7), (0.8, 0.6)])
def test_performance_gap_recovered_none_when_no_gap(weak, ceiling):
    with pytest.warns(UserWarning, match=r"ceiling accuracy .* <= weak accuracy"):
        assert performance_gap_recovered(0.75, weak, ceiling) is None


def test_performance_gap_recovered_rejects_non_finite():
    with pytest.raises(ValueError, match="finite"):
        performance_gap_recovered(float("nan"), 0.5, 1.0)


# ---------------------------------------------------------------- evaluate module


@pytest.fixture(scope="module")
def pgr_metric():
    return load_pgr_metric()


def test_metric_path_layout():
    assert os.path.isabs(PGR_METRIC_PATH)
    assert os.path.isfile(os.path.join(PGR_METRIC_PATH, "pgr.py"))
    assert os.path.isfile(os.path.join(PGR_METRIC_PATH, "README.md"))


def test_metric_hand_computed(pgr_metric):
    # 6 of 8 correct -> 0.75; weak 0.5, ceiling 0.9 -> 100 * 0.25 / 0.4 = 62.5
    preds = [0, 1, 2, 3, 0, 1, 2, 3]
    refs = [0, 1, 2, 3, 0, 1, 0, 0]
    out = pgr_metric.compute(predictions=preds, references=refs, weak_accuracy=0.5, ceiling_accuracy=0.9)
    assert set(out) == {"accuracy", "pgr"}
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["pgr"] == pytest.approx(62.5)


def test_metric_negative_and_above_100(pgr_metric):
    out = pgr_metric.compute(predictions=[1, 1, 1, 1], references=[1, 0, 0, 0], weak_accuracy=0.5, ceiling_accuracy=1.0)
    assert out == {"accuracy": pytest.approx(0.25), "pgr": pytest.approx(-50.0)}
    out = pgr_metric.compute(predictions=[1, 0], references=[1, 0], weak_accuracy=0.2, ceiling_accuracy=0.6)
    assert out == {"accuracy": pytest.approx(1.0), "pgr": pytest.approx(200.0)}


def test_metric_add_batch(pgr_metric):
    pgr_metric.add_batch(predictions=[0, 1], references=[0, 1])
    pgr_metric.add_batch(predictions=[1, 1], references=[0, 1])
    out = pgr_metric.compute(weak_accuracy=0.25, ceiling_accuracy=1.0)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["pgr"] == pytest.approx(100.0 * 0.5 / 0.75)


def test_metric_none_when_ceiling_not_above_weak(pgr_metric):
    with pytest.warns(UserWarning, match="no performance gap to recover"):
        out = pgr_metric.compute(predictions=[0, 1], references=[0, 0], weak_accuracy=0.6, ceiling_accuracy=0.6)
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["pgr"] is None


def test_metric_agrees_with_pure_function(pgr_metric):
    preds, refs = [0, 1, 2, 2, 1], [0, 1, 2, 0, 0]
    out = pgr_metric.compute(predictions=preds, references=refs, weak_accuracy=0.3, ceiling_accuracy=0.85)
    assert out["pgr"] == pytest.approx(performance_gap_recovered(0.6, 0.3, 0.85))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"weak_accuracy": 56.6, "ceiling_accuracy": 74.0}, ValueError),  # percentages, not fractions
        ({"weak_accuracy": 0.5}, ValueError),  # ceiling missing
        ({"weak_accuracy": "0.5", "ceiling_accuracy": 0.9}, TypeError),
    ],
)
def test_metric_rejects_bad_reference_accuracies(pgr_metric, kwargs, error):
    with pytest.raises(error):
        pgr_metric.compute(predictions=[0, 1], references=[0, 1], **kwargs)


def test_metric_bad_call_keeps_added_batches(pgr_metric):
    pgr_metric.add_batch(predictions=[0, 1, 1], references=[0, 1, 0])
    with pytest.raises(ValueError, match="fraction"):
        pgr_metric.compute(weak_accuracy=50.0, ceiling_accuracy=90.0)
    out = pgr_metric.compute(weak_accuracy=0.5, ceiling_accuracy=0.9)
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["pgr"] == pytest.approx(100 * (2 / 3 - 0.5) / 0.4)


def _run_offline(code, tmp_path, extra_pythonpath, **extra_env):
    env = dict(os.environ, **extra_env)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_ENDPOINT="http://127.0.0.1:9",  # anything that tried the network would fail fast here
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        HF_HOME=str(tmp_path / "hf_home"),
        PYTHONPATH=os.pathsep.join([extra_pythonpath, env.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_load_by_local_path_offline_and_from_read_only_install(tmp_path):
    """In a fresh process with HF_HUB_OFFLINE=1 and an empty module cache:

    1. ``evaluate.load(<abs path of the source tree's module>)``;
    2. what a non-editable install looks like: csl_hf copied to a site-packages-like dir, read-only,
       loaded through ``csl_hf.metrics.load_pgr_metric()`` from there.
    (One subprocess for both: importing evaluate costs seconds.)
    """
    site = tmp_path / "site"
    pkg = site / "csl_hf"
    shutil.copytree(
        os.path.join(REPO_ROOT, "csl_hf", "metrics"),
        pkg / "metrics",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (pkg / "__init__.py").write_text("")  # a minimal stand-in for the real package __init__
    for root, dirs, files in os.walk(pkg):
        for name in files:
            os.chmod(os.path.join(root, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    code = f"""
        import os, evaluate
        m = evaluate.load({PGR_METRIC_PATH!r})
        out = m.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0], weak_accuracy=0.5, ceiling_accuracy=1.0)
        assert out == {{"accuracy": 0.75, "pgr": 50.0}}, out

        import csl_hf.metrics as M
        assert M.PGR_METRIC_PATH.startswith(os.environ["EXPECTED_SITE"]), M.PGR_METRIC_PATH
        m = M.load_pgr_metric()
        out = m.compute(predictions=[2, 2, 2], references=[2, 2, 0], weak_accuracy=0.5, ceiling_accuracy=1.0)
        assert abs(out["pgr"] - 100 * (2 / 3 - 0.5) / 0.5) < 1e-9, out
        print("OK", out)
    """
    proc = _run_offline(code, tmp_path, str(site), EXPECTED_SITE=str(site))
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout
