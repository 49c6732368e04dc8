"""Projector training speed: from the feature cache versus running the frozen encoders every step.

SAIL's reason for caching: with both encoders frozen, a training step needs only their outputs.
Both ways train the same `Aligner` (MLP projectors, InfoNCE) on the same image-caption pairs with
the same batch size; the baseline (`EncodedAligner`) decodes the images, preprocesses images and
captions and runs both frozen encoders (under no_grad, as `avsr.nn.FrozenBackbone` does) at every
step; the cached way gathers rows of the fp16 memory-mapped caches (`vision_language.cache`).
Reports pairs per second of each and the ratio, plus the one-off cost of building the caches.

Encoders: torchvision MobileNetV2 (ImageNet weights when ``--image-weights`` points at them,
otherwise random: the speed is the same) at ``--image-size`` px and the real all-MiniLM-L6-v2 text
encoder (installed with the package). Data: a synthetic world written by ``vl-synth`` (made here
in a temporary folder when ``--world`` is not given).

    python benchmarks/vl_train.py [--quick] [--device cuda] [--out FILE]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vision_language.data import load_image, make_world, read_pairs
from vision_language.encoders import (
    ImageEncoderConfig,
    TextEncoderConfig,
    build_image_encoder,
    build_text_encoder,
    minilm_path,
)
from vision_language.features import EncodeOptions, pair_features
from vision_language.model import Aligner, AlignerConfig, EncodedAligner


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_steps(step_fn, optimizer: torch.optim.Optimizer, batches: list[Any], device: torch.device) -> float:
    """Seconds for one optimiser step per batch (after one warm-up step)."""

    def one(batch: Any) -> None:
        loss = step_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    one(batches[0])
    _sync(device)
    start = time.perf_counter()
    for batch in batches:
        one(batch)
    _sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and a smaller world")
    parser.add_argument("--world", type=Path, default=None, help="a vl-synth output folder (default: make one)")
    parser.add_argument(
        "--image-weights", type=Path, default=None, help="MobileNetV2 ImageNet weights (.pth); default random"
    )
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    steps_cached = 50 if args.quick else 200
    steps_encoded = 2 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        world = args.world
        if world is None:
            world = Path(tmp) / "world"
            make_world(world, images=600 if args.quick else 1500, size=64, seed=0)
        image_config = ImageEncoderConfig(
            source="torchvision",
            name="mobilenet_v2",
            path=str(args.image_weights) if args.image_weights else None,
            image_size=args.image_size,
        )
        text_config = TextEncoderConfig(path=str(minilm_path()))
        options = EncodeOptions(Path(tmp) / "cache", batch_size=64, show_progress=False)
        start = time.perf_counter()
        pairs = pair_features(world / "train.tsv", image_config, text_config, options)
        cache_seconds = time.perf_counter() - start
        n = len(pairs)
        config = AlignerConfig(
            image_dim=pairs.images.item_shape[-1], text_dim=pairs.texts.item_shape[-1], embed_dim=256
        )

        # cached: gather rows of the caches, project, loss
        aligner = Aligner(config).to(device)
        optimizer = torch.optim.AdamW(aligner.parameters(), lr=1e-3)
        rng = np.random.default_rng(0)
        batches = [rng.choice(n, args.batch_size, replace=False) for _ in range(steps_cached)]

        def cached_step(idx: np.ndarray) -> torch.Tensor:
            image = pairs.images.get(pairs.image_rows[idx]).to(device, non_blocking=True)
            text = pairs.texts.get(pairs.text_rows[idx]).to(device, non_blocking=True)
            return aligner(image, text)[0]

        cached_seconds = _train_steps(cached_step, optimizer, batches, device)

        # baseline: decode, preprocess and run both frozen encoders at every step
        raw = read_pairs(world / "train.tsv")
        encoded = EncodedAligner(
            build_image_encoder(image_config), build_text_encoder(text_config), Aligner(config)
        ).to(device)
        encoded.train()
        optimizer = torch.optim.AdamW(encoded.aligner.parameters(), lr=1e-3)
        raw_batches = [
            [raw[i] for i in rng.choice(len(raw), args.batch_size, replace=False)] for _ in range(steps_encoded)
        ]

        def encoded_step(batch: list[Any]) -> torch.Tensor:
            images = [load_image(p) for p in batch]
            image_inputs = encoded.image_encoder.preprocess(images)
            text_inputs = encoded.text_encoder.preprocess([p.caption for p in batch])

            def move(x):
                return {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)

            image = encoded.image_encoder(move(image_inputs))
            text = encoded.text_encoder(move(text_inputs))
            return encoded.aligner(image, text)[0]

        encoded_seconds = _train_steps(encoded_step, optimizer, raw_batches, device)

    cached_rate = steps_cached * args.batch_size / cached_seconds
    encoded_rate = steps_encoded * args.batch_size / encoded_seconds
    result = {
        "benchmark": "vl_train",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "pairs": n,
        "batch_size": args.batch_size,
        "image_encoder": f"mobilenet_v2 @ {args.image_size}px ({'ImageNet' if args.image_weights else 'random'} weights)",
        "text_encoder": "all-MiniLM-L6-v2",
        "cache_build_seconds": round(cache_seconds, 2),
        "cached": {
            "steps": steps_cached,
            "seconds": round(cached_seconds, 3),
            "pairs_per_second": round(cached_rate, 1),
        },
        "frozen_encoders_every_step": {
            "steps": steps_encoded,
            "seconds": round(encoded_seconds, 3),
            "pairs_per_second": round(encoded_rate, 1),
        },
        "speedup": round(cached_rate / encoded_rate, 1),
        "cache_pays_off_after_epochs": round(cache_seconds / (n / encoded_rate - n / cached_rate), 2),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
