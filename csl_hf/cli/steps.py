"""The steps of a command-line CSL run, as library calls: guard the output directory, get the teachers (trained once,
on the main process, or reused after checking what they were trained on), the student of a cache, the comparison
with the other label type, and the closing summary. ``examples/run_csl.py`` is a linear sequence of these."""

from __future__ import annotations

import dataclasses
import os

from transformers.utils import logging

from ..cache.format import CSLCache
from ..trainer.co_supervised_config import CoSupervisedConfig
from ..errors import CSLError
from ..method.hierarchy import parse_teachers_per_level
from ..method.rounds import CLASS_ROUTES
from ..outputs.report import REPORT_NAME, format_pgr, format_report_table
from ..utils import changed_fields
from ..models.teacher_mixture.modeling_teacher_mixture import TeacherMixture
from ..trainer.progress import resume_directory
from ..models.student import StudentUnavailable, check_weights_format, load_student, use_safetensors

logger = logging.get_logger("csl_hf")

__all__ = ["prepare_teachers", "check_teacher_overlap", "student_for_cache", "other_label_run", "run_summary",
           "check_flags_apply", "finished_run", "hub_repo_id", "local_dataset_path", "push_finished_run"]



_DATA_FLAGS = ("dataset_name", "folder_layout", "teacher_size", "test_size", "train_size", "max_train_samples",
               "max_eval_samples", "streaming", "shuffle_buffer_size")


def check_flags_apply(data_args, model_args, teacher_args, args: CoSupervisedConfig, data=None) -> None:
    """Refuse, by name and in one line, a flag that the run would otherwise ignore without a word.

    * with ``--cache_dir``: the data and teacher flags (the cache already holds the images' features and the
      teachers' outputs), and ``--labeling_batch_size`` / ``--on_bad_image`` (no image is read);
    * with ``--teachers_name_or_path``: the teacher-training flags (the teachers exist);
    * once the data is read (``data``, a `WeakToStrongData`), before the student is loaded and the teachers trained:
      on data with domains (unless ``--teacher_domain_level False`` asks for class specialists),
      ``--teachers_per_level`` and ``--specialty_gates`` (the teachers are one specialist per domain); on data
      without, ``--teacher_domain_level``; a ``--teachers_per_level`` with more specialists than classes; an
      ``--assignment`` that routes by class (`CLASS_ROUTES`) where the teachers will be domain specialists.

    Raises:
        `CSLError` (one line): ``--FLAG does not apply ...: <why>; drop it``, or the assignment or domain flag that
        cannot work, with the fix.
    """
    lora = [n for n in changed_fields(model_args) if n.startswith("lora_")]
    if lora and not model_args.use_peft:
        raise CSLError(f"--{lora[0]} does not apply without --use_peft; add --use_peft or drop it")
    if model_args.use_peft and args.student_mode != "full":
        raise CSLError("--use_peft applies to --student_mode full (probe mode trains only the classifier); add "
                       "--student_mode full or drop --use_peft")
    if args.student_mode == "full" and data_args.cache_dir:
        raise CSLError("--student_mode full trains on the images, and --cache_dir reads none: run on the "
                       "--dataset_name the cache was labeled from")
    teacher_flags = [n for n in changed_fields(teacher_args)]
    if data_args.cache_dir:
        given = [n for n in changed_fields(data_args) if n in _DATA_FLAGS] + teacher_flags
        given += [n for n in ("labeling_batch_size", "on_bad_image") if n in changed_fields(args)]
        if model_args.teachers_name_or_path:
            given.append("teachers_name_or_path")
        if given:
            raise CSLError(f"--{given[0]} does not apply with --cache_dir: the cache already holds the student's "
                           "features and the teachers' outputs, so no image is read and no teacher is trained; drop it")
        return
    if model_args.teachers_name_or_path and teacher_flags:
        raise CSLError(f"--{teacher_flags[0]} does not apply with --teachers_name_or_path: those teachers are already "
                       "trained; drop it, or drop --teachers_name_or_path to train new ones")
    domain_column = data.domain_column if data is not None else None
    dataset_name = data.dataset_name if data is not None else None
    # Domain specialists: --teacher_domain_level True, or unset on data with a domain column (before the data is
    # read, only the flag can say so).
    domains = teacher_args.builds_domain_level(domain_column is not None)
    by_data = domains and teacher_args.teacher_domain_level is None
    for flag in ("teachers_per_level", "specialty_gates"):
        if by_data and flag in teacher_flags:
            raise CSLError(f"--{flag} does not apply to {dataset_name}: it has a {domain_column!r} column, so its "
                           "teachers are the generalist plus one specialist per domain; drop it, or add "
                           "--teacher_domain_level False for class specialists")
    if model_args.teachers_name_or_path:
        return  # the hierarchy is the saved teachers': CoSupervisedTrainer checks the assignment against it
    if data is not None and not domains:
        parse_teachers_per_level(teacher_args.teachers_per_level, len(data.class_names), warn=False)
    if dataset_name is not None and teacher_args.teacher_domain_level and domain_column is None:
        raise CSLError(f"--teacher_domain_level builds one specialist per domain, and {dataset_name} has no 'domain' "
                       "column; drop it for a class hierarchy")
    if args.assignment in CLASS_ROUTES and domains:
        why = (f"{dataset_name} has a {domain_column!r} column, so" if by_data else "with --teacher_domain_level")
        raise CSLError(f"--assignment {args.assignment} routes by the student's class predictions, and {why} the "
                       "specialists are domain specialists (each covers every class); use --assignment agreement, "
                       "oracle or auto" + (", or add --teacher_domain_level False for class specialists" if by_data
                                           else ""))


