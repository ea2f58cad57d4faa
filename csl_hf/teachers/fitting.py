"""The building blocks of weak teachers: a tiny image classifier built from a config, and the fixed step budget every
teacher (an independent model, a gate teacher or a head on a shared backbone) is trained with."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    ConvNextConfig,
    ConvNextForImageClassification,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
)

from ..errors import CSLError
from ..method.hierarchy import describe_classes
from .arguments import ARCHITECTURES, TeacherTrainingArguments

__all__ = ["build_teacher", "fit_fixed_steps", "train_teacher", "train_linear_head"]


def build_teacher(
    args: TeacherTrainingArguments, num_labels: int, id2label: dict[int, str] | Sequence[str], seed: int | None = None
) -> PreTrainedModel:
    """A tiny randomly initialised `ConvNextForImageClassification` or `ViTForImageClassification` (3 channels,
    ``teacher_image_size`` inputs) over the global label space. ``seed`` makes the initialisation reproducible without
    touching the global RNG."""
    if not isinstance(id2label, dict):
        id2label = dict(enumerate(id2label))
    id2label = {int(k): str(v) for k, v in id2label.items()}
    if len(id2label) != num_labels:
        raise CSLError(f"id2label has {len(id2label)} names for {num_labels} labels")
    common = dict(num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()}, num_channels=3,
                  image_size=int(args.teacher_image_size), patch_size=int(args.teacher_patch_size))
    if args.teacher_architecture == "convnext":
        hidden, depths = args.convnext_stages()
        config = ConvNextConfig(num_stages=len(hidden), hidden_sizes=hidden, depths=depths, drop_path_rate=0.0, **common)
        model_cls = ConvNextForImageClassification
    elif args.teacher_architecture == "vit":
        if args.teacher_image_size % args.teacher_patch_size:
            raise CSLError(f"teacher_patch_size={args.teacher_patch_size} must divide teacher_image_size={args.teacher_image_size} for ViT")
        if args.teacher_hidden_size % args.teacher_num_heads:
            raise CSLError(f"teacher_num_heads={args.teacher_num_heads} must divide teacher_hidden_size={args.teacher_hidden_size}")
        config = ViTConfig(hidden_size=args.teacher_hidden_size, num_hidden_layers=args.teacher_num_layers,
                           num_attention_heads=args.teacher_num_heads, intermediate_size=2 * args.teacher_hidden_size,
                           encoder_stride=args.teacher_patch_size, **common)
        model_cls = ViTForImageClassification
    else:
        raise CSLError(f"teacher_architecture={args.teacher_architecture!r} is unknown; use one of {', '.join(ARCHITECTURES)}")
    if seed is None:
        return model_cls(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config)


def fit_fixed_steps(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    progress=None,
) -> nn.Module:
    """Exactly ``steps`` AdamW steps of cross-entropy on minibatches sampled with replacement (seeded): the equal
    step budget every teacher gets, whatever the size of its data.

    A plain PyTorch loop on purpose: a hierarchy is a dozen tiny models trained for ~100 steps each on a few hundred
    in-memory samples; `Trainer`'s per-run setup (dataloaders, callbacks, accelerate state, logging) would cost more
    than the training itself, and nothing here needs its distributed machinery.

    Args:
        module: trained in place (returned in eval mode).
        inputs: ``[N, ...]`` already on the module's device; targets: ``int64 [N]`` class ids.
        forward: ``forward(module, x) -> logits [B, C]`` (default ``module(x)``).
        progress: an optional tqdm bar, advanced by one per step.
    """
    forward = forward or (lambda m, x: m(x))
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(int(seed))
    module.train()
    for _ in range(int(steps)):
        idx = torch.randint(len(targets), (int(batch_size),), generator=generator).to(inputs.device)
        loss = F.cross_entropy(forward(module, inputs[idx]), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return module.eval()


def train_teacher(
    model: PreTrainedModel,
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    class_subset: Sequence[int] | None = None,
    weight_decay: float = 0.0,
    progress=None,
) -> PreTrainedModel:
    """Train one image-classifier teacher with `fit_fixed_steps`.

    Args:
        model: an image classifier over the global label space (modified in place and returned in eval mode).
        pixel_values: float ``[N, 3, h, w]`` preprocessed images (`load_teacher_split`).
        labels: ``int64 [N]`` global class ids.
        class_subset: a class specialist's classes: only their images are used and the logits are masked to them
            (``-inf`` elsewhere), so the masked softmax the mixture serves is exactly what was trained. ``None``:
            all images, all classes (the generalist; a domain specialist gets its domain's images from the caller).

    Raises:
        `CSLError`: no training image for this teacher.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    mask = None
    if class_subset is not None:
        classes = torch.as_tensor(list(class_subset), dtype=torch.long)
        keep = torch.isin(labels, classes)
        pixel_values, labels = pixel_values[keep], labels[keep]
        mask = torch.zeros(model.config.num_labels, dtype=torch.bool)
        mask[classes] = True
    if len(labels) == 0:
        raise CSLError(f"a teacher has no training images (classes {list(class_subset) if class_subset is not None else 'all'}); "
                       "enlarge the teacher split or use fewer specialists")

    def forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = m(pixel_values=x).logits
        return logits if mask is None else logits.masked_fill(~mask, float("-inf"))

    return fit_fixed_steps(model, pixel_values, labels, steps, batch_size, lr, seed, weight_decay, forward, progress)


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
