"""The README and docs/: links that resolve, a README that fits on a screen, and a home for every
section of the old 1,400-line README (issue 31), so that a page renamed, a heading dropped or a
link mistyped goes red. No subprocess, no network: it reads Markdown files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
IDS = [str(p.relative_to(REPO)) for p in PAGES]

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)

# Every ##/### heading of the README before issue 31 (1,405 lines), and where its text lives
# now: (page, heading) pairs. A section the old README mixed topics in lists every home.
SECTION_MAP: dict[str, list[tuple[str, str]]] = {
    "Quickstart": [("README.md", "Quickstart")],
    "The pipeline": [("docs/pipeline.md", "The pipeline and its stages")],
    "Corpora: shards, JSONL and Parquet": [
        ("docs/corpora.md", "Corpora: shards, JSONL and Parquet"),
    ],
    "Tokenizers and bits per byte": [("docs/tokenizers.md", "Tokenizers and bits per byte")],
    "The grid: which switches the ablation varies": [
        ("docs/grid.md", "The grid: which switches the ablation varies"),
    ],
    "Adding a switch": [
        ("docs/grid.md", "Adding a switch"),
        ("docs/statistics.md", "Seeds and the cells the report reads"),
        ("docs/statistics.md", "How the report judges"),
        ("docs/pipeline.md", "Experiments: `dvc exp run --temp` and `--queue`"),
        ("docs/gpu.md", "A GPU-sized run"),
        ("docs/gpu.md", "GPU and multi-GPU"),  # train.device, train.dtype, train.compile
    ],
    "The run cache, and the grid on several workers": [
        ("docs/workers.md", "The run cache, and the grid on several workers"),
        ("docs/team.md", "The MLflow tracking server"),  # a server that does not answer
    ],
    "MLflow": [("docs/pipeline.md", "MLflow")],
    "When things go wrong": [("docs/pipeline.md", "When things go wrong")],
    'What "honest" means here': [("docs/statistics.md", 'What "honest" means here')],
    "Results": [("README.md", "Results"), ("docs/results.md", "Results")],
    "The 2⁴ ablation: tokenizer × RoPE × MoE × F-grams": [
        ("README.md", "The 2⁴ ablation: tokenizer × RoPE × MoE × F-grams"),
    ],
    "Two seeds, as `make repro` runs it": [
        ("docs/results.md", "Two seeds, as `make repro` runs it"),
    ],
    "Three seeds, re-judged by the pooled method": [
        ("docs/results.md", "Three seeds, re-judged by the pooled method"),
    ],
    "One seed": [("docs/results.md", "One seed")],
    "Against nanoGPT, like with like": [("docs/results.md", "Against nanoGPT, like with like")],
    "The model library": [("docs/model.md", "The model library")],
    "Benchmark": [("docs/development.md", "Benchmark")],
    "GPU and multi-GPU": [("docs/gpu.md", "GPU and multi-GPU")],
    "Tuning": [("docs/tuning.md", "Tuning")],
    "Team setup": [("docs/team.md", "Team setup")],
    "Cluster (SLURM)": [("docs/workers.md", "Cluster (SLURM)")],
    "Development": [("docs/development.md", "Development")],
    "Layout": [
        ("README.md", "Layout"),
        ("docs/development.md", "Layout, module by module"),
        ("docs/development.md", "Rules the tests hold the code to"),
    ],
}


def prose(text: str) -> str:
    """The Markdown without fenced code blocks, and code spans blanked: a ``[x](y)`` or a ``#``
    inside code is no link and no heading."""
    text = FENCE.sub("", text)
    return CODE_SPAN.sub(lambda m: "`" + "x" * (len(m.group(0)) - 2) + "`", text)


def headings(path: Path) -> list[str]:
    """The text of every heading of a Markdown file, outside code blocks."""
    return [m.group(2) for m in HEADING.finditer(FENCE.sub("", path.read_text(encoding="utf-8")))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives the headings of ``path`` (a repeated one gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for text in headings(path):
        base = slug(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    return [m.group(2) for m in LINK.finditer(prose(path.read_text(encoding="utf-8")))]


def test_the_docs_pages_are_there():
    """Kills: docs/ emptied or moved, which would leave the link tests nothing to check."""
    assert len(PAGES) > 10, [p.name for p in PAGES]


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_every_relative_link_in_readme_and_docs_resolves(page):
    """Kills: a link to docs/tunning.md (no such page), a link to ../README.md from the README
    (a path relative to the wrong folder), and [MLflow](pipeline.md#ml-flow) (an anchor that no
    heading of the target gives, e.g. after the heading "MLflow" was renamed)."""
    broken = []
    for target in links(page):
        if re.match(r"^(https?|mailto):", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading of {dest.name} has the anchor #{anchor}")
    assert not broken, "\n".join(broken)


def test_readme_fits_on_a_screen():
    """Kills: a section moved back into the README (it reached 1,405 lines before issue 31)."""
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 300, f"README.md has {n} lines; move the detail to a page under docs/"


def test_readme_links_every_docs_page():
    """Kills: a page added to docs/ (or the README's link to docs/gpu.md removed) that no
    reader of the README can find."""
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"


@pytest.mark.parametrize("page", PAGES[1:], ids=IDS[1:])
def test_every_docs_page_has_a_title_and_a_way_back(page):
    """Kills: a page whose first line is not a `# Title` (e.g. it starts with `## Tuning`), or
    one without its line of what it covers and its link back to ../README.md."""
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# "), f"{page.name}: the first line must be '# <title>'"
    assert "What this page covers:" in text.split("\n## ")[0], page.name
    assert "../README.md" in links(page), f"{page.name}: no link back to ../README.md"


@pytest.mark.parametrize("old", list(SECTION_MAP))
def test_every_old_readme_section_has_a_home(old):
    """Kills: a heading removed from docs/tuning.md (its title "# Tuning" renamed "# Optuna"),
    one dropped from docs/results.md ("## One seed"), and a page deleted or renamed
    (docs/gpu.md -> docs/cuda.md)."""
    for page, heading in SECTION_MAP[old]:
        path = REPO / page
        assert path.exists(), f"old section {old!r}: its page {page} is gone"
        assert heading in headings(path), f"old section {old!r}: {page} has no heading {heading!r}"


def test_the_map_holds_every_old_heading():
    """Kills: an old heading deleted from SECTION_MAP (the old README had 24 ##/### headings)."""
    assert len(SECTION_MAP) == 24
