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


COLOURS = {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 220)}


def colour_folder(root, n=30, size=32, names=None):
    """An image folder ``root/<colour>/<i>.png``: noisy images of one colour per class (easy for any model)."""
    import numpy as np
    from PIL import Image

    for c, (name, rgb) in enumerate(COLOURS.items()):
        if names is not None and name not in names:
            continue
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(n):
            noise = np.random.default_rng(c * 100 + i).normal(0, 25, (size, size, 3))
            Image.fromarray(np.clip(np.array(rgb, float) + noise, 0, 255).astype(np.uint8)).save(
                os.path.join(root, name, f"{i:03d}.png"))
    return root


def run_cli(capsys, *argv, script=None):
    """Run the command line in-process: ``(exit status, stderr)`` (what the test printed before is dropped)."""
    capsys.readouterr()
    rc = (script or run_csl).cli([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip()
