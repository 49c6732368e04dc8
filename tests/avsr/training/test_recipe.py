"""Training: batching, augmentation, the data pipeline, avsr-train (config, checkpoints, SIGKILL and
resume, export) and two-process DDP on the CPU, on the 12-clip synthetic LRS2 corpus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from avsr.data.manifest import read_manifest
from avsr.data.video import crop, normalize_pixels
from avsr.training import augment
from avsr.training.batching import make_batches, padded_frames, rng_for
from avsr.training.export import average_state_dicts
from micro_models import write_micro_recipe
from repo_paths import REPO

RUN_STEPS = 12  # steps of the killed-and-resumed run (killed at its first checkpoint, step 2 or soon after)


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def micro_config(train_data, tmp_path_factory) -> Path:
    """A recipe for a handful of fast CPU steps on the test corpus."""
    return write_micro_recipe(
        tmp_path_factory.mktemp("configs") / "micro.yaml",
        train_data,
        optimizer={"config": {"lr": 0.002}},
        lr_scheduler={"config": {"num_warmup_steps": 2, "final_lr_scale": 0.1}},
        regime={
            "num_steps": 6,
            "checkpoint_every_n_steps": 2,
            "validate_every_n_steps": 6,
            "publish_metrics_every_n_steps": 1,
            "keep_last_n_checkpoints": 2,
        },
    )


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}")
    env.update(extra)
    return env


def _train_cmd(config: Path, output_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "avsr.cli.train",
        str(config),
        "--output-dir",
        str(output_dir),
        "--no-rich",
        *overrides,
    ]


def _complete_checkpoints(output_dir: Path) -> list[int]:
    steps = []
    for d in (output_dir / "checkpoints").glob("step_*"):
        if (
            d.name[5:].isdigit()
            and (d / "model" / "pp_00" / "tp_00" / "sdp_00.pt").is_file()
            and (d / "trainer").is_dir()
        ):
            steps.append(int(d.name[5:]))
    return sorted(steps)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


# ---------------------------------------------------------------------------------------- batching


def test_batches_respect_the_frame_cap():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 400, size=500).tolist()
    for cap, size in ((400, 64), (1000, 8), (1600, 64)):
        batches = make_batches(lengths, cap, size)
        assert sorted(i for b in batches for i in b) == list(range(500))  # each utterance once
        for batch in batches:
            ls = [lengths[i] for i in batch]
            assert padded_frames(ls) <= cap and sum(ls) <= cap and len(batch) <= size
        # sorted within the buffer: batches are tight (little padding)
        waste = sum(padded_frames([lengths[i] for i in b]) - sum(lengths[i] for i in b) for b in batches)
        assert waste < 0.05 * sum(lengths)
    with pytest.raises(ValueError):
        make_batches([10, 500], 400, 8)


def test_pipeline_batches_respect_the_cap_and_resume_exactly(train_data):
    from fairseq2.device import CPU
    from fairseq2.gang import create_fake_gangs

    from avsr.data.tokenizers import load_tokenizer
    from avsr.training.data import AVDataset, DatasetConfig

    config = DatasetConfig(
        path=train_data["path"],
        tokenizer=train_data["tokenizer"],
        train_splits=["train", "pretrain"],
        max_frames_per_batch=250,
        max_batch_size=3,
        num_prefetch=2,
    )
    tokenizer = load_tokenizer(train_data["tokenizer"])
    dataset = AVDataset(config, tokenizer, ("audio", "video"), seed=5)
    rows = {split: len(read_manifest(train_data["path"] / f"{split}.tsv")) for split in ("train", "pretrain", "val")}
    assert len(dataset.train) == rows["train"] + rows["pretrain"] and dataset.valid is not None
    assert len(dataset.valid) == rows["val"]
    gangs = create_fake_gangs(CPU)
    reader = dataset.create_train_reader(gangs)
    seen = []
    for batches in reader:
        for b in batches:
            assert b.padded_frames <= 250 and b.batch_size <= 3
            assert b.video.shape[2:] == (88, 88) and b.video.dtype == torch.float32
            assert torch.equal(b.audio_lens, b.video_lens * 640)
            assert b.targets.shape == (b.batch_size, int(b.target_lens.max()))
            for row, n in zip(b.targets, b.target_lens.tolist()):
                assert (row[:n] > 0).all() and (row[n:] == -1).all()
            seen += b.ids
    assert sorted(seen) == sorted(ex["id"] for ex in dataset.train.examples)

    # the state saved in a checkpoint gives the same next batches, augmentation included
    reader.reset()  # epoch 2
    first = next(reader)
    state = reader.state_dict()
    expected = [next(reader)[0] for _ in range(2)]
    resumed = dataset.create_train_reader(gangs)
    resumed.load_state_dict(state)
    for want in expected:
        got = next(resumed)[0]
        assert got.ids == want.ids
        assert torch.equal(got.video, want.video) and torch.equal(got.audio, want.audio)
    assert first[0].ids  # (epoch 2 read fine)


def test_curriculum_keeps_short_utterances_first(train_data):
    from fairseq2.device import CPU
    from fairseq2.gang import create_fake_gangs

    from avsr.data.tokenizers import load_tokenizer
    from avsr.training.data import AVDataset, CurriculumConfig, DatasetConfig

    config = DatasetConfig(
        path=train_data["path"],
        tokenizer=train_data["tokenizer"],
        train_splits=["train", "pretrain"],
        max_frames_per_batch=250,
        max_batch_size=1,
        sort_buffer_size=1,
        num_prefetch=1,
        curriculum=CurriculumConfig(num_steps=3, max_frames=70),
    )
    dataset = AVDataset(config, load_tokenizer(train_data["tokenizer"]), ("audio",), seed=1)
    reader = dataset.create_train_reader(create_fake_gangs(CPU))
    lengths = [int(b.audio_lens.max()) // 640 for b in [next(reader)[0] for _ in range(3)]]
    assert max(lengths) <= 70, lengths


def test_labelled_fraction_trains_on_a_seeded_share(train_data):
    from avsr.data.tokenizers import load_tokenizer
    from avsr.training.avsr_config import TrainConfigError, load_train_config
    from avsr.training.data import AVDataset, DatasetConfig

    tokenizer = load_tokenizer(train_data["tokenizer"])

    def ids(fraction: float, seed: int) -> list[str]:
        config = DatasetConfig(
            path=train_data["path"],
            tokenizer=train_data["tokenizer"],
            train_splits=["train", "pretrain"],
            max_frames_per_batch=1000,
            labelled_fraction=fraction,
        )
        return [ex["id"] for ex in AVDataset(config, tokenizer, ("audio",), seed=seed).train.examples]

    everything, half = ids(1.0, 1), ids(0.5, 1)
    assert len(half) == round(len(everything) / 2) and set(half) < set(everything)
    assert half == ids(0.5, 1) and half == [i for i in everything if i in half]  # repeatable, in manifest order
    assert ids(0.5, 2) != half
    with pytest.raises(TrainConfigError, match="labelled_fraction"):
        load_train_config(None, ["dataset.labelled_fraction=0"])


# ---------------------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("snr", [-5.0, 0.0, 5.0, 20.0])
def test_noise_is_mixed_at_the_requested_snr(snr):
    rng = np.random.default_rng(1)
    t = np.arange(32000) / 16000
    speech = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    pool = [
        rng.standard_normal(int(rng.integers(8000, 30000))).astype(np.float32) * rng.uniform(0.1, 2) for _ in range(12)
    ]
    bank = augment.make_babble_bank(lambda i: pool[i], len(pool), [len(p) for p in pool], 48000, 5, rng)
    assert abs(np.sqrt(np.mean(bank.astype(np.float64) ** 2)) - 1) < 1e-3
    for noise in (augment.cyclic_slice(bank, speech.size, rng), augment.white_noise(speech.size, rng)):
        mixed = augment.mix_at_snr(speech, noise, snr)
        assert augment.snr_db(speech, mixed - speech) == pytest.approx(snr, abs=0.01)


def test_loader_adds_noise_at_the_snr(train_data):
    from avsr.data.tokenizers import load_tokenizer
    from avsr.training.data import AVDataset, BatchLoader, DatasetConfig, NoiseConfig, PipelineState
    from avsr.training.media import read_wav

    config = DatasetConfig(
        path=train_data["path"],
        tokenizer=train_data["tokenizer"],
        train_splits=["train", "pretrain"],
        noise=NoiseConfig(prob=1.0, kinds=["babble"], snr_db=(3.0, 3.0), babble_seconds=5, babble_utterances=4),
    )
    dataset = AVDataset(config, load_tokenizer(train_data["tokenizer"]), ("audio",), seed=1)
    assert dataset.babble is not None and dataset.babble.size == 5 * 16000
    loader = BatchLoader(config, ("audio",), train=True, seed=1, rank=0, state=PipelineState(), babble=dataset.babble)
    example = dataset.train.examples[0]
    item = loader.load_item(example, rng_for(0))
    clean = read_wav(example["audio"])
    assert augment.snr_db(clean, item["audio"] - clean) == pytest.approx(3.0, abs=0.01)


def test_video_augmentation_shapes_and_values():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, size=(50, 96, 96), dtype=np.uint8)
    centre = crop(video, 88)
    assert centre.shape == (50, 88, 88) and np.array_equal(centre, video[:, 4:92, 4:92])
    crops = {crop(video, 88, np.random.default_rng(s))[0, 0, 0] for s in range(20)}
    assert len(crops) > 1  # random positions
    flipped = augment.hflip(centre)
    assert np.array_equal(flipped[:, :, 0], centre[:, :, -1])
    masked = augment.time_mask(centre, 10, 25, np.random.default_rng(3))
    zero = np.all(masked == 0, axis=(1, 2)) & ~np.all(centre == 0, axis=(1, 2))
    assert masked.shape == centre.shape and zero.sum() <= 2 * 9  # two masks of at most 9 frames
    assert np.array_equal(masked[~zero], centre[~zero])
    normal = normalize_pixels(np.full((2, 4, 4), 255, np.uint8), 0.421, 0.165)
    assert normal.dtype == np.float32 and np.allclose(normal, (1 - 0.421) / 0.165)


def test_read_mouth_video_matches_pyav_gray(train_data):
    import av

    from avsr.data.manifest import read_manifest
    from avsr.training.media import read_mouth_video

    row = read_manifest(train_data["path"] / "train.tsv")[0]
    path = train_data["path"] / row.video
    fast = read_mouth_video(path)
    with av.open(str(path)) as container:
        slow = np.stack([f.to_ndarray(format="gray") for f in container.decode(container.streams.video[0])])
    assert fast.shape == (row.frames, 96, 96) and np.array_equal(fast, slow)


def test_average_state_dicts():
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(1)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(2)}
    avg = average_state_dicts([a, b])
    assert torch.allclose(avg["w"], torch.tensor([2.0, 4.0])) and int(avg["n"]) == 2


# ---------------------------------------------------------------------------------------- config / CLI


def test_overrides_and_bad_keys(micro_config, tmp_path, capsys):
    from avsr.cli import train as train_cli
    from avsr.training.avsr_config import load_train_config

    config = load_train_config(
        micro_config,
        [
            "regime.num_steps=20",
            "regime.checkpoint_every_n_steps=10",
            "model.config.encoder.layers=2",
            "dataset.path=/elsewhere",
        ],
    )
    assert config.regime.num_steps == 20 and config.regime.checkpoint_every_n_steps == 10
    assert config.model.config["encoder"]["layers"] == 2 and str(config.dataset.path) == "/elsewhere"
    assert config.common.no_sweep_dir is True

    def error(*args: str) -> str:
        with pytest.raises(SystemExit) as exc:
            train_cli.main([str(micro_config), "--output-dir", str(tmp_path / "run"), *args])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("avsr-train: error:"), err
        return err

    assert "dataset.max_frame" in error("dataset.max_frame=3") and "did you mean dataset.max_frames" in error(
        "dataset.max_frame=3"
    )
    assert "regime.num_steps" in error("regime.num_steps=lots")
    assert "checkpoint_every_n_steps" in error("regime.publish_metrics_every_n_steps=3")
    assert "KEY=VALUE" in error("regime.num_steps")
    assert "no-such-dir" in error("dataset.path=/no-such-dir")
    assert "no-such-tok" in error("dataset.tokenizer=/no-such-tok")
    assert "model.config" in error("model.config.encoder.heads=3")
    assert "model.arch" in error("model.arch=huge")
    assert "num_warmup_steps" in error("regime.num_steps=2")
    assert not (tmp_path / "run").exists()  # nothing started
    assert train_cli.main([str(micro_config), "--dump-config", "regime.num_steps=7"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["regime"]["num_steps"] == 7


def test_lrs2_and_synth_recipes_load():
    from avsr.training.avsr_config import load_train_config

    for name in (
        "synth/conf.yaml",
        "lrs2/conf.yaml",
        "lrs2/audio_only.yaml",
        "lrs2/video_only.yaml",
        "lrs2/audio_visual.yaml",
    ):
        config = load_train_config(REPO / "recipes" / name)
        assert config.common.no_sweep_dir and config.regime.num_steps
    ao = load_train_config(REPO / "recipes/lrs2/audio_only.yaml")
    assert ao.model.config["visual"] is None and ao.common.seed == 19260817
    av = load_train_config(REPO / "recipes/lrs2/audio_visual.yaml")
    assert len(av.model.init_from) == 2 and av.dataset.video.crop_size == 112


# ---------------------------------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def killed_and_resumed(micro_config, tmp_path_factory) -> dict:
    """avsr-train killed with SIGKILL after its first checkpoint, then rerun with the same command."""
    out = tmp_path_factory.mktemp("runs") / "micro"
    cmd = _train_cmd(micro_config, out, f"regime.num_steps={RUN_STEPS}")
    env = _env(AVSR_TEST_API_TOKEN="super-secret-value")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 150
    try:
        while not _complete_checkpoints(out):
            if proc.poll() is not None:
                raise AssertionError(
                    f"avsr-train exited ({proc.returncode}) before its first checkpoint: {proc.stderr.read()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError("no checkpoint within 150 s")
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        first_stderr = proc.stderr.read() if proc.stderr else ""
    killed_at = _complete_checkpoints(out)[-1]
    rows_before = len(_jsonl(out / "metrics" / "train.jsonl"))
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return {
        "out": out,
        "killed_at": killed_at,
        "rows_before": rows_before,
        "stderr": first_stderr + rerun.stderr,
        "cmd": cmd,
    }


def test_sigkilled_run_resumes_at_its_last_checkpoint(killed_and_resumed):
    out, killed_at = killed_and_resumed["out"], killed_and_resumed["killed_at"]
    assert killed_at < RUN_STEPS  # killed before the end
    log_text = (out / "logs" / "rank_0.log").read_text()
    assert f"Resuming from step {killed_at}." in log_text
    rows = _jsonl(out / "metrics" / "train.jsonl")
    second = rows[killed_and_resumed["rows_before"] :]
    assert [r["Step"] for r in second] == list(range(killed_at + 1, RUN_STEPS + 1))
    # the learning-rate schedule continues where it stopped: compare with fairseq2's scheduler
    from fairseq2.optim.lr_schedulers import CosineAnnealingLR

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=0.002)
    sched = CosineAnnealingLR(opt, RUN_STEPS - 2, 2, start_lr=[0.0], final_lr=[0.0002])
    expected = {}
    for step in range(1, RUN_STEPS + 1):
        expected[step] = sched.get_last_lr()[0]
        opt.step()
        sched.step()
    for r in second:
        assert r["Learning Rate"] == pytest.approx(expected[r["Step"]], rel=1e-6)
    assert (
        _complete_checkpoints(out)[-1] == RUN_STEPS and len(_complete_checkpoints(out)) <= 2
    )  # keep_last_n_checkpoints


def test_run_writes_metrics_and_a_loadable_model(killed_and_resumed):
    from avsr.data.tokenizers import load_tokenizer
    from avsr.models.io import load_model

    out = killed_and_resumed["out"]
    train_rows = _jsonl(out / "metrics" / "train.jsonl")
    assert {"Loss", "CTC Loss", "Attention Loss", "Accuracy", "Learning Rate"} <= set(train_rows[-1])
    valid_rows = _jsonl(out / "metrics" / "valid.jsonl")
    assert valid_rows and "Word Error Rate (WER)" in valid_rows[-1] and valid_rows[-1]["Step"] == RUN_STEPS
    model = load_model(out / "model")
    tokenizer = load_tokenizer(out / "model" / "tokenizer")
    assert model.metadata["tokenizer_fingerprint"] == tokenizer.fingerprint and model.metadata["step"] == RUN_STEPS
    lengths = model.metadata["train_utterance_seconds"]  # avsr-decode cuts long inputs to about p95
    assert 0 < lengths["median"] <= lengths["p95"] <= lengths["max"] <= 12
    with torch.inference_mode():
        enc, lens = model.encode(
            torch.randn(1, 40 * 640), torch.tensor([40 * 640]), torch.randn(1, 40, 88, 88), torch.tensor([40])
        )
        assert model.ctc_log_probs(enc).shape == (1, 40, tokenizer.vocab_size)
    assert (out / "model" / "train_config.yaml").is_file()


def test_secrets_are_not_logged(killed_and_resumed):
    out = killed_and_resumed["out"]
    assert "AVSR_TEST_API_TOKEN=***" in (out / "logs" / "rank_0.log").read_text()
    for text in ((out / "logs" / "rank_0.log").read_text(), killed_and_resumed["stderr"]):
        assert "super-secret-value" not in text


def test_export_only_averages_checkpoints(killed_and_resumed, tmp_path):
    from avsr.models.io import load_model
    from avsr.training.recipe import export_run

    out = killed_and_resumed["out"]
    steps = _complete_checkpoints(out)
    target = export_run(out, last_n=2, out_dir=tmp_path / "avg")
    model = load_model(target)
    assert model.metadata["averaged_steps"] == steps[-2:]
    states = [
        torch.load(out / "checkpoints" / f"step_{s}" / "model/pp_00/tp_00/sdp_00.pt", weights_only=True)
        for s in steps[-2:]
    ]
    key = next(k for k, v in states[0].items() if v.is_floating_point() and v.numel() > 10)
    assert torch.allclose(model.state_dict()[key], (states[0][key] + states[1][key]) / 2, atol=1e-6)


def test_a_different_model_config_does_not_resume_silently(killed_and_resumed, capsys):
    from avsr.cli import train as train_cli

    cmd = killed_and_resumed["cmd"]
    with pytest.raises(SystemExit) as exc:
        train_cli.main([*cmd[3:], "model.config.decoder.layers=2"])
    assert exc.value.code == 2 and "different model config" in capsys.readouterr().err


def test_a_run_recorded_before_a_new_model_option_resumes(killed_and_resumed, tmp_path):
    """A run file written before a model option existed (its key absent, the default meant) still
    resumes; a recorded value that differs from the config is still refused."""
    from avsr.training.config_loading import TrainConfigError
    from avsr.training.recipe import prepare_run
    from avsr.training.runs import RUN_FILE
    from avsr.training.tasks import load_task_config

    out = tmp_path / "older"
    shutil.copytree(killed_and_resumed["out"], out)
    run = yaml.safe_load((out / RUN_FILE).read_text())
    del run["model_config"]["visual"]["downsample"]  # as if recorded before visual.downsample existed (default 1)
    (out / RUN_FILE).write_text(yaml.safe_dump(run))
    cmd = killed_and_resumed["cmd"]
    config = load_task_config(cmd[3], [a for a in cmd[4:] if "=" in a])
    prepare_run(config, out, load_data=False)
    run["model_config"]["decoder"]["layers"] += 1
    (out / RUN_FILE).write_text(yaml.safe_dump(run))
    with pytest.raises(TrainConfigError, match="different model config"):
        prepare_run(config, out, load_data=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_on_cpu(micro_config, tmp_path):
    """torchrun, 2 processes, gloo: each rank reads its shard; the model is the tiny AVSR model
    (GroupNorm, so fairseq2's SyncBatchNorm conversion does not break CPU DDP)."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "avsr.cli.train",
        str(micro_config),
        "--output-dir",
        str(out),
        "--no-rich",
        "regime.num_steps=2",
        "regime.validate_every_n_steps=2",
        "lr_scheduler.config.num_warmup_steps=1",
        # the same launch also covers gradient accumulation and bf16 autocast
        "trainer.grad_accumulation.num_batches=2",
        "trainer.mixed_precision.mode=auto",
        "trainer.mixed_precision.dtype=torch.bfloat16",
    ]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    log_text = (out / "logs" / "rank_0.log").read_text()
    assert "Wrapping model with DDP" in log_text and (out / "logs" / "rank_1.log").is_file()
    rows = _jsonl(out / "metrics" / "train.jsonl")
    assert [r["Step"] for r in rows] == [1, 2]
    assert (out / "model" / "model.safetensors").is_file()


