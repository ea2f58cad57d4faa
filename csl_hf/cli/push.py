"""``csl-hf push OUTPUT_DIR``: push a finished run to the Hugging Face Hub (the final student and its card to
``main``, each ``round-{level}/`` to branch ``round-{level}``), e.g. a run that could not push at its end (no
network, a bad repo id). The model card is written again for the repo, so its snippets name the repo and its
branches."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..errors import CSLError
from ..outputs.hub import check_push_possible, push_csl_outputs
from ..outputs.model_card import write_run_model_cards
from ..outputs.report import REPORT_NAME
from .arguments import CSLArgumentParser, parse_run_args
from .console import run_command
from .output_dir import run_state

__all__ = ["PushArguments", "main", "cli"]


@dataclass
class PushArguments:
    """What to push, and where."""

    output_dir: str = field(metadata={"help": "The output directory of a finished run (it holds csl_report.json)."})
    hub_model_id: str | None = field(
        default=None, metadata={"help": "The Hub repository (user/name). Default: the output directory's name."}
    )
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the repository as private."})
    hub_token: str | None = field(default=None, metadata={"help": "A Hub token (default: the logged-in one)."})
    commit_message: str | None = field(default=None, metadata={"help": "The commit message of each push."})


def main(argv: list[str] | None = None, prog: str = "csl-hf push") -> dict:
    """Check the run directory and the repo id, rewrite the cards for the repo, push. Returns ``{branch: commit}``.

    Raises:
        `CSLError` (one line): no finished run in ``output_dir`` (no report, or a run stopped before its final
        student and card), a repo id the Hub would reject, the Hub out of reach (offline mode, no network, no
        login: checked before anything is written), or a push that failed.
    """
    argv = list(argv or [])
    if argv and not argv[0].startswith("-"):  # the directory as a positional argument
        argv = ["--output_dir", argv[0], *argv[1:]]
    parser = CSLArgumentParser((PushArguments,), description=__doc__, prog=prog,
                               help_groups=[("Push", [f.name for f in PushArguments.__dataclass_fields__.values()])])
    (args,) = parse_run_args(parser, argv)
    out = args.output_dir
    if not os.path.isfile(os.path.join(out, REPORT_NAME)):
        raise CSLError(f"{out} holds no finished CSL run (no {REPORT_NAME}); pass the --output_dir of a run that "
                       "finished")
    if run_state(out) != "finished":  # its rounds are done, its final student and card are not written yet
        raise CSLError(f"{out} holds a run that stopped before saving its final student and card; finish it with: "
                       f"csl-hf run --resume_from_checkpoint {out}, then push it")
    repo_id = args.hub_model_id or os.path.basename(os.path.abspath(out))
    # The repo id and the Hub first: the cards are rewritten for the repo only when the push can happen.
    check_push_possible(repo_id, args.hub_token, out, command="csl-hf push")
    with open(os.path.join(out, REPORT_NAME), encoding="utf-8") as f:
        report = json.load(f)
    dataset = _dataset_of(out)
    write_run_model_cards(out, report, hub_model_id=repo_id, dataset_name=dataset)
    try:
        commits = push_csl_outputs(out, repo_id, token=args.hub_token, private=args.hub_private_repo,
                                   commit_message=args.commit_message)
    except CSLError:
        raise
    except Exception as err:  # noqa: BLE001 - a network or Hub failure, whatever its type: one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CSLError(f"the push of {out} to {repo_id} failed ({first}); the run is unchanged: run the command "
                       "again") from None
    print(f"pushed {out} to {repo_id}: " + ", ".join(sorted(commits)))
    return commits


def _dataset_of(output_dir: str) -> str | None:
    """The dataset a run's cache was labeled from, when the run kept its cache."""
    path = os.path.join(output_dir, "cache", "cache.json")
    try:
        with open(path, encoding="utf-8") as f:
            return ((json.load(f).get("source") or {}).get("dataset")) or None
    except (OSError, ValueError):
        return None


def cli(argv: list[str] | None = None, prog: str = "csl-hf push") -> int:
    return run_command(lambda a: main(a, prog), argv)
