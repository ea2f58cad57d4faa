"""The console of the command-line scripts: csl_hf's progress as plain lines, warnings and errors marked as such, and
a user's mistake as one ``error: ...`` line with exit status 2 instead of a traceback."""

from __future__ import annotations

import logging as pylogging
import sys
from collections.abc import Callable

from ..errors import CSLError

__all__ = ["run_command", "setup_logging"]


class _ConsoleFormatter(pylogging.Formatter):
    """Progress and results as plain lines; warnings and errors start with ``warning:`` / ``error:``."""

    def format(self, record: pylogging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < pylogging.WARNING else f"{record.levelname.lower()}: {message}"


def setup_logging(args) -> None:
    """The console of a command-line run: csl_hf's progress at INFO on the main process (WARNING elsewhere),
    transformers' own chatter at WARNING, progress bars off with ``--disable_tqdm``."""
    from transformers.utils import logging

    handler = pylogging.StreamHandler()
    handler.setFormatter(_ConsoleFormatter("%(message)s"))
    pylogging.basicConfig(level=pylogging.INFO if args.should_log else pylogging.WARNING, handlers=[handler],
                          force=True)
    logging.set_verbosity_info() if args.should_log else logging.set_verbosity_warning()
    logging.get_logger("transformers").setLevel(pylogging.WARNING)
    if args.disable_tqdm:
        logging.disable_progress_bar()


def run_command(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run a command-line entry point: a `CSLError` becomes one ``error: ...`` line on stderr and exit status 2
    (a user mistake gets no traceback); success is 0."""
    try:
        main(argv)
    except CSLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
