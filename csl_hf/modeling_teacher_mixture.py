"""`TeacherMixture`: a hierarchy of weak teachers as one `PreTrainedModel` (see docs/teachers.md).

Two layouts:

* **independent teachers** (`TeacherMixture.from_teachers`): any `AutoModelForImageClassification` instances (ViT,
  ConvNeXt, ...) that share the global label space, each with its own preprocessing;
* **heads on one shared frozen backbone** (`TeacherMixture.from_backbone`), the paper's setting: the backbone runs
  once per batch for all teachers, so 15 teachers cost one backbone pass.

Every teacher outputs probabilities over the global label space; a class specialist's softmax is restricted to its
classes and renormalised, exactly zero elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_teacher_mixture import TeacherMixtureConfig
from .consistency import class_masks, masked_softmax
from .errors import CSLError
from .preprocessing import Preprocessing


@dataclass
class TeacherMixtureOutput(ModelOutput):
    """
    Args:
        probs (`torch.FloatTensor` of shape `(batch_size, num_teachers, num_labels)`):
            Each teacher's probabilities over the global label space (class specialists: zero outside their classes).
        logits (`torch.FloatTensor` of shape `(batch_size, num_teachers, num_labels)`):
            Each teacher's raw logits in the global label space (heads smaller than the label space are scattered
            into it, ``-inf`` elsewhere).
        features (`torch.FloatTensor` of shape `(batch_size, backbone_feature_dim)`, *optional*):
            The shared backbone's pooled features (shared-backbone layout only).
    """

    probs: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None


def _config_from_dict(d: dict) -> AutoConfig:
    d = dict(d)
    model_type = d.pop("model_type", None)
    if model_type is None:
        raise CSLError("a teacher config lacks 'model_type'; pass the config of a transformers model")
    return AutoConfig.for_model(model_type, **d)


def pooled_features(outputs) -> torch.Tensor:
    """Pool a backbone's output to ``[B, D]``: ``pooler_output`` when present, else the mean of the last hidden
    state over its spatial/token axes (ConvNeXt ``[B, D, H, W]``, ViT ``[B, L, D]``)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.flatten(1) if outputs.dim() > 2 else outputs
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    hidden = outputs.last_hidden_state
    return hidden.mean(dim=(-2, -1)) if hidden.dim() == 4 else hidden.mean(dim=1)


