"""Teachers as linear heads on one shared frozen backbone: the paper's ImageNet setting.

The CSL paper's ImageNet hierarchy is 1 + 2 + 4 + 8 = 15 linear heads (1000-, 500-, 250-, 125-class blocks) on one
frozen weak backbone (AlexNet there). `train_backbone_heads` builds such a hierarchy for any ``AutoModel`` backbone,
from the same `TeacherTrainingArguments` as independent teachers:

1. the backbone's pooled features (`csl_hf.models.teacher_mixture.modeling_teacher_mixture.pooled_features`) are
   extracted **once** for the teacher split (each image decoded once, batched, optionally under autocast);
2. every head is trained on those cached features with **the same step budget**: the generalist over all classes,
   each specialist only on the images of its classes, with ``out_features = len(classes)`` (the mixture scatters
   its softmax into the global label space, exactly zero elsewhere);
3. the heads are gathered with `TeacherMixture.from_backbone`, which runs the backbone once per batch for all heads.

    from csl_hf import TeacherTrainingArguments, train_teacher_hierarchy

    args = TeacherTrainingArguments(teacher_backbone="google/mobilenet_v2_1.0_224", teachers_per_level="1,2,4,8",
                                    specialties="blocks", teacher_steps=1000, teacher_learning_rate=1e-3,
                                    teacher_batch_size=256)
    mixture = train_teacher_hierarchy(teacher_split, args)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

import datasets
import torch
from transformers import PreTrainedModel
from transformers.utils import logging as hf_logging

from ..data.images import preprocess_images
from ..data.loading import class_names, infer_columns
from ..data.preprocessing import Preprocessing
from ..data.targets import raw_images
from ..errors import CSLError
from ..method.hierarchy import class_hierarchy, parse_teachers_per_level, specialty_names
from ..method.specialties import confusion_matrix, hierarchy_from_confusion
from ..models.teacher_mixture.modeling_teacher_mixture import TeacherMixture, pooled_features
from .arguments import TeacherTrainingArguments
from .fitting import train_linear_head

__all__ = ["extract_backbone_features", "train_backbone_heads", "load_backbone"]

logger = hf_logging.get_logger(__name__)


def _batches(data: Any, batch_size: int, image_col: str, label_col: str, max_samples: int | None,
             preprocessing: Preprocessing) -> Iterable[tuple[torch.Tensor, list]]:
    """``(pixel values, labels)`` batches from a map-style or streaming dataset; bad images are skipped (logged)."""
    if isinstance(data, (datasets.Dataset, datasets.IterableDataset)):
        data = raw_images(data, image_col)
        if isinstance(data, datasets.Dataset):
            if max_samples is not None:
                data = data.select(range(min(max_samples, len(data))))
            rows = (data[s:s + batch_size] for s in range(0, len(data), batch_size))
        else:
            if max_samples is not None:
                data = data.take(max_samples)
            rows = data.iter(batch_size=batch_size)
        for batch in rows:
            if image_col not in batch or label_col not in batch:
                raise CSLError(f"the teacher split needs columns {image_col!r} and {label_col!r}, got {sorted(batch)}")
            decoded = preprocess_images(batch[image_col], [preprocessing])
            if decoded.errors:
                logger.warning(f"teacher split: skipped {len(decoded.errors)} bad image(s), e.g. {decoded.errors[0]}")
            if decoded.kept:
                yield decoded.pixel_values[preprocessing], [batch[label_col][i] for i in decoded.kept]
        return
    raise CSLError(f"cannot read images from {type(data).__name__}; pass a datasets.Dataset / IterableDataset, or "
                   "precomputed features with labels")


@torch.no_grad()
def extract_backbone_features(
    backbone: PreTrainedModel,
    data: Any,
    preprocessing: Preprocessing | None = None,
    batch_size: int = 64,
    image_col: str = "image",
    label_col: str = "label",
    max_samples: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen backbone's pooled features ``float32 [N, D]`` (on CPU) and labels ``int64 [N]``.

    ``data`` is a map-style or streaming ``datasets`` split (``image_col``/``label_col``), or a uint8 image tensor
    ``[N, 3, H, W]`` with ``labels``. Each image is decoded once; ``dtype`` (e.g. ``torch.bfloat16``) runs the
    backbone under autocast.
    """
    device = torch.device(device) if device is not None else next(backbone.parameters()).device
    preprocessing = preprocessing or Preprocessing()
    backbone.to(device).eval()
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    if isinstance(data, torch.Tensor):
        if labels is None:
            raise CSLError("images given as a tensor need labels=")
        n = data.shape[0] if max_samples is None else min(max_samples, data.shape[0])
        source = ((preprocessing(data[s:s + batch_size]), labels[s:s + batch_size].tolist())
                  for s in range(0, n, batch_size))
    else:
        source = _batches(data, batch_size, image_col, label_col, max_samples, preprocessing)
    feats, ys = [], []
    for pixel_values, y in source:
        x = pixel_values.to(device)
        with autocast:
            out = pooled_features(backbone(pixel_values=x))
        feats.append(out.float().cpu())
        ys.extend(int(v) for v in y)
    if not feats:
        raise CSLError("the teacher split is empty; give the teachers some labelled images (--teacher_train_size)")
    return torch.cat(feats), torch.tensor(ys, dtype=torch.long)


