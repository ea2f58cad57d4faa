"""Images with their CSL targets, for full fine-tuning (``student_mode="full"``): the training phases read the
images the labeling pass saw, find them by the cache's ``source_index``, and pair them with each round's targets.

* `ImageTargets`: a map-style split at given positions (a ``torch.utils.data.Dataset``, so the Trainer's
  ``DataLoader`` with ``dataloader_num_workers`` decodes in parallel).
* `StreamImageTargets`: a streamed split, read once per epoch through a seeded shuffle buffer; only the buffer is
  held in memory.
* `image_positions`: where each cache row's image sits in the training and test datasets.

Every image goes through `csl_hf.data.images.load_image`, the same decoding as the labeling pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets
import torch

from ..errors import CSLError
from .preprocessing import Preprocessing
from .images import load_image, preprocess_images

__all__ = ["ImageTargets", "StreamImageTargets", "PreprocessedImages", "image_positions", "raw_images"]


def raw_images(dataset, image_column: str):
    """``dataset`` with its image column left undecoded (bytes / paths), so that every image reaches
    `load_image` (EXIF orientation, one-line errors) instead of being decoded by ``datasets``."""
    features = getattr(dataset, "features", None) or {}
    feature = features.get(image_column)
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column(image_column, datasets.Image(decode=False))
    return dataset


class PreprocessedImages:
    """Images of a map-style split decoded and preprocessed once, kept as one float32 tensor ``[n, 3, h, w]``: full
    fine-tuning reads every image once per epoch and the student predicts on every round, so without this each
    image is decoded and resized a dozen times per run.

    Args:
        dataset: the split; positions: ``[n]`` the rows to keep (the cache's rows, which all decoded before).
        preprocessing: the student's input pipeline.
    """

    def __init__(self, dataset, positions: torch.Tensor, preprocessing: Preprocessing, image_column: str,
                 batch_size: int = 256):
        dataset = raw_images(dataset, image_column)
        rows = positions.tolist()
        chunks = []
        for start in range(0, len(rows), batch_size):
            values = [dataset[p][image_column] for p in rows[start : start + batch_size]]
            chunks.append(preprocess_images(values, [preprocessing], skip_bad=False).pixel_values[preprocessing])
        self.pixels = torch.cat(chunks) if chunks else torch.empty(0)
        self.row_of = {p: i for i, p in enumerate(rows)}

    def __getitem__(self, position: int) -> torch.Tensor:
        return self.pixels[self.row_of[position]]

    @staticmethod
    def nbytes(num_images: int, preprocessing: Preprocessing) -> int:
        """Memory the preprocessed images take: ``num_images * 3 * h * w * 4`` bytes."""
        h, w = preprocessing.size
        return int(num_images) * 3 * h * w * 4


class ImageTargets(torch.utils.data.Dataset):
    """The images of a map-style split at ``positions [n]``, preprocessed, with ``targets [n]`` or ``[n, C]``.

    Items are ``{"pixel_values": float [3, h, w], "labels": target}``; ``targets=None`` gives pixel values only.
    With ``preprocessed`` the pixels come from it instead of being decoded again.
    """

    def __init__(self, dataset, positions: torch.Tensor, targets: torch.Tensor | None, preprocessing: Preprocessing,
                 image_column: str, preprocessed: PreprocessedImages | None = None):
        self.dataset = raw_images(dataset, image_column)
        self.positions, self.targets = positions.tolist(), targets
        self.preprocessing, self.image_column = preprocessing, image_column
        self.preprocessed = preprocessed

    def __len__(self) -> int:
        return len(self.positions)

    def pixels(self, i: int) -> torch.Tensor:
        if self.preprocessed is not None:
            return self.preprocessed[self.positions[i]]
        value = self.dataset[self.positions[i]][self.image_column]
        return self.preprocessing(load_image(value)[None])[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"pixel_values": self.pixels(i)}
        if self.targets is not None:
            item["labels"] = self.targets[i].cpu()
        return item

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Pixel batches ``[b, 3, h, w]`` in position order (for predictions)."""
        for start in range(0, len(self), batch_size):
            yield torch.stack([self.pixels(i) for i in range(start, min(start + batch_size, len(self)))])


class StreamImageTargets(torch.utils.data.IterableDataset):
    """The images of a streamed split at given positions, with their CSL targets.

    Positions count the stream's samples in order (as the labeling pass numbered them). Training reads the stream
    once per epoch, keeps the wanted positions and shuffles them through a seeded buffer; `batches` reads it once in
    position order for predictions.
    """

    def __init__(self, stream, positions: torch.Tensor, targets: torch.Tensor | None, preprocessing: Preprocessing,
                 image_column: str, seed: int = 0, buffer_size: int = 1000):
        # Raw bytes: a bad image the labeling pass skipped must not stop the stream when datasets decodes it.
        self.stream = raw_images(stream, image_column)
        self.preprocessing, self.image_column = preprocessing, image_column
        self.row_of = {int(p): i for i, p in enumerate(positions.tolist())}
        self.targets, self.seed, self.buffer_size, self.epoch = targets, seed, buffer_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _wanted(self) -> Iterator[tuple[int, Any]]:
        for position, example in enumerate(self.stream):
            row = self.row_of.get(position)
            if row is not None:
                yield row, example

    def _pixels(self, example) -> torch.Tensor:
        return self.preprocessing(load_image(example[self.image_column])[None])[0]

    def _item(self, row: int, example) -> dict[str, torch.Tensor]:
        return {"pixel_values": self._pixels(example), "labels": self.targets[row].cpu()}

    def __iter__(self):
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        buffer = []
        for row, example in self._wanted():
            buffer.append((row, example))
            if len(buffer) >= self.buffer_size:
                yield self._item(*buffer.pop(int(torch.randint(len(buffer), (1,), generator=rng))))
        while buffer:
            yield self._item(*buffer.pop(int(torch.randint(len(buffer), (1,), generator=rng))))

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Pixel batches in the order of ``positions`` (one read of the stream; out-of-order rows wait in memory as
        preprocessed tensors only until their turn)."""
        pending: dict[int, torch.Tensor] = {}
        next_row, n = 0, len(self.row_of)
        batch: list[torch.Tensor] = []
        for row, example in self._wanted():
            pending[row] = self._pixels(example)
            while next_row in pending:
                batch.append(pending.pop(next_row))
                next_row += 1
                if len(batch) == batch_size:
                    yield torch.stack(batch)
                    batch = []
        if next_row != n:
            raise CSLError(f"the stream ended after {next_row} of the {n} images in the cache; stream the same split "
                           "the cache was labeled from")
        if batch:
            yield torch.stack(batch)


def image_positions(cache, train_images, test_images) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each cache row's image sits in ``train_images`` / ``test_images`` (map-style or streams): ``[n_train]``
    and ``[n_test]`` positions, from the cache's ``source_index`` (written by the labeling pass; skipped bad images
    leave gaps) or, for a cache without it, row order when the sizes match.

    Raises:
        `CSLError`: a cache without ``source_index`` whose split sizes differ from the datasets'.
    """
    from ..cache.format import TEST_SPLIT, TRAIN_SPLIT

    train_rows, test_rows = cache.rows(TRAIN_SPLIT), cache.rows(TEST_SPLIT)
    index, sizes = cache.source_index, cache.source_sizes
    if index is not None:
        n_train = sizes["train"] if sizes else len(train_images)
        return index[train_rows], index[test_rows] - n_train
    n_train, n_test = len(train_images), len(test_images)
    if (len(train_rows), len(test_rows)) != (n_train, n_test):
        raise CSLError("the cache's splits do not match the images given for full fine-tuning "
                       f"({len(train_rows)}/{len(test_rows)} rows vs {n_train}/{n_test} images); relabel the data")
    return torch.arange(n_train), torch.arange(n_test)