def test_stage_initialisation_and_frozen_parts(killed_and_resumed):
    from avsr.models.io import load_config, load_model
    from avsr.training.avsr_config import AVSRModelSection, InitFromModel
    from avsr.training.recipe import _create_model, initialise_weights, restore_frozen

    source = load_model(killed_and_resumed["out"] / "model")
    config = load_config(killed_and_resumed["out"] / "model")
    config.freeze = ("audio_frontend", "audio_encoder")
    model = _create_model(config)
    model.requires_grad_(True)  # what fairseq2 does after building a model
    restore_frozen(model)
    assert not any(p.requires_grad for p in model.audio_frontend.parameters())
    assert all(p.requires_grad for p in model.visual_frontend.parameters())
    section = AVSRModelSection(
        init_from=[InitFromModel(path=killed_and_resumed["out"] / "model", modules=["audio_frontend", "audio_encoder"])]
    )
    lines = initialise_weights(model, section)
    assert len(lines) == 2
    for name, value in source.state_dict().items():
        same = torch.equal(model.state_dict()[name], value)
        assert (
            same == name.startswith(("audio_frontend.", "audio_encoder."))
            or not value.is_floating_point()
            or value.numel() < 2
        ), name


def test_modality_schedule_trains_one_branch_at_a_time(micro_config, tmp_path):
    from avsr.training.export import load_torch_state
    from avsr.training.runs import checkpoint_model_files

    out = tmp_path / "scheduled"
    schedule = "modality_schedule=[{until_step: 2, inputs: audio}, {until_step: 4, inputs: video}]"
    cmd = _train_cmd(micro_config, out, "regime.num_steps=4", "regime.checkpoint_every_n_steps=2", schedule)
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    log_text = (out / "logs" / "rank_0.log").read_text()
    assert "Step 1: training on audio input" in log_text and "Step 3: training on video input" in log_text
    files = checkpoint_model_files(out)
    at2, at4 = load_torch_state(files[2]), load_torch_state(files[4])

    def changed(prefix: str) -> bool:
        return any(not torch.equal(at2[k], at4[k]) for k in at2 if k.startswith(prefix) and at2[k].is_floating_point())

    # Steps 3-4 saw only video: the audio branch kept its weights, the visual one moved.
    assert not changed("audio_frontend.") and not changed("audio_encoder.")
    assert changed("visual_frontend.") and changed("video_encoder.") and changed("encoder.")


