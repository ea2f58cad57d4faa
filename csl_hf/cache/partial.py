"""A labeling pass that can be interrupted: its rows are written in whole chunks as it goes, and a new pass over the
same teachers, student and data starts where the last complete chunk ended.

The labeling pass is most of a run on real data (every teacher and the student's backbone on every image). Each
process writes the rows it labeled into ``OUTPUT_DIR/cache.partial/chunk-r{rank}-{n}.safetensors`` every
``chunk_images`` images, atomically (a chunk file is whole or absent), with the global indices of the images it
covers, labeled or skipped as bad. ``partial.json`` records the fingerprint of what the rows depend on
(`csl_hf.cache.reuse.labeling_fingerprint`): chunks of another fingerprint are never used. The directory is removed
once the cache is saved.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..utils import atomic_write, atomic_write_json

__all__ = ["PartialLabels"]

_META = "partial.json"
#: Images per chunk: about a minute of labeling on a CPU, a few seconds on a GPU.
CHUNK_IMAGES = 4096
#: The row columns a chunk holds (those the pass produced); ``skipped_{split}`` hold the indices of skipped images.
ROW_COLUMNS = ("index", "probs", "features", "labels", "split", "domains", "in_specialty")


class PartialLabels:
    """The chunks of one labeling pass in ``directory`` (see the module docstring).

    Args:
        directory: where the chunks go (created on the first chunk).
        fingerprint: what the rows depend on; chunks written under another fingerprint are discarded.
        rank: this process's index (each process writes its own chunks).
        chunk_images: images per chunk (labeled or skipped; default `CHUNK_IMAGES`).
    """

    def __init__(self, directory: str, fingerprint: dict[str, Any], rank: int = 0, chunk_images: int | None = None):
        self.directory, self.fingerprint, self.rank = directory, fingerprint, rank
        self.chunk_images = chunk_images or CHUNK_IMAGES
        self.pending: dict[str, list[torch.Tensor]] = {}
        self.pending_images = 0
        self.written = 0
        if os.path.isdir(directory) and self._recorded() != _canonical(fingerprint):
            shutil.rmtree(directory, ignore_errors=True)  # another pass's chunks: never mixed with this one's

    def _recorded(self):
        try:
            with open(os.path.join(self.directory, _META), encoding="utf-8") as f:
                return json.load(f).get("fingerprint")
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------------------------------------ resume
    def load(self, in_shard) -> tuple[dict[str, torch.Tensor], set[int], dict[str, list[int]]]:
        """The rows already labeled, from every chunk on disk, restricted to this process's shard.

        Args:
            in_shard: ``in_shard(index [n] long) -> [n] bool``, the global indices this process labels.
        Returns:
            ``(rows, done, skipped)``: the rows (``ROW_COLUMNS`` present in the chunks), the global indices already
            done (labeled or skipped) and the skipped indices per split (``"train"``, ``"test"``).
        """
        rows: dict[str, list[torch.Tensor]] = {}
        done: set[int] = set()
        skipped: dict[str, list[int]] = {"train": [], "test": []}
        for path in sorted(glob.glob(os.path.join(self.directory, "chunk-*.safetensors"))):
            chunk = load_file(path)
            mine = in_shard(chunk["index"])
            for name in ROW_COLUMNS:
                if name in chunk:
                    rows.setdefault(name, []).append(chunk[name][mine])
            done.update(chunk["index"][mine].tolist())
            for split in skipped:
                if f"skipped_{split}" in chunk:
                    lost = chunk[f"skipped_{split}"]
                    lost = lost[in_shard(lost)].tolist()
                    skipped[split] += lost
                    done.update(lost)
        return {k: torch.cat(v) for k, v in rows.items()}, done, skipped

    # ------------------------------------------------------------------------------------------------ write
    def add(self, batch_rows: dict[str, torch.Tensor], skipped: dict[str, list[int]], num_images: int) -> None:
        """Queue one batch's rows and skipped indices; write a chunk once ``chunk_images`` images are queued."""
        for name, value in batch_rows.items():
            self.pending.setdefault(name, []).append(value)
        for split, indices in skipped.items():
            if indices:
                self.pending.setdefault(f"skipped_{split}", []).append(torch.tensor(indices, dtype=torch.long))
        self.pending_images += num_images
        if self.pending_images >= self.chunk_images:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows as one chunk, atomically (nothing when the queue is empty)."""
        if not self.pending_images:
            return
        os.makedirs(self.directory, exist_ok=True)
        if self._recorded() is None:
            atomic_write_json(os.path.join(self.directory, _META), {"fingerprint": _canonical(self.fingerprint)})
        tensors = {name: torch.cat(values).contiguous() for name, values in self.pending.items()}
        if "index" not in tensors:
            tensors["index"] = torch.empty(0, dtype=torch.long)
        path = os.path.join(self.directory, f"chunk-r{self.rank}-{self.written:05d}.safetensors")
        atomic_write(path, lambda tmp: save_file(tensors, tmp))
        self.written += 1
        self.pending, self.pending_images = {}, 0

    def remove(self) -> None:
        """The cache is saved: the chunks are no longer needed."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _canonical(fingerprint: dict[str, Any]) -> Any:
    """The fingerprint as plain JSON values (compared with what a chunk directory recorded)."""
    return json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