def check_teacher_overlap(teachers: TeacherMixture, data, where: str) -> None:
    """Refuse teachers whose training images include any of this run's weak-to-strong or test images.

    The saved `TeacherMixture` records what it was trained on (``config.training_data``: dataset, source rows). A
    teacher that saw test images inflates the weak accuracy and every PGR; one that saw weak-to-strong images labels
    them from memory.

    Raises:
        `CSLError` (one line): an overlap, with its size and the fix.
    """
    record = getattr(teachers.config, "training_data", None) or {}
    if not record.get("example_ids") or data.source_rows is None:
        if data.source_rows is not None:
            logger.warning(f"the teachers in {where} do not record their training images: cannot check that they "
                           "never saw this run's test or weak-to-strong images")
        return
    if os.path.normpath(str(record.get("dataset"))) != os.path.normpath(str(data.dataset_name)) or \
            record.get("num_rows") != data.num_rows:
        logger.warning(f"the teachers in {where} were trained on {record.get('dataset')!r}, this run uses "
                       f"{data.dataset_name!r}: their training images cannot be compared")
        return
    seen = set(record["example_ids"])
    for split in ("test", "train"):
        overlap = seen.intersection(data.source_rows[split].tolist())
        if overlap:
            raise CSLError(f"the teachers in {where} were trained on {len(overlap)} image(s) of this run's "
                           f"{'test' if split == 'test' else 'weak-to-strong'} split (split seed "
                           f"{record.get('split_seed')} there, {data.seed} here); use --seed {record.get('split_seed')} "
                           "and the same --teacher_size/--test_size as when they were trained, or train new teachers")


