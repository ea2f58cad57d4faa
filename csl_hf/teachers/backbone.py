"""Teachers as linear heads on one shared frozen backbone: the paper's ImageNet setting.

The CSL paper's ImageNet hierarchy is 1 + 2 + 4 + 8 = 15 linear heads (1000-, 500-, 250-, 125-class blocks) on one
frozen weak backbone (AlexNet there). `train_backbone_heads` builds such a hierarchy for any ``AutoModel`` backbone:

1. the backbone's pooled features (`csl_hf.modeling_teacher_mixture.pooled_features`) are extracted **once** for the
   teacher split (each image decoded once, batched, optionally under autocast);
2. every head is trained on those cached features with **the same step budget**: the generalist over all classes,
   each specialist only on the images of its class block, with ``out_features = len(block)`` (the mixture scatters
   its softmax into the global label space, exactly zero elsewhere);
3. the heads are gathered with `TeacherMixture.from_backbone`, which runs the backbone once per batch for all heads.

    from transformers import AutoModel
    from csl_hf import train_backbone_heads
    from csl_hf.hierarchy import class_hierarchy

    specialties, levels = class_hierarchy(1000, [1, 2, 4, 8])
    backbone = AutoModel.from_pretrained("google/mobilenet_v2_1.0_224")
    mixture = train_backbone_heads(backbone, teacher_split, specialties, levels, steps=1000, lr=1e-3, batch_size=256,
                                   preprocessing=Preprocessing.from_image_processor(processor), id2label=id2label)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

import datasets
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import logging as hf_logging

from ..data.images import preprocess_images
from ..data.targets import raw_images
from ..errors import CSLError
from ..hierarchy import describe_classes, specialty_names
from ..modeling_teacher_mixture import TeacherMixture, pooled_features
from ..preprocessing import Preprocessing
from .training import fit_fixed_steps

__all__ = ["extract_backbone_features", "train_backbone_heads", "train_linear_head", "load_backbone"]

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


def train_linear_head(
    features: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[int] | None,
    num_labels: int,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
) -> nn.Linear:
    """One head trained for exactly ``steps`` Adam(W) steps on minibatches sampled with replacement (seeded).

    ``classes=None``: a generalist ``Linear(D, num_labels)`` on every sample. Otherwise a specialist
    ``Linear(D, len(classes))`` trained only on the samples of ``classes``; its output ``j`` is class ``classes[j]``.
    """
    local = torch.full((num_labels,), -1, dtype=torch.long, device=labels.device)
    if classes is None:
        local = torch.arange(num_labels, device=labels.device)
        out = num_labels
    else:
        classes_t = torch.as_tensor(list(classes), dtype=torch.long, device=labels.device)
        local[classes_t] = torch.arange(len(classes_t), device=labels.device)
        out = len(classes_t)
    known = (labels >= 0) & (labels < num_labels)  # -1 (unknown) or out-of-range labels never train a head
    keep = known & (local[labels.clamp(0, num_labels - 1)] >= 0)
    x, target = features[keep], local[labels[keep]]
    if x.shape[0] == 0:
        raise CSLError(f"a teacher head has no training sample (classes {describe_classes(classes)}); enlarge "
                       "--teacher_train_size or use fewer specialists")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(features.shape[1], out)
    head.to(features.device)
    return fit_fixed_steps(head, x, target, steps, batch_size, lr, seed, weight_decay).cpu()


def train_backbone_heads(
    backbone: PreTrainedModel,
    dataset_or_features: Any,
    specialties: Sequence[dict],
    levels: Sequence[Sequence[int]],
    steps: int,
    lr: float,
    batch_size: int,
    labels: torch.Tensor | None = None,
    id2label: dict[int, str] | Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    teacher_names: Sequence[str] | None = None,
    seed: int = 0,
    weight_decay: float = 0.0,
    feature_batch_size: int = 64,
    max_samples: int | None = None,
    image_col: str = "image",
    label_col: str = "label",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> TeacherMixture:
    """Train one linear head per teacher on a shared frozen backbone and return them as a `TeacherMixture`.

    Args:
        backbone: an ``AutoModel`` (no classification head) whose pooled output is the heads' input; it stays frozen.
        dataset_or_features: the teacher split: a ``datasets`` split (map-style or streaming, columns
            ``image_col``/``label_col``), a uint8 image tensor ``[N, 3, H, W]`` (with ``labels``), or precomputed
            backbone features ``float [N, D]`` (with ``labels``).
        specialties, levels: the hierarchy (e.g. `csl_hf.hierarchy.class_hierarchy`); class
            specialties only (level 0: the generalist over all classes).
        steps, lr, batch_size: every head's budget (the same for all: the paper's equal step budget), Adam(W).
        labels: int64 ``[N]`` labels when ``dataset_or_features`` is a tensor.
        id2label: label names (a dict or a list); default ``"0".."C-1"`` from the generalist's classes.
        preprocessing: the backbone's input pipeline; stored in the mixture, so the labeling pass feeds the backbone
            exactly what the heads were trained on.
        seed: head ``k`` is initialised and sampled with ``seed + k``.
        dtype: run the backbone under autocast in this dtype (e.g. ``torch.bfloat16`` on GPU) while extracting.
    Returns:
        `TeacherMixture.from_backbone(...)` in eval mode on CPU; its backbone runs once per batch for all heads.
    """
    if not specialties:
        raise CSLError("train_backbone_heads needs at least one specialty (the generalist)")
    if any("classes" not in s for s in specialties):
        raise CSLError("train_backbone_heads trains class specialists only; give every teacher {'classes': [...]}")
    num_labels = len(specialties[levels[0][0]]["classes"])
    if id2label is None:
        id2label = {i: str(i) for i in range(num_labels)}
    elif not isinstance(id2label, dict):
        id2label = dict(enumerate(id2label))
    id2label = {int(k): str(v) for k, v in id2label.items()}
    if len(id2label) != num_labels:
        raise CSLError(f"id2label has {len(id2label)} names but the generalist covers {num_labels} classes")
    backbone.requires_grad_(False)
    device = torch.device(device) if device is not None else next(backbone.parameters()).device

    start = time.perf_counter()
    is_features = isinstance(dataset_or_features, torch.Tensor) and dataset_or_features.is_floating_point() \
        and dataset_or_features.dim() == 2
    if is_features:
        if labels is None:
            raise CSLError("precomputed features need labels=")
        features, y = dataset_or_features.float(), torch.as_tensor(labels, dtype=torch.long)
        if max_samples is not None:
            features, y = features[:max_samples], y[:max_samples]
    else:
        features, y = extract_backbone_features(
            backbone, dataset_or_features, preprocessing, batch_size=feature_batch_size, image_col=image_col,
            label_col=label_col, max_samples=max_samples, device=device, dtype=dtype, labels=labels)
    if features.shape[0] != y.shape[0]:
        raise CSLError(f"{features.shape[0]} feature rows but {y.shape[0]} labels")
    logger.info(f"teacher features: {tuple(features.shape)} in {time.perf_counter() - start:.1f}s")

    features, y = features.to(device), y.to(device)
    generalist = levels[0][0]
    heads = []
    for k, spec in enumerate(specialties):
        classes = None if k == generalist else list(spec["classes"])
        if classes is not None and sorted(classes) == list(range(num_labels)):
            classes = None  # another all-class teacher: a full-width head
        heads.append(train_linear_head(features, y, classes, num_labels, steps=steps, lr=lr, batch_size=batch_size,
                                       seed=seed + k, weight_decay=weight_decay))
    return TeacherMixture.from_backbone(
        backbone, heads, specialties, levels, id2label=id2label,
        teacher_names=list(teacher_names) if teacher_names else specialty_names(specialties, num_labels),
        preprocessing=preprocessing,
    )


def load_backbone(name_or_path: str) -> tuple[PreTrainedModel, Preprocessing]:
    """A frozen weak backbone (any ``AutoModel``, safetensors only: never unpickled) and the `Preprocessing` of its
    image processor.

    Raises:
        `CSLError`: the checkpoint cannot be loaded as safetensors.
    """
    from transformers import AutoImageProcessor, AutoModel

    try:
        backbone = AutoModel.from_pretrained(name_or_path, use_safetensors=True)
        processor = AutoImageProcessor.from_pretrained(name_or_path)
    except OSError as err:
        raise CSLError(f"cannot load the teacher backbone {name_or_path!r} as safetensors ({str(err).splitlines()[0]}); "
                       "pass a local safetensors checkpoint, or --tiny for the offline stand-in") from None
    return backbone.eval(), Preprocessing.from_image_processor(processor)
