"""A local dataset folder (or one data file), read the way ``datasets`` reads it.

A single file (parquet, arrow, csv, json) is read as ``datasets.load_dataset(<its type>, data_files=path)`` reads
it: one split. For a folder, `read_local_dataset` decides, in this order (``folder_layout="auto"``):

1. a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (``state.json`` or
   ``dataset_dict.json``): ``datasets.load_from_disk``;
2. anything ``datasets.load_dataset(path)`` does not read as an image folder (a local clone of a Hub dataset:
   ``README.md`` + ``data/*.parquet``, csv, json, arrow files...): ``datasets.load_dataset(path)``;
3. an image folder with metadata (``metadata.csv`` / ``metadata.jsonl`` / ``metadata.parquet``, whose ``label``
   column gives the classes): ``datasets.load_dataset(path)``; metadata without a label column, over images in class
   folders, gives way to the folder names (``drop_metadata=True``);
4. an image folder whose folders name splits, as ``datasets`` infers them (``train``/``training``,
   ``validation``/``valid``/``val``/``dev``, ``test``/``testing``/``eval``/``evaluation``; e.g.
   ``path/train/<class>/<image>`` + ``path/test/<class>/<image>``): one split per folder. When the top-level folders
   are the splits, each is read in the class layout or the domain layout
   (``path/<split>/<domain>/<class>/<image>``) with one label space over all splits; otherwise
   ``datasets.load_dataset(path)``. Images outside every split folder make the folder ambiguous (``datasets``
   would leave them out; as a domain or class layout the split folders would be domains or classes): a one-line
   error names both readings and ``--folder_layout``;
5. otherwise the class layout ``path/<class>/<image>`` or the domain layout ``path/<domain>/<class>/<image>``
   (`csl_hf.data.image_folder`).

``folder_layout`` = ``"splits"`` reads the folder as ``datasets.load_dataset`` does whatever else it holds;
``"domains"`` / ``"classes"`` read an image folder in that layout whatever its folder names.

String labels (metadata) become a ``ClassLabel`` over the sorted names of every split, so ids agree between splits.
The result is a ``Dataset`` (one split) or a ``DatasetDict`` (named splits); every step is logged at INFO.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import datasets

from .columns import DOMAIN_COLUMN_NAMES, LABEL_COLUMN_NAMES
from .image_folder import IMAGE_EXTENSIONS, JUNK_NAMES, load_image_folder, load_image_folder_splits

__all__ = ["FOLDER_LAYOUTS", "read_local_dataset", "is_saved_dataset", "encode_string_labels"]

logger = logging.getLogger(__name__)

#: The values of ``--folder_layout``.
FOLDER_LAYOUTS = ("auto", "splits", "domains", "classes")
METADATA_FILENAMES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
#: A single data file's type -> the ``datasets`` packaged builder that reads it.
DATA_FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json"}


def is_saved_dataset(path: str) -> bool:
    """A folder written by ``save_to_disk`` (what ``datasets.load_from_disk`` reads)."""
    from datasets import config

    return os.path.isfile(os.path.join(path, config.DATASETDICT_JSON_FILENAME)) or (
        os.path.isfile(os.path.join(path, config.DATASET_STATE_JSON_FILENAME))
        and os.path.isfile(os.path.join(path, config.DATASET_INFO_FILENAME)))


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".strip()


def _image_files(path: str) -> list[str]:
    """Every visible image file under ``path`` (hidden entries and junk skipped, as the image-folder reader does)."""
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in JUNK_NAMES)
        out += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".") and f not in JUNK_NAMES
                and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return out


def _split_files(builder) -> dict[str, list[str]]:
    return {str(split): [os.path.abspath(str(f)) for f in files]
            for split, files in (builder.config.data_files or {}).items()}


def _named_splits(path: str, split_files: dict[str, list[str]]) -> bool:
    """Whether ``datasets`` reads named splits out of the folder's names (or its README's configs)."""
    from datasets.data_files import DEFAULT_PATTERNS_ALL, get_data_patterns

    try:
        patterns = get_data_patterns(path)
    except Exception:  # noqa: BLE001 - no pattern matched: no named split
        patterns = DEFAULT_PATTERNS_ALL
    return patterns != DEFAULT_PATTERNS_ALL or set(split_files) != {"train"}


def _top_split_roots(path: str, split_files: dict[str, list[str]]) -> dict[str, list[str]] | None:
    """``{split: [top-level folders]}`` when every top-level folder holding images is one split's folder."""
    roots: dict[str, set[str]] = {}
    for split, files in split_files.items():
        for f in files:
            if os.path.splitext(f)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            rel = os.path.relpath(f, path).split(os.sep)
            if len(rel) < 2:
                return None
            roots.setdefault(split, set()).add(rel[0])
    owners: dict[str, str] = {}
    for split, tops in roots.items():
        for top in tops:
            if owners.setdefault(top, split) != split:
                return None
    with os.scandir(path) as it:
        image_dirs = {e.name for e in it if e.is_dir() and not e.name.startswith(".") and e.name not in JUNK_NAMES
                      and _image_files(e.path)}
    if not roots or image_dirs != set(owners):
        return None
    return {split: [os.path.join(path, t) for t in sorted(tops)] for split, tops in roots.items()}


