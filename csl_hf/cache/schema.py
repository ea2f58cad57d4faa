"""The schema of ``cache.json`` (docs/cache.md), checked key by key before anything is built from it: a hand-written
file with a wrong type (``id2label`` as a list, or keyed by names; ``student`` as a string) is one `CacheError` line
naming the key, what it holds and what it must hold."""

from __future__ import annotations

from typing import Any

from ..errors import CacheError

__all__ = ["validate_metadata"]

REQUIRED = ("num_labels", "levels", "specialties")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return f"the string {value[:30]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_metadata(meta: Any, path: str) -> None:
    """Check every key of a loaded ``cache.json``.

    Raises:
        `CacheError` (one line): not an object, a required key missing, or a key of the wrong type.
    """
    def fail(key: str, must: str, example: str) -> None:
        raise CacheError(f"{path}: {key!r} must be {must}, got {_kind(meta[key])}; e.g. {example} (see docs/cache.md)")

    if not isinstance(meta, dict):
        raise CacheError(f"{path} must hold a JSON object, got {_kind(meta)}; see docs/cache.md")
    for key in REQUIRED:
        if key not in meta:
            raise CacheError(f"{path} lacks the key {key!r}; add it (see docs/cache.md)")
    if not _is_int(meta["num_labels"]) or meta["num_labels"] < 2:
        fail("num_labels", "an integer >= 2 (the number of classes)", '"num_labels": 10')
    num_labels = meta["num_labels"]
    levels = meta["levels"]
    if not isinstance(levels, list) or not all(isinstance(lv, list) and all(map(_is_int, lv)) for lv in levels):
        fail("levels", "a list of lists of teacher indices", '"levels": [[0], [1, 2]]')
    specs = meta["specialties"]
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        fail("specialties", 'a list of {"classes": [...]} or {"domain": name} objects, one per teacher',
             '"specialties": [{"classes": [0, 1, 2, 3]}, {"classes": [0, 1]}, {"classes": [2, 3]}]')
    for t, spec in enumerate(specs):
        classes, domain = spec.get("classes"), spec.get("domain")
        if classes is not None and (not isinstance(classes, list) or not all(map(_is_int, classes))):
            raise CacheError(f"{path}: specialty {t}'s 'classes' must be a list of class ids, got {_kind(classes)}")
        if domain is not None and not isinstance(domain, str):
            raise CacheError(f"{path}: specialty {t}'s 'domain' must be a domain name, got {_kind(domain)}")
    if "id2label" in meta and meta["id2label"] is not None:
        id2label = meta["id2label"]
        example = '"id2label": {"0": "cat", "1": "dog"}'
        if not isinstance(id2label, dict):
            fail("id2label", f'an object mapping the class ids "0".."{num_labels - 1}" to names', example)
        bad = [k for k in id2label if not str(k).lstrip("-").isdigit()]
        if bad:
            raise CacheError(f"{path}: 'id2label' must be keyed by class ids \"0\"..\"{num_labels - 1}\", not by "
                             f"names (found key {bad[0]!r}); e.g. {example}")
        if sorted(int(k) for k in id2label) != list(range(num_labels)):
            raise CacheError(f"{path}: 'id2label' must name exactly the {num_labels} classes 0..{num_labels - 1}, got "
                             f"ids {sorted(int(k) for k in id2label)[:10]}; fix id2label")
        if not all(isinstance(v, str) for v in id2label.values()):
            raise CacheError(f"{path}: every 'id2label' name must be a string; e.g. {example}")
    for key, example in (("teacher_names", '"teacher_names": ["generalist", "classes 0-4", "classes 5-9"]'),
                         ("domain_names", '"domain_names": ["photo", "sketch"]')):
        value = meta.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            fail(key, "a list of strings", example)
    for key, example in (("student", '"student": {"name_or_path": "facebook/dinov2-small"}'),
                         ("source", '"source": {"dataset": "imagenet-1k"}'),
                         ("source_sizes", '"source_sizes": {"train": 7000, "test": 2000}')):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            fail(key, "an object", example)
    student = meta.get("student") or {}
    if student.get("name_or_path") is not None and not isinstance(student["name_or_path"], str):
        raise CacheError(f"{path}: 'student.name_or_path' must be a string, got {_kind(student['name_or_path'])}")
    if any(not _is_int(v) for v in (meta.get("source_sizes") or {}).values()):
        raise CacheError(f"{path}: 'source_sizes' must map 'train' and 'test' to counts")
