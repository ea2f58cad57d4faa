"""The one-pass labeling of a dataset into a CSL cache (the cache format is in docs/cache.md).

Each image is decoded **once** (`csl_hf.data.images.preprocess_images`) and every distinct preprocessing (each
teacher's, the student's) is derived from it right away; all teachers and the student's backbone run on the same
batch; the student's features
are the *input of its classifier module* (captured with a forward pre-hook), so a head trained on them drops
straight back into the student.

Under ``accelerate launch`` each process labels its shard (contiguous shards of a map-style dataset, a step split of a
stream: see `shard_split`); every sample carries its global index, every process gathers and sorts by index, and the
caller's main process writes one cache, so the cache is in dataset order whatever the number of processes.

Streams (``datasets.IterableDataset``) are read batch by batch and never held: what grows during the pass is only the
cache rows (features, teacher probabilities, label, split per image).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import datasets
import torch
from transformers import PreTrainedModel
from transformers.utils import logging

from .format import TRAIN_SPLIT, TEST_SPLIT, CSLCache
from .decoding import DecodeBatches, Decoded, decoded_batches
from .partial import PartialLabels
from .sharding import gather_rows, shard_membership, shard_split
from ..data.targets import raw_images
from ..errors import CSLError
from ..models.teacher_mixture.modeling_teacher_mixture import TeacherMixture
from ..data.preprocessing import Preprocessing
from ..models.student import find_classifier

logger = logging.get_logger(__name__)

SPLIT_IDS = {"train": TRAIN_SPLIT, "test": TEST_SPLIT}


@dataclass
class LabelingStats:
    """What the pass saw: images labeled and bad images skipped (corrupt, too small), per split."""

    labeled: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None


class _FeatureCapture:
    """Forward pre-hook on the student's classifier: keeps its input ``[B, D]``."""

    def __init__(self, module: torch.nn.Module):
        self.value: torch.Tensor | None = None
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.value = args[0].detach()

    def remove(self):
        self.handle.remove()


def input_preprocessings(teachers: TeacherMixture, student_preprocessing: Preprocessing) -> list[Preprocessing]:
    """Each teacher's preprocessing (teachers without their own see the student's inputs)."""
    return [s or student_preprocessing for s in teachers.preprocessings()]


def gate_input_preprocessings(teachers: TeacherMixture, student_preprocessing: Preprocessing) -> list[Preprocessing]:
    """Each gate teacher's preprocessing, as `input_preprocessings` (empty without gate teachers)."""
    return [s or student_preprocessing for s in teachers.gate_preprocessings()]


