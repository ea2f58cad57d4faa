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


#: Fashion-MNIST idx files written by `write_fashion_mnist`: images per class of each official split.
PER_CLASS = {"train": 4, "test": 2}


def _idx_bytes(array):
    magic = 0x0800 + array.ndim  # unsigned bytes, ndim dimensions
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    import numpy as np

    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_split(split: str, per_class: dict | None = None):
    """Images whose pixels encode (row, y, x), labels cycling over the 10 classes."""
    import numpy as np

    n = 10 * (per_class or PER_CLASS)[split]
    offset = 0 if split == "train" else 100
    rows = np.arange(n)[:, None, None] + offset
    yy, xx = np.mgrid[:28, :28]
    images = ((rows * 7 + yy * 3 + xx) % 256).astype(np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_fashion_mnist(folder, gz: bool = True, per_class: dict | None = None) -> dict:
    """Tiny Fashion-MNIST idx files (the Debian package's names) in ``folder``: ``{split: (images, labels)}``."""
    import gzip

    from csl_hf.data import fashion_mnist as fm

    os.makedirs(folder, exist_ok=True)
    out = {}
    for split, (img_stem, lab_stem) in fm._FILES.items():
        images, labels = make_split(split, per_class)
        for stem, array in ((img_stem, images), (lab_stem, labels)):
            data = _idx_bytes(array)
            path = os.path.join(folder, stem + (".gz" if gz else ""))
            with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
                f.write(data)
        out[split] = (images, labels)
    return out


def run_without_csl_hf(code: str, cwd) -> str:
    """Run ``code`` in a fresh interpreter that must never import csl_hf (what a user of a saved checkpoint has);
    returns its stdout, fails the test with its stderr."""
    import subprocess

    code += "\nimport sys\nassert 'csl_hf' not in sys.modules, 'csl_hf was imported'\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=str(cwd))
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
