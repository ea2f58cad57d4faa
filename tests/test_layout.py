"""The package's shape: no import cycle (function-local imports included), no oversized module, the paper's method
free of the Trainer and of files, and every public name importable from ``csl_hf``."""

from __future__ import annotations

import ast
import importlib
import os
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "csl_hf"
MAX_LINES = 400


def _modules() -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is_package)}`` of every module of csl_hf."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _imports(name: str, path: Path, is_package: bool, modules: dict) -> set[str]:
    """The csl_hf modules that ``name`` imports anywhere in its body (module level and inside functions)."""
    package = name if is_package else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in modules and t != name)
    return out


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in csl_hf's import graph (Tarjan)."""
    modules = _modules()
    graph = {name: _imports(name, path, pkg, modules) for name, (path, pkg) in modules.items()}
    # A package's __init__ importing its own submodules is how packages are built, not a cycle; a submodule that
    # imports its package's __init__ is one (it re-enters a half-initialised package).
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_including_function_local_imports():
    assert import_cycles() == []


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The checker itself: two modules that import each other inside functions are one cycle."""
    fake = tmp_path / "csl_hf"
    (fake / "sub").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "sub" / "__init__.py").write_text("")
    (fake / "sub" / "a.py").write_text("def f():\n    from .b import g\n")
    (fake / "sub" / "b.py").write_text("def g():\n    from . import a\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert import_cycles() == [["csl_hf.sub.a", "csl_hf.sub.b"]]


def test_no_module_over_the_size_limit():
    long = {name: n for name, (path, _) in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_the_method_needs_no_trainer_and_no_files():
    """csl_hf.method is the paper as tensors and records: it imports neither the trainer nor the outputs, and never
    opens a file."""
    modules = _modules()
    for name, (path, is_package) in modules.items():
        if not name.startswith("csl_hf.method"):
            continue
        imported = _imports(name, path, is_package, modules)
        assert not {m for m in imported if m.startswith(("csl_hf.trainer", "csl_hf.outputs", "csl_hf.cli"))}, name
        text = path.read_text(encoding="utf-8")
        assert "open(" not in text and "transformers import Trainer" not in text, name


def test_every_public_name_imports_from_the_top_level():
    csl_hf = importlib.import_module("csl_hf")
    for name in csl_hf.__all__:
        assert getattr(csl_hf, name) is not None, name
    with pytest.raises(AttributeError):
        csl_hf.not_a_public_name  # noqa: B018


def test_importing_csl_hf_does_not_import_the_trainer():
    """The top level is lazy (TRL's _import_structure): a bare import registers the architectures and nothing more."""
    code = ("import sys, csl_hf, transformers; from transformers import AutoConfig; "
            "assert 'csl_hf.trainer.co_supervised_trainer' not in sys.modules, 'trainer imported'; "
            "assert 'csl_hf.cache.labeling' not in sys.modules, 'labeling imported'; "
            "AutoConfig.for_model('teacher_mixture')")
    import subprocess

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