def _describe_splits(dd) -> str:
    return ", ".join(f"{k} ({len(v)} images)" if isinstance(v, datasets.Dataset) else k for k, v in dd.items())


def encode_string_labels(dataset, columns: tuple[str, ...]):
    """String label/domain columns (metadata) as a ``ClassLabel`` over the sorted names of every split.

    Raises:
        ValueError (one line): a label column with empty values.
    """
    parts = dataset if isinstance(dataset, dict) else {"": dataset}
    first = next(iter(parts.values()))
    for col in columns:
        feature = (first.features or {}).get(col)
        if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
            continue
        names: set[str] = set()
        for split, ds in parts.items():
            values = ds.unique(col)
            if None in values or "" in values:
                where = f"the {split} split's " if split else ""
                raise ValueError(f"{where}column {col!r} has empty values: give every image a {col} in the metadata")
            names.update(values)
        feature = datasets.ClassLabel(names=sorted(names))
        parts = {k: v.cast_column(col, feature) for k, v in parts.items()}
        logger.info("column %r: %d classes from the metadata's names (%s)", col, len(names),
                    ", ".join(sorted(names)[:10]) + (", ..." if len(names) > 10 else ""))
    if isinstance(dataset, dict):
        return type(dataset)(parts)
    return parts[""]


def _labelled(dataset, columns: tuple[str, ...]) -> bool:
    features = next(iter(dataset.values())).features if isinstance(dataset, dict) else dataset.features
    return any(c in (features or {}) for c in columns)


