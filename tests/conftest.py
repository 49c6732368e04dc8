"""Session-wide fixtures: the synthetic corpora are generated once per test run and shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsr.cli import synth as synth_cli

LRS2_ARGS = [
    "--layout", "lrs2", "--utterances", "12", "--speakers", "4", "--seed", "3", "--pretrain-fraction", "0.5", "--workers", "2", "--quiet",
]
LRW_ARGS = ["--layout", "lrw", "--utterances", "9", "--words", "3", "--speakers", "3", "--seed", "5", "--workers", "2", "--quiet"]


@pytest.fixture(scope="session")
def lrs2_corpus(tmp_path_factory) -> Path:
    """A 12-clip lrs2-layout corpus made through the avsr-synth command line."""
    root = tmp_path_factory.mktemp("synth") / "lrs2"
    assert synth_cli.main([str(root), *LRS2_ARGS]) == 0
    return root


@pytest.fixture(scope="session")
def lrw_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "lrw"
    assert synth_cli.main([str(root), *LRW_ARGS]) == 0
    return root
