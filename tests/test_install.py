"""What the README's "Install" section promises, checked without building anything (tests/test_wheel.py builds and
installs the wheel): the first two commands as they were, one version, the one-line message of a missing data
package. (The README's ``accelerate launch ... -m csl_hf.cli run`` line runs in tests/test_docs_commands.py.)"""

import importlib.util
import os
import re
import runpy

import pytest
from scripts import ROOT, run_csl

import csl_hf

README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def test_the_first_two_commands_are_unchanged():
    first = re.search(r"```bash\n(.*?)```", README, re.S).group(1).splitlines()
    assert first[:2] == [
        'pip install "torch==2.13.0" -e ".[dev]" && pip install --no-deps animal-mnist==0.4 && python examples/run_csl.py',
        'pip install "torch==2.13.0" -e ".[dev]" && pip install --no-deps animal-mnist==0.4 && HF_HUB_OFFLINE=1 '
        "python -m pytest -q tests",
    ]


def test_setup_py_reads_the_one_version(monkeypatch):
    """setup.py's version is csl_hf.__version__ (read from csl_hf/__init__.py), and it installs the csl-hf command."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("no setuptools")
    import setuptools

    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: seen.update(kwargs))
    monkeypatch.chdir(ROOT)
    runpy.run_path("setup.py")
    assert seen["version"] == csl_hf.__version__ and re.fullmatch(r"\d+\.\d+\.\d+\S*", csl_hf.__version__)
    assert seen["entry_points"]["console_scripts"] == ["csl-hf=csl_hf.cli.main:main"]
    assert "dist/csl_hf-*.whl" in README and "pip install csl_hf" in README


def test_a_missing_animal_mnist_is_one_line_with_the_install_command(monkeypatch, tmp_path, capsys):
    from csl_hf.data import animal_mnist

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "animal_mnist" else
                        find_spec(name, *a))
    animal_mnist._load_arrays.cache_clear()
    monkeypatch.chdir(tmp_path)
    assert run_csl.cli(["--output_dir", "out"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: Animal-MNIST (--dataset_name animal_mnist, the default) needs its images from PyPI: pip "
                   "install --no-deps animal-mnist==0.4 (--no-deps: its metadata asks for TensorFlow, which csl_hf "
                   "never imports)"]
    assert not (tmp_path / "out").exists()
    animal_mnist._load_arrays.cache_clear()  # the next test reads the real files again