def prepare_teachers(model_args, teacher_args, data, args: CoSupervisedConfig) -> TeacherMixture:
    """The run's teachers: ``--teachers_name_or_path``, a directory or a Hub model repo id (checked: safetensors, the
    data's classes, no overlap with this run's splits), or those of the run being resumed, or new ones trained on the
    teacher split.

    New teachers are trained once, on the main process, and sent to the other processes (under ``accelerate
    launch`` every process labels its shard with the very same teachers). ``--assignment oos_gate`` trains them with
    gate teachers (``--specialty_gates``) and refuses saved teachers without them.

    Raises:
        `CSLError` (one line): teachers that do not load or do not fit the data, or ``--assignment oos_gate`` with
        saved teachers without gate teachers.
    """
    from ..teachers import train_teacher_hierarchy

    path = model_args.teachers_name_or_path
    resumed = os.path.join(args.output_dir, "teachers")
    if not path and args.resume_from_checkpoint and os.path.isfile(os.path.join(resumed, "config.json")):
        path = resumed
    if path:
        check_weights_format(path, model_args.allow_pickle_weights)
        try:
            teachers = TeacherMixture.from_pretrained(path, use_safetensors=use_safetensors(model_args.allow_pickle_weights))
        except (OSError, ValueError) as err:
            raise CSLError(f"cannot load the teachers {path!r} ({str(err).splitlines()[0]}); pass a directory saved "
                           "by a previous run (OUTPUT_DIR/teachers) or by csl-hf teachers, or the Hub repo id they "
                           "were pushed to (TeacherMixture.push_to_hub)") from None
        names = [teachers.config.id2label[i] for i in range(teachers.config.num_labels)]
        if names != data.class_names:
            raise CSLError(f"the teachers in {path} use other labels than {data.dataset_name} ({names[:5]}... vs "
                           f"{data.class_names[:5]}...); train teachers on this dataset")
        check_teacher_overlap(teachers, data, path)
        if args.assignment == "oos_gate" and not teachers.has_gates:
            raise CSLError(f"--assignment oos_gate routes by gate teachers, and the teachers in {path} have none; "
                           "train them with --specialty_gates (examples/train_teachers.py --specialty_gates), or drop "
                           "--teachers_name_or_path to train them in this run")
        if args.assignment == "auto" and teachers.has_gates:
            logger.info(f"--assignment auto: the teachers in {path} have gate teachers, which class levels route by "
                        "(oos_gate; --assignment student for the paper's rule without them)")
        return teachers
    if args.assignment == "oos_gate":  # on data with domains it was refused by check_flags_apply
        if not teacher_args.specialty_gates:
            logger.info("--assignment oos_gate: training a gate teacher per class specialist (--specialty_gates)")
            teacher_args = dataclasses.replace(teacher_args, specialty_gates=True)
    elif args.assignment == "auto" and gates_possible(teacher_args, data) and not teacher_args.specialty_gates:
        # auto routes class levels with gate teachers (oos_gate): trained here, after the teachers, which stay the
        # same as without them.
        logger.info("--assignment auto: training a gate teacher per class specialist, which class levels route by "
                    "(oos_gate; --assignment student for the paper's rule without them)")
        teacher_args = dataclasses.replace(teacher_args, specialty_gates=True)
    teacher_data = data.teacher.rename_columns({c: n for c, n in ((data.image_column, "image"),
                                                                  (data.label_column, "label")) if c != n})
    # Trained once, on the main process, and sent to the others (train_teacher_hierarchy does it).
    teachers = train_teacher_hierarchy(teacher_data, teacher_args,
                                       domain_level=teacher_args.builds_domain_level(data.domain_column is not None),
                                       on_bad_image=args.on_bad_image)
    teachers.config.training_data = {**teachers.config.training_data, **data.teacher_provenance()}
    if args.should_log and not data.is_stream():
        log_teacher_accuracies(teachers, data)
    return teachers


def gates_possible(teacher_args, data) -> bool:
    """Whether this run's new teachers can have gate teachers: class specialists (not domain ones) of independent tiny
    models (not heads on one ``--teacher_backbone``), with at least one specialist level."""
    levels = parse_teachers_per_level(teacher_args.teachers_per_level, len(data.class_names), warn=False)
    return (not teacher_args.builds_domain_level(data.domain_column is not None) and not teacher_args.teacher_backbone
            and any(n > 1 for n in levels[1:]))


def log_teacher_accuracies(teachers: TeacherMixture, data) -> None:
    """One line per teacher: its test accuracy inside its specialty, beside the generalist's on the same images."""
    from ..teachers import evaluate_teachers_detailed

    test = data.test.rename_columns({c: n for c, n in ((data.image_column, "image"), (data.label_column, "label"))
                                     if c != n})
    for r in evaluate_teachers_detailed(teachers, test):
        gen = r["generalist_accuracy"]
        logger.info(f"teacher {r['name']}: test accuracy within its specialty "
                    f"{'n/a' if r['accuracy'] is None else format(r['accuracy'], '.3f')}"
                    + ("" if gen is None or r["name"] == "generalist" else f" (generalist {gen:.3f})")
                    + ("" if r.get("membership_accuracy") is None else
                       f"; its gate tells in/out of specialty with accuracy {r['membership_accuracy']:.3f}"))


