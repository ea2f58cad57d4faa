#!/usr/bin/env python
"""Co-supervised learning, end to end: weak teachers -> one labeling pass -> CSL rounds -> a Hub-ready student.

With no arguments it runs the bundled offline benchmark (Animal-MNIST, an ImageNet EfficientNet-Lite0 student, a
hierarchy of tiny ConvNeXt teachers). Three entry points:

* images (default): ``--dataset_name animal_mnist | digits_domains | PATH | HUB_ID``: trains the teachers (or
  reuses ``--teachers_name_or_path``), labels the data once into ``OUTPUT_DIR/cache/``, runs the rounds;
* a cache: ``--cache_dir DIR`` starts from precomputed features and teacher probabilities (DESIGN §4);
* every `TrainingArguments` flag works (``--learning_rate``, ``--num_train_epochs``, ``--report_to``, ...).

Runs the same under ``python`` and ``accelerate launch``.
"""

from __future__ import annotations

import logging as pylogging
import os
import sys
from dataclasses import dataclass, field

from transformers import AutoImageProcessor, AutoModelForImageClassification, HfArgumentParser
from transformers.utils import logging

import csl_hf
from csl_hf import CoSupervisedConfig, CoSupervisedTrainer, CSLCache, TeacherMixture
from csl_hf.errors import CSLError, run_command
from csl_hf.report import REPORT_NAME, format_report_table, plot_pgr
from csl_hf.teachers import TeacherTrainingArguments

logger = logging.get_logger("csl_hf.run_csl")


@dataclass
class DataArguments:
    """Where the images (or a ready cache) come from and how they are split."""

    dataset_name: str = field(
        default="animal_mnist",
        metadata={"help": "animal_mnist (bundled, 10 animal classes), digits_domains (bundled, MNIST-5k + sklearn "
                  "digits as two domains), a local image folder (class/image or domain/class/image), or a Hub "
                  "dataset id (needs network access)."},
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Start from an existing CSL cache (cache.safetensors + cache.json) instead of images: "
                  "no teachers are trained and no image is read."},
    )
    teacher_size: float = field(
        default=1000, metadata={"help": "Images whose labels train the weak teachers (a count, or a fraction < 1)."}
    )
    test_size: float = field(default=2000, metadata={"help": "Labeled test images (a count, or a fraction < 1)."})
    train_size: float | None = field(
        default=None,
        metadata={"help": "Weak-to-strong training images, labeled by the teachers (default: all the rest). Their "
                  "labels are used only for the ceiling and the diagnostics."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Cap the weak-to-strong training split (for quick runs)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap the test split (for quick runs)."})
    labeling_batch_size: int = field(default=128, metadata={"help": "Images per batch in the labeling pass."})
    on_bad_image: str = field(
        default="skip",
        metadata={"help": "Corrupt or tiny images: skip and count them, or fail on the first.", "choices": ["skip", "fail"]},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Read the dataset as a stream (datasets.IterableDataset) end to end: a seeded buffer "
                  "shuffle, then the first --teacher_size examples train the teachers (held in memory), the next "
                  "--test_size are the test split, the rest (or --train_size) the weak-to-strong split; the labeling "
                  "pass reads those once, holding no image. Sizes must be counts; no stratification (see "
                  "csl_hf/data/streaming.py)."},
    )
    shuffle_buffer_size: int = field(
        default=1000, metadata={"help": "With --streaming: examples in the streaming shuffle buffer."}
    )


@dataclass
class ModelArguments:
    """The strong student and the weak teachers."""

    student_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Any image classifier (path or Hub id). Default: the bundled ImageNet EfficientNet-Lite0 "
                  "('efficientnet-lite0'); with --cache_dir, the student named in cache.json when it loads offline."},
    )
    student_image_size: int | None = field(
        default=64,
        metadata={"help": "Resize images to this side for the student (the bundled 28 px data is upsampled; 64 px "
                  "as in the design's pilot). 0 keeps the student processor's own size."},
    )
    teachers_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A saved TeacherMixture to reuse (e.g. OUTPUT_DIR/teachers of an earlier run). Default: "
                  "train the teachers, and save them to OUTPUT_DIR/teachers."},
    )
    compare_label_types: bool = field(
        default=True,
        metadata={"help": "Also run the rounds with the other label type (soft if hard, hard if soft) on the same "
                  "cache, for pgr.png; its report goes to OUTPUT_DIR/<type>_labels/csl_report.json."},
    )
    allow_pickle_weights: bool = field(
        default=False,
        metadata={"help": "Allow loading pickled (pytorch_model.bin) student/teacher weights. Unpickling can run "
                  "arbitrary code: only for files you trust. Default: safetensors only."},
    )


