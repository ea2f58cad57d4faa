"""``csl-hf run``: co-supervised learning end to end from the command line (``examples/run_csl.py`` is this same
command). Weak teachers label images once, then a strong student learns from them round by round (Liu & Alahi
2024), and comes out as a standard transformers checkpoint with a model card. Each round reports PGR, the performance
gap recovered (Burns et al. 2023): 100 x (student - weak) / (ceiling - weak) in test accuracy, where weak is the
generalist teacher and ceiling the same student trained on true labels.

With no arguments it runs the bundled offline benchmark: Animal-MNIST, an ImageNet EfficientNet-Lite0 student, a
hierarchy of tiny ConvNeXt teachers (1 generalist, then 2, 4 and 5 class specialists), into csl_output/.

Three ways in: images (--dataset_name: a bundled set, a local image folder or dataset, or a Hub id; the teachers are
trained, or reused with --teachers_name_or_path), a cache of precomputed student features and teacher probabilities
(--cache_dir), or a config file (CONFIG.yaml [--flag value]; every run writes its own as OUTPUT_DIR/run_config.yaml).
It runs the same under python and accelerate launch.
"""

from __future__ import annotations

import os

from ..cache import CSLCache
from ..data.weak_to_strong import load_weak_to_strong_data
from ..models.student import check_lora_targets, check_student_available, load_student
from ..outputs.report import plot_pgr
from ..teachers.arguments import TeacherTrainingArguments
from ..trainer import CoSupervisedConfig, CoSupervisedTrainer
from ..utils import atomic_write_text
from .arguments import CONFIG_NAME, CSLArgumentParser, DataArguments, ModelArguments, get_peft_config, \
    parse_run_args, resolved_config
from .console import run_command, setup_logging
from ..outputs.hub import check_push_possible
from ..trainer.progress import PROGRESS_NAME, check_resume_settings, resume_directory
from .output_dir import OutputDirectory, run_state
from .steps import (
    check_flags_apply,
    finished_run,
    hub_repo_id,
    local_dataset_path,
    other_label_run,
    prepare_teachers,
    push_finished_run,
    run_summary,
    student_for_cache,
)

__all__ = ["HELP_GROUPS", "build_parser", "main", "cli"]


