"""Every command line the README and docs/ show runs as written, in the order shown, from a clean directory.

Each shell block of README.md and docs/*.md is read; each command line in it is either **run** (with small caps
appended: fewer images, teacher steps and epochs, so that the whole file takes minutes; a command that resumes or
reruns a recorded run gets none) or, where it needs what a test cannot have (a GPU, several machines, the Hub, hours
of benchmark), **checked**: its flags are parsed by the very parser the script uses, so a renamed or removed flag
still fails here. A line with placeholders (``PATH_OR_HUB_ID``, ``[--flag]``, ``...``) is a synopsis, not a command.
``./my_images`` and ``./my_vit`` stand for the reader's own data and checkpoint: they are made here, and so are tiny
Fashion-MNIST idx files (``CSL_FASHION_MNIST_DIR``) for the lines that need ``apt-get install dataset-fashion-mnist``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import ROOT, colour_folder, load_example, write_fashion_mnist

DOCS = [Path(ROOT) / "README.md", *sorted((Path(ROOT) / "docs").glob("*.md"))]
PLACEHOLDERS = ("PATH_OR_HUB_ID", "NODE0_IP", "...", " [", "|")
#: Small caps for a run on images (a run from a cache, a resume or a recorded config gets only what applies).
CAPS = ["--teacher_size", "0.2", "--test_size", "0.2", "--max_train_samples", "120", "--max_eval_samples", "60",
        "--teacher_steps", "3", "--num_train_epochs", "1", "--labeling_batch_size", "64", "--student_image_size", "32",
        "--baselines", "none", "--compare_label_types", "False", "--disable_tqdm", "True"]
FULL_CAPS = ["--image_cache_mb", "64", "--head_warmup_epochs", "1"]
RECIPE_CAPS = ["--teacher_train_size", "60", "--w2s_train_size", "60", "--test_size", "40", "--teacher_steps", "2",
               "--num_train_epochs", "1", "--baselines", "none", "--compare_label_types", "False",
               "--disable_tqdm", "True"]
#: Commands that need what no test has: checked (flags parsed), not run.
NOT_RUN = ("imagenet_recipe.yaml",  # ImageNet from the Hub
           "multi_gpu_ddp.yaml", "multi_node.yaml", "fsdp.yaml",  # GPUs, machines
           "benchmarks/")  # minutes to hours each (their own docs give the times)


def shell_commands(path: Path) -> list[str]:
    """The command lines of a markdown file's shell blocks, continuation lines joined, trailing comments dropped."""
    out, fence, lang, pending = [], False, "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence, lang = (not fence), line[3:].strip()
            continue
        if not fence or lang not in ("bash", "sh", ""):
            continue
        text = (pending + " " + line.strip()) if pending else line.strip()
        if text.endswith("\\"):
            pending = text[:-1].rstrip()
            continue
        pending = ""
        text = re.split(r"\s+#\s", text)[0].strip()
        for part in text.split("&&"):  # `pip install ... && python examples/run_csl.py`: the run is a command
            part = part.strip()
            if re.match(r"(python|accelerate|csl-hf)\b", part) and "-m pytest" not in part:
                out.append(part)
    return out


def test_the_reader_finds_the_readme_commands():
    commands = shell_commands(Path(ROOT) / "README.md")
    assert "python examples/run_csl.py --resume_from_checkpoint out" in commands
    assert any(c.startswith("accelerate launch") and "cpu_2proc" in c for c in commands)


CHECK_BENCHMARKS = """
import argparse, json, runpy, sys
class Parsed(Exception):
    pass
parse_args, parse_known_args = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
def parse_args_then_stop(self, args=None, namespace=None):
    self.inside_parse_args = True  # parse_args calls parse_known_args, then refuses what is left over
    parse_args(self, args, namespace)
    raise Parsed
def parse_known_args_then_stop(self, args=None, namespace=None):
    result = parse_known_args(self, args, namespace)
    if not getattr(self, "inside_parse_args", False):
        raise Parsed
    return result
argparse.ArgumentParser.parse_args = parse_args_then_stop
argparse.ArgumentParser.parse_known_args = parse_known_args_then_stop
for script, argv in json.loads(sys.argv[1]):
    sys.argv = [script, *argv]
    try:
        runpy.run_path(script, run_name="__main__")
    except Parsed:
        continue
    raise SystemExit(f"{script} {argv}: not parsed")
"""


