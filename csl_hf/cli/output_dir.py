"""The run's output directory belongs to the user; a command-line run keeps it whole and its own:

* **one run at a time**: a lock file (``OUTPUT_DIR/.csl_run.lock``: host and process id) refuses a second run into a
  directory in use; a lock left by a process that no longer runs (a crash, a kill) is taken over;
* **not inside the data**: an output directory inside the dataset folder would become part of the data that later
  runs read;
* **a run's directory is not overwritten by accident**: one that holds a run is refused (saying whether that run is
  finished or can be resumed) unless ``--overwrite_output_dir`` or ``--resume_from_checkpoint``. With
  ``--overwrite_output_dir`` the old run's outputs are moved aside, put back if the new run fails before it saves any
  progress, and removed once it has: an overwritten directory holds only the new run;
* **a failed run leaves no half-written directory**: after a user's mistake before the first round, or before the run
  saved anything resumable, what it created is removed; after an interruption (Ctrl-C, a crash) once the teachers
  or labeled chunks are saved, or after any failure once rounds are recorded, everything stays and one line says how
  to finish it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from transformers.utils import logging

from ..cache.reuse import CACHE_DIR_NAME, PARTIAL_DIR_NAME, TEACHERS_DIR_NAME
from ..errors import CSLError
from ..outputs.model_card import CARD_NAME
from ..outputs.report import REPORT_NAME
from ..trainer.progress import PROGRESS_NAME, resume_directory
from .arguments import CONFIG_NAME

__all__ = ["LOCK_NAME", "OutputDirectory", "RUN_ENTRIES", "run_state"]

logger = logging.get_logger("csl_hf")

LOCK_NAME = ".csl_run.lock"
#: What a run writes into its output directory (besides the final student's files, which ``save_model`` names).
RUN_ENTRIES = (REPORT_NAME, PROGRESS_NAME, CONFIG_NAME, "pgr.png", "README.md", "csl_baselines.safetensors",
               "recipe_summary.json", CACHE_DIR_NAME, PARTIAL_DIR_NAME, TEACHERS_DIR_NAME, "hard_labels",
               "soft_labels", "runs")
#: The final student's files (``save_pretrained`` + its processor; the modeling code of a custom architecture).
STUDENT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "preprocessor_config.json",
                 "processor_config.json", "probe_head.safetensors")


def _run_entries(names) -> list[str]:
    return sorted(n for n in names if n in RUN_ENTRIES or n in STUDENT_FILES or n.startswith("round-")
                  or (n.endswith(".py") and "config.json" in names))


def run_state(directory: str) -> str | None:
    """What ``directory`` holds: ``"finished"`` (a report and the final student's model card, the last thing a run
    writes before a push), ``"resumable"`` (progress, saved teachers or a partly labeled cache of a run with its
    ``run_config.yaml``), ``"other"`` (outputs of a run that cannot be resumed) or ``None`` (no run).

    A run stopped after its rounds (its report written) but before its final student and card (during the
    comparison with the other label type) is resumable: the resume reloads the last round's student and finishes."""
    names = set(os.listdir(directory)) if os.path.isdir(directory) else set()
    if REPORT_NAME in names and (CARD_NAME in names or PROGRESS_NAME not in names):
        return "finished"
    if PROGRESS_NAME in names or (CONFIG_NAME in names and names & {TEACHERS_DIR_NAME, PARTIAL_DIR_NAME}):
        return "resumable"
    return "other" if _run_entries(names) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, under another user
        return True
    return True


