"""Front-end registry and the small conv audio front-end.

Every audio front-end maps ``(waveform (B, S) float32 at 16 kHz, lengths (B,) int64 samples)`` to
``(features (B, T, output_dim), frame_lengths (B,) int64)`` at 25 Hz (640 samples per frame, the
video frame rate); every visual front-end maps ``(video (B, T, H, W), lengths (B,))`` to
``(features (B, T, output_dim), lengths)``. Builders are looked up by ``config.kind`` (audio) or
are the one visual builder; ``register_audio_frontend`` adds a kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsr.media.constants import SAMPLES_PER_FRAME
from avsr.models.config import (
    AudioConfig,
    ConfigError,
    ConvAudioConfig,
    FbankAudioConfig,
    ResNet1DAudioConfig,
    StackedFbankAudioConfig,
    VisualConfig,
    register_audio_config,
)
from avsr.nn.sequence import lengths_to_mask, make_activation, normalize_waveform


class ConvAudioFrontEnd(nn.Module):
    """Strided 1-D convolutions on the raw waveform, 640 samples per output frame (25 Hz).

    A simplified version of auto_avsr's 1-D ResNet front-end: layer ``i`` is
    ``Conv1d(k = s_i + 2*(s_i//2), stride s_i, padding s_i//2) -> LayerNorm over channels ->
    activation``, so a waveform of ``S`` samples gives exactly ``S // 640`` frames (at least one).
    The LayerNorm is per frame (no BatchNorm: DDP-safe on CPU), and everything past an utterance's
    length is zeroed after each layer, so a padded item gives the same features as alone.
    """

    def __init__(self, config: ConvAudioConfig) -> None:
        super().__init__()
        self.normalize = config.normalize_waveform
        self.strides = tuple(config.strides)
        convs, norms, acts = [], [], []
        in_ch = 1
        for ch, s in zip(config.channels, config.strides):
            pad = s // 2
            convs.append(nn.Conv1d(in_ch, ch, kernel_size=s + 2 * pad, stride=s, padding=pad))
            norms.append(nn.LayerNorm(ch))
            acts.append(make_activation(config.activation, ch))
            in_ch = ch
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.acts = nn.ModuleList(acts)
        self.output_dim = in_ch

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return torch.div(lengths, SAMPLES_PER_FRAME, rounding_mode="floor").clamp(min=1)

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, S), got shape {tuple(waveform.shape)}")
        lengths = lengths.to(waveform.device)
        if self.normalize:
            waveform = normalize_waveform(waveform, lengths)
        else:
            waveform = waveform * lengths_to_mask(lengths, waveform.size(1))
        # Make sure the longest item yields its frame even when S is not a multiple of 640.
        need = int(lengths.max()) if lengths.numel() else 0
        need = max(need, SAMPLES_PER_FRAME)
        if waveform.size(1) < need:
            waveform = F.pad(waveform, (0, need - waveform.size(1)))
        x = waveform.unsqueeze(1)  # (B, 1, S)
        cur = lengths.clamp(min=SAMPLES_PER_FRAME)
        for conv, norm, act, s in zip(self.convs, self.norms, self.acts, self.strides):
            x = conv(x)
            cur = torch.div(cur, s, rounding_mode="floor")
            x = act(norm(x.transpose(1, 2))).transpose(1, 2)
            x = x * lengths_to_mask(cur, x.size(2))[:, None, :].to(x.dtype)
        out_lengths = self.output_lengths(lengths)
        x = x[:, :, : int(out_lengths.max())]
        return x.transpose(1, 2), out_lengths


class MelAudioFrontEnd(nn.Module):
    """Log-mel filterbanks (25 ms windows every 10 ms, 100 Hz) -> two stride-2 Conv2d -> 25 Hz.

    ESPnet's Conv2dSubsampling on standard ASR features: far easier to learn from scratch than
    raw-waveform convolutions, so it suits small models trained on small corpora. Features are
    normalised per utterance and per mel bin over the valid frames; windows that reach into
    padding are dropped, so a padded item gives the same output as alone.
    """

    WINDOW, HOP = 400, 160

    def __init__(self, config: FbankAudioConfig) -> None:
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=16000,
            n_fft=self.WINDOW,
            win_length=self.WINDOW,
            hop_length=self.HOP,
            n_mels=config.mel_bins,
            center=False,
        )
        channels = config.dim
        self.subsample = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.project = nn.Linear(channels * ((config.mel_bins + 3) // 4), channels)
        self.output_dim = channels

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        lengths = lengths.to(waveform.device)
        if waveform.size(1) < self.WINDOW:
            waveform = F.pad(waveform, (0, self.WINDOW - waveform.size(1)))
        with torch.autocast(waveform.device.type, enabled=False):
            feats = torch.log(self.mel(waveform.float()) + 1e-6).transpose(1, 2)  # (B, M, mels)
        mel_lengths = ((lengths - self.WINDOW) // self.HOP + 1).clamp(min=1)
        mask = lengths_to_mask(mel_lengths, feats.size(1))[:, :, None].to(feats.dtype)
        count = mel_lengths.clamp(min=1).to(feats.dtype)[:, None, None]
        mean = (feats * mask).sum(1, keepdim=True) / count
        std = ((((feats - mean) * mask) ** 2).sum(1, keepdim=True) / count).sqrt()
        feats = (feats - mean) / (std + 1e-5) * mask
        # Each stride-2 conv (padding 1) turns L frames into ceil(L / 2); its outputs past that are
        # zeroed, as the zero padding an utterance alone would see (ReLU(bias) would leak in).
        first_conv, first_act, second_conv, second_act = self.subsample
        lengths1 = (mel_lengths + 1) // 2
        x = first_act(first_conv(feats[:, None]))  # (B, C, M/2, mels/2)
        x = x * lengths_to_mask(lengths1, x.size(2))[:, None, :, None].to(x.dtype)
        lengths2 = (lengths1 + 1) // 2
        x = second_act(second_conv(x))  # (B, C, M/4, mels/4)
        x = self.project(x.permute(0, 2, 1, 3).flatten(2))  # (B, M/4, C)
        x = x * lengths_to_mask(lengths2, x.size(1))[:, :, None].to(x.dtype)
        out_lengths = torch.div(lengths, SAMPLES_PER_FRAME, rounding_mode="floor").clamp(min=1)
        frames = int(out_lengths.max())
        if x.size(1) < frames:
            x = F.pad(x, (0, 0, 0, frames - x.size(1)))
        x = x[:, :frames] * lengths_to_mask(out_lengths, frames)[:, :, None].to(x.dtype)
        return x, out_lengths


# ---------------------------------------------------------------------- registry
#: builder(config, pretrained) -> module; ``pretrained=False`` must not read any checkpoint
#: (the weights will come from a saved model).
AudioBuilder = Callable[[AudioConfig, bool], nn.Module]


def _build_conv(config: AudioConfig, pretrained: bool = True) -> nn.Module:
    return ConvAudioFrontEnd(config)


def _build_wav2vec2(config: AudioConfig, pretrained: bool = True) -> nn.Module:
    from avsr.models.audio import build_wav2vec2_frontend

    return build_wav2vec2_frontend(config if pretrained else dataclasses.replace(config, pretrained=None))


def _build_resnet1d(config: AudioConfig, pretrained: bool = True) -> nn.Module:
    from avsr.models.resnet1d import ResNet1DAudioFrontEnd

    assert isinstance(config, ResNet1DAudioConfig)
    return ResNet1DAudioFrontEnd(config)


def _build_stacked_fbank(config: AudioConfig, pretrained: bool = True) -> nn.Module:
    from avsr.models.stacked_fbank import StackedFbankAudioFrontEnd

    assert isinstance(config, StackedFbankAudioConfig)
    return StackedFbankAudioFrontEnd(config)


_AUDIO_BUILDERS: dict[str, AudioBuilder] = {
    "conv": _build_conv,
    "fbank": lambda config, pretrained: MelAudioFrontEnd(config),
    "resnet1d": _build_resnet1d,
    "stacked_fbank": _build_stacked_fbank,
    "wav2vec2": _build_wav2vec2,
}


def register_audio_frontend(kind: str, config_class: type[AudioConfig], builder: AudioBuilder) -> None:
    """Add an audio front-end kind: configs with ``kind: KIND`` are read as ``config_class`` (a
    dataclass subclassing `AudioConfig`, ``kind`` defaulting to KIND) and built by ``builder``."""
    register_audio_config(kind, config_class)
    _AUDIO_BUILDERS[kind] = builder


def build_audio_frontend(config: AudioConfig, pretrained: bool = True) -> nn.Module:
    """The audio front-end for ``config.kind``. ``pretrained=False`` skips reading any pretrained
    checkpoint named in the config (e.g. a wav2vec2 front-end's ``pretrained``)."""
    try:
        builder = _AUDIO_BUILDERS[config.kind]
    except KeyError:
        raise ConfigError(f"audio.kind: no front-end registered for {config.kind!r}") from None
    return builder(config, pretrained)


def build_visual_frontend(config: VisualConfig) -> nn.Module:
    from avsr.models.visual import VisualFrontEnd

    return VisualFrontEnd(config)


__all__ = [
    "ConvAudioFrontEnd",
    "SAMPLES_PER_FRAME",
    "build_audio_frontend",
    "build_visual_frontend",
    "lengths_to_mask",
    "normalize_waveform",
    "register_audio_frontend",
]
