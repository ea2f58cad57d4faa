#!/usr/bin/env python
"""Co-supervised learning end to end: weak teachers label images once, then a strong student learns from them round
by round (Liu & Alahi 2024), and comes out as a standard transformers checkpoint with a model card.

With no arguments it runs the bundled offline benchmark: Animal-MNIST, an ImageNet EfficientNet-Lite0 student, a
hierarchy of tiny ConvNeXt teachers (1 generalist, then 2, 4 and 5 class specialists), into csl_output/.

Three ways in: images (--dataset_name: a bundled set, a local image folder class/image or domain/class/image, or a
Hub id; the teachers are trained, or reused with --teachers_name_or_path), a cache of precomputed student features
and teacher probabilities (--cache_dir), or a config file (python examples/run_csl.py recipe.yaml [--flag value];
every run writes its own as OUTPUT_DIR/run_config.yaml). It runs the same under python and accelerate launch.
"""

from __future__ import annotations

import os
import sys

try:  # a checkout run before the package is installed gets one line, not a traceback
    import csl_hf  # noqa: F401
except ModuleNotFoundError as err:
    print(f"error: {err}; install the package first, from the repository root: pip install -e . (see README.md)",
          file=sys.stderr)
    sys.exit(2)

from csl_hf import (
    CoSupervisedConfig,
    CoSupervisedTrainer,
    CSLCache,
    DataArguments,
    ModelArguments,
    TeacherTrainingArguments,
    load_student,
    load_weak_to_strong_data,
)
from csl_hf.atomic import atomic_write_text
from csl_hf.errors import run_command
from csl_hf.pipeline import (
    OutputDirectory,
    check_flags_apply,
    other_label_run,
    prepare_teachers,
    run_summary,
    student_for_cache,
)
from csl_hf.report import plot_pgr
from csl_hf.script_arguments import (
    CONFIG_NAME,
    CSLArgumentParser,
    get_peft_config,
    parse_run_args,
    resolved_config,
    setup_logging,
)

HELP_GROUPS = [
    ("Data", ["dataset_name", "cache_dir", "teacher_size", "test_size", "train_size", "max_train_samples",
              "max_eval_samples", "streaming", "shuffle_buffer_size", "labeling_batch_size", "on_bad_image"]),
    ("Student and teachers", ["student_model_name_or_path", "student_image_size", "teachers_name_or_path",
                              "teachers_per_level", "specialties", "teacher_domain_level", "teacher_steps", "teacher_architecture",
                              "teacher_learning_rate", "teacher_batch_size", "teacher_image_size", "teacher_seed",
                              "specialty_gates", "allow_pickle_weights", "use_peft", "lora_r", "lora_alpha", "lora_dropout",
                              "lora_target_modules"]),
    ("Teacher architecture (tiny models built from a config)",
     ["teacher_patch_size", "teacher_hidden_sizes", "teacher_depths", "teacher_hidden_size", "teacher_num_layers",
      "teacher_num_heads", "teacher_weight_decay"]),
    ("Rounds", ["assignment", "denoise", "denoise_neighbors", "soft_labels", "baselines", "student_mode",
                "reinit_head_each_round", "scale_epochs_by_keep_rate", "run_ceiling", "max_levels",
                "compact_cache_topk", "backbone_learning_rate", "head_warmup_epochs", "freeze_batch_norm",
                "image_cache_mb"]),
    ("Training of each round (TrainingArguments with the paper's probe defaults)",
     ["learning_rate", "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
      "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "seed", "logging_steps"]),
    ("Outputs", ["output_dir", "overwrite_output_dir", "resume_from_checkpoint", "save_round_checkpoints",
                 "compare_label_types", "report_to", "push_to_hub", "hub_model_id"]),
]


def build_parser() -> CSLArgumentParser:
    return CSLArgumentParser((DataArguments, ModelArguments, TeacherTrainingArguments, CoSupervisedConfig),
                             description=__doc__, help_groups=HELP_GROUPS, prog="python examples/run_csl.py")


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    data_args, model_args, teacher_args, args = parse_run_args(parser, argv)
    setup_logging(args)
    check_flags_apply(data_args, model_args, teacher_args, args)
    with OutputDirectory(args):
        if data_args.cache_dir:
            cache = CSLCache.load(data_args.cache_dir)
            if args.compact_cache_topk:
                cache = cache.to_compact(args.compact_cache_topk)
            student, processor = student_for_cache(model_args, cache)
            trainer = CoSupervisedTrainer(model=student, args=args, cache=cache, processing_class=processor)
            data = None
        else:
            data = load_weak_to_strong_data(
                data_args.dataset_name, seed=args.seed, teacher_size=data_args.teacher_size,
                test_size=data_args.test_size, train_size=data_args.train_size,
                max_train_samples=data_args.max_train_samples, max_eval_samples=data_args.max_eval_samples,
                streaming=data_args.streaming, shuffle_buffer_size=data_args.shuffle_buffer_size)
            check_flags_apply(data_args, model_args, teacher_args, args, data.domain_column, data.dataset_name)
            # The student before the teachers: a bad student path fails in seconds, not after teacher training.
            student, processor = load_student(model_args.student_model_name_or_path, data.id2label,
                                              image_size=model_args.student_image_size,
                                              allow_pickle_weights=model_args.allow_pickle_weights,
                                              labels_from=f"the dataset {data_args.dataset_name}")
            teachers = prepare_teachers(model_args, teacher_args, data, args)
            trainer = CoSupervisedTrainer(model=student, teachers=teachers, args=args, train_dataset=data.train,
                                          eval_dataset=data.test, processing_class=processor,
                                          peft_config=get_peft_config(model_args))
        if args.should_save:
            atomic_write_text(os.path.join(args.output_dir, CONFIG_NAME), _yaml(resolved_config(parser)))
        trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        report = trainer.report
        reports = {("soft labels" if args.soft_labels else "hard labels"): report}
        compare = model_args.compare_label_types
        if compare if compare is not None else args.student_mode == "probe":
            name, reports[name] = other_label_run(trainer, model_args, args, data)
        if args.should_save:
            title = (data.dataset_name if data else (trainer.cache.source or {}).get("dataset")) or data_args.cache_dir
            plot = plot_pgr(reports, os.path.join(args.output_dir, "pgr.png"), title=f"CSL on {title}")
            trainer.save_model()
            trainer.push_to_hub() if args.push_to_hub else trainer.create_model_card()
            print(run_summary(args, reports, plot))
    return report


def _yaml(config: dict) -> str:
    import yaml

    header = "# The resolved settings of this run: rerun it with  python examples/run_csl.py THIS_FILE\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def cli(argv: list[str] | None = None) -> int:
    """The command line: runs `main`; a `CSLError` is one ``error: ...`` line on stderr and exit status 2."""
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
