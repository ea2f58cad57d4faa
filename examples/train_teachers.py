#!/usr/bin/env python
"""Train a hierarchy of weak teachers and save it as one TeacherMixture: ``python examples/train_teachers.py
[--flag value ...]`` is the same command as ``csl-hf teachers`` (`csl_hf.cli.teachers`); ``--help`` explains every
flag."""

from __future__ import annotations

import sys

try:  # a checkout run before the package is installed gets one line, not a traceback
    from csl_hf.cli import teachers as _teachers
    from csl_hf.cli.teachers import HELP_GROUPS, NOT_HERE, RunArguments  # noqa: F401
except ModuleNotFoundError as err:
    print(f"error: {err}; install the package first, from the repository root: pip install -e . (see README.md)",
          file=sys.stderr)
    sys.exit(2)

PROG = "python examples/train_teachers.py"


def build_parser():
    return _teachers.build_parser(PROG)


def main(argv: list[str] | None = None) -> None:
    return _teachers.main(argv, prog=PROG)


def cli(argv: list[str] | None = None) -> int:
    return _teachers.cli(argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(cli())
