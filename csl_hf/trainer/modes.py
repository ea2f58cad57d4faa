"""How a training phase trains the student: ``probe`` (its classifier on cached features, the paper's linear probe)
or ``full`` (the whole student on images). `CoSupervisedTrainer` asks its mode for the module to train, the batches
of a phase and the student's logits, and never branches on the mode itself.

A mode holds the training and test inputs of one run: cached features ``[n, D]`` (probe) or the positions of the
images in the datasets (full).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import datasets
import torch
from safetensors.torch import load_file
from torch import nn
from transformers.utils import logging

from ..cache.format import TEST_SPLIT, TRAIN_SPLIT, CSLCache
from ..data.preprocessing import Preprocessing
from ..data.targets import (
    ImageTargets,
    PreprocessedImages,
    StreamImageTargets,
    image_positions,
)
from ..method.rounds import StudentLogits
from ..models.student import ClassifierProbe, reset_module
from ..outputs.checkpoints import PROBE_HEAD_NAME

__all__ = ["FullMode", "ProbeMode", "TensorBatches", "accelerator_available", "check_batch_norm_momentum", "make_mode",
           "peft_config_for_student"]

logger = logging.get_logger(__name__)

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _normalise_as_in_evaluation(module: nn.Module, args) -> None:
    module.train(False)


def accelerator_available() -> bool:
    """Whether torch sees an accelerator (pinned host memory only helps copies to one)."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6; CUDA alone before
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


def peft_config_for_student(config, head_name: str):
    """The LoRA config with the classifier left out of the adapters (it is trained whole), as a copy; a config that
    already says which modules to leave out or save whole is kept as given."""
    if config is None or getattr(config, "exclude_modules", None) or getattr(config, "modules_to_save", None):
        return config
    import dataclasses

    return dataclasses.replace(config, exclude_modules=[head_name])


def check_batch_norm_momentum(model: nn.Module) -> int:
    """Warn when the student's batch-norm layers would forget their pretrained statistics in one batch: a momentum
    above 0.5 in PyTorch's convention (the weight of the *new* batch) is almost always TensorFlow's decay (0.99)
    copied as is, e.g. transformers' EfficientNet configs. Fine-tuning such a student replaces the running statistics
    with the last batch's and test accuracy collapses. Returns the number of such layers."""
    risky = [m for m in model.modules() if isinstance(m, _BATCH_NORMS)
             and m.track_running_stats and m.momentum is not None and m.momentum > 0.5]
    if risky:
        logger.warning(f"{len(risky)} batch-norm layers of the student have momentum {risky[0].momentum} (PyTorch's "
                       "convention: the weight of each new batch), so full fine-tuning replaces their pretrained "
                       "statistics with the last batch's; set it to 1 - that value (e.g. config.batch_norm_momentum "
                       "= 0.01 for transformers' EfficientNet) before training")
    return len(risky)