def read_local_dataset(path: str, folder_layout: str = "auto", **load_kwargs: Any):
    """Read the local folder ``path`` (rules in the module docstring), map-style.

    Returns:
        a ``datasets.Dataset`` or, for a folder with named splits, a ``datasets.DatasetDict``.

    Raises:
        ValueError (one line): an unknown ``folder_layout``, a layout that does not fit, an ambiguous folder, or
        data ``datasets`` cannot read.
    """
    if folder_layout not in FOLDER_LAYOUTS:
        raise ValueError(f"folder_layout {folder_layout!r} does not exist; use one of {', '.join(FOLDER_LAYOUTS)}")
    path = os.path.abspath(path)
    label_columns = LABEL_COLUMN_NAMES + DOMAIN_COLUMN_NAMES
    if os.path.isfile(path):
        return encode_string_labels(_read_data_file(path, **load_kwargs), label_columns)
    if is_saved_dataset(path):
        if folder_layout in ("domains", "classes"):
            raise ValueError(f"{path!r} was written by save_to_disk, not an image folder: --folder_layout "
                             f"{folder_layout} does not apply; drop it")
        ds = datasets.load_from_disk(path, **{k: v for k, v in load_kwargs.items() if k == "keep_in_memory"})
        logger.info("%s: a save_to_disk folder, read with datasets.load_from_disk: %s", path,
                    _describe_splits(ds) if isinstance(ds, dict) else f"one split ({len(ds)} images)")
        return encode_string_labels(ds, label_columns)
    if folder_layout in ("domains", "classes"):
        layout = folder_layout[:-1] if folder_layout == "domains" else "class"
        ds = load_image_folder(path, layout=layout, **load_kwargs)
        logger.info("%s: read in the %s layout (--folder_layout %s)", path, layout, folder_layout)
        return ds
    try:
        builder = datasets.load_dataset_builder(
            path, **{k: v for k, v in load_kwargs.items() if k in ("cache_dir", "token", "download_config")})
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; the user gets one line
        if folder_layout == "splits":
            raise ValueError(f"datasets.load_dataset cannot read {path!r} ({_first_line(err)})") from None
        return load_image_folder(path, **load_kwargs)  # its own one-line errors say what layout it expects
    split_files = _split_files(builder)

    def as_datasets_reads_it(**extra):
        try:
            with _errors_raised_not_logged():
                ds = datasets.load_dataset(path, **load_kwargs, **extra)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"datasets.load_dataset cannot read {path!r} ({_first_line(err)})") from None
        logger.info("%s: read as datasets.load_dataset reads it (%s builder): %s", path, builder.name,
                    _describe_splits(ds))
        return _single(ds)

    images = builder.name == "imagefolder" or (_image_files(path) and _is_plain_image_folder(path))
    if not images:  # a clone of a Hub dataset (parquet, csv, json, arrow...)
        return encode_string_labels(as_datasets_reads_it(), label_columns)
    if builder.name != "imagefolder":  # images among more caption/notes files: their split files, as imagefolder's
        builder = datasets.load_dataset_builder("imagefolder", data_dir=path, **{
            k: v for k, v in load_kwargs.items() if k in ("cache_dir", "token", "download_config")})
        split_files = _split_files(builder)
    if any(os.path.basename(f) in METADATA_FILENAMES for files in split_files.values() for f in files):
        ds = as_datasets_reads_it()
        if _labelled(ds, LABEL_COLUMN_NAMES):
            return encode_string_labels(ds, label_columns)
        # datasets reads no folder labels beside metadata; in class folders the folder names are the classes
        columns = ", ".join((next(iter(ds.values())) if isinstance(ds, dict) else ds).features)
        if not _in_class_folders(path):
            raise ValueError(f"{path!r}: its metadata has no label column (columns: {columns}) and its images are not "
                             "in class folders; name the metadata's class column 'label'")
        logger.info("%s: its metadata has no label column (%s): the classes are the folder names", path, columns)
    if not _named_splits(path, split_files):
        if folder_layout == "splits":  # no split names: datasets' one train split, its labels the folder names
            return encode_string_labels(as_datasets_reads_it(), label_columns)
        return load_image_folder(path, **load_kwargs)
    covered = {f for files in split_files.values() for f in files}
    outside = [f for f in _image_files(path) if os.path.abspath(f) not in covered]
    if outside and folder_layout != "splits":
        raise ValueError(_ambiguous(path, split_files, outside))
    roots = _top_split_roots(path, split_files)
    if roots is None:
        return encode_string_labels(as_datasets_reads_it(), label_columns)
    flat = [r for rs in roots.values() for r in rs if any(
        e.is_file() and not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        for e in os.scandir(r))]
    if flat:
        name = os.path.basename(flat[0])
        raise ValueError(f"{path!r}: the split folder {name!r} holds images directly, without class folders or "
                         f"metadata to give their labels; put them in {name}/<class>/<image> or add a metadata.csv "
                         f"with a label column (or, if {', '.join(_tops(roots))} are classes, pass "
                         "--folder_layout classes)")
    dd = load_image_folder_splits(roots, **load_kwargs)
    logger.info("%s: its folders %s are splits, as datasets.load_dataset reads them: %s (--folder_layout domains "
                "reads them as domains instead)", path, ", ".join(_tops(roots)), _describe_splits(dd))
    return dd


