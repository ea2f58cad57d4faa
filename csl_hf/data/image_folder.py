"""A user's local image folder as a ``datasets`` dataset (map-style or streaming).

Two layouts are supported::

    class layout                      domain layout
    path/<class>/<image>              path/<domain>/<class>/<image>

Detection rule (hidden entries, names starting with ".", and known junk such as ``__MACOSX``, ``Thumbs.db`` or
``desktop.ini`` are ignored everywhere; names starting with "_", like a camera's ``_DSC0001.JPG``, are kept):

- an image directly under ``path`` is an error (other files there, a README or a metadata.csv, are ignored);
- if every entry one level below (``path/<x>/<entry>``) is a directory → **domain layout**;
- if every such entry is an image → **class layout**;
- a mix of directories and images at that level is an error naming one of each.

Images are found by extension (the ``datasets`` "imagefolder" list: png, jpg, jpeg, bmp, gif,
tiff, webp, ...); other files, including ``metadata.csv``/``metadata.jsonl``, are ignored.
Loading goes through the ``datasets`` "imagefolder" builder with an explicit file list and explicit features; the
domain layout loads one builder per domain and concatenates them. Which reading a folder gets (split folders such as
``train/``/``test/``, metadata, ``save_to_disk``...) is decided before, by `csl_hf.data.local`; a folder whose
top-level folders are splits is read split by split here (`load_image_folder_splits`), each split in one of the two
layouts.
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

__all__ = ["load_image_folder", "load_image_folder_splits", "detect_layout", "IMAGE_EXTENSIONS", "JUNK_NAMES"]

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
    stray = [e.name for e in top if not e.is_dir() and _is_image(e.name)]
    if stray:
        raise ValueError(
            f"image folder {path!r} has images at the top level (e.g. {stray[0]!r}); put images in "
            "path/<class>/<image> or path/<domain>/<class>/<image>"
        )
    top = [e for e in top if e.is_dir()]
    if not top:
        raise ValueError(f"image folder {path!r} has no folders; expected path/<class>/<image> or "
                         "path/<domain>/<class>/<image>")
    second = [(d.name, e) for d in top for e in _visible(d.path)]
    dirs = [f"{parent}/{e.name}" for parent, e in second if e.is_dir()]
    files = [f"{parent}/{e.name}" for parent, e in second if not e.is_dir() and _is_image(e.name)]
    if dirs and files:
        raise ValueError(
            f"image folder {path!r} mixes directories ({dirs[0]!r}) and images ({files[0]!r}) at the second level; "
            "use path/<class>/<image> or path/<domain>/<class>/<image> throughout"
        )
    return "domain" if dirs else "class"


def _collect(path: str, layout: str) -> tuple[list[str], list[str], dict[str, set[str]]]:
    """Image files (sorted), domain names (sorted; empty for the class layout), classes per domain."""
    files: list[str] = []
    per_domain: dict[str, set[str]] = {}
    groups = [(None, d) for d in _visible(path) if d.is_dir()] if layout == "class" else [
        (dom.name, c) for dom in _visible(path) if dom.is_dir() for c in _visible(dom.path) if c.is_dir()
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
    path: str | os.PathLike, streaming: bool = False, layout: str | None = None, **load_kwargs: Any
) -> datasets.Dataset | datasets.IterableDataset:
    """Load a local image folder with the ``datasets`` "imagefolder" builder.

    Args:
        path: the folder, in the class or the domain layout (see the module docstring).
        streaming: return an ``IterableDataset`` (files are read lazily) instead of a ``Dataset``.
        layout: ``"class"`` or ``"domain"`` to read the folder in that layout whatever its folder names; ``None``
            detects it (`detect_layout`).
        **load_kwargs: forwarded to ``datasets.load_dataset`` (e.g. ``cache_dir``, ``num_proc``).

    Returns:
        a dataset with columns ``image`` (``Image()``), ``label`` (``ClassLabel``, sorted class-folder
        names across all domains) and, for the domain layout, ``domain`` (``ClassLabel``, sorted
        domain-folder names).  Rows are in sorted path order.

    Raises:
        ValueError (one line): bad layout (see :func:`detect_layout`) or no image files.
    """
    path = os.path.abspath(os.fspath(path))
    return _load_roots({"train": [path]}, streaming, layout, load_kwargs)["train"]


def load_image_folder_splits(
    roots: dict[str, list[str]], streaming: bool = False, **load_kwargs: Any
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load a folder whose top-level folders are its splits (``path/train/...``, ``path/test/...``, as the
    ``datasets`` docs lay them out), each split in the class or the domain layout.

    Args:
        roots: split name -> its folders (``{"train": [".../train"], "test": [".../test"]}``; several folders of
            one split, e.g. ``train/`` and ``training/``, are read as one, as ``datasets`` does).
        streaming, **load_kwargs: as in `load_image_folder`.

    Returns:
        a ``DatasetDict`` (``IterableDatasetDict`` when streaming) with the columns of `load_image_folder`; the
        ``label`` (and ``domain``) ``ClassLabel`` is the sorted union over all splits, so ids agree between splits.

    Raises:
        ValueError (one line): a split folder with a bad layout, splits in different layouts, or no image files.
    """
    out = _load_roots({k: [os.path.abspath(os.fspath(r)) for r in v] for k, v in roots.items()}, streaming, None,
                      load_kwargs)
    return datasets.IterableDatasetDict(out) if streaming else datasets.DatasetDict(out)


