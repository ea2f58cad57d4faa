"""How the labeling pass reads its images: in batches, each image decoded once into every preprocessing the models
need, map-style data in ``DataLoader`` workers (``dataloader_num_workers``) while the main process runs the models,
streams as they are read; batches an interrupted pass already labeled are not decoded again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import datasets
import torch

from ..data.images import preprocess_images
from ..data.preprocessing import Preprocessing
from .sharding import INDEX_COLUMN

__all__ = ["DecodeBatches", "Decoded", "decoded_batches"]




def _iter_batches(dataset, batch_size: int, base: int) -> Iterable[tuple[dict[str, list], list[int]]]:
    """``(batch, global indices)``: a map-style shard is sliced (its rows are ``base, base+1, ...``), a stream is read
    with `IterableDataset.iter` and carries its index column."""
    if isinstance(dataset, datasets.IterableDataset):
        for batch in dataset.iter(batch_size=batch_size):
            yield batch, list(batch[INDEX_COLUMN])
    else:
        for start in range(0, len(dataset), batch_size):
            batch = dataset[start : start + batch_size]
            n = len(next(iter(batch.values()))) if batch else 0
            yield batch, list(range(base + start, base + start + n))


@dataclass
class Decoded:
    """One batch, decoded: the pixels per preprocessing of the usable images, their global indices and the other
    columns' values, how many images the batch had, and a bad image's message when they must not be skipped."""

    batch: Any
    indices: list[int]
    columns: dict[str, list]
    size: int
    fatal: str | None = None
    skipped: list[int] = field(default_factory=list)  # the global indices of the bad images skipped
    done: bool = False  # labeled by an earlier, interrupted pass (`csl_hf.cache.partial`): nothing to do


class DecodeBatches(torch.utils.data.Dataset):
    """Map-style data as decoded batches: item ``i`` is batch ``i``, so that ``DataLoader`` workers
    (``dataloader_num_workers``) decode and resize while the main process runs the models."""

    def __init__(self, dataset, batch_size: int, base: int, image_col: str, columns: list[str],
                 preprocessings: list[Preprocessing], min_size: int, skip_bad: bool):
        self.dataset, self.batch_size, self.base, self.image_col = dataset, batch_size, base, image_col
        self.columns, self.preprocessings, self.min_size, self.skip_bad = columns, preprocessings, min_size, skip_bad
        self.todo: list[int] | None = None  # the batches to decode (None: all)

    def __len__(self) -> int:
        return len(self.todo) if self.todo is not None else -(-len(self.dataset) // self.batch_size)

    def __getitem__(self, i: int) -> Decoded:
        start = (self.todo[i] if self.todo is not None else i) * self.batch_size
        raw = self.dataset[start : start + self.batch_size]
        return _decode(raw, list(range(self.base + start, self.base + start + len(raw[self.image_col]))), self)


def _decode(raw: dict[str, list], indices: list[int], spec) -> Decoded:
    try:
        batch = preprocess_images(raw[spec.image_col], spec.preprocessings, spec.min_size, skip_bad=spec.skip_bad)
    except ValueError as err:  # returned, not raised: a worker's exception would reach the user as a traceback
        return Decoded(None, [], {}, len(indices), fatal=str(err))
    columns = {c: [raw[c][i] for i in batch.kept] for c in spec.columns if c in raw}
    kept = set(batch.kept)
    return Decoded(batch, [indices[i] for i in batch.kept], columns, len(indices),
                    skipped=[j for i, j in enumerate(indices) if i not in kept])


def decoded_batches(dataset, batch_size: int, base: int | None, spec: DecodeBatches,
                     num_workers: int, loader_kwargs: dict | None = None,
                     done: set[int] | frozenset = frozenset()) -> Iterable[Decoded]:
    """Decoded batches of one shard: in ``num_workers`` DataLoader workers for map-style data, in this process for a
    stream (which is read once, in order). Batches whose images are all in ``done`` are not decoded."""
    if isinstance(dataset, datasets.IterableDataset):
        for raw, indices in _iter_batches(dataset, batch_size, 0):
            yield Decoded(None, [], {}, len(indices), done=True) if done and done.issuperset(indices) else \
                _decode(raw, indices, spec)
        return
    spec.dataset, spec.base = dataset, base
    if done:
        ranges = [range(base + i * batch_size, base + min(len(dataset), (i + 1) * batch_size))
                  for i in range(-(-len(dataset) // batch_size))]
        spec.todo = [i for i, r in enumerate(ranges) if not done.issuperset(r)]
        yield Decoded(None, [], {}, sum(len(r) for i, r in enumerate(ranges) if i not in set(spec.todo)), done=True)
    if num_workers <= 0:
        yield from (spec[i] for i in range(len(spec)))
        return
    yield from torch.utils.data.DataLoader(spec, batch_size=None, num_workers=num_workers, collate_fn=_as_is,
                                           **(loader_kwargs or {}))


def _as_is(item):
    """The DataLoader's collate function: a decoded batch is already a batch (module level: workers pickle it)."""
    return item
