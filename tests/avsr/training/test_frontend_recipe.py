"""avsr-train for the visual front-end alone: MoCo pretraining (task: moco) and word
classification (task: lrw), and the hand-over of front-ends from stage to stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from avsr.cli import train as train_cli
from avsr.data.manifest import read_manifest
from avsr.models.avsr_model import AVSRModel
from avsr.models.config import AVSRConfig, VisualConfig
from avsr.models.io import load_pretrained_frontends
from repo_paths import REPO

RECIPES = REPO / "recipes" / "lrw"
SMALL = [
    "dataset.batch_size=4",
    "regime.num_steps=6",
    "regime.validate_every_n_steps=3",
    "regime.checkpoint_every_n_steps=3",
    "regime.publish_metrics_every_n_steps=3",
    "lr_scheduler.config.num_warmup_steps=2",
    "--no-rich",
]
TINY_VISUAL = {"visual": {"width": 0.125, "norm_groups": 4, "downsample": 2}}


def _train(recipe: str, out: Path, data: Path, *extra: str) -> int:
    return train_cli.main([str(RECIPES / recipe), f"dataset.path={data}", *SMALL, *extra, "--output-dir", str(out)])


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def moco_run(lrw_prepared: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("moco") / "run"
    config = "model.config=" + json.dumps({**TINY_VISUAL, "moco": {"queue_size": 16, "projection_dim": 8}})
    assert _train("moco.yaml", out, lrw_prepared, config, "views.crop_size=64") == 0
    return out


def test_moco_pretraining_exports_a_front_end(moco_run: Path, lrw_prepared: Path):
    model_dir = moco_run / "model"
    meta = yaml.safe_load((model_dir / "model.yaml").read_text())
    assert meta["task"] == "moco" and meta["step"] == 6
    state = load_file(model_dir / "model.safetensors")
    # 6 steps of (up to) 4 clips went through the 16-key queue, first in first out
    seen = sum(r["Number of Examples"] for r in _rows(moco_run / "metrics" / "train.jsonl"))
    assert int(state["queue_next"]) == seen % 16
    frontend = load_file(model_dir / "frontend.safetensors")
    assert set(frontend) == {k.removeprefix("query_frontend.") for k in state if k.startswith("query_frontend.")}
    for key, value in frontend.items():  # the front-end is the query encoder's, not the key encoder's
        assert torch.equal(value, state[f"query_frontend.{key}"])
    # validation ran at steps 3 and 6 over the whole val split: accuracy is a share of its clips
    valid = _rows(moco_run / "metrics" / "valid.jsonl")
    clips = len(read_manifest(lrw_prepared / "val.tsv"))
    assert [r["Step"] for r in valid] == [3, 6] and all(r["Number of Examples"] == clips for r in valid)
    assert all(
        (r["Accuracy"] * clips / 100) == pytest.approx(round(r["Accuracy"] * clips / 100), abs=1e-4) for r in valid
    )


def test_moco_trains_when_an_epoch_leaves_one_clip_over(lrw_prepared: Path, tmp_path: Path):
    """7 training clips in batches of 3 leave one clip at the end of every epoch, which MoCo's
    BatchNorm head cannot normalise alone: it joins the batch before it, and the log says so once."""
    out = tmp_path / "odd"
    config = "model.config=" + json.dumps({**TINY_VISUAL, "moco": {"queue_size": 16, "projection_dim": 8}})
    steps = [
        "regime.num_steps=4",
        "regime.validate_every_n_steps=4",
        "regime.checkpoint_every_n_steps=4",
        "regime.publish_metrics_every_n_steps=1",
    ]
    assert _train("moco.yaml", out, lrw_prepared, config, "views.crop_size=64", "dataset.batch_size=3", *steps) == 0
    examples = [r["Number of Examples"] for r in _rows(out / "metrics" / "train.jsonl")]
    assert sorted(examples) == [3, 3, 4, 4]  # two epochs of 3 + (3 + 1): every clip trained on, none alone
    assert (out / "logs" / "rank_0.log").read_text().count("merged into the batch before it") == 1


def test_a_lone_last_clip_joins_the_batch_before_it():
    from avsr.training.clips import group_clips

    assert group_clips(7, 3) == [range(0, 3), range(3, 6), range(6, 7)]
    assert group_clips(7, 3, min_size=2) == [range(0, 3), range(3, 7)]
    assert group_clips(6, 3, min_size=2) == [range(0, 3), range(3, 6)]
    assert group_clips(1, 3, min_size=2) == []  # nothing to join: dropped


def test_the_avsr_model_loads_the_moco_front_end_strictly(moco_run: Path):
    visual = VisualConfig(**{**AVSRConfig.tiny(3).visual.__dict__, **TINY_VISUAL["visual"]})
    model = AVSRModel(AVSRConfig.tiny(10, visual=visual))
    lines = load_pretrained_frontends(model, visual=moco_run / "model" / "frontend.safetensors", visual_format="avsr")
    assert "loaded 60 tensors" in lines[0] and "left at initialisation" not in lines[0]
    frontend = load_file(moco_run / "model" / "frontend.safetensors")
    for key, value in model.visual_frontend.state_dict().items():
        assert torch.equal(value, frontend[key])


def test_word_classification_starts_from_the_moco_front_end(moco_run: Path, lrw_prepared: Path, tmp_path: Path):
    out = tmp_path / "words"
    # learning rate 0: the exported front-end must be exactly the one it started from
    assert (
        _train(
            "conf.yaml",
            out,
            lrw_prepared,
            "model.config=" + json.dumps(TINY_VISUAL),
            f"model.init_frontend={moco_run / 'model'}",
            "optimizer.config.lr=0.0",
            "model.config.dropout=0.0",
        )
        == 0
    )
    meta = yaml.safe_load((out / "model" / "model.yaml").read_text())
    assert meta["task"] == "lrw" and meta["classes"] == sorted(meta["classes"]) and len(meta["classes"]) == 3
    assert meta["config"]["num_classes"] == 3
    started, ended = (
        load_file(moco_run / "model" / "frontend.safetensors"),
        load_file(out / "model" / "frontend.safetensors"),
    )
    assert started.keys() == ended.keys() and all(torch.equal(started[k], ended[k]) for k in started)
    valid = _rows(out / "metrics" / "valid.jsonl")  # the same model at steps 3 and 6: the same scores
    assert [r["Step"] for r in valid] == [3, 6] and valid[0]["Number of Examples"] == len(
        read_manifest(lrw_prepared / "val.tsv")
    )
    assert (valid[0]["Loss"], valid[0]["Accuracy"]) == (valid[1]["Loss"], valid[1]["Accuracy"])


def test_word_classification_fits_its_training_clips(lrw_prepared: Path, tmp_path: Path):
    """The LRW recipe learns: after 50 steps on the 7 training clips of 3 words it names every one
    of them (validated on the training split, no augmentation). A BatchNorm front-end: the tiny
    arch's GroupNorm one pools to nearly the same features for every clip and needs far longer."""
    out = tmp_path / "learn"
    extra = [
        "dataset.batch_size=7",
        "dataset.valid_split=train",
        "dataset.video.hflip_prob=0",
        "dataset.video.random_crop=false",
        "regime.num_steps=50",
        "regime.validate_every_n_steps=50",
        "regime.checkpoint_every_n_steps=50",
        "regime.publish_metrics_every_n_steps=10",
        "lr_scheduler.config.num_warmup_steps=0",
        "model.config=" + json.dumps({"visual": {**TINY_VISUAL["visual"], "norm": "batch"}}),
    ]
    assert _train("conf.yaml", out, lrw_prepared, *extra) == 0
    final = _rows(out / "metrics" / "valid.jsonl")[-1]
    assert final["Step"] == 50 and final["Accuracy"] == 100.0  # chance: 3 of 7 (the commonest word)
    assert final["Loss"] < 0.2  # ln 3 = 1.1 at chance


