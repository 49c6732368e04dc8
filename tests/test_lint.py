"""The repository passes ``ruff check`` and ``ruff format --check`` (settings: ``[tool.ruff]`` of pyproject.toml).

Ruff runs from this environment (``python -m ruff``), at the version the ``test`` extra pins, so that
every machine formats the same way. A missing or different ruff fails the tests rather than skipping
them: ``pip install -e .[test]`` installs the pinned one.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from repo_paths import REPO

INSTALL = "pip install -e .[test] (bash scripts/setup.sh does it when pyproject.toml changes)"


def pinned_version() -> str:
    """The ruff version the ``test`` extra of pyproject.toml pins (``ruff==X.Y.Z``)."""
    match = re.search(r'"ruff==([^"]+)"', (REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert match, "pyproject.toml pins no ruff version in its test extra"
    return match.group(1)


def installed_version() -> str:
    """The version of this environment's ruff; the test fails (does not skip) when there is none."""
    try:
        return importlib.metadata.version("ruff")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"ruff is not installed in {sys.executable}: {INSTALL}")


def ruff(command: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``ruff COMMAND ARGS`` with this environment's ruff and no cache (the tests write nothing)."""
    installed_version()
    argv = [sys.executable, "-m", "ruff", command, "--no-cache", *args]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_ruff_is_the_pinned_version() -> None:
    installed = installed_version()
    assert installed == pinned_version(), (
        f"ruff {installed} is installed, pyproject.toml pins {pinned_version()}: {INSTALL}"
    )


def test_the_repository_passes_ruff_check() -> None:
    result = ruff("check", ".")
    assert result.returncode == 0, f"ruff check . (fix with: ruff check --fix .)\n{result.stdout}{result.stderr}"


def test_the_repository_is_formatted_by_ruff() -> None:
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, f"ruff format --check . (fix with: ruff format .)\n{result.stdout}{result.stderr}"


def test_the_checks_fail_on_a_badly_formatted_and_linted_file(tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\ndef f( x ):\n  return {'a':x}\n", encoding="utf-8")
    config = ("--config", str(REPO / "pyproject.toml"))
    formatted = ruff("format", "--check", *config, str(bad), cwd=tmp_path)
    linted = ruff("check", *config, str(bad), cwd=tmp_path)
    assert formatted.returncode == 1 and "bad.py" in formatted.stdout + formatted.stderr, formatted
    assert linted.returncode == 1, linted
    for code in ("I001", "F401"):  # unsorted imports, and both imports unused
        assert code in linted.stdout, linted.stdout
    assert bad.read_text(encoding="utf-8").startswith("import sys\n")  # checked, not rewritten