def check_weights_format(path: str, allow_pickle_weights: bool = False) -> None:
    """Refuse a local checkpoint whose weights are only pickled (unpickling can run code), unless allowed."""
    if allow_pickle_weights or not os.path.isdir(path):
        return
    names = os.listdir(path)
    if any(n.endswith((".safetensors", ".safetensors.index.json")) for n in names):
        return
    pickled = sorted(n for n in names if n.endswith((".bin", ".bin.index.json", ".pt", ".pth", ".ckpt")))
    if pickled:
        name = "pytorch_model.bin" if "pytorch_model.bin" in pickled else pickled[0]
        raise CSLError(f"{path} holds pickled weights ({name}); convert them to safetensors or pass "
                       "--allow_pickle_weights if you trust the file")


def _use_safetensors(allow_pickle_weights: bool) -> bool | None:
    # `use_safetensors=False` would refuse safetensors checkpoints; None lets transformers pick (safetensors first).
    return None if allow_pickle_weights else True


class _StudentUnavailable(CSLError):
    """The student checkpoint cannot be loaded (offline, missing): with --cache_dir, the run can go on head-only."""


def check_output_dir(args: CoSupervisedConfig) -> None:
    """Refuse to write into a directory that holds another run, unless told to."""
    out = args.output_dir
    if not os.path.isdir(out) or args.overwrite_output_dir or args.resume_from_checkpoint:
        return
    taken = [n for n in os.listdir(out) if n == REPORT_NAME or n.startswith("round-") or n in ("cache", "teachers")]
    if taken:
        raise CSLError(f"--output_dir {out} already holds a run ({', '.join(sorted(taken)[:3])}); pass "
                       "--overwrite_output_dir to replace it or choose another --output_dir")


def load_student(name_or_path: str, id2label: dict[int, str], allow_pickle_weights: bool = False,
                 labels_from: str = "the data"):
    """The student with a fresh head over our labels, and its image processor.

    A checkpoint that already has as many labels as ours under other names (a student fine-tuned on another label
    space) is refused: silently renaming its classes would mislabel every prediction of its head.
    """
    from transformers import AutoConfig

    from csl_hf.models import resolve_student_name_or_path

    path = resolve_student_name_or_path(name_or_path)
    check_weights_format(path, allow_pickle_weights)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the head is replaced on purpose: no mismatch report
    try:
        config = AutoConfig.from_pretrained(path)
        _check_student_labels(name_or_path, config, id2label, labels_from)
        student = AutoModelForImageClassification.from_pretrained(
            path, id2label=id2label, label2id={v: k for k, v in id2label.items()}, ignore_mismatched_sizes=True,
            use_safetensors=_use_safetensors(allow_pickle_weights),
        )
        processor = AutoImageProcessor.from_pretrained(path)
    except OSError as err:
        raise _StudentUnavailable(f"cannot load the student {name_or_path!r} offline ({str(err).splitlines()[0]}); "
                                  "pass a local checkpoint with --student_model_name_or_path") from None
    finally:
        logging.set_verbosity(verbosity)
    return student, processor


def _check_student_labels(name_or_path: str, config, id2label: dict[int, str], labels_from: str) -> None:
    """Same number of classes under other names: an error naming both (generic LABEL_i names carry no meaning)."""
    own = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    want = {int(k): v for k, v in id2label.items()}
    if len(own) != len(want) or own == want or all(v == f"LABEL_{k}" for k, v in own.items()):
        return
    k = next(i for i in sorted(want) if own.get(i) != want[i])
    raise CSLError(
        f"the student {name_or_path!r} has {len(own)} classes like {labels_from} but other names (class {k} is "
        f"{own.get(k)!r} in the student, {want[k]!r} in {labels_from}; student {list(own.values())[:5]} vs "
        f"{list(want.values())[:5]}); pass a student whose id2label matches {labels_from}, or its base checkpoint "
        "(whose head is replaced)"
    )


