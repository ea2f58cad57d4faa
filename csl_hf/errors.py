"""One error type for everything a user can get wrong.

`CSLError` messages are single lines that name the problem *and* the fix. The command-line entry points catch it
and print ``error: <message>`` without a traceback; library users get a normal `ValueError` subclass.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class CSLError(ValueError):
    """A user-facing error: bad input, a bad flag, an inconsistent cache. The message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class CacheError(CSLError):
    """The CSL cache (docs/cache.md) is missing, malformed or inconsistent."""


def run_command(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run a command-line entry point: a `CSLError` becomes one ``error: ...`` line on stderr and exit status 2
    (a user mistake gets no traceback); success is 0."""
    try:
        main(argv)
    except CSLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
