"""The cache of a `CoSupervisedTrainer` run from images: ``OUTPUT_DIR/cache`` when it was labeled from the same
teachers, student and data, else a new labeling pass (`csl_hf.labeling.build_cache`), saved with the teachers."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.utils import logging

from .._compat import dataset_fingerprint
from ..utils import staged_directory
from .format import CSLCache
from ..errors import CacheError
from .labeling import build_cache
from .partial import PartialLabels
from ..models.teacher_mixture.hub_teacher_mixture import write_model_card
from ..models.teacher_mixture.modeling_teacher_mixture import TeacherMixture
from ..models.student import find_classifier

__all__ = ["CACHE_DIR_NAME", "PARTIAL_DIR_NAME", "TEACHERS_DIR_NAME", "label_or_reuse", "labeling_fingerprint",
           "save_teachers", "teachers_fingerprint"]

logger = logging.get_logger(__name__)

CACHE_DIR_NAME = "cache"
TEACHERS_DIR_NAME = "teachers"
#: A labeling pass in progress (`csl_hf.cache.partial`): its chunks, until the cache is saved.
PARTIAL_DIR_NAME = "cache.partial"


def _hash_tensors(module: torch.nn.Module, skip_prefix: str | None = None) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if skip_prefix and name.startswith(skip_prefix):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


# Config keys that say where or by which version a mixture was saved, not what it computes: a mixture trained in this
# process and the same mixture loaded from disk (e.g. by a resume) must fingerprint alike.
_NOT_CONTENT = {"_name_or_path", "transformers_version", "architectures", "auto_map", "_commit_hash", "dtype",
                "torch_dtype"}


def _teachers_config(teachers: TeacherMixture) -> dict[str, Any]:
    """The mixture's config as hashed: its content, not where it was saved; gate fields left out while unset, so
    that a mixture without gate teachers hashes as before gates existed."""
    return {k: v for k, v in teachers.config.to_dict().items()
            if k not in _NOT_CONTENT and not (k.startswith("gate_") and v is None)}


def teachers_fingerprint(teachers: TeacherMixture) -> str:
    """A hash of the mixture's config (`_teachers_config`) and of its weights."""
    # Through JSON once before sorting: a mixture trained in this process has int keys in its label maps and one
    # loaded from disk has the same keys as strings, and sorted ints (2, 10) and sorted strings ("10", "2") differ
    # from 11 labels on (a gate teacher's "other" is the 11th of 10 classes): every resume relabeled its cache.
    config = json.dumps(json.loads(json.dumps(_teachers_config(teachers), default=str)), sort_keys=True)
    return hashlib.sha256(config.encode()).hexdigest()[:16] + _hash_tensors(teachers)


def labeling_fingerprint(images, teachers: TeacherMixture, student: PreTrainedModel,
                         compact_topk: int | None, dtype: torch.dtype | None = None) -> dict[str, Any] | None:
    """What a cache's content depends on: the teachers (config and weights, gate teachers included), the student's
    weights outside its classifier (the features are that classifier's input), its preprocessing and image processor
    (class and settings), the two datasets
    (``datasets`` fingerprints) and the compact top-k. ``None`` when a dataset has no fingerprint (a stream): then it
    cannot be told whether an existing cache holds the same images."""
    train, test = (dataset_fingerprint(images.datasets[k]) for k in ("train", "test"))
    if train is None or test is None:
        return None
    head_name, _ = find_classifier(student)
    key = {
        "teachers": teachers_fingerprint(teachers),
        "student": _hash_tensors(student, skip_prefix=head_name + "."),
        "preprocessing": images.preprocessing.to_dict(),
        # The processor too (its class: transformers 5's fast and slow processors give slightly different pixels):
        # a reused cache is never one labeled under another preprocessing.
        "processor": images.processor,
        "train": train,
        "test": test,
        "compact_topk": compact_topk,
    }
    if dtype is not None:  # left out for float32, so that caches labeled before this key existed are reused
        key["dtype"] = str(dtype)
    if teachers.has_gates:  # a cache without in_specialty must never serve a run whose teachers have gates
        key["gate_teachers"] = teachers.config.num_gates
    return key


