"""Every benchmark script still imports and parses its options: the library moves under them, and
a benchmark that no longer starts is found here, not when someone needs its numbers."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from repo_paths import REPO

SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))


def test_there_are_benchmarks() -> None:
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_benchmark_imports_and_answers_help(script, monkeypatch, capsys) -> None:
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    spec.loader.exec_module(module)  # the imports: what breaks when the library moves
    main = getattr(module, "main", None)
    assert callable(main), f"{script.name} has no main()"
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0 and "usage:" in capsys.readouterr().out
