"""Training throughput of the AVSR model: one optimizer step (forward, backward, AdamW) on random
batches of realistic shape, no data loading.

Measured in one invocation so that ratios mean something on a shared machine:

* CPU: the small recipe's model (recipes/synth/conf.yaml) and the LRS2-size model (seed paper: wav2vec 2.0 Large +
  ResNet-50, 6+6+6 encoder layers, 6 decoder layers), each at batch 1 (the baseline) and batch N;
* CUDA (when present): the LRS2-size model in fp32 (baseline) and bf16 autocast, with the model
  FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode`` and the model FLOPs
  utilisation MFU = achieved FLOP/s / peak bf16 FLOP/s (``--peak-tflops``, 989 for H100/H200
  dense bf16);
* auto_avsr's VSR architecture as avsr trains it (a configuration of ``AVSRModel``; its test size
  on the CPU, the published size on a GPU, where bf16 and MFU are reported too) and, with
  ``--auto-avsr-src CHECKOUT`` (mpc001/auto_avsr v1.0.0), auto_avsr's own ``E2E`` with the same
  weights on the same batch (the baseline of that ratio).

Throughput is samples (utterances) per second and frames (25 fps video frames = 640 audio
samples) per second; the step time is the median over the timed steps. Prints JSON.

    python benchmarks/train.py            # 8 clips x 100 frames (4 s), 5 timed steps
    python benchmarks/train.py --quick    # fewer steps; the LRS2-size model on 2 clips x 25 frames on CPU
    python benchmarks/train.py --auto-avsr-src ~/src/auto_avsr     # also auto_avsr's own code
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from avsr.models.avsr_model import AVSRModel
from avsr.models.config import AVSRConfig, KernelConfig
from avsr.training.performance import Performance, compile_model

VOCAB = 41  # characters: blank, <unk>, 38 units, <sos/eos>


def _throughput(batch: int, frames: int, crop: int, steps: int, seconds: float) -> dict:
    """The fields every training-step measurement reports (``seconds``: mean seconds per step)."""
    return {
        "batch": batch,
        "frames_per_clip": frames,
        "crop": crop,
        "timed_steps": steps,
        "step_seconds": round(seconds, 4),
        "samples_per_second": round(batch / seconds, 3),
        "frames_per_second": round(batch * frames / seconds, 1),
    }


def make_batch(batch: int, frames: int, crop: int, device: torch.device, vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(batch * 1000 + frames)
    target_len = max(1, frames // 4)  # about 6 characters per second
    return {
        "audio": (0.1 * torch.randn(batch, frames * 640, generator=g)).to(device),
        "audio_lens": torch.full((batch,), frames * 640, dtype=torch.int64, device=device),
        "video": torch.randn(batch, frames, crop, crop, generator=g).to(device),
        "video_lens": torch.full((batch,), frames, dtype=torch.int64, device=device),
        "targets": torch.randint(1, vocab - 1, (batch, target_len), generator=g).to(device),
        "target_lens": torch.full((batch,), target_len, dtype=torch.int64, device=device),
    }


def small_recipe_config() -> AVSRConfig:
    """The model of recipes/synth/conf.yaml (the tiny size with the recipe's overrides)."""

    from avsr.data.tokenizers.char import seed_char_tokenizer
    from avsr.training.avsr_config import load_train_config, resolve_model_config

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "synth" / "conf.yaml"
    return resolve_model_config(load_train_config(recipe).model, seed_char_tokenizer())


def auto_avsr_sizes(kind: str):  # -> AutoAVSRConfig
    from avsr.models.pretrained.auto_avsr import AutoAVSRConfig

    return {"auto_avsr_tiny": AutoAVSRConfig.tiny, "auto_avsr_base": AutoAVSRConfig.base}[kind]("v", VOCAB)


def build(kind: str, device: torch.device, kernels: KernelConfig | None = None) -> tuple[AVSRModel, int]:
    if kind == "small":
        config, crop = small_recipe_config(), 88
    elif kind == "lrs2":
        config, crop = AVSRConfig.seed_paper(VOCAB), 112  # the seed feeds 112x112 crops
    elif kind.startswith("auto_avsr_"):
        config, crop = auto_avsr_sizes(kind).avsr_config(), 88
    else:
        raise ValueError(kind)
    torch.manual_seed(0)
    if kernels is not None:
        config = dataclasses.replace(config, kernels=kernels)
    return AVSRModel(config).to(device).train(), crop


def step_fn(
    model: AVSRModel, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], dtype: torch.dtype | None
):
    def step() -> None:
        device_type = batch["audio"].device.type
        ctx = (
            torch.autocast(device_type=device_type, dtype=dtype)
            if dtype is not None
            else torch.autocast(device_type, enabled=False)
        )
        with ctx:
            out = model(
                batch["audio"],
                batch["audio_lens"],
                batch["video"],
                batch["video_lens"],
                batch["targets"],
                batch["target_lens"],
            )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_step_seconds(step: Any, steps: int, device: torch.device) -> float:
    """One warm-up call of ``step`` (allocations, kernel selection), then the median of ``steps`` timed calls."""
    step()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    kind: str,
    batch: int,
    frames: int,
    steps: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
    count_flops: bool = False,
    peak_tflops: float | None = None,
    speed: Performance | None = None,
) -> dict[str, Any]:
    """One model's training steps; ``speed``: the performance switches (None: all off, the plain
    path); its autocast_bf16 overrides ``dtype``."""
    speed = speed or Performance(False, False, False, False, False)
    dtype = torch.bfloat16 if speed.autocast_bf16 else dtype
    model, crop = build(kind, device, KernelConfig(sdpa=speed.sdpa, channels_last=speed.channels_last))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=speed.fused_optimizer or None)
    if speed.compile:
        compile_model(model)
    data = make_batch(batch, frames, crop, device, vocab=model.vocab_size)
    step = step_fn(model, optimizer, data, dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = median_step_seconds(step, steps, device)
    result: dict[str, Any] = {
        "model": kind,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "device": device.type,
        "dtype": "fp32" if dtype is None else str(dtype).replace("torch.", ""),
        "switches": [f.name for f in dataclasses.fields(speed) if getattr(speed, f.name)],
        **_throughput(batch, frames, crop, steps, seconds),
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if count_flops:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            step()
        sync(device)
        flops = counter.get_total_flops()
        result["model_tflop_per_step"] = round(flops / 1e12, 3)
        result["achieved_tflops"] = round(flops / seconds / 1e12, 2)
        if peak_tflops:
            result["mfu"] = round(flops / seconds / (peak_tflops * 1e12), 4)
    del model, optimizer, data
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def measure_auto_avsr_own(
    src: str, kind: str, batch: int, frames: int, steps: int, device: torch.device
) -> dict[str, Any]:
    """auto_avsr's own E2E (from a checkout) with the weights ``build(kind)`` draws, one AdamW step
    per timing on the same batch (its lightning module's call: video (B, T, 1, H, W), lengths,
    targets padded with -1)."""
    import sys

    from avsr.models.pretrained.auto_avsr_checkpoint import KeyMap, checkpoint_state

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "reference"))
    import anchors

    ours, crop = build(kind, torch.device("cpu"))
    sizes = auto_avsr_sizes(kind)
    state = checkpoint_state(ours.state_dict(), KeyMap.for_layout("v1.0.0", sizes.modalities))
    model = anchors.build_auto_avsr(src, sizes, state).to(device).train()
    del ours
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = make_batch(batch, frames, crop, device, vocab=sizes.vocab_size)

    def step() -> None:
        loss = model(data["video"][:, :, None], data["video_lens"], data["targets"])[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = median_step_seconds(step, steps, device)
    return {
        "model": f"{kind} (auto_avsr's own code, {anchors.auto_avsr_source(src)})",
        "device": device.type,
        "dtype": "fp32",
        **_throughput(batch, frames, crop, steps, seconds),
    }


def steps_section(
    args: argparse.Namespace, steps: int
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
    """The training-step measurements (the benchmark's original section): runs, ratios, the GPU."""
    cpu = torch.device("cpu")
    runs: list[dict[str, Any]] = []
    # CPU: the small recipe's model, batch 1 (baseline) and batch N
    small_1 = measure("small", 1, args.frames, steps, cpu)
    small_n = measure("small", args.batch, args.frames, steps, cpu)
    runs += [small_1, small_n]
    comparisons: dict[str, Any] = {
        "cpu_small_batch_n_vs_1_samples_per_second": round(
            small_n["samples_per_second"] / small_1["samples_per_second"], 2
        ),
    }
    if not args.no_cpu_lrs2:
        # The LRS2-size model is slow on a few cores: --quick measures it on 2 clips x 25 frames.
        b, f = (2, 25) if args.quick else (args.batch, args.frames)
        lrs2_1 = measure("lrs2", 1, f, max(1, steps // 2), cpu)
        lrs2_n = measure("lrs2", b, f, max(1, steps // 2), cpu)
        runs += [lrs2_1, lrs2_n]
        comparisons["cpu_lrs2_batch_n_vs_1_samples_per_second"] = round(
            lrs2_n["samples_per_second"] / lrs2_1["samples_per_second"], 2
        )
        comparisons["cpu_small_vs_lrs2_frames_per_second"] = round(
            small_n["frames_per_second"] / lrs2_n["frames_per_second"], 1
        )
    # auto_avsr's VSR architecture in avsr (its test size on the CPU), against auto_avsr's own code
    auto_b, auto_f = (2, 25) if args.quick else (args.batch, args.frames)
    ours_auto = measure("auto_avsr_tiny", auto_b, auto_f, steps, cpu)
    runs.append(ours_auto)
    if args.auto_avsr_src:
        theirs_auto = measure_auto_avsr_own(args.auto_avsr_src, "auto_avsr_tiny", auto_b, auto_f, steps, cpu)
        runs.append(theirs_auto)
        comparisons["cpu_auto_avsr_tiny_avsr_vs_own_code_samples_per_second"] = round(
            ours_auto["samples_per_second"] / theirs_auto["samples_per_second"], 2
        )
    else:
        comparisons["cpu_auto_avsr_tiny_avsr_vs_own_code_samples_per_second"] = (
            "not measured: no --auto-avsr-src checkout given"
        )
    gpu: dict[str, Any] | None = None
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = False  # a true fp32 baseline
        torch.backends.cudnn.allow_tf32 = False
        fp32 = measure("lrs2", args.batch, args.frames, steps, dev, None, count_flops=True)
        bf16 = measure(
            "lrs2", args.batch, args.frames, steps, dev, torch.bfloat16, count_flops=True, peak_tflops=args.peak_tflops
        )
        runs += [fp32, bf16]
        gpu = {"name": torch.cuda.get_device_name(dev), "peak_bf16_tflops": args.peak_tflops}
        comparisons["cuda_lrs2_bf16_vs_fp32_samples_per_second"] = round(
            bf16["samples_per_second"] / fp32["samples_per_second"], 2
        )
        comparisons["cuda_lrs2_bf16_mfu"] = bf16.get("mfu")
        auto_fp32 = measure("auto_avsr_base", args.batch, args.frames, steps, dev, None)
        auto_bf16 = measure(
            "auto_avsr_base",
            args.batch,
            args.frames,
            steps,
            dev,
            torch.bfloat16,
            count_flops=True,
            peak_tflops=args.peak_tflops,
        )
        runs += [auto_fp32, auto_bf16]
        comparisons["cuda_auto_avsr_base_bf16_mfu"] = auto_bf16.get("mfu")
        if args.auto_avsr_src:
            theirs = measure_auto_avsr_own(args.auto_avsr_src, "auto_avsr_base", args.batch, args.frames, steps, dev)
            runs.append(theirs)
            comparisons["cuda_auto_avsr_base_avsr_vs_own_code_samples_per_second_fp32"] = round(
                auto_fp32["samples_per_second"] / theirs["samples_per_second"], 2
            )
    if gpu is None:
        comparisons["gpu"] = "not measured: no CUDA device here (bf16 samples/s and MFU need one)"
    return runs, comparisons, gpu


# ---------------------------------------------------------------------- the data pipeline's delivery rate
#: auto_avsr's measured training rate on an H200 (16 x 100-frame clips per 0.164 s step), and the
#: rate one GPU is to be fed at: 3x that, from ``FEED_CORES`` cores.
AUTO_AVSR_SAMPLES_PER_SECOND = 98.0
FEED_SAMPLES_PER_SECOND = 3 * AUTO_AVSR_SAMPLES_PER_SECOND
FEED_FRAMES_PER_CLIP = 100
FEED_CORES = 8


def synthetic_corpus(work: Path, utterances: int) -> Path:
    """A prepared synthetic corpus under ``work`` (made with avsr-synth + avsr-prepare, once)."""
    from avsr.cli import prepare as prepare_cli
    from avsr.cli import synth as synth_cli

    prepared = work / "prepared"
    if not (prepared / "train.tsv").is_file():
        corpus = work / "corpus"
        args = ["--layout", "lrs2", "--utterances", str(utterances), "--speakers", "3", "--seed", "1"]
        with contextlib.redirect_stdout(sys.stderr):  # their summaries: stdout is this report's JSON
            if synth_cli.main([str(corpus), *args, "--workers", "2", "--quiet"]) != 0:
                raise SystemExit("avsr-synth failed")
            if prepare_cli.main(["lrs2", str(corpus), str(prepared), "--workers", "2", "--quiet"]) != 0:
                raise SystemExit("avsr-prepare failed")
    return prepared


def medium_preset_copy(prepared: Path, work: Path) -> Path:
    """``prepared`` with its crop videos written again at x264's "medium" preset with CABAC (what
    avsr-prepare wrote before its lossless options were chosen for decoding speed): the same
    pixels, the baseline of the mp4 delivery rate."""
    import shutil

    from avsr.media import write_mp4
    from avsr.training.media import read_mouth_video

    copy = work / "prepared_medium"
    if not (copy / "train.tsv").is_file():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(prepared, copy, ignore=shutil.ignore_patterns("*.mp4"))
        for video in prepared.rglob("*.mp4"):
            write_mp4(copy / video.relative_to(prepared), read_mouth_video(video), crf=0, x264={"preset": "medium"})
    return copy


def delivery(prepared: Path, workers: int, cache_dir: Path | None, epochs: int) -> dict[str, Any]:
    """Frames/s the training reader delivers (decode + augment + batch, the defaults of
    ``dataset``; no model) with ``workers`` loader threads, over ``epochs`` passes after one
    warm-up pass (which fills the decoded-crop cache when ``cache_dir`` is given)."""
    from fairseq2.gang import create_fake_gangs

    from avsr.data.tokenizers.char import seed_char_tokenizer
    from avsr.training.data import AVDataset, DatasetConfig, iter_batches

    config = DatasetConfig(path=prepared, num_parallel_calls=workers, cache_video=cache_dir is not None)
    dataset = AVDataset(config, seed_char_tokenizer(), ("audio", "video"), cache_dir=cache_dir)
    reader = dataset.create_train_reader(create_fake_gangs(torch.device("cpu")))
    frames = clips = 0
    for epoch in range(epochs + 1):
        if epoch == 1:
            start, cpu_start = time.perf_counter(), time.process_time()
        for batch in iter_batches(reader):
            if epoch:
                frames, clips = frames + batch.num_frames, clips + batch.batch_size
        reader.reset()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "source": "decoded-crop cache (.npy)" if cache_dir is not None else "mp4 (H.264 decode)",
        "workers": workers,
        "clips": clips,
        "frames": frames,
        "seconds": round(seconds, 3),
        "frames_per_second": round(frames / seconds, 1),
        "frames_per_second_per_core": round(frames / seconds / min(workers, os.cpu_count() or 1), 1),
        # the decoder's own threads may use more cores than the loader's workers: per CPU second
        "cores_busy": round(cpu / seconds, 2),
        "frames_per_cpu_second": round(frames / cpu, 1),
    }


def pipeline_section(args: argparse.Namespace, steps: int) -> dict[str, Any]:
    """The data pipeline's delivery rate per core next to the model's consumption: how many cores
    feed one GPU at ``FEED_SAMPLES_PER_SECOND`` of 100-frame clips."""
    import tempfile

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="avsr_bench_train_"))
    prepared = synthetic_corpus(work, 12 if args.quick else 24)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the loader's collate: one core per worker
    epochs = 2 if args.quick else 8
    try:
        baseline = medium_preset_copy(prepared, work)
        runs = [delivery(prepared, 1, None, epochs)]
        before = delivery(baseline, 1, None, epochs)  # next to the run it is compared with
        before["source"] = "mp4 written at x264 medium (before)"
        runs += [delivery(prepared, 2, None, epochs)]
        runs += [delivery(prepared, w, work / "cache" / f"w{w}", epochs) for w in (1, 2)]
    finally:
        torch.set_num_threads(threads)
    target = FEED_SAMPLES_PER_SECOND * FEED_FRAMES_PER_CLIP
    per_core = {(r["source"], r["workers"]): r["frames_per_cpu_second"] for r in runs}
    result: dict[str, Any] = {
        "what": "training reader (decode + augment + batch, dataset defaults), no model; synthetic 96 px crops, 16 kHz audio",
        "corpus": str(prepared),
        "runs": runs,
        "gpu_feed_target": {
            "samples_per_second": FEED_SAMPLES_PER_SECOND,
            "frames_per_second": target,
            "why": f"3x auto_avsr's measured {AUTO_AVSR_SAMPLES_PER_SECOND:g} samples/s (16 x 100-frame clips per 0.164 s step, H200)",
        },
    }
    for (source, workers), rate in per_core.items():
        key = f"cores_to_feed_target_{'cache' if 'cache' in source else 'mp4'}_{workers}_worker{'s' if workers > 1 else ''}"
        result[key] = round(target / rate, 1)
    result["mp4_before"] = before
    result["mp4_speedup_vs_before"] = round(runs[0]["frames_per_second"] / before["frames_per_second"], 2)
    result["mp4_speedup_vs_before_per_cpu_second"] = round(
        runs[0]["frames_per_cpu_second"] / before["frames_per_cpu_second"], 2
    )
    result["cores_to_feed_target_mp4_before_1_worker"] = round(target / before["frames_per_cpu_second"], 1)
    result["target_fed_by_8_cores"] = {
        "mp4": per_core[(runs[0]["source"], 1)] * FEED_CORES >= target,
        "cache": per_core[(runs[2]["source"], 1)] * FEED_CORES >= target,
    }
    # the model's consumption, measured in the same run
    b, f = (2, 25) if args.quick else (args.batch, args.frames)
    consumer = measure("small", b, f, steps, torch.device("cpu"))
    result["model_consumption_cpu_small"] = consumer
    result["cores_to_feed_cpu_small_model_mp4"] = round(
        consumer["frames_per_second"] / per_core[(runs[0]["source"], 1)], 2
    )
    if torch.cuda.is_available():
        gpu = measure("auto_avsr_base", args.batch, args.frames, steps, torch.device("cuda"), speed=all_switches(True))
        result["model_consumption_cuda_auto_avsr_base"] = gpu
        for name, run in (("mp4", runs[0]), ("cache", runs[2])):
            result[f"cores_to_feed_cuda_auto_avsr_base_{name}"] = round(
                gpu["frames_per_second"] / run["frames_per_cpu_second"], 1
            )
    else:
        result["gpu"] = "not present: the GPU model's consumption waits for one (the target above is auto_avsr's)"
    return result


# ---------------------------------------------------------------------- the speed switches
def all_switches(on: bool) -> Performance:
    return Performance(*(on,) * len(dataclasses.fields(Performance)))


def switches_section(args: argparse.Namespace, steps: int) -> dict[str, Any]:
    """Each speed switch alone against the plain path (same model, batch and run), then all on;
    auto_avsr's architecture (ESPnet conformer + ResNet: every switch acts on it), its test
    size on the CPU and its published size on a GPU, with samples/s and MFU there."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    kind = "auto_avsr_base" if cuda else "auto_avsr_tiny"
    b, f = (args.batch, args.frames) if cuda or not args.quick else (2, 25)
    measure(kind, b, f, 1, device)  # warm-up (allocator, kernel choice): the first run of a process is slow
    plain = measure(kind, b, f, steps, device, count_flops=cuda, peak_tflops=args.peak_tflops if cuda else None)
    flops = plain.get("model_tflop_per_step")
    runs, ratios = [plain], {}
    variants = [
        (name.name, dataclasses.replace(all_switches(False), **{name.name: True}))
        for name in dataclasses.fields(Performance)
    ]
    variants.append(("all", all_switches(True)))
    for name, speed in variants:
        if speed.compile and not cuda and not args.compile_on_cpu:
            ratios[f"{name}_step_speedup"] = (
                "not measured on the CPU (inductor compiles for minutes on 2 cores; --compile-on-cpu)"
            )
            if name == "all":
                speed = dataclasses.replace(speed, compile=False)
                name = "all_but_compile"
            else:
                continue
        run = measure(kind, b, f, steps, device, speed=speed)
        if flops:
            run["mfu"] = round(flops * 1e12 / run["step_seconds"] / (args.peak_tflops * 1e12), 4)
        runs.append(run)
        ratios[f"{name}_step_speedup"] = round(plain["step_seconds"] / run["step_seconds"], 3)
    again = measure(kind, b, f, steps, device)  # the baseline once more: the machine's drift over the section
    runs.append(again)
    ratios["plain_last_vs_first_step_seconds"] = round(again["step_seconds"] / plain["step_seconds"], 3)
    result: dict[str, Any] = {
        "what": f"one training step of {kind}, {b} x {f} frames: each switch alone vs the plain path (speedup = plain step time / switched)",
        "runs": runs,
        "ratios": ratios,
    }
    if cuda:
        result["samples_per_second"] = {" + ".join(r["switches"]) or "plain": r["samples_per_second"] for r in runs}
        result["mfu"] = {" + ".join(r["switches"]) or "plain": r.get("mfu") for r in runs}
    else:
        result["gpu"] = "not present: samples/s and MFU of the switches wait for a GPU"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        default="steps,pipeline,switches",
        help="sections, comma-separated: steps (model step rates), pipeline (data delivery), switches (speed switches)",
    )
    parser.add_argument("--batch", type=int, default=8, help="clips per batch (default 8)")
    parser.add_argument("--frames", type=int, default=100, help="frames per clip (default 100 = 4 s)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5, --quick 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="peak dense bf16 TFLOP/s of the GPU (H100/H200: 989)"
    )
    parser.add_argument("--no-cpu-lrs2", action="store_true", help="skip the LRS2-size model on the CPU")
    parser.add_argument(
        "--auto-avsr-src", default=None, help="a checkout of mpc001/auto_avsr (v1.0.0): also time its own code"
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="pipeline: where the synthetic corpus is made once and reused (default: a temporary folder)",
    )
    parser.add_argument(
        "--compile-on-cpu", action="store_true", help="switches: also time torch.compile on the CPU (minutes)"
    )
    args = parser.parse_args()
    sections = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = sections - {"steps", "pipeline", "switches"}
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))} (steps, pipeline, switches)")
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (2 if args.quick else 5)
    runs: list[dict[str, Any]] = []
    comparisons: dict[str, Any] = {}
    gpu: dict[str, Any] | None = None
    if "steps" in sections:
        runs, comparisons, gpu = steps_section(args, steps)
    report: dict[str, Any] = {
        "benchmark": "train",
        "what": "one optimizer step (forward + backward + AdamW) of AVSRModel on random audio+video batches; no data loading",
        "machine": {
            "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "gpu": gpu if torch.cuda.is_available() else "not present",
        },
        "runs": runs,
        "ratios": comparisons,
    }
    if "pipeline" in sections:
        report["pipeline"] = pipeline_section(args, steps)
    if "switches" in sections:
        report["switches"] = switches_section(args, steps)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
