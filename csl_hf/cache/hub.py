"""A CSL cache on the Hugging Face Hub: a *dataset* repo holding the cache's two files (``cache.safetensors``,
``cache.json``: docs/cache.md) and a dataset card (``README.md``) saying what produced it.

`CSLCache.push_to_hub(repo_id)` and `CSLCache.from_pretrained(repo_id_or_path)` call these, so a cache is shared as
models are: ``csl-hf run --cache_dir user/my-cache`` starts from it on another machine. Only `huggingface_hub` is used
(``HfApi.upload_folder`` and ``snapshot_download`` with ``repo_type="dataset"``).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from ..errors import CacheError
from ..method.hierarchy import describe_classes
from ..models.teacher_mixture.hub_teacher_mixture import card_dataset_text

__all__ = ["CARD_NAME", "cache_card", "push_cache", "resolve_cache_dir"]

CARD_NAME = "README.md"
#: What a cache repo holds, as `huggingface_hub` patterns: the two cache files and the card.
CACHE_PATTERNS = ["cache.safetensors", "cache.json", CARD_NAME]


def resolve_cache_dir(repo_id_or_path: str | os.PathLike, revision: str | None = None,
                      token: bool | str | None = None) -> str:
    """A local directory holding the cache: ``repo_id_or_path`` when it is a directory (or cannot be a repo id),
    else the snapshot of that dataset repo (downloaded, or from the Hub cache when offline).

    Raises:
        `CacheError` (one line): neither a local directory nor a dataset repo that can be downloaded.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    path = os.fspath(repo_id_or_path)
    if os.path.isdir(path) or path.startswith((".", "/", "~")) or os.path.exists(path):
        return path  # a local path: CSLCache.load says what is missing there
    try:
        validate_repo_id(path)
    except HFValidationError:
        return path
    try:
        return snapshot_download(path, repo_type="dataset", revision=revision, token=token,
                                 allow_patterns=CACHE_PATTERNS)
    except Exception as err:  # noqa: BLE001 - not found, gated, offline and not cached, network: one line each
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CacheError(f"{path!r} is neither a local cache directory nor a dataset repo that can be downloaded "
                         f"({type(err).__name__}: {reason}); pass a directory holding cache.safetensors + cache.json, "
                         "or the id of a dataset repo pushed with CSLCache.push_to_hub") from None


def push_cache(cache, repo_id: str, *, token: bool | str | None = None, private: bool | None = None,
               revision: str | None = None, commit_message: str | None = None, create_pr: bool = False):
    """Save ``cache`` (validated) with its dataset card into a temporary folder and upload it to the dataset repo
    ``repo_id`` (created if needed; ``revision``: a branch, created if needed) in one commit. Returns the
    `huggingface_hub.CommitInfo`."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True).repo_id
    if revision is not None and not revision.startswith("refs/pr"):
        api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "cache")
        cache.save(folder)
        with open(os.path.join(folder, CARD_NAME), "w", encoding="utf-8") as f:
            f.write(cache_card(cache, repo_id))
        message = commit_message or f"CSL cache: {cache.num_samples} images x {cache.num_teachers} teachers"
        return api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder, revision=revision,
                                 commit_message=message, create_pr=create_pr, allow_patterns=CACHE_PATTERNS)


def cache_card(cache, repo_id: str) -> str:
    """The dataset card of a cache: what produced it (student, teachers, dataset), its sizes and how to use it."""
    source: dict[str, Any] = cache.source or {}
    student = cache.student or {}
    train, test = int((cache.split == 0).sum()), int((cache.split == 1).sum())
    storage = (f"dense float probabilities ({cache.teacher_probs.dtype})" if cache.teacher_probs is not None else
               f"compact: each teacher's top-{cache.topk_probs.shape[-1]} probabilities (float16) and class ids")
    lines = ["---", "tags:", "- csl_hf", "- weak-to-strong", "- co-supervised-learning", "viewer: false", "---", "",
             f"# CSL cache: {cache.num_samples} images x {cache.num_teachers} teachers", "",
             "Student features and every weak teacher's probabilities for the images of a co-supervised learning run "
             "(Liu & Alahi, [arXiv:2402.15505](https://arxiv.org/abs/2402.15505)), written by csl_hf's labeling pass: "
             "the rounds train on these and never see an image. Files: `cache.safetensors` (tensors) and "
             "`cache.json` (metadata), the format of csl_hf's docs/cache.md.", "",
             "## What produced it", "",
             f"- student: `{student.get('name_or_path') or 'not recorded'}` (features of width {cache.feature_dim}, "
             "taken at the input of its classifier)",
             f"- teachers: {cache.num_teachers} in {len(cache.levels)} levels"
             + (f", saved as `{source['teachers']}` in the run that labeled them" if source.get("teachers") else ""),
             f"- dataset: {card_dataset_text(str(source['dataset'])) if source.get('dataset') else 'not recorded'}",
             f"- sizes: {train} weak-to-strong training images, {test} test images, {cache.num_labels} classes"
             + (f"; unreadable images skipped: {source['skipped_images']}" if source.get("skipped_images") else ""),
             f"- teacher outputs: {storage}"
             + ("; gate teachers' in-specialty probabilities (`in_specialty`)" if cache.in_specialty is not None
                else ""),
             "", "| level | teacher | specialty |", "|---|---|---|"]
    for level, members in enumerate(cache.levels):
        for k in members:
            spec = cache.specialties[k]
            what = (f"domain {spec['domain']}" if "domain" in spec else
                    f"classes {describe_classes(spec.get('classes'))}")
            lines.append(f"| {level} | {cache.teacher_names[k]} | {what} |")
    lines += ["", "## Use", "", "```python", "from csl_hf import CSLCache", "",
              f"cache = CSLCache.from_pretrained({repo_id!r})", "```", "",
              f"or run the rounds on it: `csl-hf run --cache_dir {repo_id} --output_dir out`."]
    return "\n".join(lines) + "\n"