def save_teachers(teachers: TeacherMixture, output_dir: str) -> str:
    """Where the run's teachers are: the directory they were loaded from, or ``OUTPUT_DIR/teachers`` where they are
    saved now (teachers trained by this run: saved as soon as they exist, so that an interrupted labeling pass keeps
    them). Returns the path recorded in the cache's ``source.teachers`` (``"teachers"``: the run's own)."""
    teachers_path = getattr(teachers, "name_or_path", "") or ""
    path = os.path.join(output_dir, TEACHERS_DIR_NAME)
    if os.path.isdir(teachers_path):  # the run's own (a resume) is recorded relative to it: the run can move
        same = os.path.realpath(teachers_path) == os.path.realpath(path)
        return TEACHERS_DIR_NAME if same else os.path.abspath(teachers_path)
    if not os.path.isfile(os.path.join(path, "config.json")) or _saved_fingerprint(path) != teachers_fingerprint(teachers):
        with staged_directory(path) as tmp:
            teachers.save_pretrained(tmp)
            # the card's load commands name the directory it was written in: the final one, not the staging one
            write_model_card(teachers.config, tmp, repo_id=os.path.abspath(path))
    return TEACHERS_DIR_NAME


def _saved_fingerprint(path: str) -> str | None:
    try:
        return teachers_fingerprint(TeacherMixture.from_pretrained(path))
    except (OSError, ValueError):
        return None


def label_or_reuse(images, teachers: TeacherMixture, student: PreTrainedModel, args) -> CSLCache:
    """The cache of a `CoSupervisedTrainer` run from images: ``OUTPUT_DIR/cache`` when it was labeled from the same
    teachers, student and data (see `labeling_fingerprint`), else a new labeling pass, saved there. The teachers are
    saved first (in ``OUTPUT_DIR/teachers``, unless they were loaded from a directory, whose path is recorded
    instead), and the pass writes its rows in chunks (``OUTPUT_DIR/cache.partial``, `csl_hf.cache.partial`): a pass
    that is interrupted goes on, in the next run over the same teachers, student and data, after its last chunk.

    Under several processes every process labels its shard and returns the same gathered cache; the main process
    writes it.
    """
    from accelerate import PartialState

    state = PartialState()
    dtype = torch.bfloat16 if args.labeling_bf16 and state.device.type == "cuda" else None
    directory = os.path.join(args.output_dir, CACHE_DIR_NAME)
    key = labeling_fingerprint(images, teachers, student, args.compact_cache_topk, dtype)
    teachers_source = TEACHERS_DIR_NAME
    if args.should_save:
        teachers_source = save_teachers(teachers, args.output_dir)
    elif os.path.isdir(getattr(teachers, "name_or_path", "") or ""):
        teachers_source = os.path.abspath(teachers.name_or_path)
    state.wait_for_everyone()
    if key is not None and os.path.isfile(os.path.join(directory, "cache.json")):
        try:
            cached = CSLCache.load(directory)
        except CacheError as err:
            logger.warning(f"{directory} is not a usable cache ({err}); labeling again")
        else:
            if (cached.source or {}).get("fingerprint") == key:
                logger.info(f"reusing the cache in {directory}: labeled from the same teachers, student and data")
                return cached
            logger.info(f"{directory} was labeled from other teachers, student or data: labeling again")
    source = {"dataset": images.dataset_name, "fingerprint": key, "teachers": teachers_source}
    # A stream has no fingerprint: without one, chunks of another pass could not be told apart, so none is kept.
    partial = None if key is None else PartialLabels(os.path.join(args.output_dir, PARTIAL_DIR_NAME), key,
                                                     rank=state.process_index)
    cache, stats = build_cache(
        images.datasets, teachers, student, images.preprocessing, image_col=images.image_column,
        label_col=images.label_column, domain_col=images.domain_column, batch_size=args.labeling_batch_size,
        accelerator=state, on_bad_image=args.on_bad_image, dtype=dtype, student_name=student.config.name_or_path or None,
        compact_topk=args.compact_cache_topk, show_progress=not args.disable_tqdm, source=source,
        num_workers=args.dataloader_num_workers, dataloader_kwargs=labeling_loader_kwargs(args), partial=partial)
    if args.should_save:
        # Saved only once the pass succeeded: a failed pass leaves the output directory as it was.
        cache.save(directory)
        logger.info(f"cache: {cache.num_samples} images x {cache.num_teachers} teachers in {directory} "
                    f"({cache.bytes_per_image_per_teacher():.0f} bytes per image per teacher); labeled {stats.labeled}, "
                    f"skipped {stats.skipped}")
    state.wait_for_everyone()
    if partial is not None and args.should_save:
        partial.remove()
    return cache


def labeling_loader_kwargs(args) -> dict:
    """The `TrainingArguments` DataLoader settings the labeling pass's decode workers honour."""
    kwargs = {}
    if args.dataloader_num_workers > 0 and args.dataloader_prefetch_factor is not None:
        kwargs["prefetch_factor"] = args.dataloader_prefetch_factor
    if args.dataloader_num_workers > 0 and args.dataloader_multiprocessing_context is not None:
        kwargs["multiprocessing_context"] = args.dataloader_multiprocessing_context
    return kwargs