def _exit_code(call) -> int:
    with pytest.raises(SystemExit) as exc:
        call()
    return int(exc.value.code)


def test_bad_front_end_configs_are_one_line_errors(lrw_prepared: Path, tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: words\n")
    assert _exit_code(lambda: train_cli.main([str(bad)])) == 2
    assert "bad value for task: 'words'" in capsys.readouterr().err
    assert (
        _exit_code(
            lambda: _train("conf.yaml", tmp_path / "x", lrw_prepared, f"model.init_frontend={tmp_path / 'nowhere'}")
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "nowhere" in err and "frontend.safetensors" in err
    assert _exit_code(lambda: _train("moco.yaml", tmp_path / "y", lrw_prepared, "views.crop_sise=64")) == 2
    assert "unknown config key views.crop_sise (did you mean views.crop_size?)" in capsys.readouterr().err
    assert _exit_code(lambda: _train("moco.yaml", tmp_path / "z", lrw_prepared, "dataset.batch_size=1")) == 2
    assert (
        "dataset.batch_size=1: this model normalises over the batch and needs at least 2 clips per batch"
        in capsys.readouterr().err
    )


def test_validation_curves_of_runs_side_by_side(moco_run: Path, tmp_path: Path, capsys):
    from avsr.eval import curves

    png = tmp_path / "curves.png"
    assert (
        curves.main([str(moco_run), str(moco_run), "--labels", "a", "b", "--metric", "Accuracy", "--out", str(png)])
        == 0
    )
    table = capsys.readouterr().out
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "| step | a | b |" in table and "\n| 3 |" in table and "\n| 6 |" in table
    with pytest.raises(SystemExit):
        curves.main([str(tmp_path), "--out", str(png)])
    assert "no metrics" in capsys.readouterr().err


def test_wav2vec2_pretraining_exports_a_checkpoint_the_audio_front_end_loads(lrw_prepared: Path, tmp_path: Path):
    from avsr.models.audio import Wav2Vec2FrontEndConfig, build_wav2vec2_frontend
    from avsr.models.convert import convert_checkpoint

    out = tmp_path / "w2v"
    recipe = RECIPES.parent / "ssl" / "wav2vec2.yaml"
    args = [
        str(recipe),
        f"dataset.path={lrw_prepared}",
        "dataset.train_splits=[train]",
        "dataset.max_audio_seconds=1.0",
        *SMALL,
    ]
    assert train_cli.main([*args, "--output-dir", str(out)]) == 0
    valid = _rows(out / "metrics" / "valid.jsonl")
    assert {"Contrastive Loss", "Diversity Loss", "Accuracy"} <= set(valid[-1])
    file = out / "model" / "wav2vec2.safetensors"
    converted = convert_checkpoint(file)  # our format: fairseq2 names, the architecture in the metadata
    assert converted.encoder_config is not None and converted.encoder_config.model_dim == 64
    assert not any(k.startswith(("quantizer.", "final_proj.", "final_target_proj.")) for k in converted.state_dict)
    frontend = build_wav2vec2_frontend(Wav2Vec2FrontEndConfig.from_pretrained(file))  # loads strictly
    trained = load_file(out / "model" / "model.safetensors")
    for key, value in frontend.state_dict().items():
        if key in trained:
            assert torch.equal(value, trained[key])
    assert sum(key in trained for key in frontend.state_dict()) > 10


def test_moco_with_batch_norm_trains_under_two_process_ddp_on_cpu(lrw_prepared: Path, tmp_path: Path):
    """fairseq2's DDP turns BatchNorm into CUDA-only SyncBatchNorm; on the CPU the layers keep
    per-process statistics instead, so a BatchNorm trunk and head train with torchrun."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    config = {"visual": {**TINY_VISUAL["visual"], "norm": "batch"}, "moco": {"queue_size": 16, "projection_dim": 8}}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        "-m",
        "avsr.cli.train",
        str(RECIPES / "moco.yaml"),
        f"dataset.path={lrw_prepared}",
        *SMALL,
        "regime.num_steps=3",
        "model.config=" + json.dumps(config),
        "views.crop_size=64",
        "--output-dir",
        str(out),
    ]
    result = subprocess.run(
        cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log_text = (out / "logs" / "rank_0.log").read_text()
    assert "Wrapping model with DDP" in log_text and "BatchNorm layers keep per-process statistics" in log_text
    assert [r["Step"] for r in _rows(out / "metrics" / "train.jsonl")] == [3]
    assert (out / "model" / "frontend.safetensors").is_file()
