"""auto_avsr (Ma et al., "Auto-AVSR", ICASSP 2023; github.com/mpc001/auto_avsr) in this toolkit.

Its model is rebuilt from our blocks (see ``espnet_blocks`` for what is reused and why):

    video (B,T,88,88) -> 3-D stem + ResNet-18 (swish) -> Linear(512, d) * sqrt(d) -> 12 conformer blocks -+
    audio (B,S) 16 kHz -> per-utterance normalisation -> 1-D ResNet-18 (640 samples/frame) -> ... same ---+
        (both: concatenate (video, audio) -> MLP fusion)  ->  CTC head  +  6-layer transformer decoder

d = 768, 12 heads, FFN 3072, convolution kernel 31, relative-position self-attention, macaron
FFNs; sentencepiece unigram 5000 with blank, <unk> and <sos/eos>: 5,049 outputs. VSR (video),
ASR (audio) and AV (both) checkpoints are supported, in both published key layouts:

- ``v1.0.0`` (tag v1.0.0 = 30951b5, the only one with the AV model): ``encoder.frontend.*``,
  ``encoder.embed.0.*`` (input projection), ``encoder.encoders.N.*``, ``aux_encoder.*`` (the
  AV model's audio encoder), ``fusion.*``, ``decoder.*``, ``ctc.ctc_lo.*``;
- ``head`` (182b628, VSR and ASR only): ``frontend.*``, ``proj_encoder.*``, ``encoder.encoders.N.*``,
  ``decoder.*``, ``ctc.ctc_lo.*``.

``convert_checkpoint`` reads a checkpoint with ``torch.load(weights_only=True)`` (a bare state
dict, or Lightning's ``{"state_dict": {"model.<key>": ...}}``). It maps every key, infers the
sizes from the shapes, checks every shape and writes our model folder: ``model.safetensors``,
``model.yaml`` with ``family: auto_avsr`` and the preprocessing, and ``tokenizer/``. Nothing is
left at random: a key that is not mapped, a weight the model lacks or a wrong shape is an error.

Preprocessing, as auto_avsr's test-time transforms: mouth crops aligned to its mean face (our face
pipeline, 96 px), a centre crop to 88 px, ``(x / 255 - 0.421) / 0.165``. These are recorded in
model.yaml ``extra.preprocessing`` and applied by ``avsr-decode``. The audio is normalised to
zero mean and unit variance over each utterance (``layer_norm(x, x.shape, eps=1e-8)``); the model
does this itself (``audio_norm_eps``), so every caller gets it. auto_avsr decodes with beam 40 and
CTC weight 0.1 (``avsr-decode --beam 40 --ctc-weight 0.1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from fairseq2.nn import BatchLayout, IncrementalStateBag, Linear
from torch import Tensor, nn

from avsr.data.video import Preprocessing
from avsr.models.config import ConfigError
from avsr.models.frontends import lengths_to_mask, normalize_waveform
from avsr.models.pretrained.espnet_blocks import (
    AudioResNet1D,
    ConformerEncoder,
    ESPnetDecoder,
    MLPFusion,
    SwishResNetFrontEnd,
)

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
        for name in ("vocab_size", "model_dim", "heads", "ffn_dim", "encoder_layers", "conv_kernel",
                     "decoder_layers", "decoder_heads", "decoder_ffn_dim", "fusion_hidden_dim", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
        if self.vocab_size < 3:
            raise ConfigError(f"vocab_size: at least 3 (blank, a unit, sos/eos), got {self.vocab_size}")
        if self.model_dim % self.heads or self.model_dim % self.decoder_heads or (self.model_dim // self.heads) % 2:
            raise ConfigError(f"model_dim {self.model_dim} must split into heads ({self.heads}, {self.decoder_heads}) of even size")
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
            modalities=MODALITIES[modality], vocab_size=vocab_size, model_dim=64, heads=4, ffn_dim=128,
            decoder_heads=4, decoder_ffn_dim=128, fusion_hidden_dim=128 if modality == "av" else 8192,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["modalities"] = list(self.modalities)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AutoAVSRConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"auto_avsr config: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"auto_avsr config: unknown key(s) {', '.join(unknown)}")
        values = dict(data)
        if "modalities" in values:
            if not isinstance(values["modalities"], (list, tuple)):
                raise ConfigError(f"modalities: expected a list, got {values['modalities']!r}")
            values["modalities"] = tuple(values["modalities"])
        return cls(**values)


# ---------------------------------------------------------------------- model
class AutoAVSRModel(nn.Module):
    """auto_avsr's hybrid CTC/attention model with the decoding interface of ``AVSRModel``
    (``encode``, ``ctc_log_probs``, ``new_state_bag``, ``decode``), eval only.

    Sub-modules: ``video_frontend`` + ``video_encoder`` and/or ``audio_frontend`` +
    ``audio_encoder``; ``fusion`` (AV only); ``ctc_head``; ``decoder``.
    """

    family = FAMILY

    def __init__(self, config: AutoAVSRConfig, *, device: str | torch.device = "cpu") -> None:
        super().__init__()
        device = torch.device(device)
        self.config = config
        self.vocab_size = config.vocab_size
        self.blank_id = config.blank_id
        self.eos_id = config.eos_id
        self.metadata: dict[str, Any] = {}
        c = config
        d = c.model_dim

        def encoder(input_dim: int) -> ConformerEncoder:
            return ConformerEncoder(input_dim, d, c.heads, c.ffn_dim, c.encoder_layers, c.conv_kernel, c.max_len, c.dropout, device)

        with torch.device(device):
            self.video_frontend = SwishResNetFrontEnd(c.frontend_width) if "video" in c.modalities else None
            self.audio_frontend = AudioResNet1D(c.frontend_width) if "audio" in c.modalities else None
            self.fusion = MLPFusion(2 * d, c.fusion_hidden_dim, d, c.fusion_norm) if len(c.modalities) == 2 else None
        self.video_encoder = encoder(self.video_frontend.output_dim) if self.video_frontend is not None else None
        self.audio_encoder = encoder(self.audio_frontend.output_dim) if self.audio_frontend is not None else None
        self.ctc_head = Linear(d, c.vocab_size, bias=True, device=device)
        self.decoder = ESPnetDecoder(c.vocab_size, d, c.decoder_heads, c.decoder_ffn_dim, c.decoder_layers, c.dropout, device)

    @property
    def decodable_modalities(self) -> tuple[str, ...]:
        """The CLI modalities it decodes: only its own combination (the AV model was trained
        without modality dropout, so it cannot decode one stream alone)."""
        return ({"video": "v", "audio": "a"}.get(self.config.modalities[0], "av"),) if len(self.config.modalities) == 1 else ("av",)

    def new_state_bag(self, max_len: int) -> IncrementalStateBag:
        """A state bag for ``decode`` good for up to ``max_len`` tokens (the leading eos included)."""
        return IncrementalStateBag(max_len + 1)

    def encode(
        self, audio: Tensor | None, audio_lens: Tensor | None, video: Tensor | None, video_lens: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """-> (encoded (B, T, d), lengths (B,)); positions past the lengths are zero.

        ``audio`` (B, S) raw 16 kHz float with ``audio_lens`` in samples (normalised here);
        ``video`` (B, T, H, W) normalised grey frames with ``video_lens`` in frames. An input the
        model has no branch for is ignored; the AV model needs both (it was trained with both).
        """
        use_audio = audio is not None and self.audio_frontend is not None
        use_video = video is not None and self.video_frontend is not None
        needed = " and ".join(self.config.modalities)
        if not (use_audio or use_video) or (self.fusion is not None and not (use_audio and use_video)):
            raise ValueError(f"this auto_avsr {self.config.kind.upper()} model needs {needed} input")
        streams: list[Tensor] = []
        lengths: list[Tensor] = []
        if use_video:
            assert video is not None and self.video_frontend is not None and self.video_encoder is not None
            if video_lens is None:
                video_lens = torch.full((video.size(0),), video.size(1), dtype=torch.long)
            v, v_lens = self.video_frontend(video, video_lens.to(video.device))
            streams.append(self.video_encoder(v, v_lens))
            lengths.append(v_lens.long())
        if use_audio:
            assert audio is not None and self.audio_frontend is not None and self.audio_encoder is not None
            if audio_lens is None:
                audio_lens = torch.full((audio.size(0),), audio.size(1), dtype=torch.long)
            audio_lens = audio_lens.to(audio.device).clamp(max=audio.size(1))
            audio = normalize_waveform(audio, audio_lens, eps=self.config.audio_norm_eps)
            a, a_lens = self.audio_frontend(audio, audio_lens)
            streams.append(self.audio_encoder(a, a_lens))
            lengths.append(a_lens.long())
        if len(streams) == 1:
            return streams[0], lengths[0]
        assert self.fusion is not None
        if streams[0].size(0) != streams[1].size(0):
            raise ValueError(f"video batch {streams[0].size(0)} != audio batch {streams[1].size(0)}")
        width = min(s.size(1) for s in streams)
        lens = torch.minimum(lengths[0], lengths[1].to(lengths[0].device))
        fused = self.fusion(torch.cat([s[:, :width] for s in streams], dim=-1))  # (video, audio), as auto_avsr
        return fused * lengths_to_mask(lens, width)[:, :, None].to(fused.dtype), lens

    def ctc_log_probs(self, encoded: Tensor) -> Tensor:
        """(B, T, d) -> CTC log-posteriors (B, T, V), float32."""
        return torch.log_softmax(self.ctc_head(encoded).float(), dim=-1)

    def decode(
        self,
        tokens: Tensor,
        encoded: Tensor,
        encoded_lens: Tensor,
        state_bag: IncrementalStateBag | None = None,
        *,
        token_lens: Tensor | None = None,
        layouts: tuple[BatchLayout, BatchLayout] | None = None,
    ) -> Tensor:
        """Decoder logits (B, L, V) for ``tokens`` (B, L) starting with sos (= eos); the same
        contract as ``AVSRModel.decode`` (full mode, or incremental with a state bag)."""
        return self.decoder.decode(tokens, encoded, encoded_lens, state_bag, token_lens=token_lens, layouts=layouts)


def build_from_config(config: Mapping[str, Any]) -> AutoAVSRModel:
    """The model (untrained) of a model.yaml ``config`` mapping (``avsr.models.io`` calls this)."""
    return AutoAVSRModel(AutoAVSRConfig.from_dict(config))


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
    "AutoAVSRModel",
    "ConversionError",
    "build_from_config",
    "convert_checkpoint",
]