def _data_file_type(path: str) -> str:
    name = path.lower()
    return next((ext for ext in sorted(DATA_FILE_BUILDERS, key=len, reverse=True) if name.endswith(ext)),
                os.path.splitext(name)[1])


def _read_data_file(path: str, **load_kwargs: Any) -> datasets.Dataset:
    """One data file (a parquet shard of a Hub dataset, an arrow file, a csv/json table) as ``datasets`` reads it
    with ``data_files``: one split. Raises ValueError (one line) for another type or a file it cannot read."""
    ext = _data_file_type(path)
    if ext not in DATA_FILE_BUILDERS:
        raise ValueError(f"{path!r} is a file of a type --dataset_name does not read ({ext or 'no extension'}); pass "
                         f"a folder (e.g. {os.path.dirname(path) or '.'!r}, the one holding it) or a "
                         f"{', '.join(DATA_FILE_BUILDERS)} file")
    try:
        with _errors_raised_not_logged():
            ds = datasets.load_dataset(DATA_FILE_BUILDERS[ext], data_files=path, split="train", **load_kwargs)
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; the user gets one line
        raise ValueError(f"datasets.load_dataset cannot read {path!r} ({_first_line(err)})") from None
    logger.info("%s: one %s file, read with datasets.load_dataset(%r, data_files=...): one split (%d rows)", path,
                ext, DATA_FILE_BUILDERS[ext], len(ds))
    return ds


@contextlib.contextmanager
def _errors_raised_not_logged():
    """``datasets`` logs some read errors before raising them; the raised error becomes our one line, so the log line
    would say the same thing twice."""
    datasets_logger = logging.getLogger("datasets")
    level = datasets_logger.level
    datasets_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        datasets_logger.setLevel(level)


def _in_class_folders(path: str) -> bool:
    """Every image sits in a folder below ``path`` that is not a split folder, so folder names can be classes."""
    from datasets.data_files import SPLIT_KEYWORDS

    split_names = {k.lower() for keywords in SPLIT_KEYWORDS.values() for k in keywords}
    parents = {os.path.dirname(f) for f in _image_files(path)}
    return bool(parents) and all(p != path and os.path.basename(p).lower() not in split_names for p in parents)


def _tops(roots: dict[str, list[str]]) -> list[str]:
    return [f"{os.path.basename(r)}/" for rs in roots.values() for r in rs]


def _single(ds):
    """A ``DatasetDict`` of one ``train`` split inferred from a folder without split names is just that split."""
    if isinstance(ds, datasets.DatasetDict) and list(ds) == ["train"]:
        return ds["train"]
    return ds


def _is_plain_image_folder(path: str) -> bool:
    """Only images (and text notes) in the folder: the image-folder reader takes it even when ``datasets`` would
    pick another builder for a few stray data files."""
    data_ext = {".parquet", ".arrow", ".csv", ".tsv", ".json", ".jsonl", ".zip", ".tar", ".gz", ".npz"}
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in JUNK_NAMES]
        if any(os.path.splitext(f)[1].lower() in data_ext for f in files if not f.startswith(".")):
            return False
    return True


def _ambiguous(path: str, split_files: dict[str, list[str]], outside: list[str]) -> str:
    from .image_folder import detect_layout

    splits = ", ".join(split_files)
    example = os.path.relpath(outside[0], path)
    try:
        layout = detect_layout(path)
    except ValueError:
        layout = None
    with os.scandir(path) as it:
        tops = sorted(e.name for e in it if e.is_dir() and not e.name.startswith(".") and e.name not in JUNK_NAMES)
    other = {"domain": f"as a domain layout its domains are {', '.join(tops)} (--folder_layout domains)",
             "class": f"as a class layout its classes are {', '.join(tops)} (--folder_layout classes)"}.get(
        layout, "move them into a split folder")
    return (f"{path!r} is ambiguous: datasets.load_dataset reads folder names as splits ({splits}) and would leave "
            f"out {len(outside)} image(s) outside them (e.g. {example!r}) (--folder_layout splits); {other}; "
            "pass the --folder_layout you mean")