def test_modality_schedule_needs_the_branch(micro_config, tmp_path, capsys):
    from avsr.cli import train as train_cli

    with pytest.raises(SystemExit):
        train_cli.main(
            [
                str(micro_config),
                "--output-dir",
                str(tmp_path / "x"),
                "model.config.visual=null",
                "modality_schedule=[{until_step: 2, inputs: video}]",
            ]
        )
    assert "modality_schedule: 'video' needs a video branch" in capsys.readouterr().err


def test_a_schedule_stage_sets_its_own_modality_dropout(micro_config, tmp_path, capsys):
    from avsr.cli import train as train_cli
    from avsr.models.avsr_model import AVSRModel
    from avsr.models.config import AVSRConfig, ModalityDropoutConfig
    from avsr.training.avsr_config import ModalityStage
    from avsr.training.avsr_units import AVSRTrainUnit

    d = AVSRConfig.tiny(12).to_dict()
    for key in ("audio_encoder", "video_encoder", "encoder", "decoder"):
        d[key]["dropout"] = 0.0
    model = AVSRModel(AVSRConfig.from_dict(d)).train()
    video_heavy = ModalityDropoutConfig(p_audio_only=0.0, p_video_only=1.0)
    unit = AVSRTrainUnit(
        model, model, [ModalityStage(until_step=2), ModalityStage(until_step=4, modality_dropout=video_heavy)]
    )
    g = torch.Generator().manual_seed(0)
    audio, video, lens = (
        torch.randn(2, 6400, generator=g) * 0.1,
        torch.randn(2, 10, 32, 32, generator=g),
        torch.tensor([10, 8]),
    )
    unit.set_step_nr(3)
    assert model.modality_dropout == video_heavy
    both, _ = model.encode(audio, lens * 640, video, lens)
    video_only, _ = model.encode(None, None, video, lens)
    torch.testing.assert_close(both, video_only)  # every utterance's audio was dropped
    unit.set_step_nr(1)
    assert model.modality_dropout == model.config.modality_dropout  # the model's own again

    with pytest.raises(SystemExit):
        train_cli.main(
            [
                str(micro_config),
                "--output-dir",
                str(tmp_path / "x"),
                "modality_schedule=[{until_step: 2, inputs: video, modality_dropout: {p_video_only: 0.5}}]",
            ]
        )
    assert "modality_dropout needs inputs: av" in capsys.readouterr().err