def student_for_cache(model_args, cache: CSLCache):
    """With ``--cache_dir``: the student given (or named in the cache) when it loads offline, else ``(None, None)``
    (the rounds then train a standalone head; its checkpoints hold ``probe_head.safetensors``)."""
    name = model_args.student_model_name_or_path or cache.student.get("name_or_path")
    if not name:
        return None, None
    size = model_args.student_image_size or _recorded_image_size(cache)
    try:
        return load_student(name, cache.id2label, image_size=size, allow_pickle_weights=model_args.allow_pickle_weights,
                            labels_from="cache.json id2label")
    except StudentUnavailable:  # a label-space mismatch or pickled weights are errors even for the cache's student
        if model_args.student_model_name_or_path:
            raise
        logger.warning(f"the cache's student {name!r} does not load offline: round checkpoints hold the trained head "
                       "only (probe_head.safetensors); pass --student_model_name_or_path to save whole students")
        return None, None


def _recorded_image_size(cache: CSLCache) -> int | None:
    """The square input side the cache's features were computed at (recorded by the labeling pass)."""
    size = (cache.student.get("preprocessing") or {}).get("size")
    return int(size[0]) if size and size[0] == size[1] else None


def other_label_run(trainer, args: CoSupervisedConfig, data=None, allow_pickle_weights: bool = False):
    """The same rounds on the same cache with the other label type (soft if the run used hard labels, hard if soft),
    into ``OUTPUT_DIR/<type>_labels/``: the second series of ``pgr.png``. Returns ``(name, report)``."""
    from ..trainer import CoSupervisedTrainer

    other = "hard" if args.soft_labels else "soft"
    other_args = dataclasses.replace(args, soft_labels=not args.soft_labels, save_round_checkpoints=False,
                                     output_dir=os.path.join(args.output_dir, f"{other}_labels"), report_to="none",
                                     push_to_hub=False, resume_from_checkpoint=None)
    logger.info(f"== the same rounds with {other} labels, for comparison (report in {other_args.output_dir}) ==")
    if args.student_mode == "full":  # a fresh pretrained student: the run's own student is trained now
        student, processor = load_student(trainer.cache.student.get("name_or_path"), trainer.cache.id2label,
                                          image_size=_recorded_image_size(trainer.cache),
                                          allow_pickle_weights=allow_pickle_weights)
        rerun = CoSupervisedTrainer(model=student, args=other_args, cache=trainer.cache, train_dataset=data.train,
                                    eval_dataset=data.test, processing_class=processor)
    else:
        rerun = CoSupervisedTrainer(args=other_args, cache=trainer.cache)
    rerun.train()
    return f"{other} labels", rerun.report


# The baselines of a run (CoSupervisedConfig.baselines), in the words of the closing lines.
BASELINE_MEANINGS = (
    ("oracle", "oracle: every sample labeled by the specialist of its true class or domain (routing by the ground "
     "truth, what perfect routing would give)"),
    ("ensemble", "ensemble: the level's teachers' predictions averaged, no routing"),
)


