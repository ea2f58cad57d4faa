"""`CSLArgumentParser`: `transformers.HfArgumentParser` with one-line errors, ``--FLAG`` alone for every boolean, and
a ``--help`` that shows the CSL flags first, by group, each with its default and what it does."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from transformers import HfArgumentParser

from ..errors import CSLError
from ..utils import field_default, jsonable

__all__ = ["CSLArgumentParser", "MODE_DEFAULTS"]

#: How --help shows a default that depends on the mode or the data (the field's own default is None: "decide").
MODE_DEFAULTS = {
    "teacher_domain_level": "True on data with a 'domain' column",
    "baselines": "oracle,ensemble in probe mode, none in full mode",
    "compare_label_types": "on in probe mode, off in full mode",
    "backbone_learning_rate": "learning_rate / 10 in full mode",
    "head_warmup_epochs": "20 in full mode",
    "freeze_batch_norm": "True in full mode",
}


class CSLArgumentParser(HfArgumentParser):
    """`HfArgumentParser` with one-line errors and a ``--help`` that shows the CSL flags first, by group.

    ``help_groups`` lists ``(title, [field names])``: those flags are explained in full, in that order; every other
    field (the stock `TrainingArguments`) is listed by name after a pointer to its documentation. ``--help_all``
    prints the stock argparse help of every flag.
    """

    def __init__(self, dataclass_types, description: str = "", help_groups: list[tuple[str, list[str]]] | None = None,
                 prog: str | None = None):
        # No prefix matching: `--learning_rat 7e-4` is an unknown flag, not --learning_rate (argparse's allow_abbrev).
        super().__init__(dataclass_types, description=description, prog=prog, add_help=False, allow_abbrev=False)
        self.help_groups = help_groups or []
        # HfArgumentParser adds --no_FLAG only for booleans that default to True; an optional boolean (None: decided
        # by the mode) gets it too, so every boolean flag can be turned off the same way.
        self.optional_booleans = set()
        for name, f in self._fields().items():
            if f.default is None and str(f.type).replace(" ", "") in ("bool|None", "Optional[bool]"):
                self.add_argument(f"--no_{name}", dest=name, action="store_false", help=argparse.SUPPRESS)
                self.optional_booleans.update((name, name.replace("_", "-")))
        self.add_argument("-h", "--help", action="store_true", help="Show the CSL flags and exit.")
        self.add_argument("--help_all", action="store_true", help="Show every flag's stock help and exit.")

    def complete_bare_flags(self, argv: list[str]) -> list[str]:
        """``--FLAG`` alone means ``--FLAG True`` for the optional booleans too (default None: decided by the mode or
        the data), as HfArgumentParser gives it to the booleans with a default; it would otherwise ask for a value."""
        out = []
        for i, arg in enumerate(argv):
            out.append(arg)
            if arg.startswith("--") and arg[2:] in self.optional_booleans and \
                    (i + 1 == len(argv) or argv[i + 1].startswith("-")):
                out.append("True")
        return out

    def error(self, message: str):
        raise CSLError(f"{message}; see {self.prog} --help")

    def _fields(self) -> dict[str, dataclasses.Field]:
        out = {}
        for dtype in self.dataclass_types:
            for f in dataclasses.fields(dtype):
                if f.init and not f.name.startswith("_"):
                    out.setdefault(f.name, f)
        return out

    def format_help(self) -> str:
        import textwrap

        fields = self._fields()
        width = 100
        lines = [f"usage: {self.prog} [CONFIG.yaml|CONFIG.json] [--flag value ...]", ""]
        for paragraph in self.description.strip().replace("``", "").split("\n\n"):  # a docstring's ``x`` is x
            if all(line.startswith("    ") for line in paragraph.splitlines()):
                lines += [*paragraph.splitlines(), ""]  # an indented block (example commands): as written
            else:
                lines += [textwrap.fill(" ".join(paragraph.split()), width), ""]
        shown = set()
        for title, names in self.help_groups:
            lines += [f"{title}:"]
            for name in names:
                f = fields[name]
                shown.add(name)
                default = field_default(f)
                default = None if default is dataclasses.MISSING else default
                choices = f.metadata.get("choices")
                kind = "{" + ",".join(map(str, choices)) + "}" if choices else _type_name(f.type)
                shown_default = MODE_DEFAULTS.get(name, jsonable(default))
                lines.append(f"  --{name} {kind}  (default: {shown_default})")
                lines += textwrap.wrap(f.metadata.get("help", "").replace("%%", "%"), width, initial_indent=" " * 6,
                                       subsequent_indent=" " * 6)
            lines.append("")
        from ..trainer.arguments_audit import REFUSED, REFUSED_IN_PROBE

        rest = sorted(n for n in fields if n not in shown)
        if not rest:
            return "\n".join(lines) + "\n"
        refused = [n for n in rest if n in REFUSED]
        probe_only = [n for n in rest if n in REFUSED_IN_PROBE]
        honoured = [n for n in rest if n not in REFUSED and n not in REFUSED_IN_PROBE]
        pointer = ("Every other transformers.TrainingArguments flag works as in transformers (see "
                   "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments; "
                   f"`{self.prog} --help_all` prints each one's help), except those refused below, with one line "
                   "that says why (docs/troubleshooting.md). Booleans take True/False; `--no_FLAG` is the same as "
                   "`--FLAG False`.")
        lines += textwrap.wrap(pointer, width) + [""]
        for title, names in (("Honoured:", honoured), ("Honoured with --student_mode full, refused in probe mode:",
                                                        probe_only), ("Refused (they do not apply to a CSL run):",
                                                                      refused)):
            if names:
                lines += [title] + textwrap.wrap(", ".join(names), width, initial_indent="  ",
                                                 subsequent_indent="  ") + [""]
        return "\n".join(lines)

    def format_help_all(self) -> str:
        return super().format_help()


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return text.replace(" | None", "").replace("NoneType", "").strip() or "value"
