"""The README's Python snippet runs as written (in a fresh interpreter, in an empty directory)."""

import os
import re
import subprocess
import sys

from scripts import ROOT


def test_readme_python_snippet_runs_as_written(tmp_path):
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split("## In Python", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=900,
                          cwd=str(tmp_path), env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'eval_accuracy'" in done.stdout and "'label'" in done.stdout
    assert {"model.safetensors", "README.md", "csl_report.json", "cache", "teachers"} <= set(
        os.listdir(tmp_path / "csl_python"))
    import json

    report = json.loads((tmp_path / "csl_python" / "csl_report.json").read_text())
    # The snippet's teachers have gate teachers, so the default routing (auto) routes class levels by them.
    assert [r["assignment"] for r in report["rounds"]] == ["none", "oos_gate", "oos_gate"]
