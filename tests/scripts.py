"""The example scripts as modules, for tests that call their `main`/`cli` in-process (the same code as
``python examples/<name>.py``), loaded by file path: nothing is added to ``sys.path``."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example(name: str, folder: str = "examples"):
    path = os.path.join(ROOT, folder, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"csl_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


run_csl = load_example("run_csl")
train_teachers = load_example("train_teachers")