def test_another_audio_kind_replaces_the_section_it_overrides(tmp_path):
    """The audio front-end is a tagged union: a file or an override that names another kind does
    not inherit the options of the kind below it (fbank's dim is no wav2vec 2.0 option)."""
    from avsr.training.config_loading import read_user_tree

    (tmp_path / "base.yaml").write_text(
        yaml.safe_dump({"model": {"config": {"audio": {"kind": "fbank", "dim": 128}, "visual": {"width": 0.5}}}})
    )
    (tmp_path / "child.yaml").write_text(
        yaml.safe_dump({"base": "base.yaml", "model": {"config": {"audio": {"kind": "wav2vec2", "arch": "tiny"}}}})
    )
    (tmp_path / "same.yaml").write_text(
        yaml.safe_dump(
            {"base": "base.yaml", "model": {"config": {"audio": {"mel_bins": 40}, "visual": {"downsample": 2}}}}
        )
    )
    assert read_user_tree(tmp_path / "child.yaml", [])["model"]["config"]["audio"] == {
        "kind": "wav2vec2",
        "arch": "tiny",
    }
    same = read_user_tree(tmp_path / "same.yaml", [])["model"]["config"]
    assert same["audio"] == {"kind": "fbank", "dim": 128, "mel_bins": 40} and same["visual"] == {
        "width": 0.5,
        "downsample": 2,
    }
    overridden = read_user_tree(
        tmp_path / "base.yaml", ["model.config.audio.kind=conv", "model.config.audio.activation=relu"]
    )
    assert overridden["model"]["config"]["audio"] == {"kind": "conv", "activation": "relu"}