class TensorBatches:
    """Batches sliced from tensors already on the device, in a seeded permutation per epoch.

    This replaces a `DataLoader` over per-sample dicts and its collation, which dominate the step time of a linear
    probe. Under several processes each takes a strided share of the permutation, padded to equal length so every
    process runs the same number of steps (DDP needs that).
    """

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, seed: int, process_index: int = 0,
                 num_processes: int = 1, indexed: dict[str, torch.Tensor] | None = None,
                 rows: torch.Tensor | None = None):
        """``tensors`` hold one row per sample; ``indexed`` tensors are read at ``rows[i]`` for sample ``i`` (so that
        a phase's kept subset of the training features is gathered per batch, never copied whole)."""
        self.tensors = tensors
        self.indexed, self.rows = indexed or {}, rows
        self.batch_size = batch_size
        self.seed = seed
        self.process_index, self.num_processes = process_index, num_processes
        self.num_samples = next(iter(tensors.values())).shape[0]
        self.epoch = 0
        self.per_process = math.ceil(self.num_samples / num_processes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.per_process / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        if self.num_processes > 1:
            pad = self.per_process * self.num_processes - self.num_samples
            order = torch.cat([order, order[:pad]])[self.process_index :: self.num_processes]
        device = next(iter(self.tensors.values())).device
        order = order.to(device)
        rows = self.rows.to(device) if self.rows is not None else None
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            batch = {name: t[index] for name, t in self.tensors.items()}
            if self.indexed:
                positions = rows[index]
                batch.update({name: t[positions] for name, t in self.indexed.items()})
            yield batch


def _split_features(cache: CSLCache, split: int) -> torch.Tensor:
    """A split's features: a view when its rows are contiguous (as the labeling pass writes them: training rows
    first), else a copy."""
    rows = cache.rows(split)
    if len(rows) and int(rows[-1] - rows[0]) + 1 == len(rows):
        return cache.features[int(rows[0]) : int(rows[-1]) + 1]
    return cache.features[rows]


class ProbeMode:
    """Train the student's classifier module on the cached features (the input of that module).

    Args:
        head: the student's classifier module (or a standalone ``nn.Linear`` when there is no student).
        cache: the run's cache; its training and test features are moved to ``device`` once.
    """

    name = "probe"

    def __init__(self, head: nn.Module, cache: CSLCache, device: torch.device, eval_batch_size: int):
        self.head = head
        self.module = ClassifierProbe(head)
        self.eval_batch_size = max(1, eval_batch_size)
        self.inputs = {"train": _split_features(cache, TRAIN_SPLIT).to(device),
                       "test": _split_features(cache, TEST_SPLIT).to(device)}

    def reset(self, seed: int, reinit: bool) -> None:
        """Before a phase: a freshly initialised head (``reinit``) or the previous round's."""
        if reinit:
            reset_module(self.head, seed)

    def phase_data(self, keep: torch.Tensor, targets: torch.Tensor, seed: int, batch_size: int, process_index: int,
                   num_processes: int) -> TensorBatches:
        """The phase's batches: the kept training features with their targets."""
        x = self.inputs["train"]
        # The kept rows are gathered batch by batch: a copy of the kept features would be [n_kept, D] per phase (the
        # whole training split at level 0: 2 GB at ImageNet-train scale).
        return TensorBatches({"labels": targets.to(x.device)}, batch_size=batch_size, seed=seed,
                             process_index=process_index, num_processes=num_processes, indexed={"features": x},
                             rows=keep.nonzero(as_tuple=True)[0])

    @torch.no_grad()
    def logits(self, split: str) -> torch.Tensor:
        """The current head's logits on a split's cached features, float32 ``[n, C]`` on the CPU."""
        was_training = self.head.training
        self.head.eval()
        x = self.inputs[split]
        out = torch.cat([self.head(x[i : i + self.eval_batch_size]).float().cpu()
                         for i in range(0, x.shape[0], self.eval_batch_size)])
        self.head.train(was_training)
        return out

    def student_logits(self) -> StudentLogits:
        """The current head on the training features, computed chunk by chunk when asked (never ``[N, C]`` whole);
        the head's weights are copied, so later training does not change what it returns."""
        head = copy.deepcopy(self.head).eval()
        x = self.inputs["train"]

        @torch.no_grad()
        def compute(start: int, end: int) -> torch.Tensor:
            return head(x[start:end]).float().cpu()

        return StudentLogits(x.shape[0], compute)

    def load_round(self, directory: str, head_name: str | None) -> None:
        """Put a round checkpoint's trained head back (``model.safetensors`` of a whole student, or the
        ``probe_head.safetensors`` of a run without one)."""
        import os

        if head_name is None:
            self.head.load_state_dict(load_file(os.path.join(directory, PROBE_HEAD_NAME)))
            return
        prefix = head_name + "."
        state = load_file(os.path.join(directory, "model.safetensors"))
        self.head.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


class FullMode:
    """Fine-tune the whole student on the images, each phase from the pretrained weights with a fresh head (the
    reason is in docs/algorithm.md); with a ``peft_config``, train LoRA adapters (and the classifier) instead of the
    backbone's weights, each phase from the same fresh adapters.

    Args:
        student: the student; its pretrained weights are kept to restart every phase.
        head: its classifier module.
        cache: the run's cache (``source_index`` locates each row's image).
        images: ``{"train": dataset, "test": dataset}`` the labeling pass read (map-style or streams).
        preprocessing: the student's input pipeline; image_column: the datasets' image column.
        peft_config: a `peft.PeftConfig` (e.g. ``LoraConfig``); ``None`` fine-tunes every weight.
        freeze_batch_norm: batch-norm layers normalise with their pretrained statistics while training (see
            `training_context`).
    """

    name = "full"

    def __init__(self, student: nn.Module, head: nn.Module, cache: CSLCache, images: dict, preprocessing: Preprocessing,
                 image_column: str, eval_batch_size: int, device: torch.device, peft_config=None,
                 image_cache_mb: float = 0, freeze_batch_norm: bool = True):
        self.student, self.head = student, head
        self.freeze_batch_norm = freeze_batch_norm
        if not freeze_batch_norm:
            check_batch_norm_momentum(student)
        self.images, self.preprocessing, self.image_column = images, preprocessing, image_column
        self.eval_batch_size, self.device = max(1, eval_batch_size), device
        train, test = image_positions(cache, images["train"], images["test"])
        self.inputs = {"train": train, "test": test}
        # Decode and resize each image once per run when they fit the budget (map-style data only).
        self.preprocessed: dict[str, PreprocessedImages] = {}
        need = PreprocessedImages.nbytes(len(train) + len(test), preprocessing)
        if not self.is_stream() and 0 < need <= image_cache_mb * 2**20:
            self.preprocessed = {split: PreprocessedImages(images[split], self.inputs[split], preprocessing,
                                                           image_column) for split in ("train", "test")}
        self.peft_model = None
        if peft_config is not None:
            from peft import get_peft_model, get_peft_model_state_dict

            self.peft_model = get_peft_model(student, peft_config)
            head.requires_grad_(True)  # the classifier is trained whole, beside the adapters
            self._fresh_adapters = {k: v.detach().clone()
                                    for k, v in get_peft_model_state_dict(self.peft_model).items()}
        else:
            self._pretrained = {k: v.detach().clone() for k, v in student.state_dict().items()}
        self.module = self.peft_model if self.peft_model is not None else student
        self._resumed = None  # a reloaded LoRA round (merged), predicting until the next phase starts
        self._head_probe: ProbeMode | None = None

    def reset(self, seed: int, reinit: bool) -> None:
        self._resumed = None
        if self.peft_model is not None:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.peft_model, self._fresh_adapters)
        else:
            self.student.load_state_dict(self._pretrained)
        reset_module(self.head, seed)

    @contextlib.contextmanager
    def training_context(self) -> Iterator[None]:
        """While a phase trains: with ``freeze_batch_norm``, every batch-norm layer runs as in evaluation (its running
        statistics are used and never updated; its weight and bias still train). A forward pre-hook does it, since
        the Trainer puts the whole model in train mode at every step; the hooks are removed when the phase ends."""
        if not self.freeze_batch_norm:
            yield
            return
        norms = [m for m in self.student.modules() if isinstance(m, _BATCH_NORMS)]
        hooks = [m.register_forward_pre_hook(_normalise_as_in_evaluation) for m in norms]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()

    def head_probe(self, cache: CSLCache) -> ProbeMode:
        """A probe over the same classifier module (training it trains the student's head), for the head warm-up
        before a phase: the cache's features are the pretrained student's, which every phase starts from. Built on
        first use and kept (its features stay on the device)."""
        if self._head_probe is None:
            self._head_probe = ProbeMode(self.head, cache, self.device, self.eval_batch_size)
        return self._head_probe

    def merged_student(self) -> nn.Module:
        """The student to save: itself, or (LoRA) a copy with the adapters merged into the weights, i.e. a standard
        checkpoint of the student's own architecture."""
        if self.peft_model is None:
            return self.student
        return copy.deepcopy(self.peft_model).merge_and_unload()

    def is_stream(self) -> bool:
        return isinstance(self.images["train"], datasets.IterableDataset)

    def phase_data(self, keep: torch.Tensor, targets: torch.Tensor, seed: int) -> torch.utils.data.Dataset:
        """The phase's training images at the kept positions, with their targets."""
        positions = self.inputs["train"][keep]
        if self.is_stream():
            return StreamImageTargets(self.images["train"], positions, targets, self.preprocessing, self.image_column,
                                      seed=seed)
        return ImageTargets(self.images["train"], positions, targets, self.preprocessing, self.image_column,
                            self.preprocessed.get("train"))

    def _split_images(self, split: str):
        if isinstance(self.images[split], datasets.IterableDataset):
            return StreamImageTargets(self.images[split], self.inputs[split], None, self.preprocessing,
                                      self.image_column)
        return ImageTargets(self.images[split], self.inputs[split], None, self.preprocessing, self.image_column,
                            self.preprocessed.get(split))

    @torch.no_grad()
    def logits(self, split: str) -> torch.Tensor:
        """The student's logits on a split's images, float32 ``[n, C]`` on the CPU, in cache-row order."""
        model = self._resumed if self._resumed is not None else self.module
        was_training = model.training
        model.eval()
        out = [model(pixel_values=batch.to(self.device)).logits.float().cpu()
               for batch in self._split_images(split).batches(self.eval_batch_size)]
        model.train(was_training)
        return torch.cat(out)

    def student_logits(self) -> StudentLogits:
        """The student on the training images (computed now: a pass over the images)."""
        return StudentLogits.from_tensor(self.logits("train"))

    def load_round(self, directory: str, head_name: str | None) -> None:
        """Put a round checkpoint's student back, to predict with it (LoRA: into a merged copy, so that the next
        phase still starts from the pretrained weights)."""
        import os

        state = load_file(os.path.join(directory, "model.safetensors"))
        if self.peft_model is not None:
            # The base weights must stay the pretrained ones for the phases to come: predict with a merged copy.
            self._resumed = self.merged_student()
            self._resumed.load_state_dict(state)
        else:
            self.student.load_state_dict(state, strict=False)


def make_mode(trainer, args) -> ProbeMode | FullMode:
    """The mode of a `CoSupervisedTrainer`'s run (``args.student_mode``), over its student (``trainer.student``), its
    classifier (``trainer.head``), its cache and, in full mode, its images."""
    if args.student_mode == "full":
        images = trainer.images
        return FullMode(trainer.student, trainer.head, trainer.cache, images.datasets, images.preprocessing,
                        images.image_column, args.per_device_eval_batch_size, args.device,
                        peft_config=peft_config_for_student(trainer.peft_config, trainer.head_name),
                        image_cache_mb=args.image_cache_mb, freeze_batch_norm=args.freeze_batch_norm)
    return ProbeMode(trainer.head, trainer.cache, args.device, args.per_device_eval_batch_size)