@torch.no_grad()
def label_batch(
    pixel_values: dict[Preprocessing, torch.Tensor],
    teachers: TeacherMixture,
    student: PreTrainedModel,
    student_preprocessing: Preprocessing,
    capture: _FeatureCapture,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Teacher probabilities ``[B, K, C]``, student features ``[B, D]`` and, when the teachers have gate teachers,
    their in-specialty probabilities ``[B, K]`` (else ``None``) for one batch, given its pixel values per
    preprocessing (`csl_hf.data.images.preprocess_images`)."""
    moved: dict[Preprocessing, torch.Tensor] = {}

    def prepared(p: Preprocessing) -> torch.Tensor:
        if p not in moved:
            x = pixel_values[p].to(device)
            moved[p] = x.to(dtype) if dtype is not None else x
        return moved[p]

    specs = input_preprocessings(teachers, student_preprocessing)
    gate_specs = gate_input_preprocessings(teachers, student_preprocessing)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with autocast:
        out = teachers(pixel_values_per_teacher=[prepared(s) for s in specs],
                       pixel_values_per_gate=[prepared(s) for s in gate_specs] or None)
        student(pixel_values=prepared(student_preprocessing))
    probs, in_specialty = out.probs, out.in_specialty
    if capture.value is None:
        raise CSLError("the student's classifier was not called in its forward pass; use an AutoModelForImageClassification student")
    # Copies: the classifier's input is often a view into a larger tensor (a ViT's [CLS] row of [B, T, D]) and the
    # pass keeps these rows until it ends; a view would keep all of that alive.
    return (_own(probs.float().cpu()), _own(capture.value.flatten(1).float().cpu()),
            None if in_specialty is None else _own(in_specialty.float().cpu()))


def _own(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when it owns exactly its storage, else a compact copy."""
    if t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size():
        return t
    return t.clone(memory_format=torch.contiguous_format)


class _Rows:
    """The cache rows of one pass. When the number of rows is known (map-style splits), each column is one tensor of
    that many rows, allocated at its first batch and filled in place: `pop` then returns it without a copy (a
    ``torch.cat`` of chunks would hold every column twice at the end of the pass: +360 MB for 70,000 images of a
    1280-d student). Otherwise (streams, or rows beyond the estimate) the rows grow in chunks of about 1 MiB per
    column, a few large allocations instead of thousands of small ones between the batches' temporaries (which
    fragment the heap and keep the process's memory growing faster than the rows)."""

    def __init__(self, capacity: int | None = None, chunk_bytes: int = 1 << 20):
        self.capacity, self.chunk_bytes = capacity, chunk_bytes
        self.chunks: dict[str, list[torch.Tensor]] = {}
        self.filled: dict[str, int] = {}

    def add(self, name: str, values: torch.Tensor) -> None:
        chunks = self.chunks.setdefault(name, [])
        done = 0
        while done < len(values):
            if not chunks or self.filled[name] == len(chunks[-1]):
                if not chunks and self.capacity:
                    capacity = max(self.capacity, len(values))
                else:
                    row_bytes = max(1, values[0].numel() * values.element_size())
                    capacity = min(max(self.chunk_bytes // row_bytes, 256), 1 << 16)
                chunks.append(torch.empty((capacity, *values.shape[1:]), dtype=values.dtype))
                self.filled[name] = 0
            last, start = chunks[-1], self.filled[name]
            n = min(len(values) - done, len(last) - start)
            last[start : start + n] = values[done : done + n]
            self.filled[name], done = start + n, done + n

    def pop(self, name: str) -> torch.Tensor | None:
        """All rows of one column as one tensor (``None`` if never added); the chunks are released. One chunk is
        returned as a view of its filled rows (no copy)."""
        chunks = self.chunks.pop(name, None)
        if not chunks:
            return None
        last = chunks[-1][: self.filled.pop(name)]
        return last if len(chunks) == 1 else torch.cat([*chunks[:-1], last])


_STREAM_TEST_OFFSET = 1 << 50  # a streamed test split's provisional first index (above any train index)


def _batch_rows(batch, decoded: Decoded, new: list[int], split_id: int, labels, domain_col, teachers, student,
                student_preprocessing, capture, device, dtype) -> dict[str, torch.Tensor]:
    """The cache rows of one decoded batch's images at positions ``new`` (those no earlier pass labeled)."""
    probs, feats, in_specialty = label_batch(batch.pixel_values, teachers, student, student_preprocessing, capture,
                                             device, dtype)
    pick = torch.tensor(new, dtype=torch.long)
    out = {"index": torch.tensor(decoded.indices, dtype=torch.long)[pick], "probs": probs[pick],
           "features": feats[pick]}
    if in_specialty is not None:
        out["in_specialty"] = in_specialty[pick]
    labels = labels if labels is not None else [-1] * len(decoded.indices)
    out["labels"] = torch.tensor([-1 if y is None else int(y) for y in labels], dtype=torch.long)[pick]
    out["split"] = torch.full((len(new),), split_id, dtype=torch.int8)
    if domain_col and domain_col in decoded.columns:
        out["domains"] = torch.tensor(decoded.columns[domain_col], dtype=torch.long)[pick]
    return out


def build_cache(
    splits: dict[str, Any],
    teachers: TeacherMixture,
    student: PreTrainedModel,
    student_preprocessing: Preprocessing,
    image_col: str = "image",
    label_col: str | None = "label",
    domain_col: str | None = None,
    batch_size: int = 64,
    accelerator=None,
    on_bad_image: str = "skip",
    min_image_size: int = 2,
    dtype: torch.dtype | None = None,
    student_name: str | None = None,
    compact_topk: int | None = None,
    show_progress: bool = True,
    source: dict[str, Any] | None = None,
    num_workers: int = 0,
    dataloader_kwargs: dict | None = None,
    partial: PartialLabels | None = None,
) -> tuple[CSLCache, LabelingStats]:
    """Label the ``train`` and ``test`` splits (map-style or streaming datasets) into one `CSLCache`.

    Args:
        splits: ``{"train": dataset, "test": dataset}``: the weak-to-strong training split (its labels are kept
            only for the ceiling and diagnostics) and the labeled test split.
        teachers: the teacher hierarchy; its config gives levels, specialties and per-teacher preprocessing.
            With gate teachers the cache also gets ``in_specialty`` ``[K, N]`` (their ``1 - p(other)``).
        student: the strong student (its classifier's input is cached as the features).
        student_preprocessing: the student's input preprocessing.
        on_bad_image: ``"skip"`` (skip and count corrupt or tiny images) or ``"fail"`` (stop with a one-line error).
        compact_topk: store each teacher's top-k probabilities in float16 with their class ids.
        source: recorded in the cache's ``source`` (e.g. the dataset's name); the pass adds the skipped counts.
        num_workers: ``DataLoader`` workers that decode and resize map-style data while this process runs the models
            (``dataloader_num_workers``; a stream is decoded as it is read).
        dataloader_kwargs: more ``torch.utils.data.DataLoader`` arguments for those workers (``prefetch_factor``,
            ``multiprocessing_context``); used only with ``num_workers > 0``.
        partial: write the rows in chunks as the pass goes (`csl_hf.cache.partial.PartialLabels`), and start after
            the images its chunks already hold (an interrupted pass over the same teachers, student and data).
    Returns:
        ``(cache, stats)``. Under several processes every process returns the same gathered cache.
    """
    if on_bad_image not in ("skip", "fail"):
        raise CSLError(f"--on_bad_image {on_bad_image!r} does not exist; use skip or fail")
    device = accelerator.device if accelerator is not None else next(student.parameters()).device
    teachers.to(device).eval()
    student.to(device).eval()
    _, head = find_classifier(student)
    preprocessings = [student_preprocessing, *input_preprocessings(teachers, student_preprocessing),
                      *gate_input_preprocessings(teachers, student_preprocessing)]
    capture = _FeatureCapture(head)
    stats = LabelingStats()
    world = 1 if accelerator is None else accelerator.num_processes
    rank = 0 if accelerator is None else accelerator.process_index
    # Rows this process will label (its shard of each map-style split), when every split has a length.
    sizes = [len(splits[name]) if isinstance(splits[name], datasets.Dataset) else None for name in ("train", "test")]
    rows = _Rows(None if None in sizes else sum(-(-size // max(1, world)) for size in sizes))
    offset = 0
    from transformers.utils.logging import tqdm

    is_main = accelerator is None or accelerator.is_main_process
    done: set[int] = set()
    if partial is not None:  # an interrupted pass: its rows, and which images it did
        loaded, done, skipped = partial.load(shard_membership(splits, world, rank))
        for name, value in loaded.items():
            rows.add(name, value)
        for split_name, split_id in SPLIT_IDS.items():
            stats.labeled[split_name] = int((loaded["split"] == split_id).sum()) if loaded else 0
            stats.skipped[split_name] = len(skipped[split_name])
        if done and is_main:
            logger.info(f"labeling: resuming after {len(done)} images an interrupted pass labeled")
    bar = None
    try:
        for split_name in ("train", "test"):
            dataset = splits[split_name]
            split_id = SPLIT_IDS[split_name]
            dataset = raw_images(dataset, image_col)
            # A global index per sample, so shards gathered from several processes can be put back in order.
            size = len(dataset) if isinstance(dataset, datasets.Dataset) else None
            dataset, base = shard_split(dataset, offset, world, rank)
            stats.labeled.setdefault(split_name, 0)
            stats.skipped.setdefault(split_name, 0)
            bar = tqdm(total=size, desc=f"labeling {split_name}", unit="img", disable=not (show_progress and is_main))
            columns = [c for c in (label_col, domain_col) if c]
            spec = DecodeBatches(None, batch_size, 0, image_col, columns, preprocessings, min_image_size,
                                  skip_bad=on_bad_image == "skip")
            for decoded in decoded_batches(dataset, batch_size, base, spec, num_workers, dataloader_kwargs, done):
                if decoded.fatal is not None:
                    raise CSLError(f"{decoded.fatal} (in the {split_name} split); remove or fix the file, or pass "
                                   "--on_bad_image skip to skip and count bad images")
                bar.update(decoded.size * world)
                if decoded.done:
                    continue
                batch = decoded.batch
                skipped = [j for j in decoded.skipped if j not in done]
                stats.skipped[split_name] += len(skipped)
                stats.first_error = stats.first_error or next(iter(batch.errors), None)
                new = [i for i, j in enumerate(decoded.indices) if j not in done]
                if new:
                    labels = decoded.columns.get(label_col) if label_col else None
                    batch_rows = _batch_rows(batch, decoded, new, split_id, labels, domain_col, teachers, student,
                                             student_preprocessing, capture, device, dtype)
                    for name, value in batch_rows.items():
                        rows.add(name, value)
                    stats.labeled[split_name] += len(new)
                if partial is not None:
                    partial.add(batch_rows if new else {}, {split_name: skipped}, decoded.size)
            bar.close()
            offset += size if size is not None else _STREAM_TEST_OFFSET  # a stream's length is known at its end
    finally:
        if bar is not None:  # closed before an interrupt's last line is printed, not redrawn after it at exit
            bar.close()
        capture.remove()
        if partial is not None:
            partial.flush()  # whatever happened, the rows labeled so far are kept (interrupted: for the resume)

    local = {k: rows.pop(k) for k in ("index", "probs", "features", "labels", "split", "domains", "in_specialty")}
    merged = gather_rows(local, accelerator)
    del local
    if accelerator is not None and accelerator.num_processes > 1:
        for name in ("labeled", "skipped"):
            counts = gather_rows({k: torch.tensor([v]) for k, v in getattr(stats, name).items()}, accelerator)
            setattr(stats, name, {k: int(v.sum()) for k, v in counts.items()})
    if merged["index"] is None or merged["index"].numel() == 0:
        raise CSLError("the labeling pass produced no sample (every image was skipped or the splits are empty); check --dataset_name and --on_bad_image")
    if offset >= _STREAM_TEST_OFFSET:  # a streamed train split: test positions follow its samples (skipped included)
        index = merged["index"]
        read = stats.labeled["train"] + stats.skipped["train"]
        merged["index"] = torch.where(index >= _STREAM_TEST_OFFSET, index - _STREAM_TEST_OFFSET + read, index)
    order = merged["index"].argsort()
    if bool((order == torch.arange(len(order))).all()):  # already in dataset order (one process): no copies
        order = slice(None)
    config = teachers.config
    cache = CSLCache(
        features=merged["features"][order],
        labels=merged["labels"][order],
        split=merged["split"][order],
        num_labels=config.num_labels,
        levels=[list(level) for level in config.levels],
        specialties=[dict(s) for s in config.specialties],
        teacher_probs=merged["probs"][order].permute(1, 0, 2).contiguous(),
        domains=None if merged["domains"] is None else merged["domains"][order],
        source_index=merged["index"][order],
        id2label={int(k): v for k, v in config.id2label.items()},
        teacher_names=list(config.teacher_names),
        domain_names=list(config.domain_names) if config.domain_names else None,
        student={"name_or_path": student_name or getattr(student.config, "name_or_path", "") or type(student).__name__,
                 "preprocessing": student_preprocessing.to_dict()},
        source_sizes={k: stats.labeled[k] + stats.skipped[k] for k in stats.labeled},
        source={**(source or {}), "skipped_images": dict(stats.skipped)},
        in_specialty=None if merged["in_specialty"] is None else merged["in_specialty"][order].T.contiguous(),
    )
    if compact_topk:
        cache = cache.to_compact(compact_topk)
    cache.validate()
    if any(stats.skipped.values()) and is_main:
        logger.warning(f"skipped bad images: {stats.skipped} (first on this process: {stats.first_error})")
    return cache, stats