class TeacherMixturePreTrainedModel(PreTrainedModel):
    config_class = TeacherMixtureConfig
    base_model_prefix = "teacher_mixture"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class TeacherMixture(TeacherMixturePreTrainedModel):
    """A hierarchy of weak teachers. Build one with `from_teachers` or `from_backbone`; reload with
    ``AutoModel.from_pretrained(path)`` (registered when `csl_hf` is imported)."""

    def __init__(self, config: TeacherMixtureConfig):
        super().__init__(config)
        if config.shares_backbone:
            self.backbone = AutoModel.from_config(_config_from_dict(config.backbone_config))
            self.backbone.requires_grad_(False)
            self.heads = nn.ModuleList(nn.Linear(config.backbone_feature_dim, h) for h in config.head_sizes)
        elif config.teacher_configs:
            self.teachers = nn.ModuleList(
                AutoModelForImageClassification.from_config(_config_from_dict(c)) for c in config.teacher_configs
            )
        else:
            raise CSLError("a TeacherMixtureConfig needs teacher_configs or backbone_config + head_sizes")
        config.validate_hierarchy()
        # Plain Python here, tensors built in forward: `from_pretrained` builds the module on the meta device, where a
        # tensor made in __init__ would hold no data.
        self._scatter: list[list[int] | None] = [None] * config.num_teachers
        if config.shares_backbone:
            for k, h in enumerate(config.head_sizes):
                if h != config.num_labels:
                    classes = config.specialties[k].get("classes")
                    if classes is None or len(classes) != h:
                        raise CSLError(f"head {k} outputs {h} classes but its specialty covers {len(classes or [])}; a head outputs num_labels or exactly its specialty's classes")
                    self._scatter[k] = list(classes)
        self.post_init()

    # ------------------------------------------------------------------------------------------------ builders
    @classmethod
    def from_teachers(
        cls,
        teachers: Sequence[PreTrainedModel],
        specialties: Sequence[dict],
        levels: Sequence[Sequence[int]],
        teacher_names: Sequence[str] | None = None,
        preprocessing: Sequence[Preprocessing | dict | object] | None = None,
        domain_names: Sequence[str] | None = None,
    ) -> "TeacherMixture":
        """Gather independent image classifiers into one mixture (their weights are copied).

        Args:
            teachers: `AutoModelForImageClassification` instances over the same global label space.
            specialties: one ``{"classes": [...]}`` or ``{"domain": name}`` per teacher.
            levels: teacher indices per level; level 0 is a single generalist.
            preprocessing: per teacher, a `Preprocessing`, its dict, or a transformers image processor. Teachers
                with different input sizes or normalisation each keep their own.
        """
        if not teachers:
            raise CSLError("from_teachers needs at least one teacher")
        ref = teachers[0].config
        for k, t in enumerate(teachers):
            if t.config.num_labels != ref.num_labels:
                raise CSLError(f"teacher {k} has {t.config.num_labels} labels but teacher 0 has {ref.num_labels}; all teachers must share the global label space")
            if dict(t.config.id2label) != dict(ref.id2label):
                raise CSLError(f"teacher {k}'s label names differ from teacher 0's; all teachers must use the same id2label")
        config = TeacherMixtureConfig(
            teacher_configs=[_serializable_config(t.config) for t in teachers],
            specialties=[dict(s) for s in specialties],
            levels=[list(level) for level in levels],
            teacher_names=list(teacher_names) if teacher_names else None,
            domain_names=list(domain_names) if domain_names else None,
            preprocessing=_preprocessing_dicts(preprocessing, len(teachers)),
            id2label=dict(ref.id2label),
            label2id={v: k for k, v in ref.id2label.items()},
        )
        mixture = cls(config)
        for target, source in zip(mixture.teachers, teachers):
            target.load_state_dict(source.state_dict())
        return mixture.eval()

    @classmethod
    def from_backbone(
        cls,
        backbone: PreTrainedModel,
        heads: Sequence[nn.Linear],
        specialties: Sequence[dict],
        levels: Sequence[Sequence[int]],
        id2label: dict[int, str],
        teacher_names: Sequence[str] | None = None,
        preprocessing: Preprocessing | dict | object | None = None,
        domain_names: Sequence[str] | None = None,
    ) -> "TeacherMixture":
        """Teachers as linear heads on one shared frozen backbone (an ``AutoModel``); the backbone runs once per batch.

        Each head outputs either ``len(id2label)`` logits (masked to its specialty) or exactly its specialty's
        classes, in the order listed in the specialty (scattered into the global label space).
        """
        dims = {h.in_features for h in heads}
        if len(dims) != 1:
            raise CSLError(f"heads take inputs of different widths {sorted(dims)}; every head reads the same backbone features")
        config = TeacherMixtureConfig(
            backbone_config=_serializable_config(backbone.config),
            head_sizes=[h.out_features for h in heads],
            backbone_feature_dim=dims.pop(),
            specialties=[dict(s) for s in specialties],
            levels=[list(level) for level in levels],
            teacher_names=list(teacher_names) if teacher_names else None,
            domain_names=list(domain_names) if domain_names else None,
            preprocessing=_preprocessing_dicts(None if preprocessing is None else [preprocessing] * len(heads), len(heads)),
            id2label={int(k): v for k, v in id2label.items()},
            label2id={v: int(k) for k, v in id2label.items()},
        )
        mixture = cls(config)
        mixture.backbone.load_state_dict(backbone.state_dict())
        for target, source in zip(mixture.heads, heads):
            target.load_state_dict(source.state_dict())
        return mixture.eval()

    # ------------------------------------------------------------------------------------------------ inputs
    def preprocessings(self) -> list[Preprocessing | None]:
        """Per teacher, its `Preprocessing` (``None``: the caller's ``pixel_values`` are used as they are)."""
        specs = self.config.preprocessing or [None] * self.config.num_teachers
        return [None if s is None else Preprocessing.from_dict(s) for s in specs]

    # ------------------------------------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        pixel_values_per_teacher: Sequence[torch.Tensor] | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> TeacherMixtureOutput | tuple:
        """Run every teacher.

        Args:
            pixel_values: ``[B, 3, H, W]`` shared by all teachers (or the backbone).
            pixel_values_per_teacher: one ``[B, 3, H_k, W_k]`` tensor per teacher, for teachers with their own
                preprocessing (the same tensor object may be repeated; it is only read).
        Returns:
            `TeacherMixtureOutput` with ``probs`` / ``logits`` of shape ``[B, num_teachers, num_labels]``.
        """
        if pixel_values is None and pixel_values_per_teacher is None:
            raise CSLError("TeacherMixture needs pixel_values or pixel_values_per_teacher")
        num_labels = self.config.num_labels
        features = None
        if self.config.shares_backbone:
            x = pixel_values if pixel_values is not None else pixel_values_per_teacher[0]
            features = pooled_features(self.backbone(pixel_values=x))
            raw = [head(features) for head in self.heads]
        else:
            inputs = pixel_values_per_teacher or [pixel_values] * len(self.teachers)
            raw = [teacher(pixel_values=x).logits for teacher, x in zip(self.teachers, inputs)]
        masks = class_masks(self.config.specialties, num_labels).to(raw[0].device)
        logits, probs = [], []
        for k, out in enumerate(raw):
            out = out.float()
            if self._scatter[k] is not None:
                full = out.new_full((out.shape[0], num_labels), float("-inf"))
                full[:, torch.tensor(self._scatter[k], device=out.device)] = out
                logits.append(full)
                probs.append(full.softmax(dim=-1))
            else:
                logits.append(out)
                probs.append(masked_softmax(out, masks[k]))
        output = TeacherMixtureOutput(probs=torch.stack(probs, dim=1), logits=torch.stack(logits, dim=1), features=features)
        return output if return_dict is not False else output.to_tuple()


def _serializable_config(config) -> dict:
    d = config.to_dict()
    d.pop("dtype", None)
    d.pop("torch_dtype", None)
    return d


def _preprocessing_dicts(preprocessing, num_teachers: int) -> list[dict] | None:
    if preprocessing is None:
        return None
    if len(preprocessing) != num_teachers:
        raise CSLError(f"{len(preprocessing)} preprocessing specs for {num_teachers} teachers; give one per teacher")
    out = []
    for p in preprocessing:
        if p is None:
            out.append(None)
        elif isinstance(p, Preprocessing):
            out.append(p.to_dict())
        elif isinstance(p, dict):
            out.append(Preprocessing.from_dict(p).to_dict())
        else:
            out.append(Preprocessing.from_image_processor(p).to_dict())
    return out


__all__ = ["TeacherMixture", "TeacherMixtureOutput", "TeacherMixturePreTrainedModel", "pooled_features"]