def train_backbone_heads(
    backbone: PreTrainedModel,
    teacher_split: Any,
    args: TeacherTrainingArguments,
    preprocessing: Preprocessing | None = None,
    labels: torch.Tensor | None = None,
    id2label: dict[int, str] | Sequence[str] | None = None,
    specialties: Sequence[dict] | None = None,
    levels: Sequence[Sequence[int]] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> TeacherMixture:
    """Train one linear head per teacher on a shared frozen backbone and return them as a `TeacherMixture`: the
    paper's ImageNet teachers. Usually reached through `train_teacher_hierarchy` with ``args.teacher_backbone``.

    Args:
        backbone: an ``AutoModel`` (no classification head) whose pooled output is the heads' input; it stays frozen.
        teacher_split: a ``datasets`` split (map-style or streaming, an image and a label column), a uint8 image
            tensor ``[N, 3, H, W]`` (with ``labels``), or precomputed backbone features ``float [N, D]`` (with
            ``labels``).
        args: the same `TeacherTrainingArguments` as independent teachers: ``teachers_per_level`` and
            ``specialties`` (``blocks``, or ``auto``: the classes the generalist head confuses share a specialist),
            ``teacher_steps`` / ``teacher_learning_rate`` / ``teacher_batch_size`` / ``teacher_weight_decay`` (every
            head's budget: the paper's equal step budget), ``teacher_seed`` (head ``k`` uses ``teacher_seed + k``)
            and ``teacher_feature_batch_size``.
        preprocessing: the backbone's input pipeline; stored in the mixture, so the labeling pass feeds the backbone
            exactly what the heads were trained on.
        labels: int64 ``[N]`` with a tensor ``teacher_split``.
        id2label: label names (a dict or a list); default the dataset's class names, else ``"0".."C-1"``.
        specialties, levels: an explicit hierarchy of class specialties instead of ``teachers_per_level``.
        dtype: run the backbone under autocast in this dtype (e.g. ``torch.bfloat16`` on GPU) while extracting.
    Returns:
        `TeacherMixture.from_backbone(...)` in eval mode on CPU; its backbone runs once per batch for all heads.

    Raises:
        `CSLError` (one line): domain specialties, a head without training samples, mismatched labels.
    """
    if specialties is not None and any("classes" not in s for s in specialties):
        raise CSLError("heads on a shared backbone are class specialists only; give every teacher {'classes': [...]}")
    backbone.requires_grad_(False)
    device = torch.device(device) if device is not None else next(backbone.parameters()).device
    start = time.perf_counter()
    if isinstance(teacher_split, torch.Tensor) and teacher_split.is_floating_point() and teacher_split.dim() == 2:
        if labels is None:
            raise CSLError("precomputed features need labels=")
        features, y = teacher_split.float(), torch.as_tensor(labels, dtype=torch.long)
    else:
        if id2label is None and isinstance(teacher_split, (datasets.Dataset, datasets.IterableDataset)):
            image_col, label_col, _ = infer_columns(teacher_split)
            id2label = dict(enumerate(class_names(teacher_split, label_col)))
        else:
            image_col, label_col = "image", "label"
        features, y = extract_backbone_features(
            backbone, teacher_split, preprocessing, batch_size=args.teacher_feature_batch_size, image_col=image_col,
            label_col=label_col, device=device, dtype=dtype, labels=labels)
    if features.shape[0] != y.shape[0]:
        raise CSLError(f"{features.shape[0]} feature rows but {y.shape[0]} labels")
    logger.info(f"teacher features: {tuple(features.shape)} in {time.perf_counter() - start:.1f}s")
    if id2label is None:
        num_labels = len(specialties[levels[0][0]]["classes"]) if specialties else int(y.max()) + 1
        id2label = {i: str(i) for i in range(num_labels)}
    elif not isinstance(id2label, dict):
        id2label = dict(enumerate(id2label))
    id2label = {int(k): str(v) for k, v in id2label.items()}
    num_labels = len(id2label)
    if specialties is not None and len(specialties[levels[0][0]]["classes"]) != num_labels:
        raise CSLError(f"id2label has {num_labels} names but the generalist covers "
                       f"{len(specialties[levels[0][0]]['classes'])} classes")

    features, y = features.to(device), y.to(device)
    present = sorted(set(y[(y >= 0) & (y < num_labels)].tolist()))
    auto = False
    if specialties is None:
        per_level = parse_teachers_per_level(args.teachers_per_level, num_labels)
        specialties, levels = class_hierarchy(num_labels, per_level, present=present)
        auto = args.specialties == "auto" and len(per_level) > 1
    specialties, levels = [dict(s) for s in specialties], [list(level) for level in levels]

    def fit(k: int, classes):
        if classes is not None and sorted(classes) == list(range(num_labels)):
            classes = None  # another all-class teacher: a full-width head
        return train_linear_head(features, y, classes, num_labels, steps=args.teacher_steps,
                                 lr=args.teacher_learning_rate, batch_size=args.teacher_batch_size,
                                 seed=args.teacher_seed + k, weight_decay=args.teacher_weight_decay)

    generalist = levels[0][0]
    heads = {generalist: fit(generalist, None)}
    if auto:  # the generalist is trained: the classes it confuses on the teacher split share a specialist
        with torch.no_grad():
            predicted = heads[generalist].to(device)(features).argmax(-1).cpu()
        heads[generalist].cpu()
        specialties, levels = hierarchy_from_confusion(per_level, confusion_matrix(predicted, y.cpu(), num_labels),
                                                       present)
    for k, spec in enumerate(specialties):
        if k != generalist:
            heads[k] = fit(k, list(spec["classes"]))
    mixture = TeacherMixture.from_backbone(
        backbone, [heads[k] for k in range(len(specialties))], specialties, levels, id2label=id2label,
        teacher_names=specialty_names(specialties, num_labels, id2label), preprocessing=preprocessing)
    mixture.config.training_data = {"num_images": int(len(y)), "specialties": "auto (generalist confusions)" if auto
                                    else "blocks" if args.specialties == "blocks" else "given"}
    return mixture


def load_backbone(name_or_path: str, image_size: int = 28) -> tuple[PreTrainedModel, Preprocessing]:
    """A frozen weak backbone (any ``AutoModel``, safetensors only: never unpickled) and the `Preprocessing` of its
    image processor. ``"tiny-convnext"`` (`csl_hf.models.tiny.TINY_BACKBONE`) is a tiny random ConvNeXt built from a
    config at ``image_size`` (offline checks; its features mean nothing).

    Raises:
        `CSLError`: the checkpoint cannot be loaded as safetensors.
    """
    from transformers import AutoImageProcessor, AutoModel

    from ..models.tiny import TINY_BACKBONE, tiny_backbone

    if name_or_path == TINY_BACKBONE:
        return tiny_backbone(image_size)
    try:
        backbone = AutoModel.from_pretrained(name_or_path, use_safetensors=True)
        processor = AutoImageProcessor.from_pretrained(name_or_path)
    except OSError as err:
        raise CSLError(f"cannot load the teacher backbone {name_or_path!r} as safetensors ({str(err).splitlines()[0]}); "
                       f"pass a local safetensors checkpoint, or {TINY_BACKBONE} for the offline stand-in") from None
    return backbone.eval(), Preprocessing.from_image_processor(processor)
