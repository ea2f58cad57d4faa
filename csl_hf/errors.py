"""One error type for everything a user can get wrong.

`CSLError` messages are single lines that name the problem *and* the fix. The command-line entry points catch it
and print ``error: <message>`` without a traceback (`csl_hf.cli.console.run_command`); library users get a normal
`ValueError` subclass.
"""

from __future__ import annotations



class CSLError(ValueError):
    """A user-facing error: bad input, a bad flag, an inconsistent cache. The message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class CacheError(CSLError):
    """The CSL cache (docs/cache.md) is missing, malformed or inconsistent."""
