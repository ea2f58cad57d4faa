"""A user's local image folder as a ``datasets`` dataset (map-style or streaming).

Two layouts are supported::

    class layout                      domain layout
    path/<class>/<image>              path/<domain>/<class>/<image>

Detection rule (hidden entries, names starting with ".", and known junk such as ``__MACOSX``, ``Thumbs.db`` or
``desktop.ini`` are ignored everywhere; names starting with "_", like a camera's ``_DSC0001.JPG``, are kept):

- every top-level entry must be a directory (an image directly under ``path`` is an error);
- if every entry one level below (``path/<x>/<entry>``) is a directory → **domain layout**;
- if every such entry is a file → **class layout**;
- a mix of files and directories at that level is an error naming one of each.

Images are found by extension (the ``datasets`` "imagefolder" list: png, jpg, jpeg, bmp, gif,
tiff, webp, ...); other files, including ``metadata.csv``/``metadata.jsonl``, are ignored.
Loading goes through the ``datasets`` "imagefolder" builder with an explicit file list (so folder
names such as ``train``/``test`` are never mistaken for splits) and explicit features; the domain
layout loads one builder per domain and concatenates them.
``label`` is a ``ClassLabel`` over the sorted union of class-folder names across all domains, so
class ids agree between domains; a domain may miss some classes (allowed; a warning lists them).
In the domain layout a ``domain`` ``ClassLabel`` (sorted domain-folder names) is added.

A class folder without any image (empty, or holding only junk) stays in the label space, so the model's classes are
the folders the user made, and a warning names it: its class can be neither taught nor tested, which the user
should know, but refusing the whole folder for it would stop a run over, e.g., a class still being collected.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import datasets

__all__ = ["load_image_folder", "detect_layout", "IMAGE_EXTENSIONS"]

logger = logging.getLogger(__name__)


def _image_extensions() -> frozenset[str]:
    try:
        from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

        return frozenset(e.lower() for e in ImageFolder.EXTENSIONS)
    except Exception:  # pragma: no cover - layout of datasets internals changed
        return frozenset(".png .jpg .jpeg .bmp .gif .tif .tiff .webp .ppm .pgm .pbm .pnm".split())


IMAGE_EXTENSIONS = _image_extensions()


#: Entries made by operating systems and tools, never data: skipped like hidden (dot) files.
JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini", "__pycache__", "@eaDir", "$RECYCLE.BIN",
                        "System Volume Information"})


def _visible(directory: str) -> list[os.DirEntry]:
    with os.scandir(directory) as it:
        return sorted((e for e in it if not e.name.startswith(".") and e.name not in JUNK_NAMES),
                      key=lambda e: e.name)


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def detect_layout(path: str | os.PathLike) -> str:
    """Return ``"class"`` or ``"domain"`` for the folder at ``path`` (rule in the module docstring).

    Raises:
        ValueError (one line): not a directory, empty, images at the top level, or a mixed layout.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"image folder {path!r} is not a directory")
    top = _visible(path)
    if not top:
        raise ValueError(f"image folder {path!r} is empty; expected path/<class>/<image> or path/<domain>/<class>/<image>")
    stray = [e.name for e in top if not e.is_dir()]
    if stray:
        raise ValueError(
            f"image folder {path!r} has files at the top level (e.g. {stray[0]!r}); put images in "
            "path/<class>/<image> or path/<domain>/<class>/<image>"
        )
    second = [(d.name, e) for d in top for e in _visible(d.path)]
    dirs = [f"{parent}/{e.name}" for parent, e in second if e.is_dir()]
    files = [f"{parent}/{e.name}" for parent, e in second if not e.is_dir()]
    if dirs and files:
        raise ValueError(
            f"image folder {path!r} mixes directories ({dirs[0]!r}) and files ({files[0]!r}) at the second level; "
            "use path/<class>/<image> or path/<domain>/<class>/<image> throughout"
        )
    return "domain" if dirs else "class"


def _collect(path: str, layout: str) -> tuple[list[str], list[str], dict[str, set[str]]]:
    """Image files (sorted), domain names (sorted; empty for the class layout), classes per domain."""
    files: list[str] = []
    per_domain: dict[str, set[str]] = {}
    groups = [(None, d) for d in _visible(path)] if layout == "class" else [
        (dom.name, c) for dom in _visible(path) for c in _visible(dom.path)
    ]
    empty = []
    for domain, class_dir in groups:
        per_domain.setdefault(domain or "", set()).add(class_dir.name)  # a class exists even without images
        images = [e.path for e in _visible(class_dir.path) if e.is_file() and _is_image(e.name)]
        files += images
        if not images:
            empty.append(f"{domain}/{class_dir.name}" if domain else class_dir.name)
    if empty:
        logger.warning("image folder %r: class folder(s) %s hold no image; the class stays in the label space but "
                       "can be neither taught nor tested: add images or remove the folder", path, ", ".join(empty))
    domains = sorted(per_domain) if layout == "domain" else []
    return files, domains, per_domain


def load_image_folder(
    path: str | os.PathLike, streaming: bool = False, **load_kwargs: Any
) -> datasets.Dataset | datasets.IterableDataset:
    """Load a local image folder with the ``datasets`` "imagefolder" builder.

    Args:
        path: the folder, in the class or the domain layout (see the module docstring).
        streaming: return an ``IterableDataset`` (files are read lazily) instead of a ``Dataset``.
        **load_kwargs: forwarded to ``datasets.load_dataset`` (e.g. ``cache_dir``, ``num_proc``).

    Returns:
        a dataset with columns ``image`` (``Image()``), ``label`` (``ClassLabel``, sorted class-folder
        names across all domains) and, for the domain layout, ``domain`` (``ClassLabel``, sorted
        domain-folder names).  Rows are in sorted path order.

    Raises:
        ValueError (one line): bad layout (see :func:`detect_layout`) or no image files.
    """
    path = os.path.abspath(os.fspath(path))
    layout = detect_layout(path)
    files, domains, per_domain = _collect(path, layout)
    if not files:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS)[:8])
        raise ValueError(f"image folder {path!r} has no image files ({exts}, ...) in its {layout} layout")
    all_classes = sorted(set().union(*per_domain.values()))
    if layout == "domain":
        for dom in domains:
            missing = sorted(set(all_classes) - per_domain[dom])
            if missing:
                logger.warning("image folder %r: domain %r has no images of classes %s", path, dom, missing)

    label_feature = datasets.ClassLabel(names=all_classes)
    base = datasets.Features({"image": datasets.Image(), "label": label_feature})

    def load(file_list: list[str]):
        # explicit features: the builder's string labels are encoded by *name* into the global list
        return datasets.load_dataset(
            "imagefolder",
            data_files={"train": file_list},
            drop_labels=False,
            drop_metadata=True,
            features=base,
            split="train",
            streaming=streaming,
            **load_kwargs,
        )

    if layout == "class":
        return load(files)

    # Domain layout: one builder per domain (its files), a constant domain id, then concatenate.
    domain_feature = datasets.ClassLabel(names=domains)
    with_domain = datasets.Features({**base, "domain": domain_feature})
    parts = []
    for i, dom in enumerate(domains):
        prefix = os.path.join(path, dom) + os.sep
        part = load([f for f in files if f.startswith(prefix)])
        if streaming:
            part = part.map(lambda _example, _i=i: {"domain": _i}, features=with_domain)
        else:
            part = part.add_column("domain", [i] * len(part), feature=domain_feature)
        parts.append(part)
    return datasets.concatenate_datasets(parts)