def images_to_cache(data: DataArguments, model: ModelArguments, targs: TeacherTrainingArguments,
                    args: CoSupervisedConfig):
    """Teachers, student and the one labeling pass; returns (cache, student, processor, teachers)."""
    from accelerate import PartialState

    from csl_hf.data import cap, class_names, infer_columns, load_csl_dataset, make_weak_to_strong_splits
    from csl_hf.labeling import build_cache
    from csl_hf.preprocessing import Preprocessing
    from csl_hf.teachers import evaluate_teachers, train_teacher_hierarchy

    state = PartialState()
    try:  # csl_hf.data raises one-line ValueErrors for a bad path, layout, column or split size
        dataset = load_csl_dataset(data.dataset_name, streaming=data.streaming)
        image_col, label_col, domain_col = infer_columns(dataset)
        names = class_names(dataset, label_col)
        id2label = dict(enumerate(names))
        size = lambda v: None if v is None else (int(v) if v >= 1 else float(v))  # noqa: E731
        stratify = (label_col, domain_col) if domain_col else label_col
        if data.streaming:
            from csl_hf.data.streaming import stream_splits

            splits = stream_splits(dataset, seed=args.seed, teacher_size=size(data.teacher_size),
                                   test_size=size(data.test_size), train_size=size(data.train_size),
                                   buffer_size=data.shuffle_buffer_size)
        else:
            splits = make_weak_to_strong_splits(dataset, seed=args.seed, teacher_size=size(data.teacher_size),
                                                test_size=size(data.test_size), train_size=size(data.train_size),
                                                stratify_by=stratify)
    except (ValueError, TypeError) as err:
        if isinstance(err, CSLError):
            raise
        raise CSLError(f"--dataset_name {data.dataset_name}: {err}") from None
    train = cap(splits["train"], data.max_train_samples, seed=args.seed)
    test = cap(splits["test"], data.max_eval_samples, seed=args.seed)

    if model.teachers_name_or_path:
        check_weights_format(model.teachers_name_or_path, model.allow_pickle_weights)
        try:
            teachers = TeacherMixture.from_pretrained(model.teachers_name_or_path,
                                                      use_safetensors=_use_safetensors(model.allow_pickle_weights))
        except OSError as err:
            raise CSLError(f"cannot load the teachers {model.teachers_name_or_path!r} ({str(err).splitlines()[0]}); "
                           "pass a directory saved by a previous run (OUTPUT_DIR/teachers)") from None
        teacher_labels = [teachers.config.id2label[i] for i in range(teachers.config.num_labels)]
        if teacher_labels != names:
            raise CSLError(f"the teachers in {model.teachers_name_or_path} use other labels than {data.dataset_name} "
                           f"({list(teachers.config.id2label.values())[:5]}... vs {names[:5]}...); train teachers on this dataset")
    else:
        domain_level = targs.teacher_domain_level or domain_col is not None
        teachers = train_teacher_hierarchy(splits["teacher"].rename_columns(
            {c: n for c, n in ((image_col, "image"), (label_col, "label")) if c != n}), targs, domain_level=domain_level)
        if not data.streaming:  # a streamed test split is read once: measured on the cache below instead
            accs = evaluate_teachers(teachers, test.rename_columns(
                {c: n for c, n in ((image_col, "image"), (label_col, "label")) if c != n}))
            for name, acc in zip(teachers.config.teacher_names, accs):
                logger.info(f"teacher {name}: test accuracy within its specialty {acc:.3f}")

    student_name = model.student_model_name_or_path or csl_hf.models.DEFAULT_STUDENT
    # The main process first: it converts the bundled Lite0 checkpoint on first use (transformers' save_pretrained
    # writes weights on rank 0 only once torch.distributed is up, so no other rank could convert it).
    with state.main_process_first():
        student, processor = load_student(student_name, id2label, model.allow_pickle_weights,
                                          labels_from=f"the dataset {data.dataset_name}")
    preprocessing = Preprocessing.from_image_processor(processor)
    if model.student_image_size:
        s = model.student_image_size
        preprocessing = Preprocessing(size=(s, s), image_mean=preprocessing.image_mean,
                                      image_std=preprocessing.image_std, rescale_factor=preprocessing.rescale_factor)
    # Save the exact preprocessing the head was trained with, as a standard processor (no csl_hf code to load).
    processor = preprocessing.to_image_processor()
    cache, stats = build_cache(
        {"train": train, "test": test}, teachers, student, preprocessing, image_col=image_col, label_col=label_col,
        domain_col=domain_col, batch_size=data.labeling_batch_size, accelerator=state,
        on_bad_image=data.on_bad_image, student_name=student_name, compact_topk=args.compact_cache_topk,
        show_progress=not args.disable_tqdm,
    )
    if state.is_main_process:
        if not model.teachers_name_or_path:  # saved only once the labeling pass succeeded: a failed run leaves nothing
            teachers.save_pretrained(os.path.join(args.output_dir, "teachers"))
        cache.save(os.path.join(args.output_dir, "cache"))
        if data.streaming and not model.teachers_name_or_path:
            from csl_hf.labeling import cache_teacher_accuracies

            for name, acc in zip(teachers.config.teacher_names, cache_teacher_accuracies(cache)):
                logger.info(f"teacher {name}: test accuracy within its specialty {acc:.3f}")
        logger.info(f"cache: {cache.num_samples} images, {cache.num_teachers} teachers, "
                    f"{cache.bytes_per_image_per_teacher():.0f} bytes per image per teacher; labeled {stats.labeled}, "
                    f"skipped {stats.skipped}")
    images = {"train": train, "test": test, "column": image_col, "preprocessing": preprocessing}
    return cache, student, processor, teachers, images