class OutputDirectory:
    """The output directory of one command-line run (see the module docstring), as a context manager around it.

    Args:
        args: the run's `CoSupervisedConfig` (``output_dir``, ``overwrite_output_dir``, ``resume_from_checkpoint``).
        data_path: the local dataset folder the run reads, if any (the output directory must not be inside it).
        keep_cache: with ``--overwrite_output_dir``, keep the old run's cache (and a partly labeled one) in place: a
            run from images reuses it when it was labeled from the same teachers, student and data (its fingerprint
            says), and replaces it otherwise.
        prog: how the user runs the command, for the line that says how to finish an interrupted run.

    Raises:
        `CSLError` (one line, on entry): the directory is in use, inside the data, a file, or holds a run that
        neither ``--overwrite_output_dir`` nor ``--resume_from_checkpoint`` lets this run touch.
    """

    def __init__(self, args, data_path: str | None = None, keep_cache: bool = True, prog: str = "csl-hf run"):
        self.args, self.prog, self.keep_cache = args, prog, keep_cache
        self.directory = args.output_dir
        self.data_path = data_path
        self.existed, self.before = False, set()
        self.main = args.should_save  # the main process keeps the directory; the others only wait for it
        self.lock: str | None = None
        self.aside: str | None = None

    # ------------------------------------------------------------------------------------------------ entry
    def __enter__(self) -> "OutputDirectory":
        a, out = self.args, self.directory
        # Read here, from the path alone: under a launch the main process may create the directory at any moment,
        # so a process must not compare it with what it saw earlier (the other processes once took the directory
        # the main process had just made for a file).
        if os.path.exists(out) and not os.path.isdir(out):
            raise CSLError(f"--output_dir {out} is a file, not a directory; choose another --output_dir")
        if self.data_path and os.path.isdir(self.data_path):
            data, real_out = os.path.realpath(self.data_path), os.path.realpath(out)
            if os.path.commonpath([data, real_out]) == data:
                raise CSLError(f"--output_dir {out} is inside the dataset folder {self.data_path}: the run's outputs "
                               "would become part of the data later runs read; choose an --output_dir outside it")
        if a.resume_from_checkpoint:  # checked now, not after the teachers are trained and the images labeled
            self._check_resume(resume_directory(a, a.resume_from_checkpoint))
        if self.main:
            self.existed = os.path.isdir(out)
            self.before = set(os.listdir(out)) if self.existed else set()
            os.makedirs(out, exist_ok=True)
            self._lock()
            try:
                self._check_taken()
            except BaseException:
                self._unlock()
                raise
        # No process may write into the directory before every process has checked it.
        a.distributed_state.wait_for_everyone()
        return self

    def _check_resume(self, resumed: str) -> None:
        state = run_state(resumed)
        if state not in ("resumable", "finished"):
            raise CSLError(f"--resume_from_checkpoint: {resumed} holds no run that can be resumed (no {PROGRESS_NAME}, "
                           f"saved teachers or partly labeled cache with its {CONFIG_NAME}); drop the flag to start a "
                           "new run")
        if os.path.realpath(resumed) != os.path.realpath(self.directory):
            raise CSLError(f"--resume_from_checkpoint {resumed} with --output_dir {self.directory}: a resume finishes "
                           f"the run in its own directory (its teachers, cache and rounds); drop --output_dir or pass "
                           f"--output_dir {resumed}")

    def _check_taken(self) -> None:
        a, out = self.args, self.directory
        if a.resume_from_checkpoint:
            return
        state = run_state(out)
        if state is None:
            return
        if not a.overwrite_output_dir:
            taken = ", ".join(_run_entries(self.before)[:3])
            if state == "finished":
                raise CSLError(f"--output_dir {out} holds a finished run ({taken}); pass --overwrite_output_dir True "
                               "to replace it, or choose another --output_dir")
            if state == "resumable":
                raise CSLError(f"--output_dir {out} holds an unfinished run ({taken}); pass --resume_from_checkpoint "
                               f"{out} to finish it, --overwrite_output_dir True to replace it, or choose another "
                               "--output_dir")
            raise CSLError(f"--output_dir {out} holds the outputs of another run ({taken}); pass "
                           "--overwrite_output_dir True to replace them, or choose another --output_dir")
        keep = {CACHE_DIR_NAME, PARTIAL_DIR_NAME} if self.keep_cache else set()
        old = [n for n in _run_entries(os.listdir(out)) if n not in keep]
        if old:  # moved aside now, put back or removed when the run ends
            self.aside = tempfile.mkdtemp(prefix=".csl_replaced-", dir=out)
            for name in old:
                os.replace(os.path.join(out, name), os.path.join(self.aside, name))

    # ------------------------------------------------------------------------------------------------ the lock
    def _lock(self) -> None:
        path = os.path.join(self.directory, LOCK_NAME)
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    with open(path, encoding="utf-8") as f:
                        host, pid = f.read().split()
                except (OSError, ValueError):
                    host, pid = None, "0"
                if host == socket.gethostname() and not _alive(int(pid)):
                    os.remove(path)  # left by a run that crashed: take it over
                    continue
                where = f"process {pid} on {host}" if host else "another run"
                raise CSLError(f"--output_dir {self.directory} is in use by another run ({where}); wait for it to "
                               f"end or choose another --output_dir (if no run uses it, delete {path})") from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(me)
            self.lock = path
            return

    def _unlock(self) -> None:
        if self.lock and os.path.exists(self.lock):
            os.remove(self.lock)
        self.lock = None

    # ------------------------------------------------------------------------------------------------ exit
    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.main:
            return False
        try:
            if exc_type is None:
                self._discard_aside()
                return False
            if run_state(self.directory) == "finished":  # e.g. the push failed: the run itself is whole
                self._discard_aside()
                return False
            # A user's mistake (a one-line error) before the first round is fixed by running the command again with
            # the fix: it leaves nothing behind. An interruption (Ctrl-C) or a crash keeps what a resume can use.
            mistake_before_rounds = issubclass(exc_type, CSLError) and not os.path.isfile(
                os.path.join(self.directory, PROGRESS_NAME))
            if run_state(self.directory) == "resumable" and not mistake_before_rounds:
                self._discard_aside()  # the new run can be finished: the one it replaces is gone
                how = f"{self.prog} --resume_from_checkpoint {self.directory}"
                if issubclass(exc_type, KeyboardInterrupt):
                    raise KeyboardInterrupt(f"the run is saved in {self.directory}; finish it with: {how}") from None
                if issubclass(exc_type, CSLError):
                    # A mistake met mid-run: the same settings meet it again, and a resume refuses changed settings.
                    logger.warning(f"the run stopped after saving progress in {self.directory}; if the cause of the "
                                   f"error below is outside the run's settings (a file, the disk), fix it and finish "
                                   f"the run with: {how}; if a setting must change, start again with "
                                   "--overwrite_output_dir True")
                else:
                    logger.warning(f"the run stopped after saving progress in {self.directory}; finish it with: {how}")
                return False
            self._remove_created()
            if issubclass(exc_type, KeyboardInterrupt):
                raise KeyboardInterrupt("the run had saved nothing it could resume from; "
                                        f"{'the previous run was put back; ' if self.aside else ''}run the command "
                                        "again") from None
            return False
        finally:
            self._restore_aside()
            self._unlock()
            if self.main and not self.existed and os.path.isdir(self.directory) and not os.listdir(self.directory):
                os.rmdir(self.directory)

    def _remove_created(self) -> None:
        if not os.path.isdir(self.directory):
            return
        for name in set(os.listdir(self.directory)) - self.before - {LOCK_NAME}:
            path = os.path.join(self.directory, name)
            if self.aside and os.path.realpath(path) == os.path.realpath(self.aside):
                continue
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)

    def _restore_aside(self) -> None:
        """Put the replaced run back (the new run failed before it saved anything to resume)."""
        if not self.aside or not os.path.isdir(self.aside):
            return
        for name in os.listdir(self.aside):
            target = os.path.join(self.directory, name)
            if os.path.isdir(target) and not os.path.islink(target):  # the failed run's own version goes
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.remove(target)
            os.replace(os.path.join(self.aside, name), target)
        shutil.rmtree(self.aside, ignore_errors=True)
        self.aside = None

    def _discard_aside(self) -> None:
        if self.aside:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None
