"""One error type for everything a user can get wrong.

`CSLError` messages are single lines that name the problem *and* the fix. The command-line entry points catch it
and print ``error: <message>`` without a traceback (`csl_hf.cli.console.run_command`); library users get a normal
`ValueError` subclass.
"""

from __future__ import annotations

# Defined beside the teacher hierarchy's rules, in the one csl_hf file that a saved `TeacherMixture` ships with its
# modeling code (it must import nothing from csl_hf); csl_hf raises and catches this very class everywhere.
from .models.teacher_mixture.hierarchy_rules import CSLError

CSLError.__module__ = __name__  # shown as csl_hf.errors.CSLError, where users import it from

__all__ = ["CSLError", "CacheError", "MissingPackageError"]


class CacheError(CSLError):
    """The CSL cache (docs/cache.md) is missing, malformed or inconsistent."""


class MissingPackageError(CSLError, ImportError):
    """A package that one feature needs (bundled data, bundled weights) is not installed: the message is the pip
    command. An `ImportError` too, for code that catches those."""
