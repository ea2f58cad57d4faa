"""The teacher split, decoded once into the teachers' inputs."""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import torch
from transformers.utils import logging

from ..data.images import preprocess_images
from ..data.loading import class_names, infer_columns
from ..data.preprocessing import Preprocessing
from ..data.targets import raw_images
from ..errors import CSLError

__all__ = ["TeacherSplit", "load_teacher_split"]

logger = logging.get_logger(__name__)


@dataclass
class TeacherSplit:
    """The teacher split, decoded once and preprocessed at decode time (never held at full resolution).

    Attributes:
        pixel_values: float32 ``[N, 3, h, w]``; labels: ``int64 [N]``; domains: ``int64 [N]`` or ``None``.
        class_names, domain_names: the label and domain spaces; skipped: bad images skipped.
    """

    pixel_values: torch.Tensor
    labels: torch.Tensor
    domains: torch.Tensor | None
    class_names: list[str]
    domain_names: list[str] | None
    skipped: int = 0


def load_teacher_split(dataset: datasets.Dataset, preprocessing: Preprocessing, on_bad_image: str = "skip",
                       batch_size: int = 256) -> TeacherSplit:
    """Decode a map-style split batch by batch into the teachers' inputs.

    Each image is resized to the teachers' size as soon as it is decoded (`csl_hf.data.images.preprocess_images`),
    so memory grows with the number of images, not their resolution. Bad images are skipped and counted
    (``on_bad_image="skip"``) or stop the run (``"fail"``).

    Raises:
        `CSLError` (one line): a stream, an empty split, missing columns, a bad image with ``on_bad_image="fail"``,
        or no usable image at all.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise CSLError("teacher training needs a map-style datasets.Dataset (materialise or cap a streaming one)")
    if len(dataset) == 0:
        raise CSLError("the teacher split is empty; give the teachers some labelled images")
    try:
        image_col, label_col, domain_col = infer_columns(dataset)
        names = class_names(dataset, label_col)
    except ValueError as e:
        raise CSLError(str(e)) from None
    dataset = raw_images(dataset, image_col)
    pixels, kept_rows, skipped = [], [], 0
    for start in range(0, len(dataset), batch_size):
        values = dataset[start : start + batch_size][image_col]
        try:
            decoded = preprocess_images(values, [preprocessing], skip_bad=on_bad_image == "skip")
        except ValueError as err:
            raise CSLError(f"{err} (in the teacher split); remove or fix the file, or pass --on_bad_image skip") from None
        skipped += len(decoded.errors)
        if decoded.errors:
            logger.warning(f"teacher split: skipped {len(decoded.errors)} bad image(s), e.g. {decoded.errors[0]}")
        if decoded.kept:
            pixels.append(decoded.pixel_values[preprocessing])
            kept_rows.extend(start + i for i in decoded.kept)
    if not kept_rows:
        raise CSLError("every image of the teacher split is unreadable; check the data")
    labels = torch.as_tensor(dataset[label_col], dtype=torch.long)[kept_rows]
    domains, domain_names = None, None
    if domain_col is not None:
        feature, raw = dataset.features[domain_col], dataset[domain_col]
        if isinstance(feature, datasets.ClassLabel):
            domain_names = list(feature.names)
            domains = torch.as_tensor(raw, dtype=torch.long)
        else:
            domain_names = sorted({str(v) for v in raw})
            domains = torch.as_tensor([domain_names.index(str(v)) for v in raw], dtype=torch.long)
        domains = domains[kept_rows]
    return TeacherSplit(torch.cat(pixels), labels, domains, names, domain_names, skipped)
