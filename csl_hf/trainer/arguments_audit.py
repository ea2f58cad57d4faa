"""Which `TrainingArguments` a CSL run honours, and the one-line refusal of those it cannot.

`CoSupervisedTrainer` runs one ``Trainer.train()`` per phase on targets it builds itself, evaluates every round's
student on the test split itself, and checkpoints rounds itself. A stock flag that would act on something a CSL run
does not have (an eval dataset, Trainer checkpoints, token inputs) is refused when the config is built, before any
work, with the reason and what to do instead; docs/troubleshooting.md lists every field and the mode it applies in.
"""

from __future__ import annotations

import dataclasses

from ..errors import CSLError
from ..utils import field_default, jsonable

__all__ = ["DERIVED", "HONOURED", "RESULT_SETTINGS", "is_set", "RANGES", "REFUSED", "REFUSED_IN_PROBE", "audit_table", "check_training_arguments"]

_EVAL = ("every round's student is evaluated on the test split (its accuracy and PGR are in the report); "
         "call trainer.evaluate() for more")
_SAVE = "each round is checkpointed as OUTPUT_DIR/round-{level}/ (--save_round_checkpoints)"

#: Refused in every mode: ``field -> why, and what to use instead``.
REFUSED = {
    "eval_strategy": _EVAL, "eval_steps": _EVAL, "eval_delay": _EVAL, "eval_on_start": _EVAL,
    "eval_accumulation_steps": _EVAL, "eval_do_concat_batches": _EVAL, "eval_use_gather_object": _EVAL,
    "prediction_loss_only": _EVAL, "include_for_metrics": _EVAL, "batch_eval_metrics": _EVAL,
    "bf16_full_eval": _EVAL, "fp16_full_eval": _EVAL,
    "load_best_model_at_end": "choosing a round by its test accuracy would select on the test split",
    "metric_for_best_model": "choosing a round by its test accuracy would select on the test split",
    "greater_is_better": "choosing a round by its test accuracy would select on the test split",
    "save_strategy": _SAVE, "save_steps": _SAVE, "save_total_limit": _SAVE, "save_only_model": _SAVE,
    "save_on_each_node": _SAVE, "enable_jit_checkpoint": _SAVE, "restore_callback_states_from_checkpoint": _SAVE,
    "ignore_data_skip": "--resume_from_checkpoint resumes at the next round, not mid-epoch",
    "hub_strategy": "--push_to_hub pushes once the run is done: the final student to main, rounds to branches",
    "hub_always_push": "--push_to_hub pushes once the run is done: the final student to main, rounds to branches",
    "hub_revision": "--push_to_hub pushes the final student to main and each round to its branch round-{level}",
    "label_names": "the labels of every phase are the CSL targets the trainer builds",
    "remove_unused_columns": "the trainer builds its own inputs (cached features or preprocessed images)",
    "train_sampling_strategy": "each phase shuffles its kept samples with a seed derived from --seed",
    "length_column_name": "each phase shuffles its kept samples with a seed derived from --seed",
    "data_seed": "each phase's data order is seeded from --seed and the level (so a resumed run matches)",
    "include_num_input_tokens_seen": "image inputs have no tokens",
    "neftune_noise_alpha": "NEFTune adds noise to token embeddings; image students have none",
    "use_liger_kernel": "Liger kernels are for language models",
    "liger_kernel_config": "Liger kernels are for language models",
    "optim_target_modules": "GaLore-style target modules are for language models",
    "do_eval": "the script always evaluates every round", "do_predict": "the script always evaluates every round",
}

_PROBE = ("--student_mode probe trains only a linear head on cached features; use --student_mode full to fine-tune "
          "the whole student")
#: Refused in probe mode only (they act on the whole network, which a probe phase does not run).
REFUSED_IN_PROBE = {
    "gradient_checkpointing": _PROBE, "gradient_checkpointing_kwargs": _PROBE, "activation_checkpointing": _PROBE,
    "activation_checkpointing_kwargs": _PROBE, "torch_compile": _PROBE, "torch_compile_backend": _PROBE,
    "torch_compile_mode": _PROBE, "auto_find_batch_size": _PROBE, "fsdp": _PROBE, "fsdp_config": _PROBE,
    "deepspeed": _PROBE,
}
_BATCHES = ("probe batches are sliced from the cached features already in memory, with no DataLoader; it applies to "
            "--student_mode full")
REFUSED_IN_PROBE.update({name: _BATCHES for name in (
    "dataloader_drop_last", "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_in_order")})

