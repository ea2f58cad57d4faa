"""The console of the command-line scripts: csl_hf's progress as plain lines, warnings and errors marked as such,
log lines written above the progress bars (never glued onto them), a user's mistake as one ``error: ...`` line with
exit status 2 instead of a traceback, and Ctrl-C as one line saying how to finish the run. Under ``accelerate
launch`` only the main process speaks: the other processes log errors only and exit with the same status quietly."""

from __future__ import annotations

import logging as pylogging
import os
import sys
import warnings
from collections.abc import Callable

from ..errors import CSLError

__all__ = ["INTERRUPTED_STATUS", "is_main_process", "run_command", "setup_logging"]

#: Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED_STATUS = 130


class _ConsoleFormatter(pylogging.Formatter):
    """Progress and results as plain lines; warnings and errors start with ``warning:`` / ``error:``."""

    def format(self, record: pylogging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < pylogging.WARNING else f"{record.levelname.lower()}: {message}"


class _AboveProgressBars(pylogging.StreamHandler):
    """A console handler that writes through ``tqdm.write``: a line logged while a progress bar is drawn goes above
    the bar instead of being glued onto it (what tqdm's own ``logging_redirect_tqdm`` does for a block of code)."""

    def emit(self, record: pylogging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            # sys.stderr as it is now (not as it was when logging was set up: it may have been replaced since).
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise (logging.Handler's own contract)
            self.handleError(record)


def is_main_process() -> bool:
    """Whether this is the main process of a launch (``RANK`` 0, as torchrun / ``accelerate launch`` set it), read
    from the environment so that it holds before (and without) any process group."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_logging(args=None) -> None:
    """The console of a command-line run: csl_hf's progress at INFO on the main process, transformers' own chatter at
    WARNING, progress bars off with ``--disable_tqdm``. Other processes of a launch log errors only (each warning
    would otherwise print once per process). ``args``: `TrainingArguments` (its ``should_log``, ``disable_tqdm``), or
    ``None`` for a command without them (``csl-hf teachers``)."""
    from transformers.utils import logging

    main = getattr(args, "should_log", True) and is_main_process()
    handler = _AboveProgressBars()
    handler.setFormatter(_ConsoleFormatter("%(message)s"))
    pylogging.basicConfig(level=pylogging.INFO if main else pylogging.ERROR, handlers=[handler], force=True)
    logging.set_verbosity_info() if main else logging.set_verbosity_error()
    logging.get_logger("transformers").setLevel(pylogging.WARNING if main else pylogging.ERROR)
    # huggingface_hub and datasets print through handlers of their own *and* propagate to the root logger: without
    # this, each of their warnings (a Hub retry) would print twice, once plain and once as `warning: ...`.
    import datasets
    import huggingface_hub

    huggingface_hub.utils.logging.disable_propagation()
    datasets.utils.logging.disable_propagation()
    if not main:
        warnings.filterwarnings("ignore")
    if getattr(args, "disable_tqdm", False):
        logging.disable_progress_bar()


def run_command(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run a command-line entry point.

    Returns:
        0 on success; 2 for a `CSLError` (one ``error: ...`` line on stderr, no traceback); 130 for Ctrl-C (one
        ``interrupted: ...`` line, with how to finish the run when it saved progress). Only the main process of a
        launch prints either line.
    """
    try:
        main(argv)
    except CSLError as err:
        if is_main_process():
            print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt as err:
        if is_main_process():
            hint = str(err) if str(err) else "nothing was saved that a resume could use"
            print(f"interrupted: {hint}", file=sys.stderr, flush=True)
        return INTERRUPTED_STATUS
    return 0
