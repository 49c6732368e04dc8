"""The documentation's relative links lead to files that exist (README.md and every page under docs/)."""

from __future__ import annotations

import re
from pathlib import Path

from repo_paths import REPO

LINK = re.compile(r"\]\(([^)\s]+)\)")


def broken_links(page: Path) -> list[str]:
    """Relative link targets of a Markdown page that name no file (anchors and URLs are not checked)."""
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    return broken


def test_every_relative_link_in_the_docs_leads_to_a_file(tmp_path) -> None:
    pages = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").rglob("*.md"))]
    assert len(pages) > 3
    found = {str(p.relative_to(REPO)): broken_links(p) for p in pages}
    assert not any(found.values()), {k: v for k, v in found.items() if v}
    # the check itself sees a broken one
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](missing.md#part) [web](https://example.org) [here](#top)")
    assert broken_links(page) == ["missing.md#part"]
