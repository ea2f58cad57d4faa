"""How the labeling pass shares its work between processes (``accelerate launch``): each process labels a shard of
each split, every sample carries its global index, and the rows are gathered back on every process (the caller puts
them in dataset order)."""

from __future__ import annotations

from typing import Any

import datasets
import torch

__all__ = ["INDEX_COLUMN", "gather_rows", "shard_bounds", "shard_membership", "shard_split"]

#: The column that carries a streamed sample's global index through the labeling pass.
INDEX_COLUMN = "__csl_index__"


def shard_bounds(num_samples: int, num_processes: int, process_index: int) -> tuple[int, int]:
    """``[start, end)`` of one process's contiguous shard, exactly as ``Dataset.shard(contiguous=True)`` cuts it."""
    div, mod = divmod(num_samples, num_processes)
    start = div * process_index + min(process_index, mod)
    return start, start + div + (1 if process_index < mod else 0)


def shard_split(dataset, offset: int, num_processes: int = 1, process_index: int = 0):
    """This process's share of one split, and the global index of its first row (map-style) or ``None`` (stream).

    * map-style: the contiguous shard ``Dataset.shard(contiguous=True)`` would give, taken with ``select(range)`` (no
      copy, no flattening of an indices mapping); row ``i`` of the shard has global index ``offset + start + i``.
    * stream: every sample gets its global index ``offset + i`` (``map(with_indices=True)`` over the *whole* stream),
      then each process keeps the samples with ``index % num_processes == process_index``. This is the step split
      `datasets.distributed.split_dataset_by_node` falls back to when the shards do not divide evenly; we do not let
      it push the split down to the source shards, because then each process would shuffle/skip/take its own shards
      (a different train/test cut than one process, overlapping the teacher split) and number its samples from 0.
      Every process reads the raw stream (undecoded bytes); only its share is decoded and labeled.
    """
    if isinstance(dataset, datasets.IterableDataset):
        dataset = dataset.map(lambda _, i: {INDEX_COLUMN: offset + i}, with_indices=True)
        if num_processes > 1:
            dataset = dataset.filter(lambda ex: ex[INDEX_COLUMN] % num_processes == process_index)
        return dataset, None
    start, end = shard_bounds(len(dataset), num_processes, process_index)
    if num_processes > 1:
        dataset = dataset.select(range(start, end))
    return dataset, offset + start


def gather_rows(local: dict[str, torch.Tensor | None], accelerator) -> dict[str, torch.Tensor | None]:
    """Concatenate every process's tensors (any lengths) on every process."""
    if accelerator is None or accelerator.num_processes == 1:
        return local
    from accelerate.utils import gather_object

    pieces = gather_object([local])
    return {k: (torch.cat([p[k] for p in pieces if p[k] is not None]) if any(p[k] is not None for p in pieces) else None)
            for k in local}


def shard_membership(splits: dict[str, Any], num_processes: int, process_index: int):
    """``in_shard(index [n] long) -> [n] bool``: the global indices this process labels (`shard_split`'s shards of
    the ``train`` split, then of the ``test`` split, whose indices start after the training split's)."""
    if num_processes <= 1:
        return lambda index: torch.ones(len(index), dtype=torch.bool)
    if not all(isinstance(splits[k], datasets.Dataset) for k in ("train", "test")):  # streams: the step split
        return lambda index: index % num_processes == process_index
    n_train = len(splits["train"])
    bounds = [shard_bounds(n_train, num_processes, process_index)]
    start, end = shard_bounds(len(splits["test"]), num_processes, process_index)
    bounds.append((n_train + start, n_train + end))

    def in_shard(index: torch.Tensor) -> torch.Tensor:
        return ((index >= bounds[0][0]) & (index < bounds[0][1])) | ((index >= bounds[1][0]) & (index < bounds[1][1]))

    return in_shard