HELP_GROUPS = [
    ("Data", ["dataset_name", "folder_layout", "cache_dir", "teacher_size", "test_size", "train_size",
              "max_train_samples", "max_eval_samples", "streaming", "shuffle_buffer_size", "labeling_batch_size", "labeling_bf16",
              "on_bad_image"]),
    ("Student and teachers", ["student_model_name_or_path", "student_image_size", "teachers_name_or_path",
                              "teachers_per_level", "specialties", "teacher_domain_level", "teacher_steps",
                              "teacher_architecture", "teacher_backbone", "teacher_learning_rate",
                              "teacher_batch_size", "teacher_image_size", "teacher_seed", "teacher_feature_batch_size",
                              "specialty_gates", "allow_pickle_weights", "use_peft", "lora_r", "lora_alpha",
                              "lora_dropout", "lora_target_modules"]),
    ("Teacher architecture (tiny models built from a config)",
     ["teacher_patch_size", "teacher_hidden_sizes", "teacher_depths", "teacher_hidden_size", "teacher_num_layers",
      "teacher_num_heads", "teacher_weight_decay"]),
    ("Rounds", ["assignment", "denoise", "denoise_neighbors", "soft_labels", "baselines", "student_mode", "reinit_head_each_round",
                "scale_epochs_by_keep_rate", "run_ceiling", "max_levels", "compact_cache_topk",
                "backbone_learning_rate", "head_warmup_epochs", "freeze_batch_norm", "image_cache_mb"]),
    ("Training of each round (TrainingArguments with the paper's probe defaults)",
     ["learning_rate", "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
      "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "seed", "logging_steps"]),
    ("Outputs", ["output_dir", "overwrite_output_dir", "resume_from_checkpoint", "save_round_checkpoints",
                 "compare_label_types", "report_to", "push_to_hub", "hub_model_id"]),
]


def build_parser(prog: str = "csl-hf run") -> CSLArgumentParser:
    return CSLArgumentParser((DataArguments, ModelArguments, TeacherTrainingArguments, CoSupervisedConfig),
                             description=__doc__, help_groups=HELP_GROUPS, prog=prog)


def main(argv: list[str] | None = None, prog: str = "csl-hf run") -> dict:
    """The run: parse ``argv`` (default ``sys.argv[1:]``), then data, student, teachers, `CoSupervisedTrainer.train`,
    the other label type for comparison, the plot, the final student and its card. Returns the report.

    Raises:
        `CSLError` (one line): any user mistake, before the work it would spoil where it can be checked early.
    """
    parser = build_parser(prog)
    data_args, model_args, teacher_args, args = parse_run_args(parser, argv)
    setup_logging(args)
    check_flags_apply(data_args, model_args, teacher_args, args)
    # A missing student wheel or a mistyped checkpoint path fails now, not after the data is read.
    check_student_available(model_args.student_model_name_or_path)
    if args.push_to_hub:  # the repo id and the Hub checked now, not after the whole run
        check_push_possible(hub_repo_id(args), args.hub_token, args.output_dir)
    resumed = resume_directory(args, args.resume_from_checkpoint) if args.resume_from_checkpoint else None
    if resumed and run_state(resumed) == "finished":
        return finished_run(args, prog)
    if resumed and os.path.abspath(resumed) == os.path.abspath(args.output_dir):
        # a changed flag is refused now, not after the data, student and teachers load (a resume into another
        # directory is refused by OutputDirectory)
        check_resume_settings(args, resumed)
    local_data = None if data_args.cache_dir else local_dataset_path(data_args.dataset_name)
    with OutputDirectory(args, data_path=local_data, keep_cache=not data_args.cache_dir, prog=prog):
        if data_args.cache_dir:
            cache = CSLCache.from_pretrained(data_args.cache_dir)  # a directory or a Hub dataset repo
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
                streaming=data_args.streaming, shuffle_buffer_size=data_args.shuffle_buffer_size,
                folder_layout=data_args.folder_layout)
            check_flags_apply(data_args, model_args, teacher_args, args, data)
            # The student before the teachers: a bad student path or LoRA target fails in seconds, not after
            # teacher training.
            student, processor = load_student(model_args.student_model_name_or_path, data.id2label,
                                              image_size=model_args.student_image_size,
                                              allow_pickle_weights=model_args.allow_pickle_weights,
                                              labels_from=f"the dataset {data_args.dataset_name}")
            peft_config = get_peft_config(model_args)
            check_lora_targets(student, peft_config)
            teachers = prepare_teachers(model_args, teacher_args, data, args)
            trainer = CoSupervisedTrainer(model=student, teachers=teachers, args=args, train_dataset=data.train,
                                          eval_dataset=data.test, processing_class=processor, peft_config=peft_config)
        config_text = _yaml(resolved_config(parser), prog)
        # A resume rebuilds its run from run_config.yaml: it is rewritten only once train() has accepted the resume's
        # settings (a refused resume with a changed flag once overwrote it, and every later plain resume was refused).
        if args.should_save and not args.resume_from_checkpoint:
            atomic_write_text(os.path.join(args.output_dir, CONFIG_NAME), config_text)
        # A resume without recorded rounds (stopped while labeling) simply runs: the teachers and the labeled chunks
        # on disk are reused.
        resumable = args.resume_from_checkpoint and os.path.isfile(os.path.join(args.output_dir, PROGRESS_NAME))
        trainer.train(resume_from_checkpoint=args.resume_from_checkpoint if resumable else None)
        if args.should_save and args.resume_from_checkpoint:
            atomic_write_text(os.path.join(args.output_dir, CONFIG_NAME), config_text)
        report = trainer.report
        reports = {("soft labels" if args.soft_labels else "hard labels"): report}
        compare = model_args.compare_label_types
        if compare if compare is not None else args.student_mode == "probe":
            name, reports[name] = other_label_run(trainer, args, data, model_args.allow_pickle_weights)
        if args.should_save:
            title = (data.dataset_name if data else (trainer.cache.source or {}).get("dataset")) or data_args.cache_dir
            plot = plot_pgr(reports, os.path.join(args.output_dir, "pgr.png"), title=f"CSL on {title}")
            if args.push_to_hub:  # saves the student and its card, then pushes (Trainer.push_to_hub's meaning)
                try:
                    push_finished_run(trainer, args)
                finally:
                    print(run_summary(args, reports, plot))
            else:
                trainer.save_model()
                trainer.create_model_card()
                print(run_summary(args, reports, plot))
    return report


def _yaml(config: dict, prog: str) -> str:
    import yaml

    header = (f"# Every setting that shapes this run's results: rerun it with  {prog} THIS_FILE  (flags after the "
              "file override it)\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def cli(argv: list[str] | None = None, prog: str = "csl-hf run") -> int:
    """The command line: runs `main`; a `CSLError` is one ``error: ...`` line on stderr and exit status 2."""
    return run_command(lambda a: main(a, prog), argv)
