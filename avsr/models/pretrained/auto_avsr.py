"""auto_avsr (Ma et al., "Auto-AVSR", ICASSP 2023; github.com/mpc001/auto_avsr) as a configuration
of the one model (`avsr.models.avsr_model.AVSRModel`)::

    video (B,T,88,88) -> 3-D stem + ResNet-18 (swish) -> Linear(512, d) * sqrt(d) -> 12 ESPnet conformer blocks -+
    audio (B,S) 16 kHz -> per-utterance normalisation -> 1-D ResNet-18 (640 samples/frame) -> ... same ---------+
        (both: cut to the common frames -> MLP fusion; no joint encoder) -> CTC head + 6-layer transformer decoder

d = 768, 12 heads, FFN 3072, convolution kernel 31, relative-position self-attention, macaron
FFNs; sentencepiece unigram 5000 with blank, <unk> and <sos/eos>: 5,049 outputs. ``AutoAVSRConfig``
holds the sizes a checkpoint shows and ``avsr_config()`` turns them into the model's config:
``espnet_conformer`` encoders, the ``resnet1d`` audio front-end, swish ResNet blocks, the ``mlp``
fusion, ESPnet's decoder positions and LayerNorm epsilon, no absent-modality embeddings (the AV
model was trained with both streams). VSR (video), ASR (audio) and AV (both) checkpoints convert,
in both published key layouts (``auto_avsr_checkpoint``):

- ``v1.0.0`` (tag v1.0.0 = 30951b5, the only one with the AV model): ``encoder.frontend.*``,
  ``encoder.embed.0.*`` (input projection), ``encoder.encoders.N.*``, ``aux_encoder.*`` (the
  AV model's audio encoder), ``fusion.*``, ``decoder.*``, ``ctc.ctc_lo.*``;
- ``head`` (182b628, VSR and ASR only): ``frontend.*``, ``proj_encoder.*``, ``encoder.encoders.N.*``,
  ``decoder.*``, ``ctc.ctc_lo.*``.

Preprocessing, as auto_avsr's test-time transforms: mouth crops aligned to its mean face (our face
pipeline, 96 px), a centre crop to 88 px, ``(x / 255 - 0.421) / 0.165``; recorded in model.yaml
``extra.preprocessing`` and applied by ``avsr-decode``. auto_avsr decodes with beam 40 and CTC
weight 0.1 (``extra.decoding``). Folders converted before the one model (``family: auto_avsr``)
load through ``build_from_config`` and ``stored_state``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from avsr.data.video import Preprocessing
from avsr.models.config import (
    AVSRConfig,
    ConfigError,
    DecoderConfig,
    EncoderConfig,
    FusionConfig,
    LossConfig,
    ModalityDropoutConfig,
    ResNet1DAudioConfig,
    VisualConfig,
    from_plain,
)
from avsr.models.espnet import ESPNET_LAYER_NORM_EPS

FAMILY = "auto_avsr"
DATA_DIR = Path(__file__).resolve().parent / "data" / "auto_avsr"
SPM_MODEL = DATA_DIR / "unigram5000.model"
SPM_UNITS = DATA_DIR / "unigram5000_units.txt"
#: CLI modality names -> the model's inputs.
MODALITIES = {"v": ("video",), "a": ("audio",), "av": ("audio", "video")}
#: auto_avsr's test-time video transform (``VideoTransform("test")``): centre crop, mean, std.
PREPROCESSING = Preprocessing().to_dict()  # avsr's defaults are auto_avsr's: 88 px, 0.421, 0.165
#: auto_avsr's own decoding (lightning.py's get_beam_search_decoder): beam 40, CTC weight 0.1, with
#: ESPnet's BatchBeamSearch, whose n-best our search reproduces with semantics "espnet";
#: avsr-decode and avsr-bench use these unless told otherwise.
DECODING = {"beam": 40, "ctc_weight": 0.1, "semantics": "espnet"}


class ConversionError(ValueError):
    """A checkpoint cannot be converted; the message is one line naming the file."""


# ---------------------------------------------------------------------- config
@dataclass(frozen=True)
class AutoAVSRConfig:
    """Sizes of an auto_avsr model. ``base()`` is the published one; ``tiny()`` is for tests. It
    has the same layers, so the key names are the same, at width 64 (the front-ends keep their
    published width, as auto_avsr's code fixes it)."""

    modalities: tuple[str, ...] = ("video",)
    vocab_size: int = 5049
    model_dim: int = 768
    heads: int = 12
    ffn_dim: int = 3072
    encoder_layers: int = 12
    conv_kernel: int = 31
    decoder_layers: int = 6
    decoder_heads: int = 12
    decoder_ffn_dim: int = 3072
    #: ResNet channels are (64, 128, 256, 512) * frontend_width (auto_avsr: 1.0).
    frontend_width: float = 1.0
    #: AV fusion MLP (auto_avsr: 8192 hidden units, BatchNorm).
    fusion_hidden_dim: int = 8192
    fusion_norm: str = "batchnorm"
    dropout: float = 0.1
    #: longest encoder input in frames (the relative-position table): 3000 = 2 minutes.
    max_len: int = 3000
    #: per-utterance audio normalisation (auto_avsr: layer_norm over the waveform, eps 1e-8).
    audio_norm_eps: float = 1e-8

    def __post_init__(self) -> None:
        mods = tuple(self.modalities)
        if mods not in MODALITIES.values():
            raise ConfigError(f"modalities: {list(mods)} is not one of [video], [audio], [audio, video]")
        object.__setattr__(self, "modalities", mods)
        for name in (
            "vocab_size",
            "model_dim",
            "heads",
            "ffn_dim",
            "encoder_layers",
            "conv_kernel",
            "decoder_layers",
            "decoder_heads",
            "decoder_ffn_dim",
            "fusion_hidden_dim",
            "max_len",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
        if self.vocab_size < 3:
            raise ConfigError(f"vocab_size: at least 3 (blank, a unit, sos/eos), got {self.vocab_size}")
        if self.model_dim % self.heads or self.model_dim % self.decoder_heads or (self.model_dim // self.heads) % 2:
            raise ConfigError(
                f"model_dim {self.model_dim} must split into heads ({self.heads}, {self.decoder_heads}) of even size"
            )
        if self.conv_kernel % 2 == 0:
            raise ConfigError(f"conv_kernel: must be odd, got {self.conv_kernel}")
        if self.fusion_norm not in ("batchnorm", "layernorm"):
            raise ConfigError(f"fusion_norm: {self.fusion_norm!r} is not one of batchnorm, layernorm")
        for name in ("frontend_width", "audio_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{name}: expected a positive number, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout!r}")

    @property
    def blank_id(self) -> int:
        return 0

    @property
    def eos_id(self) -> int:
        return self.vocab_size - 1

    @property
    def kind(self) -> str:
        """``vsr``, ``asr`` or ``avsr``."""
        return {("video",): "vsr", ("audio",): "asr"}.get(self.modalities, "avsr")

    @classmethod
    def base(cls, modality: str = "v", vocab_size: int = 5049) -> AutoAVSRConfig:
        """The published size (VSR 250 M, ASR 243 M, AV 444 M parameters)."""
        return cls(modalities=MODALITIES[modality], vocab_size=vocab_size)

    @classmethod
    def tiny(cls, modality: str = "v", vocab_size: int = 5049) -> AutoAVSRConfig:
        return cls(
            modalities=MODALITIES[modality],
            vocab_size=vocab_size,
            model_dim=64,
            heads=4,
            ffn_dim=128,
            decoder_heads=4,
            decoder_ffn_dim=128,
            fusion_hidden_dim=128 if modality == "av" else 8192,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["modalities"] = list(self.modalities)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AutoAVSRConfig:
        """Strict: unknown keys and values of the wrong type are one-line ConfigErrors."""
        return from_plain(cls, dict(data) if isinstance(data, Mapping) else data, "auto_avsr config")

    def avsr_config(self) -> AVSRConfig:
        """The one model's config for these sizes (auto_avsr's loss: 0.1 CTC, label smoothing 0.1)."""
        encoder = EncoderConfig(
            kind="espnet_conformer",
            layers=self.encoder_layers,
            model_dim=self.model_dim,
            heads=self.heads,
            ffn_dim=self.ffn_dim,
            dropout=self.dropout,
            conv_kernel=self.conv_kernel,
            max_len=self.max_len,
        )
        two = len(self.modalities) == 2
        norm = {"batchnorm": "batch", "layernorm": "layer"}[self.fusion_norm]
        return AVSRConfig(
            vocab_size=self.vocab_size,
            blank_id=self.blank_id,
            eos_id=self.eos_id,
            audio=ResNet1DAudioConfig(width=self.frontend_width, normalize_eps=self.audio_norm_eps)
            if "audio" in self.modalities
            else None,
            visual=VisualConfig(
                trunk="resnet18", norm="batch", activation="silu", block_activation="silu", width=self.frontend_width
            )
            if "video" in self.modalities
            else None,
            audio_encoder=encoder,
            video_encoder=encoder,
            fusion=FusionConfig(kind="mlp", hidden_dim=self.fusion_hidden_dim, hidden_norm=norm)
            if two
            else FusionConfig(kind="identity"),
            encoder=None,
            decoder=DecoderConfig(
                layers=self.decoder_layers,
                heads=self.decoder_heads,
                ffn_dim=self.decoder_ffn_dim,
                dropout=self.dropout,
                positions="espnet",
                layer_norm_eps=ESPNET_LAYER_NORM_EPS,
                output_bias=True,
            ),
            loss=LossConfig(ctc_weight=0.1, label_smoothing=0.1),
            modality_dropout=ModalityDropoutConfig(),
            absent_modality="refused",
            trim_streams="after_encoders",
        )


# ---------------------------------------------------------------------- folders converted before the one model
def build_from_config(config: Mapping[str, Any]):  # -> AVSRModel
    """The model (untrained) of a ``family: auto_avsr`` model.yaml's ``config`` (``avsr.models.io``)."""
    from avsr.models.avsr_model import AVSRModel

    return AVSRModel(AutoAVSRConfig.from_dict(config).avsr_config(), pretrained=False)


def fusion_columns_swapped(weight: Tensor) -> Tensor:
    """``fusion.fc1.weight`` (hidden, 2d) with its two input halves swapped: auto_avsr's
    (video, audio) order <-> the model's (audio, video). Its own inverse."""
    half = weight.size(1) // 2
    return torch.cat([weight[:, half:], weight[:, :half]], dim=1)


def stored_state(state: Mapping[str, Tensor], config: Mapping[str, Any]) -> dict[str, Tensor]:
    """Weights of a folder converted before the one model, under today's names: the visual
    front-end was ``video_frontend``, the audio trunk sat directly under ``audio_frontend`` and
    the fusion read (video, audio)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("video_frontend."):
            key = "visual_frontend." + key[len("video_frontend.") :]
        elif key.startswith("audio_frontend."):
            key = "audio_frontend.trunk." + key[len("audio_frontend.") :]
        elif key == "fusion.fc1.weight":
            value = fusion_columns_swapped(value)
        out[key] = value
    return out


def convert_checkpoint(
    checkpoint: Path, out_dir: Path, *, tokenizer: Path | None = None, modality: str | None = None
) -> Path:
    """Convert an auto_avsr checkpoint into our model folder; returns ``out_dir``.

    ``modality`` (``v``, ``a``, ``av``), if given, must be what the checkpoint holds.
    ``tokenizer``: a tokenizer folder, or a sentencepiece ``.model`` with its ``<name>_units.txt``
    beside it (default: auto_avsr's unigram5000, shipped). Raises ``ConversionError`` (one line
    naming the file and the first offending keys). See ``auto_avsr_checkpoint``.
    """
    from avsr.models.pretrained.auto_avsr_checkpoint import convert

    return convert(Path(checkpoint), Path(out_dir), tokenizer=tokenizer, modality=modality)


__all__ = [
    "AutoAVSRConfig",
    "ConversionError",
    "build_from_config",
    "convert_checkpoint",
    "fusion_columns_swapped",
    "stored_state",
]
