"""Small helpers shared across csl_hf: atomic writes and dataclass settings as plain values.

**Atomic writes**: every file and directory csl_hf writes is whole at any time, with the mode a plain write would
give it under the process's umask (not the owner-only mode of the temporary names). A run can be killed at any point
(Ctrl-C, a preempted node, a full disk). Everything it writes goes to a temporary name in the same directory first
and is renamed into place (``os.replace`` is atomic on one filesystem), so a reader sees either the previous version
or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "staged_directory", "publish_files", "jsonable",
           "field_default", "changed_fields"]


def _umask() -> int:
    """The process's umask (read by setting and restoring it: the only way the OS offers)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_created(path: str, directory: bool = False) -> None:
    """Give a temporary file or directory the mode a plain ``open`` / ``mkdir`` would: ``mkstemp`` and ``mkdtemp``
    create them owner-only (0600 / 0700), which would make the run's outputs unreadable to anyone else."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _as_created_tree(directory: str) -> None:
    """`_as_created` for a directory and everything in it (writers such as safetensors' create owner-only files)."""
    _as_created(directory, directory=True)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            _as_created(os.path.join(root, name), directory=True)
        for name in files:
            _as_created(os.path.join(root, name))


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "") -> str:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    Returns ``path``. If ``write`` raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1], dir=directory)
    os.close(fd)
    try:
        write(tmp)
        _as_created(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> str:
    """Write ``obj`` as indented JSON (no NaN: strict JSON that every reader parses) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike) -> Iterator[str]:
    """Build a directory under a temporary name and move it onto ``final`` only when the block succeeds.

    The previous ``final`` stays whole until the new one is in place (it is moved aside, then removed); a failure
    inside the block leaves ``final`` untouched and removes the temporary directory.
    """
    final = os.path.abspath(os.fspath(final))
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.tmp-", dir=parent)
    try:
        yield tmp
        _as_created_tree(tmp)
        if os.path.isdir(final):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.old-", dir=parent)
            os.rmdir(old)
            os.replace(final, old)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old, final)  # put the previous version back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_files(source_dir: str, target_dir: str) -> list[str]:
    """Move every file of ``source_dir`` into ``target_dir``, one atomic rename per file (each file is whole at any
    time; used where the target directory holds other things that must stay, e.g. the final student in
    ``OUTPUT_DIR``). Returns the moved names."""
    os.makedirs(target_dir, exist_ok=True)
    _as_created_tree(source_dir)
    names = sorted(os.listdir(source_dir))
    for name in names:
        os.replace(os.path.join(source_dir, name), os.path.join(target_dir, name))
    return names


# ---------------------------------------------------------------------------------------- dataclass settings
def jsonable(value: Any) -> Any:
    """A settings value as plain JSON: enums (``SchedulerType.COSINE``, ``OptimizerNames.ADAMW_TORCH``) by value."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(getattr(value, "value", value))


def field_default(f) -> Any:
    """A dataclass field's declared default (calling its ``default_factory``), or ``dataclasses.MISSING``."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING


def changed_fields(obj) -> list[str]:
    """Names of the dataclass fields of ``obj`` whose values differ from their declared defaults."""
    out = []
    for f in dataclasses.fields(obj):
        default = field_default(f)
        if default is not dataclasses.MISSING and jsonable(getattr(obj, f.name)) != jsonable(default):
            out.append(f.name)
    return out


def closest_names(name: str, names: list[str], limit: int = 3) -> list[str]:
    """The names a misspelt or shortened ``name`` most likely meant (at most ``limit``): those it begins first, shortest
    first (``student_model`` -> ``student_model_name_or_path``, which the spelling distance alone ranks below
    ``student_mode``), else the closest spelling (`difflib.get_close_matches`)."""
    import difflib

    starts = sorted((n for n in names if n.startswith(name)), key=len)
    return starts[:limit] if starts else difflib.get_close_matches(name, names, n=1)
