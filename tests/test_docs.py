"""The docs hold together: every relative link and image in README.md and docs/*.md names a file in the repository,
the README stays short, and docs/ holds the pages the README points to.

Links are read as GitHub renders them: markdown `[text](path)` and `![alt](path)`, reference definitions
`[name]: path`, and HTML `<img src="path">`. Text inside fenced code blocks, inline code and HTML comments is not a
link. http(s)://, mailto: and pure #anchors are skipped; a #fragment or ?query is stripped from a path.
"""

from __future__ import annotations

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
README_MAX_BYTES = 12 * 1024
DOCS_PAGES = ("figures.md", "reference.md", "measuring.md", "guarantees.md", "benchmarks.md")

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
COMMENT = re.compile(r"<!--.*?-->", re.S)
INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
IMG_SRC = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.I)


def markdown_files() -> list[str]:
    return [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def link_targets(text: str) -> list[str]:
    """Every link or image target in markdown `text`, in order, code and comments removed."""
    text = COMMENT.sub("", FENCE.sub("", text))
    text = INLINE_CODE.sub("", text)
    return INLINE_LINK.findall(text) + REFERENCE_DEF.findall(text) + IMG_SRC.findall(text)


def local_path(target: str) -> str | None:
    """The repository path a link target names, or None for external links and pure anchors."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//") or target.startswith("#"):
        return None
    return re.split(r"[#?]", target, maxsplit=1)[0] or None


def test_the_link_reader_sees_what_github_renders():
    text = """
[a](docs/a.md) ![b](figures/b.png "title") <img width="90" src='figures/c.png'> [d][x]
[x]: docs/d.md#part
`[not](code.md)` <!-- ![not](comment.png) -->
```
![not](fenced.png)
```
[web](https://example.com/x.png) [anchor](#top) [frag](docs/e.md#sec)
"""
    targets = link_targets(text)
    assert [local_path(t) for t in targets if local_path(t)] == [
        "docs/a.md", "figures/b.png", "docs/e.md", "docs/d.md", "figures/c.png"]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_and_image_exists(path):
    with open(path, encoding="utf-8") as f:
        targets = link_targets(f.read())
    base = os.path.dirname(path)
    missing = []
    for target in targets:
        rel = local_path(target)
        if rel is None:
            continue
        full = os.path.normpath(os.path.join(ROOT, rel.lstrip("/")) if rel.startswith("/") else os.path.join(base, rel))
        inside = os.path.commonpath([full, ROOT]) == ROOT
        if not inside or not os.path.exists(full):
            missing.append(target)
    assert not missing, f"{os.path.relpath(path, ROOT)} links to missing files: {missing}"


def test_readme_is_at_most_12_kb():
    size = os.path.getsize(README)
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; keep it <= {README_MAX_BYTES} (move detail to docs/)"


def test_docs_holds_the_pages_the_readme_points_to():
    missing = [p for p in DOCS_PAGES if not os.path.isfile(os.path.join(ROOT, "docs", p))]
    assert not missing, f"docs/ lacks {missing}"
    with open(README, encoding="utf-8") as f:
        linked = {os.path.normpath(local_path(t)) for t in link_targets(f.read()) if local_path(t)}
    unlinked = [p for p in DOCS_PAGES if os.path.join("docs", p) not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"


def test_readme_keeps_the_test_command_ci_runs():
    with open(README, encoding="utf-8") as f:
        assert "python -m pytest -q" in f.read()
