#!/usr/bin/env python
"""Catch drift between docs/benchmark.md and the code: rerun the cheap commands the page quotes and check that every
line of numbers they print is still on the page, verbatim.

    python benchmarks/check_docs_numbers.py                       # the default run, then the reference comparison
    python benchmarks/check_docs_numbers.py --run_dir out         # reuse a default run already made (out/cache)

The cheap ones (about 5 minutes on a 2-core CPU): the default run's PGR (performance gap recovered) lines (`python examples/run_csl.py`, §1.2)
and the package-vs-reference tables, hard and soft (`benchmarks/compare_reference.py`, §3). The multi-seed
benchmarks take 10 minutes to hours each; their commands are beside their tables. Runs are deterministic on one
machine and torch build; another CPU may change the last digit of a probe's accuracy, so a drift here means "rerun
the section's command and update the page", not necessarily a bug.

Exit status: 0 when every line is on the page; 1 with one line per drifted line otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "benchmark.md")


def printed(argv: list[str], what: str) -> str:
    """Run one command from the repository root; its stdout (the table lines are there)."""
    print(f"running {what}: {' '.join(argv)} ...", flush=True)
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        sys.exit(f"error: {what} failed (exit {done.returncode}): {done.stdout.strip().splitlines()[-1:]}")
    return done.stdout


def number_lines(stdout: str) -> list[str]:
    """The lines worth quoting: markdown table rows with numbers, and the run's "PGR (...) by number of teachers"."""
    rows = [ln.strip() for ln in stdout.splitlines() if re.match(r"\|\s*\d+\s*\|", ln.strip())]
    return rows + [ln.strip() for ln in stdout.splitlines() if re.match(r"PGR \(.*\) by number of teachers", ln)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run_dir", default=None, help="a finished default run (python examples/run_csl.py "
                   "--output_dir DIR) to reuse instead of making one in a temporary folder")
    a = p.parse_args()
    page = open(PAGE, encoding="utf-8").read()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = a.run_dir or os.path.join(tmp, "default_run")
        lines = []
        if a.run_dir is None:
            lines += number_lines(printed(["examples/run_csl.py", "--output_dir", run_dir, "--disable_tqdm", "True"],
                                          "the default run"))
        cache = os.path.join(run_dir, "cache")
        for extra in ([], ["--soft_labels"]):
            lines += number_lines(printed(["benchmarks/compare_reference.py", "--cache_dir", cache, *extra],
                                          f"compare_reference {' '.join(extra) or '(hard labels)'}"))
    drifted = [ln for ln in lines if ln not in page]
    for ln in drifted:
        print(f"drift: docs/benchmark.md does not quote this printed line: {ln}")
    print(f"{len(lines) - len(drifted)} of {len(lines)} printed lines are quoted in docs/benchmark.md")
    return 1 if drifted else 0


if __name__ == "__main__":
    sys.exit(main())
