"""The documentation holds together: relative links lead to files, every command has a page, the README
stays a first page, and nothing points at a path of the machine the docs were written on."""

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
    pages = [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "vision_language" / "README.md"]
    pages += sorted((REPO / "docs").rglob("*.md"))
    assert len(pages) > 3
    found = {str(p.relative_to(REPO)): broken_links(p) for p in pages}
    assert not any(found.values()), {k: v for k, v in found.items() if v}
    # the check itself sees a broken one
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](missing.md#part) [web](https://example.org) [here](#top)")
    assert broken_links(page) == ["missing.md#part"]


def console_scripts() -> list[str]:
    """The names under ``[project.scripts]`` in pyproject.toml (read by line: tomllib is Python 3.11+)."""
    names, inside = [], False
    for line in (REPO / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            inside = line.strip() == "[project.scripts]"
        elif inside and "=" in line:
            names.append(line.split("=")[0].strip())
    return names


def test_every_console_script_has_a_page_the_readme_links_to() -> None:
    scripts = console_scripts()
    assert "avsr-decode" in scripts and "vl-train" in scripts
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [s for s in scripts if not (REPO / "docs" / "cli" / f"{s}.md").is_file()]
    unlinked = [s for s in scripts if f"(docs/cli/{s}.md)" not in readme]
    assert not missing, f"no docs/cli page for {missing}"
    assert not unlinked, f"README.md does not link docs/cli pages of {unlinked}"


def test_the_readme_stays_a_first_page() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move reference and write-ups to docs/"


#: where this machine kept notes and checkouts; nothing in the repository may point there
MACHINE_PATHS = re.compile("|".join([r"\.\./shared/", "/work/" + "shared", "/work/" + "main", "/" + "root/"]))
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".sh", ".toml", ".txt", ".cfg"}
SOURCE_FOLDERS = ["avsr", "vision_language", "docs", "recipes", "scripts", "benchmarks", "tests", ".ci"]


def test_the_repository_cites_no_path_of_this_machine() -> None:
    files = [p for p in REPO.glob("*") if p.is_file()]
    for folder in SOURCE_FOLDERS:
        files += [p for p in (REPO / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    hits = []
    for path in files:
        if path.suffix not in TEXT_SUFFIXES:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATHS.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:80]}")
    assert not hits, "\n".join(hits)