def check_flags(checks: list[tuple[str, list[str]]], workdir: Path) -> None:
    """Parse each command's flags with the script's own parser, then stop: the flags and values are valid.
    Example scripts are parsed here; benchmarks in one subprocess (they set up their own process when imported)."""
    import json

    from csl_hf.cli.arguments import parse_run_args

    benchmarks = []
    for script, argv in checks:
        if script.startswith("examples/"):
            parse_run_args(load_example(Path(script).stem).build_parser(), argv)
        else:
            benchmarks.append((os.path.join(ROOT, script), argv))
    if benchmarks:
        done = subprocess.run([sys.executable, "-c", CHECK_BENCHMARKS, json.dumps(benchmarks)], cwd=workdir,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]


def localize(word: str, workdir: Path, script: bool = False) -> str:
    """A doc's word as the test runs it: the repo's files by absolute path (the test's cwd is ``workdir``), a doc's
    ``/tmp/...`` in the test's own folder. Each word is mapped once, from the doc's text, so a checkout that itself
    lives under /tmp keeps its paths."""
    if word.startswith("/tmp/"):
        return str(workdir / Path(word).name)
    if word.startswith("examples/configs") or (script and word.endswith(".py")):
        return os.path.join(ROOT, word)
    return word


def run_command_line(command: str, workdir: Path, monkeypatch) -> None:
    words = shlex.split(command)
    if words[0] == "accelerate":  # a real launch: two CPU processes
        words = [localize(w, workdir, script="-m" not in words) for w in words]
        caps = RECIPE_CAPS if "imagenet_recipe" in command else CAPS
        launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
        done = subprocess.run([launcher, *words[1:], *caps], cwd=workdir,
                              capture_output=True, text=True, timeout=900,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        return
    script, argv = words[1], words[2:]
    argv = [localize(a, workdir) for a in argv]
    if "--help" in argv:
        with pytest.raises(SystemExit) as stop:
            load_example(Path(script).stem).main(argv)
        assert stop.value.code == 0
        return
    recorded = any(a.endswith(".yaml") and "examples/configs" not in a for a in argv)
    if "--resume_from_checkpoint" in argv or recorded:
        caps = []
    elif "--cache_dir" in argv:
        caps = ["--num_train_epochs", "1", "--disable_tqdm", "True"]
    elif "imagenet_recipe" in script:
        caps = RECIPE_CAPS
    else:
        caps = CAPS + (FULL_CAPS if "--student_mode" in argv and "full" in argv else [])
    monkeypatch.chdir(workdir)
    from csl_hf.cli.console import run_command

    assert run_command(load_example(Path(script).stem).main, [*argv, *caps]) == 0, command


def readers_own_files(workdir: Path, monkeypatch) -> None:
    """``./my_images`` (an image folder) and ``./my_vit`` (a checkpoint with its processor), as a reader has them, and
    the Fashion-MNIST files the Debian package would install (small, in the Debian names)."""
    write_fashion_mnist(workdir / "fashion-mnist", per_class={"train": 30, "test": 6})
    monkeypatch.setenv("CSL_FASHION_MNIST_DIR", str(workdir / "fashion-mnist"))
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    colour_folder(workdir / "my_images", n=40, size=32)
    ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=64)).save_pretrained(
        workdir / "my_vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(workdir / "my_vit")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_line_runs_as_written_in_order(doc, tmp_path, monkeypatch):
    commands = shell_commands(doc)
    if not commands:
        pytest.skip("no command lines")
    readers_own_files(tmp_path, monkeypatch)
    checks = []
    for command in commands:
        if any(p in command for p in PLACEHOLDERS):
            continue  # a synopsis
        words = shlex.split(command)
        if words[0] == "csl-hf":
            words = ["python", "examples/run_csl.py" if words[1] == "run" else "examples/train_teachers.py",
                     *words[2:]]
        if any(n in command for n in NOT_RUN):
            script = next(w for w in words if w.endswith(".py"))
            argv = words[words.index(script) + 1:]
            argv = [os.path.join(ROOT, a) if a.startswith("examples/configs") else a for a in argv]
            checks.append((script, argv))
            continue
        run_command_line(" ".join(shlex.quote(w) for w in words), tmp_path, monkeypatch)
    check_flags(checks, tmp_path)
