"""Checkpoints of avsr-train: resume never runs code from a file, a damaged newest step is set aside
and the run goes on from the one before, export skips damaged steps. Tiny real runs on the
12-clip synthetic LRS2 corpus (4 steps, checkpoints at steps 2 and 4)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from avsr.cli import train as train_cli
from micro_models import write_micro_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

FILES = {
    "model": "model/pp_00/tp_00/sdp_00.pt",
    "optimizer": "optimizer/pp_00/tp_00/sdp_00.pt",
    "trainer": "trainer/rank_00.pt",
    "data_reader": "data_reader/dp_00.pt",
}


@pytest.fixture(scope="module")
def config(train_data, tmp_path_factory) -> Path:
    return write_micro_recipe(
        tmp_path_factory.mktemp("checkpoint_configs") / "micro.yaml",
        train_data,
        dataset={"valid_split": None},
        lr_scheduler={"config": {"num_warmup_steps": 1}},
        regime={
            "num_steps": 4,
            "checkpoint_every_n_steps": 2,
            "publish_metrics_every_n_steps": 1,
            "keep_last_n_checkpoints": 2,
        },
    )


def _train(config: Path, out: Path) -> int:
    # as in a new process, no logging handlers yet (fairseq2 bound its handler to the stderr that
    # pytest captured for an earlier test, closed since)
    for handler in logging.getLogger().handlers[:]:
        logging.getLogger().removeHandler(handler)
    try:
        return train_cli.main([str(config), "--output-dir", str(out), "--no-rich"])
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture(scope="module")
def finished_run(config, tmp_path_factory) -> Path:
    """A finished 4-step run: complete checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("checkpoint_runs") / "run"
    assert _train(config, out) == 0
    assert (out / "checkpoints" / "step_2" / FILES["data_reader"]).is_file() and (
        out / "checkpoints" / "step_4"
    ).is_dir()
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    for name in ("model", "logs"):
        shutil.rmtree(out / name)
    return out


def _steps_in_log(out: Path) -> str:
    return "\n".join(p.read_text() for p in (out / "logs").glob("rank_*.log"))


@pytest.mark.parametrize("kind", list(FILES))
def test_a_truncated_newest_checkpoint_is_set_aside_and_the_run_goes_on(kind, finished_run, config, tmp_path, capsys):
    out = _copy(finished_run, tmp_path)
    damaged = out / "checkpoints" / "step_4" / FILES[kind]
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert _train(config, out) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "damaged" in line]
    assert len(lines) == 1 and f"{damaged}" in lines[0] and "step_4.damaged" in lines[0], err[-2000:]
    assert "Traceback" not in err
    # the damaged step is kept aside, untouched; the run went on from step 2 and wrote step 4 again
    assert (out / "checkpoints" / "step_4.damaged" / FILES[kind]).read_bytes() == data[: len(data) // 2]
    assert "Resuming from step 2." in _steps_in_log(out)
    assert (out / "checkpoints" / "step_4" / FILES[kind]).stat().st_size > len(data) // 2
    assert yaml.safe_load((out / "model" / "model.yaml").read_text())["extra"]["step"] == 4


def test_export_skips_a_damaged_step(finished_run, tmp_path, caplog):
    from avsr.training.recipe import export_run

    out = _copy(finished_run, tmp_path)
    model_file = out / "checkpoints" / "step_4" / FILES["model"]
    model_file.write_bytes(model_file.read_bytes()[:1000])
    with caplog.at_level("WARNING", logger="avsr"):
        target = export_run(out, last_n=2, out_dir=tmp_path / "export")
    meta = yaml.safe_load((target / "model.yaml").read_text())["extra"]
    assert meta["averaged_steps"] == [2] and meta["step"] == 2
    assert any(str(model_file) in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)


class _Planted:
    """What an attacker plants: unpickling it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["trainer", "data_reader"])
def test_resume_refuses_a_planted_pickle_and_runs_nothing(kind, finished_run, config, tmp_path, capsys):
    out = _copy(finished_run, tmp_path)
    marker = tmp_path / "code-ran"
    planted = out / "checkpoints" / "step_4" / FILES[kind]
    torch.save({"_step_nr": 4, "payload": _Planted(marker)}, planted)
    capsys.readouterr()
    assert _train(config, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("avsr-train: error: ") and f"{planted}: refused" in err[-1]
    assert not marker.exists()
    assert (out / "checkpoints" / "step_4").is_dir()  # refused, not set aside: the user decides


def test_a_checkpoint_that_loads_but_does_not_fit_fails_in_one_line(finished_run, config, tmp_path, capsys):
    out = _copy(finished_run, tmp_path)
    torch.save(
        {"unrelated": torch.zeros(2)}, out / "checkpoints" / "step_4" / FILES["trainer"]
    )  # safe, but not trainer state
    capsys.readouterr()
    assert _train(config, out) == 1
    err = capsys.readouterr().err
    assert (
        "Traceback" not in err
        and "training failed: `trainer` state cannot be restored from checkpoint of step 4"
        in err.strip().splitlines()[-1]
    )
    assert "Traceback" in (out / "logs" / "rank_0.log").read_text()


def test_damage_is_told_apart_from_hostile_files(finished_run, tmp_path):
    import pickle

    from avsr.training.checkpoints import UnsafeCheckpointError, damage_of

    good = (finished_run / "checkpoints" / "step_4" / FILES["data_reader"]).read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    cases = {
        "truncated": good[:-100],
        "empty": b"",
        "not a checkpoint": b"garbage",
        "fails its checksum": bytes(flipped),
    }
    for expected, data in cases.items():
        (tmp_path / "f.pt").write_bytes(data)
        assert expected in damage_of(tmp_path / "f.pt")
    marker = tmp_path / "code-ran"
    for protocol in (2, 5):  # plain pickles, not torch's zip format
        (tmp_path / "p.pt").write_bytes(pickle.dumps({"x": _Planted(marker)}, protocol=protocol))
        with pytest.raises(UnsafeCheckpointError, match="p.pt: refused"):
            damage_of(tmp_path / "p.pt")
    assert not marker.exists()


def test_checkpoint_state_round_trips_numpy_and_refuses_objects(tmp_path):
    from fairseq2.file_system import LocalFileSystem

    from avsr.training.checkpoints import CheckpointStateError, SafeTensorFileDumper, SafeTensorFileLoader

    fs = LocalFileSystem()
    state = {
        "position": [
            True,
            3,
            [
                {
                    "id": "a",
                    "video": np.arange(12, dtype=np.uint8).reshape(3, 4),
                    "audio": np.ones(5, dtype=">f4"),
                    "frames": np.int64(7),
                }
            ],
            (1.5, None),
        ],
        "t": torch.ones(2),
    }
    SafeTensorFileDumper(fs).dump(state, tmp_path / "s.pt")
    back = SafeTensorFileLoader(fs).load(tmp_path / "s.pt")
    item = back["position"][2][0]
    assert (
        isinstance(item["video"], np.ndarray)
        and item["video"].dtype == np.uint8
        and np.array_equal(item["video"], state["position"][2][0]["video"])
    )
    assert item["audio"].dtype == np.float32 and item["audio"].tolist() == [1.0] * 5
    assert isinstance(item["frames"], np.int64) and item["frames"] == 7
    assert back["position"][3] == (1.5, None) and torch.equal(back["t"], state["t"])
    with pytest.raises(CheckpointStateError, match=r"\['payload'\]: a .*_Planted cannot be checkpointed"):
        SafeTensorFileDumper(fs).dump({"payload": _Planted(tmp_path / "x")}, tmp_path / "bad.pt")
