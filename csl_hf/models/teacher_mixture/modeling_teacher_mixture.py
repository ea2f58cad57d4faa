"""`TeacherMixture`: a hierarchy of weak teachers as one `PreTrainedModel` (see docs/teachers.md).

Two layouts:

* **independent teachers** (`TeacherMixture.from_teachers`): any `AutoModelForImageClassification` instances (ViT,
  ConvNeXt, ...) that share the global label space, each with its own preprocessing;
* **heads on one shared frozen backbone** (`TeacherMixture.from_backbone`), the paper's setting: the backbone runs
  once per batch for all teachers, so 15 teachers cost one backbone pass.

Every teacher outputs probabilities over the global label space; a class specialist's softmax is restricted to its
classes and renormalised, exactly zero elsewhere.

Optionally, a class specialist has a *gate teacher*: an independent classifier with one extra output, "out of
specialty", whose ``1 - p(other)`` says whether an image belongs to the specialist's classes (``in_specialty``; used
by ``--assignment oos_gate``, docs/routing_research.md §5).

Shipped with every saved mixture (``auto_map``) beside ``configuration_teacher_mixture.py``, ``hierarchy_rules.py``
and ``hub_teacher_mixture.py``: ``AutoModel.from_pretrained(repo, trust_remote_code=True)`` loads and runs it without
csl_hf, so it imports only torch, transformers and its own folder. Building a mixture (`from_teachers`,
`from_backbone`) and `preprocessings()` are csl_hf's API and import csl_hf's `Preprocessing` when called.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_teacher_mixture import TeacherMixtureConfig
from .hierarchy_rules import CSLError, class_masks, masked_softmax
from .hub_teacher_mixture import push_with_card, write_model_card


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
        in_specialty (`torch.FloatTensor` of shape `(batch_size, num_teachers)`, *optional*):
            Mixtures with gate teachers only: each gated specialist's probability that the image belongs to its
            specialty, ``1 - p(other)`` of its gate teacher (softmax over the specialty's classes and "other");
            ``1.0`` for teachers without a gate (the generalist, domain specialists).
    """

    probs: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None
    in_specialty: torch.FloatTensor | None = None


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
        if config.gate_teacher_configs:
            self.gate_teachers = nn.ModuleList(
                AutoModelForImageClassification.from_config(_config_from_dict(c)) for c in config.gate_teacher_configs
            )
            for g, gate in enumerate(self.gate_teachers):
                if gate.config.num_labels != config.num_labels + 1:
                    raise CSLError(f"gate teacher {g} outputs {gate.config.num_labels} classes; a gate teacher outputs "
                                   f"the {config.num_labels} classes plus 'out of specialty' ({config.num_labels + 1})")
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
        preprocessing: Sequence[object] | None = None,
        domain_names: Sequence[str] | None = None,
        gate_teachers: Sequence[PreTrainedModel] | None = None,
        gate_specialists: Sequence[int] | None = None,
        gate_preprocessing: Sequence[object] | None = None,
    ) -> "TeacherMixture":
        """Gather independent image classifiers into one mixture (their weights are copied).

        Args:
            teachers: `AutoModelForImageClassification` instances over the same global label space.
            specialties: one ``{"classes": [...]}`` or ``{"domain": name}`` per teacher.
            levels: teacher indices per level; level 0 is a single generalist.
            preprocessing: per teacher, a `Preprocessing`, its dict, or a transformers image processor. Teachers
                with different input sizes or normalisation each keep their own.
            gate_teachers: optional image classifiers over the global labels plus "out of specialty" (index
                ``num_labels``), one per gated class specialist (`csl_hf.teachers.train_gate_teachers`).
            gate_specialists: the teacher index each gate teacher gates.
            gate_preprocessing: per gate teacher, as ``preprocessing`` (default: its specialist's inputs).

        Raises:
            `CSLError`: teachers over different label spaces, or gates that do not fit (`TeacherMixtureConfig.validate_gates`).
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
            **_gate_fields(gate_teachers, gate_specialists, gate_preprocessing, ref.id2label),
        )
        mixture = cls(config)
        for target, source in zip(mixture.teachers, teachers):
            target.load_state_dict(source.state_dict())
        mixture._load_gates(gate_teachers)
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
        preprocessing: object | None = None,
        domain_names: Sequence[str] | None = None,
        gate_teachers: Sequence[PreTrainedModel] | None = None,
        gate_specialists: Sequence[int] | None = None,
        gate_preprocessing: Sequence[object] | None = None,
    ) -> "TeacherMixture":
        """Teachers as linear heads on one shared frozen backbone (an ``AutoModel``); the backbone runs once per batch.

        Each head outputs either ``len(id2label)`` logits (masked to its specialty) or exactly its specialty's
        classes, in the order listed in the specialty (scattered into the global label space). Gate teachers (see
        `from_teachers`) are independent image classifiers here too (default input: ``pixel_values``).
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
            **_gate_fields(gate_teachers, gate_specialists, gate_preprocessing, id2label),
        )
        mixture = cls(config)
        mixture.backbone.load_state_dict(backbone.state_dict())
        for target, source in zip(mixture.heads, heads):
            target.load_state_dict(source.state_dict())
        mixture._load_gates(gate_teachers)
        return mixture.eval()

    def _load_gates(self, gate_teachers: Sequence[PreTrainedModel] | None) -> None:
        for target, source in zip(getattr(self, "gate_teachers", None) or [], gate_teachers or []):
            target.load_state_dict(source.state_dict())

    # ------------------------------------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """`PreTrainedModel.save_pretrained` (safetensors, ``config.json``, the modeling code named in ``auto_map``),
        plus the model card ``README.md``: teachers, specialties, levels, the data they saw (``training_data``)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_model_card(self.config, save_directory)

    def push_to_hub(self, repo_id: str, *, max_shard_size: int | str | None = "50GB", **kwargs):
        """`PreTrainedModel.push_to_hub`'s arguments; pushes what `save_pretrained` writes, with the model card
        written for ``repo_id`` in place of transformers' generic one (`hub_teacher_mixture.push_with_card`).
        ``AutoModel.from_pretrained(repo_id, trust_remote_code=True)`` then loads it without csl_hf."""
        return push_with_card(lambda d: self.save_pretrained(d, max_shard_size=max_shard_size), self.config,
                              repo_id, **kwargs)

    # ------------------------------------------------------------------------------------------------ inputs
    @property
    def has_gates(self) -> bool:
        """Whether the mixture holds gate teachers (its output then has ``in_specialty``)."""
        return self.config.num_gates > 0

    def preprocessings(self) -> list:
        """Per teacher, its csl_hf `Preprocessing` (``None``: the caller's ``pixel_values`` are used as they are).
        Without csl_hf, ``config.preprocessing`` holds the same settings (size, mean, std, rescale factor)."""
        Preprocessing = _preprocessing_class()
        specs = self.config.preprocessing or [None] * self.config.num_teachers
        return [None if s is None else Preprocessing.from_dict(s) for s in specs]

    def gate_preprocessings(self) -> list:
        """Per gate teacher, its `Preprocessing`: its own, else that of the specialist it gates (``None``: the
        caller's ``pixel_values`` are used as they are)."""
        Preprocessing = _preprocessing_class()
        specs = self.config.gate_preprocessing or [None] * self.config.num_gates
        teachers = self.preprocessings()
        return [teachers[k] if s is None else Preprocessing.from_dict(s)
                for s, k in zip(specs, self.config.gate_specialists or [])]

    # ------------------------------------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        pixel_values_per_teacher: Sequence[torch.Tensor] | None = None,
        return_dict: bool | None = None,
        pixel_values_per_gate: Sequence[torch.Tensor] | None = None,
        **kwargs,
    ) -> TeacherMixtureOutput | tuple:
        """Run every teacher (and every gate teacher).

        Args:
            pixel_values: ``[B, 3, H, W]`` shared by all teachers (or the backbone).
            pixel_values_per_teacher: one ``[B, 3, H_k, W_k]`` tensor per teacher, for teachers with their own
                preprocessing (the same tensor object may be repeated; it is only read).
            pixel_values_per_gate: one tensor per gate teacher (`gate_preprocessings`); default: ``pixel_values``,
                else the input of the specialist each gate teacher gates.
        Returns:
            `TeacherMixtureOutput` with ``probs`` / ``logits`` of shape ``[B, num_teachers, num_labels]`` and, with
            gate teachers, ``in_specialty`` ``[B, num_teachers]``.
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
        in_specialty = None
        if self.has_gates:
            if pixel_values_per_gate is None:
                pixel_values_per_gate = [pixel_values if pixel_values is not None else pixel_values_per_teacher[k]
                                         for k in self.config.gate_specialists]
            in_specialty = self._in_specialty(pixel_values_per_gate, masks)
        output = TeacherMixtureOutput(probs=torch.stack(probs, dim=1), logits=torch.stack(logits, dim=1),
                                      features=features, in_specialty=in_specialty)
        return output if return_dict is not False else output.to_tuple()

    def _in_specialty(self, inputs: Sequence[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        """``[B, num_teachers]``: ``1 - p(other)`` of each gate teacher, its softmax restricted to its specialist's
        classes and "other" exactly as it was trained (`csl_hf.teachers.train_gate_teachers`); 1 elsewhere."""
        num_labels = self.config.num_labels
        out = torch.ones(inputs[0].shape[0], self.config.num_teachers, device=masks.device)
        other = torch.ones(1, dtype=torch.bool, device=masks.device)
        for gate, k, x in zip(self.gate_teachers, self.config.gate_specialists, inputs):
            p = masked_softmax(gate(pixel_values=x).logits.float(), torch.cat([masks[k], other]))
            out[:, k] = 1.0 - p[:, num_labels]
        return out


def _serializable_config(config) -> dict:
    d = config.to_dict()
    d.pop("dtype", None)
    d.pop("torch_dtype", None)
    return d


def _gate_fields(gate_teachers, gate_specialists, gate_preprocessing, id2label: dict) -> dict:
    """The config fields of the gate teachers (none without gates: the config stays as it was before gates)."""
    if not gate_teachers:
        if gate_specialists:
            raise CSLError("gate_specialists given without gate_teachers; pass the gate teachers too")
        return {}
    if gate_specialists is None or len(gate_specialists) != len(gate_teachers):
        raise CSLError(f"{len(gate_teachers)} gate teachers need as many gate_specialists (the specialist each gates)")
    id2label = {int(k): v for k, v in id2label.items()}
    names = [id2label[i] for i in range(len(id2label))]
    for g, gate in enumerate(gate_teachers):
        gate_names = [gate.config.id2label[i] for i in range(min(gate.config.num_labels, len(names)))]
        if gate.config.num_labels != len(names) + 1 or gate_names != names:
            raise CSLError(f"gate teacher {g} must output the {len(names)} classes of the teachers (same names, same "
                           f"order) plus 'out of specialty' last; it has {gate.config.num_labels} outputs")
    return {"gate_teacher_configs": [_serializable_config(g.config) for g in gate_teachers],
            "gate_specialists": [int(k) for k in gate_specialists],
            "gate_preprocessing": _preprocessing_dicts(gate_preprocessing, len(gate_teachers))}


def _preprocessing_class():
    """csl_hf's `Preprocessing` (``csl_hf.data.preprocessing``), which the builders and `preprocessings()` use.

    Imported here, inside a ``try``, rather than at the top: transformers checks a remote-code file's imports before
    loading it and skips those in ``try`` blocks, so a mixture loads and runs with ``trust_remote_code=True`` where
    csl_hf is not installed, and only these csl_hf helpers ask for it.
    """
    try:
        from csl_hf.data.preprocessing import Preprocessing
    except ImportError as err:
        raise ImportError("building a TeacherMixture and TeacherMixture.preprocessings() need csl_hf (pip install "
                          "csl_hf); loading a saved mixture and calling it do not") from err
    return Preprocessing


def _preprocessing_dicts(preprocessing, num_teachers: int) -> list[dict] | None:
    if preprocessing is None:
        return None
    Preprocessing = _preprocessing_class()
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
