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


def test_the_decode_benchmark_compares_the_per_file_path_with_the_overlapped_one(
    micro_model_dir, lrs2_corpus, tmp_path
):
    """decode.py's folder comparison on two clips: every way decodes both, with the same transcripts."""
    script = REPO / "benchmarks" / "decode.py"
    spec = importlib.util.spec_from_file_location("benchmark_decode_folder", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files = module.held_out_clips(lrs2_corpus, 2, tmp_path / "clips")
    report = module.bench_folder_overlap(micro_model_dir, files, beam=2, rounds=1)
    assert report["files"] == 2 and report["same_transcripts"]
    for way in ("one_at_a_time", "one_at_a_time_one_thread", "batched_overlap"):
        assert report[way]["media_seconds"] > 0 and report[way]["stages"]["face"] > 0
    assert report["speedup"] > 0 and report["batched_overlap"]["workers"] >= 2
