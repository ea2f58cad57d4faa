#!/usr/bin/env python
"""Co-supervised learning end to end: ``python examples/run_csl.py [CONFIG.yaml] [--flag value ...]`` is the same
command as ``csl-hf run`` (`csl_hf.cli.run`); ``--help`` explains every flag.

With no arguments it runs the bundled offline benchmark (Animal-MNIST, an ImageNet EfficientNet-Lite0 student, a
hierarchy of tiny ConvNeXt teachers) into csl_output/.
"""

from __future__ import annotations

import sys

try:  # a checkout run before the package is installed gets one line, not a traceback
    from csl_hf.cli import run as _run
    from csl_hf.cli.run import HELP_GROUPS  # noqa: F401
except ModuleNotFoundError as err:
    print(f"error: {err}; install the package first, from the repository root: pip install -e . (see README.md)",
          file=sys.stderr)
    sys.exit(2)

PROG = "python examples/run_csl.py"


def build_parser():
    return _run.build_parser(PROG)


def main(argv: list[str] | None = None) -> dict:
    return _run.main(argv, prog=PROG)


def cli(argv: list[str] | None = None) -> int:
    return _run.cli(argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(cli())