def _load_roots(roots: dict[str, list[str]], streaming: bool, layout: str | None, load_kwargs: dict) -> dict:
    """Read every split (its folders, each in the same layout) with one label space (and domain space)."""
    layouts = {}
    for split, folders in roots.items():
        for folder in folders:
            layouts[folder] = layout if layout is not None else detect_layout(folder)
            if layout is not None:
                _check_forced(folder, layout)
    if len(set(layouts.values())) > 1:
        by = {v: k for k, v in layouts.items()}
        raise ValueError(f"the split folders {by['class']!r} (path/<class>/<image>) and {by['domain']!r} "
                         "(path/<domain>/<class>/<image>) have different layouts; use one layout in every split")
    kind = next(iter(layouts.values()))
    collected = {split: [_collect(folder, kind) for folder in folders] for split, folders in roots.items()}
    files = {split: [f for c in parts for f in c[0]] for split, parts in collected.items()}
    per_domain: dict[str, set[str]] = {}
    for parts in collected.values():
        for _, _, classes in parts:
            for dom, names in classes.items():
                per_domain.setdefault(dom, set()).update(names)
    where = " and ".join(f for folders in roots.values() for f in folders)
    if not any(files.values()):
        exts = ", ".join(sorted(IMAGE_EXTENSIONS)[:8])
        raise ValueError(f"image folder {where!r} has no image files ({exts}, ...) in its {kind} layout")
    empty_splits = [split for split, f in files.items() if not f]
    if empty_splits:
        raise ValueError(f"the {empty_splits[0]} split of {where!r} has no image files; add images to it or remove "
                         "its folder")
    all_classes = sorted(set().union(*per_domain.values()))
    domains = sorted(per_domain) if kind == "domain" else []
    if layout is None:  # detected, not asked for: say which reading it is, and how to ask for the other
        if kind == "domain":
            logger.info("image folder %r: read as path/<domain>/<class>/<image>, %d domains (%s) of %d classes "
                        "(--folder_layout classes reads its top folders as classes)", where, len(domains),
                        ", ".join(domains[:6]) + (", ..." if len(domains) > 6 else ""), len(all_classes))
        else:
            logger.info("image folder %r: read as path/<class>/<image>, %d classes", where, len(all_classes))
    for dom in domains:
        missing = sorted(set(all_classes) - per_domain[dom])
        if missing:
            logger.warning("image folder %r: domain %r has no images of classes %s", where, dom, missing)

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

    if kind == "class":
        return {split: load(f) for split, f in files.items()}

    # Domain layout: one builder per domain (its files), a constant domain id, then concatenate.
    domain_feature = datasets.ClassLabel(names=domains)
    with_domain = datasets.Features({**base, "domain": domain_feature})
    out = {}
    for split, folders in roots.items():
        parts = []
        for i, dom in enumerate(domains):
            prefixes = tuple(os.path.join(folder, dom) + os.sep for folder in folders)
            dom_files = [f for f in files[split] if f.startswith(prefixes)]
            if not dom_files:
                continue
            part = load(dom_files)
            if streaming:
                part = part.map(lambda _example, _i=i: {"domain": _i}, features=with_domain)
            else:
                part = part.add_column("domain", [i] * len(part), feature=domain_feature)
            parts.append(part)
        out[split] = datasets.concatenate_datasets(parts)
    return out


def _check_forced(path: str, layout: str) -> None:
    """A layout the user asked for (``--folder_layout``) must fit the folder: one line naming the folder if not."""
    if not os.path.isdir(path):
        raise ValueError(f"image folder {path!r} is not a directory")
    top = _visible(path)
    stray = [e.name for e in top if not e.is_dir() and _is_image(e.name)]
    if not any(e.is_dir() for e in top) or stray:
        raise ValueError(f"image folder {path!r} is not in the {layout} layout: it has "
                         f"{f'images at the top level (e.g. {stray[0]!r})' if stray else 'no folders'}")
    top = [e for e in top if e.is_dir()]
    if layout == "domain":
        flat = [f"{d.name}/{e.name}" for d in top for e in _visible(d.path) if not e.is_dir() and _is_image(e.name)]
        if flat:
            raise ValueError(f"image folder {path!r} is not in the domain layout path/<domain>/<class>/<image>: "
                             f"{flat[0]!r} is a file, not a class folder")
