"""``csl-hf``: the console command of csl_hf (as ``trl sft`` / ``accelerate env`` are theirs).

    csl-hf run [CONFIG.yaml] [--flag value ...]     co-supervised learning end to end (``csl-hf run --help``)
    csl-hf teachers [--flag value ...]              train and save a teacher hierarchy
    csl-hf push OUTPUT_DIR [--hub_model_id ID]      push a finished run: student to main, rounds to branches, card
    csl-hf env                                      versions and devices, for a bug report

Under ``accelerate launch`` it runs as a module: ``accelerate launch -m csl_hf.cli run ...``.
"""

from __future__ import annotations

import sys

from .console import run_command

__all__ = ["COMMANDS", "main"]

#: ``command: (module, what it does)``; each module has ``cli(argv, prog)``.
COMMANDS = {
    "run": ("csl_hf.cli.run", "co-supervised learning end to end: data, teachers, labeling, rounds, student, card"),
    "teachers": ("csl_hf.cli.teachers", "train a hierarchy of weak teachers and save it as one TeacherMixture"),
    "push": ("csl_hf.cli.push", "push a finished run to the Hub: the final student to main, each round to a branch"),
    "env": ("csl_hf.cli.env", "print the versions of csl_hf and its libraries and the devices, for a bug report"),
}


def _usage() -> str:
    lines = ["usage: csl-hf <command> [args ...]", "", "commands:"]
    lines += [f"  {name:<10} {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "`csl-hf <command> --help` explains each command's flags."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to a command; returns the exit status (2: a usage error)."""
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        return run_command(_unknown, [command])
    module = importlib.import_module(COMMANDS[command][0])
    return module.cli(rest, prog=f"csl-hf {command}")


def _unknown(argv: list[str]) -> None:
    from ..errors import CSLError

    raise CSLError(f"unknown command {argv[0]!r}; use one of {', '.join(COMMANDS)} (csl-hf --help)")


if __name__ == "__main__":
    sys.exit(main())
