"""AV-HuBERT's audio input: log mel filterbank energies, 4 frames stacked, normalised per frame.

AV-HuBERT (``avhubert/hubert_dataset.py``, ``load_feature`` and ``__getitem__``) reads 16 kHz int16
audio with ``scipy.io.wavfile`` and computes ``python_speech_features.logfbank(wav, 16000)`` with
that function's defaults, then stacks frames and normalises. Reproduced here in torch (float64
until the log, as numpy does there), batched over padded waveforms:

1. samples scaled to the int16 range (our waveforms are floats in [-1, 1]; x 32768);
2. pre-emphasis ``y[0] = x[0]``, ``y[n] = x[n] - 0.97 x[n-1]`` (up to each item's own length);
3. frames of 400 samples every 160 (25 ms / 10 ms), ``1 + ceil((n - 400) / 160)`` of them (one
   if ``n <= 400``), the last one zero-padded; rectangular window (python_speech_features
   applies none by default);
4. power spectrum ``|rfft(frame, 512)|^2 / 512``;
5. 26 triangular mel filters from 0 to 8000 Hz on FFT bins ``floor(513 * mel2hz(m) / 16000)``
   (``get_filterbanks``; mel = 2595 log10(1 + hz / 700));
6. energies equal to zero become float64 eps, then the natural log; cast to float32;
7. stacking: zero rows are appended to a multiple of 4 frames and each 4 consecutive frames
   are concatenated (26 x 4 = 104 features at 25 Hz);
8. ``F.layer_norm(feats, feats.shape[1:])`` on the (T, 104) array: each 104-d row is normalised
   to zero mean and unit variance (eps 1e-5, no affine) - per frame, over its features (task
   ``normalize: true``, as in every published fine-tuning config).

Rows past an item's length are zero. ``StackedFbankAudioFrontEnd`` is this as the one model's
audio front-end (``audio.kind: stacked_fbank``); it has no parameters.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsr.media.constants import AUDIO_RATE
from avsr.models.config import StackedFbankAudioConfig

FRAME_LENGTH = 400  # 25 ms
FRAME_STEP = 160  # 10 ms
NFFT = 512
NUM_FILTERS = 26
PREEMPHASIS = 0.97
STACK = 4
INT16_SCALE = 32768.0


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(num_filters: int = NUM_FILTERS, nfft: int = NFFT, sample_rate: int = AUDIO_RATE) -> np.ndarray:
    """(num_filters, nfft // 2 + 1) float64 triangular filters, as ``get_filterbanks`` makes them."""
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), num_filters + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate)
    bank = np.zeros((num_filters, nfft // 2 + 1))
    for j in range(num_filters):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        for i in range(int(lo), int(mid)):
            bank[j, i] = (i - lo) / (mid - lo)
        for i in range(int(mid), int(hi)):
            bank[j, i] = (hi - i) / (hi - mid)
    return bank


def num_fbank_frames(samples: Tensor) -> Tensor:
    """Frames python_speech_features makes of ``samples`` samples (elementwise, int64)."""
    samples = samples.to(torch.int64)
    more = 1 + torch.div(samples - FRAME_LENGTH + FRAME_STEP - 1, FRAME_STEP, rounding_mode="floor")
    return torch.where(samples <= FRAME_LENGTH, torch.ones_like(samples), more)


def log_filterbank(waveform: Tensor, lengths: Tensor, num_filters: int = NUM_FILTERS) -> tuple[Tensor, Tensor]:
    """(B, S) waveforms in [-1, 1] at 16 kHz with (B,) lengths in samples -> (log filterbank
    energies (B, F, num_filters) float32, frames (B,)). Steps 1-6 of the module docstring."""
    device = waveform.device
    lengths = lengths.to(device=device, dtype=torch.int64).clamp(min=0, max=waveform.size(1))
    x = waveform.to(torch.float64) * INT16_SCALE
    emphasised = torch.cat([x[:, :1], x[:, 1:] - PREEMPHASIS * x[:, :-1]], dim=1)
    valid = torch.arange(x.size(1), device=device)[None, :] < lengths[:, None]
    emphasised = emphasised * valid
    frames = num_fbank_frames(lengths)
    width = int(frames.max()) if len(frames) else 1
    needed = (width - 1) * FRAME_STEP + FRAME_LENGTH
    if emphasised.size(1) < needed:
        emphasised = F.pad(emphasised, (0, needed - emphasised.size(1)))
    windows = emphasised[:, :needed].unfold(1, FRAME_LENGTH, FRAME_STEP)  # (B, F, 400)
    power = torch.fft.rfft(windows, n=NFFT).abs().square() / NFFT
    bank = torch.from_numpy(mel_filterbank(num_filters)).to(device)
    energies = power @ bank.T
    energies = torch.where(energies == 0, torch.finfo(torch.float64).eps, energies)
    feats = torch.log(energies).to(torch.float32)
    feats = feats * (torch.arange(width, device=device)[None, :] < frames[:, None])[:, :, None]
    return feats, frames


def stack_frames(feats: Tensor, frames: Tensor, stack: int = STACK) -> tuple[Tensor, Tensor]:
    """(B, F, D) -> (B, ceil(F / stack), D * stack): each ``stack`` consecutive frames side by side
    (zero frames appended to a multiple of ``stack``); lengths ``ceil(frames / stack)``."""
    batch, width, dim = feats.shape
    padded = math.ceil(width / stack) * stack
    if padded != width:
        feats = F.pad(feats, (0, 0, 0, padded - width))
    out = feats.reshape(batch, padded // stack, stack * dim)
    return out, torch.div(frames + stack - 1, stack, rounding_mode="floor")


def avhubert_audio_features(
    waveform: Tensor, lengths: Tensor, *, num_filters: int = NUM_FILTERS, stack: int = STACK, normalize: bool = True
) -> tuple[Tensor, Tensor]:
    """(B, S) 16 kHz waveforms in [-1, 1] -> (features (B, T, num_filters * stack) float32 at
    25 Hz, lengths (B,)): the whole recipe of the module docstring."""
    feats, frames = log_filterbank(waveform, lengths, num_filters)
    feats, out_lengths = stack_frames(feats, frames, stack)
    if normalize:
        feats = F.layer_norm(feats, feats.shape[-1:])
    valid = torch.arange(feats.size(1), device=feats.device)[None, :] < out_lengths[:, None]
    return feats * valid[:, :, None], out_lengths


class StackedFbankAudioFrontEnd(nn.Module):
    """(waveform (B, S) in [-1, 1] at 16 kHz, lengths (B,) samples) -> (features (B, T,
    filters * stack) at 25 Hz, frames (B,)); float32 whatever the autocast (the log of energies
    needs it), zero past each item's frames."""

    def __init__(self, config: StackedFbankAudioConfig) -> None:
        super().__init__()
        self.config = config
        self.output_dim = config.filters * config.stack

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, S), got shape {tuple(waveform.shape)}")
        c = self.config
        with torch.autocast(waveform.device.type, enabled=False):
            return avhubert_audio_features(
                waveform, lengths, num_filters=c.filters, stack=c.stack, normalize=c.normalize
            )


__all__ = [
    "StackedFbankAudioFrontEnd",
    "avhubert_audio_features",
    "log_filterbank",
    "mel_filterbank",
    "num_fbank_frames",
    "stack_frames",
]