#: What the honoured fields do in a CSL run, where it is not simply the Trainer's meaning (``field -> note``).
HONOURED = {
    "output_dir": "the run's directory (students, teachers, cache, report, card)",
    "num_train_epochs": "epochs per round `E` (`floor(E / r)` with `--scale_epochs_by_keep_rate`)",
    "max_steps": "caps every phase (ceiling, each round) at this many optimiser steps",
    "per_device_train_batch_size": "batch of every phase",
    "per_device_eval_batch_size": "batch of the students' predictions",
    "seed": "every phase's head initialisation and batch order derive from it and the level",
    "dataloader_num_workers": "the labeling pass decodes in this many workers; full mode also trains with them",
    "dataloader_prefetch_factor": "the labeling pass's workers (and full-mode training)",
    "dataloader_multiprocessing_context": "the labeling pass's workers (and full-mode training)",
    "resume_from_checkpoint": "resumes the CSL run at its next phase (OUTPUT_DIR/csl_progress.json)",
    "push_to_hub": "pushes the final student to main and each round to a branch `round-{level}`, with the card",
    "label_smoothing_factor": "applied to the hard-label cross-entropy of every phase",
    "do_train": "the script always trains",
}

#: The stock `TrainingArguments` that shape a run's results: recorded in ``run_config.yaml`` whatever their value, so
#: that a rerun means the same run after a default changes (every CSL, data, model and teacher setting is too).
RESULT_SETTINGS = (
    "seed", "full_determinism", "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "weight_decay",
    "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "optim", "optim_args", "label_smoothing_factor",
    "bf16", "fp16", "use_cpu",
)

#: Numeric fields and the values they accept (``field -> (test, wording)``): TrainingArguments checks only a few of
#: them itself, and a run with a batch of 0 or a negative learning rate would otherwise fail late or train nothing.
RANGES = {
    "num_train_epochs": (lambda v: v > 0, "positive (the epochs of each round)"),
    "learning_rate": (lambda v: v > 0, "positive"),
    "weight_decay": (lambda v: v >= 0, "0 or more"),
    "max_grad_norm": (lambda v: v >= 0, "0 or more (0: no clipping)"),
    "per_device_train_batch_size": (lambda v: v >= 1, "at least 1"),
    "per_device_eval_batch_size": (lambda v: v >= 1, "at least 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, "at least 1"),
    "dataloader_num_workers": (lambda v: v >= 0, "0 or more"),
}


#: Settings that `TrainingArguments.__post_init__` derives from others: ``field -> what it derives, given the config``
#: (``None``: nothing). A config rebuilt from another (``dataclasses.replace``, a resumed or compared run) carries
#: these derived values as if they were given; the audit judges what the *user* set, so a value equal to the derived
#: one is not the user's.
DERIVED = {
    "dataloader_pin_memory": lambda config: False if getattr(config, "use_cpu", False) else None,
}


def is_set(value, field: dataclasses.Field, config=None) -> bool:
    """``value`` differs from the field's default (the config class's own, e.g. ``save_strategy="no"``) and from what
    transformers derives for it from the other settings (`DERIVED`)."""
    derive = DERIVED.get(field.name)
    if config is not None and derive is not None and derive(config) is not None and value == derive(config):
        return False
    default = field_default(field)
    default = None if default is dataclasses.MISSING else default
    off = (None, False, "", "no", "none", [], {})  # the command line may give False for a default of "no"
    if jsonable(value) in off and jsonable(default) in off:
        return False
    return jsonable(value) != jsonable(default)


def check_training_arguments(config) -> None:
    """Refuse, with one line, a stock `TrainingArguments` flag that does not apply to this CSL run, or a number out of
    its range (`RANGES`).

    Raises:
        `CSLError`: ``--FLAG does not apply to a CSL run: <why>; drop it`` or ``--FLAG must be <range>, got <value>``.
    """
    for name, (ok, wording) in RANGES.items():
        value = getattr(config, name, None)
        if value is not None and not ok(value):
            raise CSLError(f"--{name} must be {wording}, got {value}")
    fields = {f.name: f for f in dataclasses.fields(config)}
    probe = getattr(config, "student_mode", "probe") == "probe"
    for name, why in (*REFUSED.items(), *(REFUSED_IN_PROBE.items() if probe else ())):
        if name in fields and is_set(getattr(config, name, None), fields[name], config):
            raise CSLError(f"--{name} does not apply to a CSL run: {why}; drop it")


def audit_table() -> str:
    """The markdown table of every `TrainingArguments` field and what a CSL run does with it in each mode (the one in
    docs/troubleshooting.md; `tests/test_console_and_configs.py` checks that the doc holds this exact table)."""
    from transformers import TrainingArguments

    rows = ["| field | `--student_mode probe` | `--student_mode full` | what it does / why refused |", "|---|---|---|---|"]
    for f in dataclasses.fields(TrainingArguments):
        if not f.init:
            continue
        if f.name in REFUSED:
            probe, full, note = "refused", "refused", REFUSED[f.name]
        elif f.name in REFUSED_IN_PROBE:
            probe, full, note = "refused", "honoured", REFUSED_IN_PROBE[f.name]
        else:
            probe, full, note = "honoured", "honoured", HONOURED.get(f.name, "the `Trainer`'s meaning, in every phase")
        rows.append(f"| `{f.name}` | {probe} | {full} | {note} |")
    return "\n".join(rows)
