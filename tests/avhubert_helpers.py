"""Shared by tests/avsr/models/pretrained/test_avhubert.py and scripts/reference/make_avhubert_parity.py.

The reference outputs in ``avhubert_parity.json`` are computed by that script with AV-HuBERT's
own code (a checkout of facebookresearch/av_hubert 258fb50 with fairseq afc77bd) on the weights
``reference_state`` gives and the raw inputs ``reference_inputs`` gives, passed through AV-HuBERT's
own dataset code. The same functions rebuild both in the test, so it compares our model with
AV-HuBERT's without its code. Only torch and numpy are imported (and ``auto_avsr_helpers``, for
the weight scaling), because the script runs in AV-HuBERT's own Python environment.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from auto_avsr_helpers import scaled_random

DATA = Path(__file__).resolve().parent / "data"
PARITY_FILE = DATA / "avhubert_parity.json"

#: the architectures' widths in fairseq's option names (tiny: the parity file's; base and large:
#: the published fine-tuned models, conf/finetune/*.yaml with conf/pretrain/*_iter5.yaml)
SIZES = {
    "tiny": dict(
        encoder_layers=2,
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_attention_heads=4,
        conv_pos=8,
        conv_pos_groups=4,
        decoder_layers=2,
        decoder_embed_dim=32,
        decoder_ffn_embed_dim=64,
        decoder_attention_heads=4,
    ),
    "base": dict(
        encoder_layers=12,
        encoder_embed_dim=768,
        encoder_ffn_embed_dim=3072,
        encoder_attention_heads=12,
        conv_pos=128,
        conv_pos_groups=16,
        decoder_layers=6,
        decoder_embed_dim=768,
        decoder_ffn_embed_dim=3072,
        decoder_attention_heads=4,
    ),
    "large": dict(
        encoder_layers=24,
        encoder_embed_dim=1024,
        encoder_ffn_embed_dim=4096,
        encoder_attention_heads=16,
        conv_pos=128,
        conv_pos_groups=16,
        decoder_layers=9,
        decoder_embed_dim=1024,
        decoder_ffn_embed_dim=4096,
        decoder_attention_heads=8,
    ),
}
VOCAB = {"tiny": 24, "base": 1000, "large": 1000}
#: frames (25 fps) of the two utterances, and the decoder's input tokens (fairseq ids, <s>=0,
#: <pad>=1, </s>=2, <unk>=3; the prefix starts with </s> as fairseq's decoder input does)
LENGTHS = [8, 6]
PREV_TOKENS = [[2, 5, 9, 4, 17, 23], [2, 11, 3, 8, 6, 20]]
SEED = 0
#: Extra scales that keep the video features of the order of the audio ones (std about 1 each)
#: so that both move the layer norm after the fusion: each ResNet block adds x + 0.3 f(x) (the
#: last norm of its residual branch), and the video projection takes the rest (the ResNet's
#: output std is about 4, the audio projection's about 0.8). Without them the video features
#: are 50 times the audio ones and the fused encoder barely sees the audio.
BRANCH_SCALES = {"bn2.weight": 0.3, "bn2.bias": 0.3, "feature_extractor_video.proj.weight": 0.25}


def reference_state(shapes: dict[str, tuple[int, ...]], seed: int = SEED) -> dict[str, Tensor]:
    """Float32 weights for AV-HuBERT's key names and shapes (``num_batches_tracked`` int64):
    ``scaled_random`` with a generator per key (so a value depends only on its key, shape and
    seed, and a partial table gives the same values), activations of order one in both the
    audio and the video branch."""
    state = {}
    for key, shape in shapes.items():
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()) ^ seed)
        dtype = torch.int64 if key.endswith("num_batches_tracked") else torch.float32
        state[key] = scaled_random(key, tuple(shape), dtype, g)
        for suffix, scale in BRANCH_SCALES.items():
            if key.endswith(suffix):
                state[key] *= scale
    return state


def reference_inputs(lengths: list[int] = LENGTHS, seed: int = 7) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw inputs as a corpus holds them: int16 16 kHz waveforms (``n * 640`` samples: a tone
    plus noise) and uint8 96x96 grey mouth crops (``n`` frames of noise), one of each per length."""
    g = torch.Generator().manual_seed(seed)
    waves, videos = [], []
    for i, n in enumerate(lengths):
        t = torch.arange(n * 640, dtype=torch.float64) / 16000
        wave = 3000 * torch.sin(2 * torch.pi * (200 + 150 * i) * t) + 300 * torch.randn(
            n * 640, generator=g, dtype=torch.float64
        )
        waves.append(wave.round().numpy().astype(np.int16))
        videos.append(torch.randint(0, 256, (n, 96, 96), generator=g, dtype=torch.uint8).numpy())
    return waves, videos