def student_for_cache(model: ModelArguments, cache: CSLCache):
    """With --cache_dir: the student given (or named in the cache) when it loads offline, else None (head only)."""
    name = model.student_model_name_or_path or cache.student.get("name_or_path")
    if not name:
        return None, None
    try:
        return load_student(name, cache.id2label, model.allow_pickle_weights, labels_from="cache.json id2label")
    except _StudentUnavailable:  # a label-space mismatch or pickled weights are errors even for the cache's student
        if model.student_model_name_or_path:
            raise
        logger.warning(f"the cache's student {name!r} does not load offline: round checkpoints hold the trained head "
                       "only (probe_head.safetensors); pass --student_model_name_or_path to save whole students")
        return None, None


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((DataArguments, ModelArguments, TeacherTrainingArguments, CoSupervisedConfig))
    if argv is None:
        argv = sys.argv[1:]
    if not any(a == "--output_dir" or a.startswith("--output_dir=") for a in argv):
        argv = [*argv, "--output_dir", "csl_output"]
    parser.error = _argument_error  # one line (no multi-page usage), exit 2 through the CSLError path
    try:
        data, model, targs, args = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as err:  # unknown flags, or a TrainingArguments check: all about the command line
        if isinstance(err, CSLError):
            raise
        raise CSLError(f"{str(err).strip().splitlines()[0]}; see python examples/run_csl.py --help") from None
    pylogging.basicConfig(format="%(message)s", level=pylogging.INFO if args.should_log else pylogging.WARNING)
    logging.set_verbosity_info() if args.should_log else logging.set_verbosity_warning()
    logging.get_logger("transformers").setLevel(pylogging.WARNING)
    check_output_dir(args)
    # Under several processes: no process may write into OUTPUT_DIR before every process has checked it.
    args.distributed_state.wait_for_everyone()

    resumed_cache = os.path.join(args.output_dir, "cache")
    if args.resume_from_checkpoint and not data.cache_dir and os.path.isdir(resumed_cache):
        # Resuming an images run: its cache already holds the teachers' labels and the student's features.
        data.cache_dir = resumed_cache
        model.student_model_name_or_path = model.student_model_name_or_path or csl_hf.models.DEFAULT_STUDENT
    if data.cache_dir:
        cache = CSLCache.load(data.cache_dir)
        if args.compact_cache_topk:
            cache = cache.to_compact(args.compact_cache_topk)
        student, processor = student_for_cache(model, cache)
        teachers, images = None, None
    else:
        cache, student, processor, teachers, images = images_to_cache(data, model, targs, args)

    full = {}
    if args.student_mode == "full" and images is not None:
        full = dict(images={"train": images["train"], "test": images["test"]}, image_column=images["column"],
                    image_preprocessing=images["preprocessing"])
    trainer = CoSupervisedTrainer(model=student, args=args, cache=cache, processing_class=processor, teachers=teachers,
                                  **full)
    report = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    series = {("soft labels" if args.soft_labels else "hard labels"): _pgr_points(report)}
    if model.compare_label_types:
        other = "hard" if args.soft_labels else "soft"
        import dataclasses

        other_args = dataclasses.replace(args, soft_labels=not args.soft_labels, save_round_checkpoints=False,
                                         output_dir=os.path.join(args.output_dir, f"{other}_labels"), report_to="none",
                                         push_to_hub=False)
        other_report = CoSupervisedTrainer(args=other_args, cache=cache).train()
        series[f"{other} labels"] = _pgr_points(other_report)
    if args.should_save:
        plot_pgr(series, os.path.join(args.output_dir, "pgr.png"),
                 title=f"CSL on {os.path.basename(data.cache_dir or data.dataset_name)}")
        trainer.finalize(dataset_name=None if data.cache_dir else data.dataset_name, plot_path="pgr.png")
        print(format_report_table(report))
        for name, points in series.items():
            print(f"PGR ({name}) by number of teachers: " + ", ".join(
                f"{n}: {'-' if p is None else f'{p:.1f}'}" for n, p in points))
        print(f"report: {os.path.join(args.output_dir, REPORT_NAME)}")
    return report


def _pgr_points(report: dict) -> list[tuple[int, float | None]]:
    return [(r["num_teachers"], r["pgr"]) for r in report["rounds"]]


def _argument_error(message: str):
    raise CSLError(f"{message}; see python examples/run_csl.py --help")


def cli(argv: list[str] | None = None) -> int:
    """The command line: runs `main`, prints a `CSLError` as one ``error: ...`` line on stderr and returns 2."""
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