def run_summary(args: CoSupervisedConfig, reports: dict[str, dict], plot: str | None) -> str:
    """The closing lines of a run: the table, PGR by number of teachers, and where every output is."""
    from .arguments import CONFIG_NAME

    out = args.output_dir
    lines = ["", format_report_table(next(iter(reports.values()))), ""]
    main = next(iter(reports.values()))
    # The baselines ran with the run's own label type (the first series), and say so beside the comparison's.
    kind = next(iter(reports))
    series = {**reports, **{f"{n} baseline, {kind}": {"rounds": c} for n, c in (main.get("baselines") or {}).items()}}
    for name, report in series.items():
        lines.append(f"PGR ({name}) by number of teachers: " + ", ".join(
            f"{r['num_teachers']}: {format_pgr(r['pgr'])}" for r in report["rounds"]))
    names = set(main.get("baselines") or {})
    if names:  # what the baselines are, said where their numbers are
        lines.append("  " + "; ".join(text for n, text in BASELINE_MEANINGS if n in names))
    rounds = sorted(n for n in os.listdir(out) if n.startswith("round-") and os.path.isdir(os.path.join(out, n)))
    checkpoints = ", ".join([os.path.join(out, r) for r in rounds[:1]] + rounds[1:]) or "-"  # the first with its path
    where = [("final student + model card", out), ("round checkpoints", checkpoints),
             ("report", os.path.join(out, REPORT_NAME)), ("run config (rerun it)", os.path.join(out, CONFIG_NAME)),
             ("PGR plot", plot or "-")]
    for name, sub in (("cache", "cache"), ("teachers", "teachers")):
        if os.path.isdir(os.path.join(out, sub)):
            where.append((name, os.path.join(out, sub)))
    lines += ["", "outputs:"] + [f"  {k:<28} {v}" for k, v in where]
    lines += _final_student_lines(main, out, rounds)
    return "\n".join(lines)


def _final_student_lines(report: dict, out: str, rounds: list[str]) -> list[str]:
    """Which round the saved student is (the last, as `Trainer.save_model` saves the model it trained last), and
    where a round with a higher test PGR is: the outputs list alone leaves a reader to assume the best is saved."""
    done = [r for r in report.get("rounds", []) if r.get("pgr") is not None]
    if not done:
        return []
    last = done[-1]
    lines = [f"the final student is the last round's (level {last['level']}, {last['num_teachers']} teachers, PGR "
             f"{format_pgr(last['pgr'])}); every round's student is in its round checkpoint"]
    best = max(done, key=lambda r: r["pgr"])
    name = f"round-{best['level']}"
    if best is not last and name in rounds:
        lines.append(f"  the highest PGR, {format_pgr(best['pgr'])}, is level {best['level']}'s ({os.path.join(out, name)}); "
                     "picked on the test split, it overstates what that round would score on new data")
    return lines


def local_dataset_path(dataset_name: str) -> str | None:
    """The local folder a ``--dataset_name`` reads, if it is one (not a bundled name or a Hub id)."""
    path = os.path.expanduser(os.fspath(dataset_name))
    return path if os.path.isdir(path) else None


def hub_repo_id(args: CoSupervisedConfig) -> str:
    """The repo a run pushes to: ``--hub_model_id``, else the output directory's name."""
    return args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir))


def push_finished_run(trainer, args: CoSupervisedConfig) -> None:
    """Push a run that finished and is saved; a failure that could not be foreseen (the network dropped) is one
    line that says the run is saved and how to push it later.

    Raises:
        `CSLError`: the push failed.
    """
    repo_id = hub_repo_id(args)
    try:
        trainer.push_to_hub()
    except CSLError:
        raise
    except Exception as err:  # noqa: BLE001 - a network or Hub failure, whatever its type: one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CSLError(f"the push to {repo_id} failed ({first}); the run is saved in {args.output_dir}: push it later "
                       f"with: csl-hf push {args.output_dir} --hub_model_id {repo_id}") from None


def finished_run(args: CoSupervisedConfig, prog: str) -> dict:
    """``--resume_from_checkpoint`` on a run that is finished: nothing to do; say so and where its outputs are.
    Returns its report."""
    import json


    directory = resume_directory(args, args.resume_from_checkpoint)
    with open(os.path.join(directory, REPORT_NAME), encoding="utf-8") as f:
        report = json.load(f)
    if args.should_save:
        plot = os.path.join(directory, "pgr.png")
        from types import SimpleNamespace

        done = SimpleNamespace(output_dir=directory)  # what run_summary reads
        print(f"the run in {directory} is finished ({REPORT_NAME}); nothing to resume (to train it again: {prog} "
              f"{os.path.join(directory, 'run_config.yaml')} --output_dir NEW_DIR)")
        print(run_summary(done, {"soft labels" if report["config"].get("soft_labels") else "hard labels": report},
                          plot if os.path.isfile(plot) else None))
    return report
