"""``csl-hf env``: what a bug report needs: the versions of csl_hf, Python, torch and the Hugging Face libraries it
builds on, the platform and the devices torch sees (as ``transformers env`` and ``accelerate env`` print theirs)."""

from __future__ import annotations

import importlib.metadata
import os
import platform

__all__ = ["environment", "cli"]

PACKAGES = ("csl_hf", "torch", "transformers", "datasets", "accelerate", "peft", "huggingface_hub", "safetensors",
            "evaluate", "numpy", "pillow")


def environment() -> dict[str, str]:
    """``{name: value}``: package versions (``not installed`` where absent), Python, the platform and devices."""
    import torch

    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = platform.python_version()
    out["platform"] = platform.platform()
    out["cpu"] = f"{platform.machine()}, {os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out["devices"] = f"{len(names)} CUDA: " + ", ".join(names) + f" (CUDA {torch.version.cuda})"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out["devices"] = "Apple MPS"
    else:
        out["devices"] = "CPU only"
    return out


def cli(argv: list[str] | None = None, prog: str = "csl-hf env") -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: {prog}\n\n{__doc__}")
        return 0
    if argv:
        print(f"error: {prog} takes no arguments, got {' '.join(argv)}; run {prog} alone", flush=True)
        return 2
    print("Copy and paste this into a bug report:\n")
    for name, value in environment().items():
        print(f"- {name}: {value}")
    return 0
