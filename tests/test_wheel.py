"""The wheel is the product: build it, install it on its own in a fresh venv outside the checkout, and use it there
as a user does: ``csl-hf --help``, ``csl-hf env``, the PGR ``evaluate`` module, a tiny ``csl-hf run`` on a generated
image folder, ``csl-hf push`` to the Hub stand-in, teachers and a cache through the stand-in, and the pushed teachers
loaded with ``trust_remote_code=True`` where csl_hf cannot be imported.

How, and why so (this runs in CI's ``pytest tests``, so it has to stay around a minute and offline):

* The wheel is built from a copy of what a build reads (setup.py, README.md, LICENSE, csl_hf/) with this
  interpreter's setuptools (``pip wheel --no-deps --no-build-isolation``): no index, no network, seconds.
* The venv is ``python -m venv --without-pip`` and the wheel goes in with ``pip --python VENV install --no-deps
  --no-index``: csl_hf's files in its site-packages come from the wheel and from nowhere else.
* csl_hf's dependencies (torch, transformers, ...) are not installed again (gigabytes, minutes): a ``.pth`` file in
  the venv appends this interpreter's site-packages *after* the venv's own. They are appended as plain paths, so the
  ``.pth`` files inside them never run (an editable install's finder, which would put a checkout on the path, is one
  of those), and every check asserts that ``csl_hf`` is imported from the venv.
* Every command runs from a temporary folder without ``PYTHONPATH``: no checkout on ``sys.path``.

Skipped only when a wheel cannot be built here at all (no setuptools, pip or venv in this interpreter); deselect it
with ``-m "not wheel"`` while iterating on something else.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parent.parent
#: What a build reads: setup.py and the files it opens, the package, and the license setuptools picks up.
BUILD_INPUTS = ("setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE", "csl_hf")
VERSION = re.search(r'^__version__ = "([^"]+)"', (ROOT / "csl_hf" / "__init__.py").read_text(), re.M).group(1)
# Runs csl-hf, or Python code, in one process with the Hub stand-in installed (tests/hub_stub.py, copied beside it).
LAUNCHER = '''import os, sys
from pathlib import Path
import hub_stub
with hub_stub.installed(Path(os.environ["HF_HUB_CACHE"])) as hub:
    if sys.argv[1] == "-c":
        exec(sys.argv[2], {"__name__": "__main__"})
        rc = 0
    else:
        from csl_hf.cli.main import main
        rc = main(sys.argv[1:])
sys.exit(f"network access attempted: {hub.blocked}" if hub.blocked else rc)
'''
# Loads pushed teachers where `import csl_hf` fails, as a user without csl_hf would.
WITHOUT_CSL_HF = '''import sys
sys.modules["csl_hf"] = None  # from here on, importing csl_hf raises ImportError
import torch
from transformers import AutoModel
m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
h, w = m.config.preprocessing[0]["size"]
with torch.no_grad():
    out = m(pixel_values=torch.rand(2, 3, h, w))
assert type(m).__module__.startswith("transformers_modules."), type(m).__module__
assert torch.allclose(out.probs.sum(-1), torch.ones(2, m.config.num_teachers))
print("loaded", type(m).__name__, tuple(out.probs.shape), m.config.levels)
'''


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"cannot build and install a wheel here: this interpreter has no {module}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the build inputs (the checkout is never written to)."""
    for module in ("setuptools", "pip", "venv"):
        _need(module)
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    wheels = list((tmp / "dist").glob("*.whl"))
    assert [w.name for w in wheels] == [f"csl_hf-{VERSION}-py3-none-any.whl"]
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel alone; this interpreter's site-packages appended for the dependencies."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    install = ["install", "--no-deps", "--no-index", "-q", str(wheel)]
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *install], capture_output=True,
                          text=True, timeout=300)
    if done.returncode and "--python" in done.stderr:  # a pip older than 22.3: give the venv a pip of its own
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, timeout=300)
        done = subprocess.run([str(python), "-m", "pip", *install], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    outer = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        outer.append(site.getusersitepackages())
    outer = [p for p in dict.fromkeys(outer) if os.path.isdir(p) and not Path(p).resolve().is_relative_to(ROOT)]
    (Path(purelib) / "_csl_test_dependencies.pth").write_text("\n".join(outer) + "\n")
    return root


def run(venv: Path, args: list, cwd: Path, timeout: int = 300) -> str:
    """Run a command of the venv from ``cwd``, offline, without PYTHONPATH; its stdout (asserting success)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg", TRANSFORMERS_VERBOSITY="error",
               HF_MODULES_CACHE=str(cwd / ".hf_modules"), HF_DATASETS_CACHE=str(cwd / ".hf_datasets"),
               CSL_HF_CACHE=str(cwd / ".csl_hf"))
    args = [str(venv / "bin" / args[0]), *map(str, args[1:])]
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args[:4])} ... exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stdout


def test_the_wheel_holds_every_package_file(wheel):
    """Every file under csl_hf/ (modules, the model card template, the PGR module's card, the shipped teacher
    mixture code) is in the wheel, with the console command and one version."""
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = z.read(f"csl_hf-{VERSION}.dist-info/entry_points.txt").decode()
        metadata = z.read(f"csl_hf-{VERSION}.dist-info/METADATA").decode()
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "csl_hf").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert package - names == set()
    assert {"csl_hf/outputs/templates/model_card.md", "csl_hf/metrics/pgr/README.md", "csl_hf/metrics/pgr/pgr.py",
            "csl_hf/models/teacher_mixture/hierarchy_rules.py"} <= names
    assert re.search(r"^csl-hf = csl_hf\.cli\.main:main$", entry_points, re.M), entry_points
    assert f"Version: {VERSION}" in metadata and "dist/csl_hf-*.whl" in metadata  # the README, with its install


def test_the_installed_wheel_answers(venv, tmp_path):
    """``csl-hf --help``, ``csl-hf env`` and the PGR metric, from the venv; csl_hf imported from the wheel."""
    assert all(f"  {c} " in run(venv, ["csl-hf", "--help"], tmp_path) for c in ("run", "teachers", "push", "env"))
    assert f"- csl_hf: {VERSION}" in run(venv, ["csl-hf", "env"], tmp_path)
    code = ("import csl_hf, sys\nfrom csl_hf.metrics import load_pgr_metric\n"
            "m = load_pgr_metric()\n"
            "out = m.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0], weak_accuracy=0.5,\n"
            "                ceiling_accuracy=1.0)\n"
            "print(csl_hf.__file__, csl_hf.__version__, out['pgr'])\n")
    where, version, pgr = run(venv, ["python", "-c", code], tmp_path).split()
    assert Path(where).is_relative_to(venv) and version == VERSION and float(pgr) == 50.0


def test_the_installed_wheel_runs_pushes_and_shares_teachers_and_cache(venv, tmp_path, local_hub):
    """A tiny run on a generated image folder; ``csl-hf push`` to the stand-in; its teachers and cache pushed; the
    teachers loaded without csl_hf; a run from the cache's repo id (``--cache_dir user/name``)."""
    from PIL import Image

    for c, name in enumerate(("red", "green", "blue", "grey")):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(12):
            color = [40 * (i % 4)] * 3
            color[c % 3] = 255 if c < 3 else 128
            Image.new("RGB", (16, 16), tuple(color)).save(tmp_path / "images" / name / f"{i}.png")
    stub = tmp_path / "stub"
    stub.mkdir()
    shutil.copy2(ROOT / "tests" / "hub_stub.py", stub / "hub_stub.py")
    (stub / "launch.py").write_text(LAUNCHER)
    tiny = ["--dataset_name", "images", "--student_model_name_or_path", "tiny-vit", "--teacher_size", 16,
            "--test_size", 12, "--max_train_samples", 20, "--num_train_epochs", 1, "--report_to", "none",
            "--disable_tqdm", "True"]

    run(venv, ["csl-hf", "run", *tiny, "--teacher_steps", 5, "--teachers_per_level", "1,2", "--output_dir", "run"],
        tmp_path)
    out = tmp_path / "run"
    assert {"config.json", "model.safetensors", "README.md", "csl_report.json", "pgr.png"} <= set(os.listdir(out))
    assert "csl_hf" in (out / "README.md").read_text()  # the card template came with the wheel
    assert "## Teachers" in (out / "teachers" / "README.md").read_text()

    run(venv, ["python", stub / "launch.py", "push", "run", "--hub_model_id", "stub-user/wheel-run"], tmp_path)
    assert local_hub.branches("stub-user/wheel-run") == {"main", "round-0", "round-1"}
    assert {"config.json", "model.safetensors", "README.md"} <= local_hub.files("stub-user/wheel-run")

    share = ('from csl_hf import CSLCache, TeacherMixture\n'
             'TeacherMixture.from_pretrained("run/teachers").push_to_hub("stub-user/wheel-teachers")\n'
             'CSLCache.load("run/cache").push_to_hub("stub-user/wheel-cache")\n')
    run(venv, ["python", stub / "launch.py", "-c", share], tmp_path)
    assert "modeling_teacher_mixture.py" in local_hub.files("stub-user/wheel-teachers")
    assert "cache.safetensors" in local_hub.files("stub-user/wheel-cache", repo_type="dataset")

    (tmp_path / "without_csl_hf.py").write_text(WITHOUT_CSL_HF)
    loaded = run(venv, ["python", "without_csl_hf.py", "stub-user/wheel-teachers"], tmp_path)
    assert "loaded TeacherMixture (2, 3, 4) [[0], [1, 2]]" in loaded, loaded

    # Pulling from the Hub is plain huggingface_hub reading the stand-in's cache offline: the real console command.
    # (--teachers_name_or_path with a repo id is the same download; tests/test_hub.py runs it in-process.)
    run(venv, ["csl-hf", "run", "--cache_dir", "stub-user/wheel-cache", "--output_dir", "from_cache",
               "--num_train_epochs", 1, "--report_to", "none", "--disable_tqdm", "True"], tmp_path)
    report = json.loads((tmp_path / "from_cache" / "csl_report.json").read_text())
    assert [r["level"] for r in report["rounds"]] == [0, 1]
