"""Typed configuration of the AVSR model: one dataclass per part, YAML-friendly and strict.

``AVSRConfig.to_dict()`` gives plain dicts/lists/scalars (safe for ``yaml.safe_dump``);
``AVSRConfig.from_dict()`` rebuilds the config and raises ``ConfigError`` on an unknown key, a
missing required key or a value of the wrong type, naming the dotted path of the offending entry.

Two named sizes:

- ``AVSRConfig.tiny(vocab_size)``: conv audio front-end, ResNet-18 at quarter width with
  GroupNorm, two-layer encoders/decoder at d=128. Trains on a laptop CPU (tests, synthetic recipe)
  and runs under fairseq2's CPU DDP (no BatchNorm anywhere).
- ``AVSRConfig.seed_paper(vocab_size)``: the system of Pan et al. (ACL 2022): wav2vec 2.0 Large,
  MoCo v2 ResNet-50 with a 3-D stem, 6-layer per-modality transformers (d=512, 8 heads, FFN 2048,
  dropout 0.1), concat fusion, 6-layer joint transformer, 6-layer decoder, 0.2 CTC / 0.8 CE with
  label smoothing 0.01.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from avsr.media.constants import SAMPLES_PER_FRAME
from avsr.nn.projectors import PROJECTOR_KINDS


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the dotted key."""


VISUAL_TRUNKS = ("resnet18", "resnet50")
NORM_KINDS = ("batch", "group")
NORM_KINDS_1D = ("batch", "layer")
ACTIVATIONS = ("relu", "prelu", "silu")
#: ``espnet_conformer`` is ESPnet's conformer as auto_avsr publishes it, ``wav2vec2`` the encoder
#: of wav2vec 2.0 / HuBERT / AV-HuBERT, ``projection`` a Linear alone; see EncoderConfig.
ENCODER_KINDS = ("transformer", "conformer", "espnet_conformer", "wav2vec2", "projection")
#: the decoder's position table: fairseq2's sinusoids (sines, then cosines), ESPnet's
#: (interleaved) or fairseq1's (sines then cosines, positions counted from 2 as its padding index 1).
DECODER_POSITIONS = ("sinusoidal", "espnet", "fairseq")
#: how the audio and video streams are brought to the same frames: cut to the shorter one before
#: the per-modality encoders (ours) or after them (auto_avsr: each encoder sees its whole
#: stream), or the audio cut or zero-padded to the video's frames (AV-HuBERT's ``load_feature``).
TRIM_POINTS = ("before_encoders", "after_encoders", "audio_to_video")
#: what stands for a modality that is not given (or dropped by modality dropout) in a
#: two-modality model: a learned embedding (ours), zeros (AV-HuBERT), or nothing (refused:
#: auto_avsr's AV model needs both).
ABSENT_MODALITY = ("learned", "zeros", "refused")
NORM_ORDERS = ("pre", "post")
#: Sub-modules of AVSRModel that ``AVSRConfig.freeze`` may name.
FREEZABLE = (
    "audio_frontend",
    "visual_frontend",
    "audio_encoder",
    "video_encoder",
    "fusion",
    "encoder",
    "ctc_head",
    "decoder",
)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")


def _check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _check_prob(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}: must be a probability in [0, 1], got {value!r}")


@dataclass(kw_only=True)
class AudioConfig:
    """Audio front-end: raw 16 kHz waveform -> (B, T, D) features at 25 Hz.

    A tagged union: ``kind`` chooses the config class (``AUDIO_CONFIGS``, extended by
    `avsr.models.frontends.register_audio_frontend`), and each class holds only its own options:
    ``conv`` (`ConvAudioConfig`), ``fbank`` (`FbankAudioConfig`), ``resnet1d`` (auto_avsr's,
    `ResNet1DAudioConfig`), ``stacked_fbank`` (AV-HuBERT's, `StackedFbankAudioConfig`), ``wav2vec2``
    (`avsr.models.audio.Wav2Vec2FrontEndConfig`). Read from a mapping by its ``kind`` (default conv).
    """

    kind: str

    @classmethod
    def for_kind(cls, kind: Any) -> type[AudioConfig]:
        """The config class registered for ``kind`` (ConfigError naming the known kinds)."""
        entry = AUDIO_CONFIGS.get(kind) if isinstance(kind, str) else None
        if entry is None:
            raise ConfigError(f"kind: {kind!r} is not one of {', '.join(AUDIO_CONFIGS)}")
        if isinstance(entry, str):  # "module:Class", imported when first asked for (wav2vec2 needs fairseq2)
            module, _, name = entry.partition(":")
            entry = AUDIO_CONFIGS[kind] = getattr(importlib.import_module(module), name)
        return entry


@dataclass(kw_only=True)
class ConvAudioConfig(AudioConfig):
    """A small strided 1-D conv stack on the waveform (no pretrained weights; ``frontends.py``)."""

    kind: str = "conv"
    #: output channels of each conv layer; the last one is the feature size.
    channels: tuple[int, ...] = (64, 128, 128, 256, 256)
    #: stride of each layer; the product must be 640 (16 kHz -> 25 Hz).
    strides: tuple[int, ...] = (5, 4, 4, 4, 2)
    #: activation after each conv (relu, prelu, silu).
    activation: str = "silu"
    #: z-normalise each waveform over its valid samples inside the model.
    normalize_waveform: bool = True

    def __post_init__(self) -> None:
        _check_choice("activation", self.activation, ACTIVATIONS)
        if len(self.channels) != len(self.strides) or not self.channels:
            raise ConfigError("channels and audio.strides must be non-empty and of equal length")
        prod = 1
        for s in self.strides:
            _check_positive("strides", s)
            prod *= s
        if prod != SAMPLES_PER_FRAME:
            raise ConfigError(f"strides must multiply to {SAMPLES_PER_FRAME} (16 kHz -> 25 Hz), got {prod}")
        for c in self.channels:
            _check_positive("channels", c)


@dataclass(kw_only=True)
class FbankAudioConfig(AudioConfig):
    """Log-mel filterbanks + two stride-2 Conv2d (ESPnet's subsampling) + a projection to ``dim``."""

    kind: str = "fbank"
    mel_bins: int = 80
    #: feature size (the channels of both convolutions and the projection's output).
    dim: int = 256

    def __post_init__(self) -> None:
        _check_positive("mel_bins", self.mel_bins)
        _check_positive("dim", self.dim)


@dataclass(kw_only=True)
class ResNet1DAudioConfig(AudioConfig):
    """auto_avsr's 1-D ResNet-18 on the raw waveform (``avsr.models.resnet1d``): 640 samples per
    frame, ``512 * width`` features, BatchNorm and swish."""

    kind: str = "resnet1d"
    #: every channel count is (64, 128, 256, 512) * width (auto_avsr: 1.0).
    width: float = 1.0
    #: each waveform is normalised over its valid samples with this epsilon (auto_avsr: 1e-8);
    #: null: not normalised.
    normalize_eps: float | None = 1e-8

    def __post_init__(self) -> None:
        _check_positive("width", self.width)
        if self.normalize_eps is not None:
            _check_positive("normalize_eps", self.normalize_eps)


@dataclass(kw_only=True)
class StackedFbankAudioConfig(AudioConfig):
    """AV-HuBERT's audio input (``avsr.models.stacked_fbank``): log filterbanks at 100 Hz,
    ``stack`` frames concatenated (25 Hz, ``filters * stack`` features), each row normalised."""

    kind: str = "stacked_fbank"
    filters: int = 26
    #: 100 Hz frames per output frame (4: 25 Hz, the video rate).
    stack: int = 4
    #: normalise each stacked row to zero mean and unit variance (AV-HuBERT's ``normalize``).
    normalize: bool = True

    def __post_init__(self) -> None:
        _check_positive("filters", self.filters)
        if self.stack != 4:
            raise ConfigError(f"stack: must be 4 (100 Hz filterbanks -> 25 Hz, the video rate), got {self.stack!r}")


#: kind -> config class, or "module:Class" imported on first use.
AUDIO_CONFIGS: dict[str, type[AudioConfig] | str] = {
    "conv": ConvAudioConfig,
    "fbank": FbankAudioConfig,
    "resnet1d": ResNet1DAudioConfig,
    "stacked_fbank": StackedFbankAudioConfig,
    "wav2vec2": "avsr.models.audio:Wav2Vec2FrontEndConfig",
}


def register_audio_config(kind: str, config_class: type[AudioConfig] | str) -> None:
    """Make ``kind`` readable from configs (`avsr.models.frontends.register_audio_frontend` calls it)."""
    AUDIO_CONFIGS[kind] = config_class


def _stored_audio(data: dict[str, Any]) -> dict[str, Any]:
    """An ``audio`` section as avsr wrote it before the tagged union (one flat class: conv fields,
    ``mel_bins`` and a ``wav2vec2`` options dict, whatever the kind) -> the kind's own fields."""
    if "wav2vec2" not in data:  # that layout always wrote the options dict; no kind has such a field now
        return data
    kind = data.get("kind", "conv")
    if kind == "wav2vec2":
        return {"kind": kind, **(data.get("wav2vec2") or {})}
    if kind == "fbank":
        channels = data.get("channels") or [FbankAudioConfig.dim]
        return {"kind": kind, "mel_bins": data.get("mel_bins", FbankAudioConfig.mel_bins), "dim": channels[-1]}
    return {k: v for k, v in data.items() if k not in ("mel_bins", "wav2vec2")}


def stored_config(data: dict[str, Any]) -> dict[str, Any]:
    """A model config as read from a file avsr wrote (model.yaml, a run file), in today's layout:
    sections whose layout changed since are rewritten (the audio front-end's tagged union, the
    boolean ``absent_embeddings`` that ``absent_modality`` replaced)."""
    data = dict(data)
    if isinstance(data.get("audio"), dict):
        data["audio"] = _stored_audio(data["audio"])
    if isinstance(data.get("absent_embeddings"), bool) and "absent_modality" not in data:
        data["absent_modality"] = "learned" if data.pop("absent_embeddings") else "refused"
    return data


@dataclass
class VisualConfig:
    """Visual front-end: 3-D conv stem + 2-D ResNet trunk, one vector per frame.

    ``norm="batch"`` is the published design (and what MoCo v2 / LRW checkpoints contain);
    ``norm="group"`` uses GroupNorm everywhere so the model has no BatchNorm and runs under
    fairseq2's DDP on CPU (which converts BatchNorm to SyncBatchNorm, CUDA-only).
    ``width`` scales every channel count (1.0 = torchvision's ResNet; 0.25 for a CPU toy).
    """

    trunk: str = "resnet18"
    norm: str = "batch"
    #: activation of the 3-D stem.
    activation: str = "relu"
    #: activation inside the ResNet blocks (relu as torchvision's; auto_avsr's use silu;
    #: AV-HuBERT's prelu, one per channel after each convolution: ``relu1``, ``relu2``).
    block_activation: str = "relu"
    width: float = 1.0
    #: groups of GroupNorm (reduced to a divisor of the channel count when needed).
    norm_groups: int = 32
    #: average-pool each frame by this factor before the stem (2: 88 -> 44 px, 5x cheaper on a
    #: CPU; the synthetic recipe's lips are large and smooth enough for it).
    downsample: int = 1

    def __post_init__(self) -> None:
        _check_choice("trunk", self.trunk, VISUAL_TRUNKS)
        _check_choice("norm", self.norm, NORM_KINDS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("block_activation", self.block_activation, ACTIVATIONS)
        if self.block_activation == "prelu" and self.trunk != "resnet18":
            raise ConfigError(f"block_activation prelu: only for resnet18's basic blocks, not {self.trunk}")
        _check_positive("width", self.width)
        _check_positive("norm_groups", self.norm_groups)
        if isinstance(self.downsample, bool) or not isinstance(self.downsample, int) or self.downsample < 1:
            raise ConfigError(f"downsample: must be an integer >= 1, got {self.downsample!r}")
        if round(64 * self.width) < 1:
            raise ConfigError(f"width {self.width} leaves no channels")


@dataclass
class EncoderConfig:
    """A stack of transformer or conformer layers (fairseq2 blocks), after a projection of the input.

    ``layers=0`` is allowed for the per-modality encoders (projection + positions only).
    Conformer blocks use relative-position attention and LayerNorm in their convolution module
    (BatchNorm would break CPU DDP); transformer layers use sinusoidal absolute positions.
    ``espnet_conformer`` is ESPnet's conformer as auto_avsr publishes it: the projected input is
    scaled by sqrt(model_dim), ReLU macaron FFNs, a convolution module with biases and BatchNorm,
    LayerNorm epsilon 1e-12 and a LayerNorm after the last block.
    ``wav2vec2`` is the encoder of wav2vec 2.0 / AV-HuBERT: a LayerNorm on the input, the
    projection, convolutional positions (``pos_conv_kernel``, ``pos_conv_groups``), GELU
    transformer layers (pre-norm with a final LayerNorm, or post-norm with a LayerNorm after the
    positions). ``projection`` is the input projection alone (``layers: 0``; AV-HuBERT's
    per-modality ``proj``).
    """

    kind: str = "transformer"
    layers: int = 6
    model_dim: int = 512
    heads: int = 8
    ffn_dim: int = 2048
    dropout: float = 0.1
    #: depthwise kernel of the conformer convolution module.
    conv_kernel: int = 31
    norm_order: str = "pre"
    #: longest input in frames (25 per second) the position encodings cover.
    max_len: int = 6000
    #: ``wav2vec2`` only: the kernel and groups of the convolution that encodes positions.
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, ENCODER_KINDS)
        _check_choice("norm_order", self.norm_order, NORM_ORDERS)
        _check_positive("layers", self.layers, allow_zero=True)
        for key in ("model_dim", "heads", "ffn_dim", "conv_kernel", "max_len", "pos_conv_kernel", "pos_conv_groups"):
            _check_positive(key, getattr(self, key))
        if self.kind == "projection" and self.layers:
            raise ConfigError(f"layers: a projection encoder has none, got {self.layers}")
        if self.kind == "wav2vec2" and self.model_dim % self.pos_conv_groups:
            raise ConfigError(f"pos_conv_groups: {self.pos_conv_groups} does not divide model_dim {self.model_dim}")
        _check_prob("dropout", self.dropout)
        if self.model_dim % self.heads or self.model_dim % 2:
            raise ConfigError(f"model_dim {self.model_dim} must be even and a multiple of heads {self.heads}")
        if self.kind in ("conformer", "espnet_conformer") and self.norm_order != "pre":
            raise ConfigError("conformer blocks are pre-norm; set norm_order: pre")
        if self.kind == "espnet_conformer" and self.conv_kernel % 2 == 0:
            raise ConfigError(f"conv_kernel: must be odd for espnet_conformer, got {self.conv_kernel}")


@dataclass
class FusionConfig:
    """How the per-modality streams are merged (see ``avsr.models.fusion.FUSIONS`` for the registry).

    ``concat`` (the seed): per-modality LayerNorm, concatenate, linear projection to the joint dim.
    ``sum``: per-modality LayerNorm and linear projection, then sum.
    ``gated``: as ``sum``, mixed per frame by weights a small gate computes from the streams (a
    softmax over them), so the model can turn an unreliable video (or audio) down frame by frame.
    ``projector``: the projection, one of `avsr.nn.projectors` (linear, mlp, gated_mlp, token).
    ``mlp`` (auto_avsr's): concatenate, Linear to ``hidden_dim``, ``hidden_norm`` (batch or layer),
    ReLU, Linear to the joint dim. ``identity``: a single stream, passed on as it is.
    ``raw_concat`` and ``raw_sum`` (AV-HuBERT's ``modality_fuse``): the streams concatenated or
    added as they are; the joint encoder's input projection (and, ``wav2vec2``, its LayerNorm) follows.

    The gate has no settings of its own (its hidden width is the joint width): ``gated`` adds no
    keys, so the saved configs of existing models, and the resume check against them, are unchanged.
    """

    kind: str = "concat"
    dropout: float = 0.0
    projector: str = "linear"
    #: ``mlp`` only: its hidden width and the norm after its first layer.
    hidden_dim: int = 8192
    hidden_norm: str = "batch"

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise ConfigError("kind must be a non-empty string")
        _check_prob("dropout", self.dropout)
        _check_choice("projector", self.projector, PROJECTOR_KINDS)
        _check_positive("hidden_dim", self.hidden_dim)
        _check_choice("hidden_norm", self.hidden_norm, NORM_KINDS_1D)


@dataclass
class DecoderConfig:
    """Transformer decoder; its width is the joint encoder's ``model_dim``."""

    layers: int = 6
    heads: int = 8
    ffn_dim: int = 2048
    dropout: float = 0.1
    norm_order: str = "pre"
    #: longest token sequence (with the leading eos) the positions cover.
    max_len: int = 1024
    #: position table (see DECODER_POSITIONS); espnet has no length limit.
    positions: str = "sinusoidal"
    layer_norm_eps: float = 1e-5
    #: a bias in the output projection (ESPnet's decoders have one).
    output_bias: bool = False
    #: multiply the token embeddings by sqrt(model_dim) (fairseq's default; AV-HuBERT: false).
    scale_embeddings: bool = True
    #: the output projection is the token embedding matrix (AV-HuBERT's shared embeddings).
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        _check_choice("norm_order", self.norm_order, NORM_ORDERS)
        _check_choice("positions", self.positions, DECODER_POSITIONS)
        _check_positive("layer_norm_eps", self.layer_norm_eps)
        _check_positive("layers", self.layers)
        for key in ("heads", "ffn_dim", "max_len"):
            _check_positive(f"{key}", getattr(self, key))
        _check_prob("dropout", self.dropout)
        if self.tie_embeddings and self.output_bias:
            raise ConfigError("output_bias: tied embeddings have no output bias")


@dataclass
class LossConfig:
    """loss = ctc_weight * CTC + (1 - ctc_weight) * CE(label_smoothing)."""

    ctc_weight: float = 0.2
    label_smoothing: float = 0.01

    def __post_init__(self) -> None:
        _check_prob("ctc_weight", self.ctc_weight)
        _check_prob("label_smoothing", self.label_smoothing)


@dataclass
class ModalityDropoutConfig:
    """Per utterance, in training only, when both modalities are given:
    with ``p_audio_only`` the video is dropped, with ``p_video_only`` the audio is dropped."""

    p_audio_only: float = 0.0
    p_video_only: float = 0.0

    def __post_init__(self) -> None:
        _check_prob("p_audio_only", self.p_audio_only)
        _check_prob("p_video_only", self.p_video_only)
        if self.p_audio_only + self.p_video_only > 1.0:
            raise ConfigError("p_audio_only + p_video_only must be <= 1")


@dataclass
class KernelConfig:
    """How the forward pass computes, not what: the weights and the results (within rounding) are
    the same either way, so a model trained with one setting loads and decodes with the other.
    ``None``: on when the model runs on CUDA, off on the CPU (`avsr.nn.switches.switch_on`)."""

    sdpa: bool | None = None
    """Relative-position attention (conformers) through ``scaled_dot_product_attention`` (the
    fused kernel on a GPU) instead of softmax(QK^T)V by hand (`avsr.models.rel_attention`)."""
    channels_last: bool | None = None
    """The visual front-end's 3-D stem and 2-D trunk run on channels-last activations (NDHWC,
    NHWC: what cuDNN's tensor-core convolutions want)."""


@dataclass
class AVSRConfig:
    """The whole model. ``audio`` or ``visual`` may be ``None`` for a single-modality model
    (as the seed's AO and VO stages); at least one must be set."""

    vocab_size: int
    blank_id: int = 0
    #: end (and start) of sentence; ``None`` means ``vocab_size - 1``.
    eos_id: int | None = None
    audio: AudioConfig | None = field(default_factory=ConvAudioConfig)
    visual: VisualConfig | None = field(default_factory=VisualConfig)
    audio_encoder: EncoderConfig = field(default_factory=EncoderConfig)
    video_encoder: EncoderConfig = field(default_factory=EncoderConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    #: the joint encoder after the fusion; null: none (auto_avsr's models), the fused streams go
    #: to the CTC head and the decoder as they are.
    encoder: EncoderConfig | None = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    modality_dropout: ModalityDropoutConfig = field(default_factory=ModalityDropoutConfig)
    #: sub-modules kept frozen (no gradient, eval mode) throughout; see ``FREEZABLE``.
    freeze: tuple[str, ...] = ()
    #: see ABSENT_MODALITY: ``learned`` and ``zeros`` decode one modality alone and allow modality
    #: dropout; ``refused`` needs both streams.
    absent_modality: str = "learned"
    #: see TRIM_POINTS.
    trim_streams: str = "before_encoders"
    #: a CTC head (false: attention only, as AV-HuBERT's models; loss.ctc_weight must be 0).
    ctc_head: bool = True
    #: the CLI modalities (a, v, av) it was trained to decode, when fewer than it can (an AV-HuBERT
    #: model fine-tuned for lip reading has an audio branch, untrained for this task); null: all.
    decode_modalities: tuple[str, ...] | None = None
    #: how the forward computes (fused attention, channels-last); not part of the model's identity:
    #: two configs that differ only here describe the same model (a run resumes across a change).
    kernels: KernelConfig = field(default_factory=KernelConfig, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 3:
            raise ConfigError(f"vocab_size must be an int >= 3, got {self.vocab_size!r}")
        if self.eos_id is None:
            self.eos_id = self.vocab_size - 1
        for name in ("blank_id", "eos_id"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < self.vocab_size:
                raise ConfigError(f"{name} must be in [0, {self.vocab_size}), got {v!r}")
        if self.blank_id == self.eos_id:
            raise ConfigError("blank_id and eos_id must differ")
        if self.audio is None and self.visual is None:
            raise ConfigError("at least one of audio and visual must be configured")
        if self.encoder is not None and self.encoder.layers < 1:
            raise ConfigError("encoder.layers must be >= 1 (or encoder: null for none)")
        if self.encoder is None and self.fusion.kind in ("raw_concat", "raw_sum"):
            raise ConfigError(f"fusion.kind {self.fusion.kind} needs a joint encoder (its input projection)")
        if self.encoder is None:
            dims = {
                c.model_dim
                for c, m in ((self.audio_encoder, self.audio), (self.video_encoder, self.visual))
                if m is not None
            }
            if len(dims) != 1:
                raise ConfigError(
                    f"without a joint encoder the per-modality encoders need one model_dim, got {sorted(dims)}"
                )
        if self.model_dim % self.decoder.heads:
            raise ConfigError(f"heads {self.decoder.heads} must divide the model's width {self.model_dim}")
        _check_choice("trim_streams", self.trim_streams, TRIM_POINTS)
        _check_choice("absent_modality", self.absent_modality, ABSENT_MODALITY)
        if self.absent_modality == "refused" and (
            self.modality_dropout.p_audio_only or self.modality_dropout.p_video_only
        ):
            raise ConfigError(
                "modality_dropout needs absent_modality learned or zeros (something stands for a dropped stream)"
            )
        if not self.ctc_head and self.loss.ctc_weight > 0:
            raise ConfigError("loss.ctc_weight must be 0 for a model without a CTC head (ctc_head: false)")
        if self.decode_modalities is not None:
            self.decode_modalities = tuple(self.decode_modalities)
            possible = self._possible_modalities()
            wrong = [m for m in self.decode_modalities if m not in possible]
            if wrong or not self.decode_modalities:
                raise ConfigError(
                    f"decode_modalities: {list(self.decode_modalities)} is not a non-empty subset of {list(possible)}"
                )
        self.freeze = tuple(self.freeze)
        for name in self.freeze:
            _check_choice("freeze", name, FREEZABLE)

    @property
    def model_dim(self) -> int:
        """The width of the encoder output (the joint encoder's, else the per-modality encoders')."""
        if self.encoder is not None:
            return self.encoder.model_dim
        return (self.video_encoder if self.audio is None else self.audio_encoder).model_dim

    @property
    def decodable_modalities(self) -> tuple[str, ...]:
        """The CLI modalities (a, v, av) it decodes: one stream alone needs its branch, and in a
        two-modality model something that stands for the other stream (``absent_modality``);
        ``decode_modalities`` narrows them."""
        possible = self._possible_modalities()
        return possible if self.decode_modalities is None else tuple(m for m in possible if m in self.decode_modalities)

    def _possible_modalities(self) -> tuple[str, ...]:
        short = {"audio": "a", "video": "v"}
        if len(self.modalities) == 1:
            return (short[self.modalities[0]],)
        return ("a", "v", "av") if self.absent_modality != "refused" else ("av",)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model has branches for: ("audio", "video"), or one of them."""
        return tuple(m for m, c in (("audio", self.audio), ("video", self.visual)) if c is not None)

    # ------------------------------------------------------------------ named sizes
    @classmethod
    def tiny(cls, vocab_size: int, **overrides: Any) -> AVSRConfig:
        """A CPU-sized model for tests and the synthetic recipe (1.9M parameters at V=40)."""
        enc = dict(kind="transformer", model_dim=128, heads=4, ffn_dim=256, dropout=0.1, max_len=3000)
        cfg = cls(
            vocab_size=vocab_size,
            audio=ConvAudioConfig(channels=(32, 64, 64, 128, 128)),
            visual=VisualConfig(trunk="resnet18", norm="group", activation="relu", width=0.25, norm_groups=8),
            audio_encoder=EncoderConfig(layers=1, **enc),
            video_encoder=EncoderConfig(layers=1, **enc),
            fusion=FusionConfig(kind="concat"),
            encoder=EncoderConfig(layers=2, **enc),
            decoder=DecoderConfig(layers=2, heads=4, ffn_dim=256, dropout=0.1, max_len=512),
            loss=LossConfig(ctc_weight=0.2, label_smoothing=0.01),
            modality_dropout=ModalityDropoutConfig(p_audio_only=0.25, p_video_only=0.25),
        )
        return dataclasses.replace(cfg, **overrides) if overrides else cfg

    @classmethod
    def seed_paper(cls, vocab_size: int = 40, **overrides: Any) -> AVSRConfig:
        """Pan et al. 2022 (LUMIA-Group/Leveraging-Self-Supervised-Learning-for-AVSR) sizes.

        The seed trains AO and VO models separately and then the AV model with both branches
        frozen, without modality dropout; a recipe reproducing that sets ``freeze`` and loads the
        stage weights. Its characters tokenizer has 40 classes (blank 0, EOS 39).
        """
        from avsr.models.audio import Wav2Vec2FrontEndConfig

        enc = dict(kind="transformer", model_dim=512, heads=8, ffn_dim=2048, dropout=0.1, max_len=6000)
        cfg = cls(
            vocab_size=vocab_size,
            # wav2vec_vox_new.pt = Large LV-60; the seed's fine-tuning overrides (train.py:88-96).
            audio=Wav2Vec2FrontEndConfig(
                arch="large_lv60k",
                normalize_waveform=True,
                mask_prob=0.5,
                mask_channel_prob=0.25,
                mask_channel_length=64,
                layer_drop_p=0.1,
                ffn_inner_dropout_p=0.1,
            ),
            visual=VisualConfig(trunk="resnet50", norm="batch", activation="relu", width=1.0),
            audio_encoder=EncoderConfig(layers=6, **enc),
            video_encoder=EncoderConfig(layers=6, **enc),
            fusion=FusionConfig(kind="concat"),
            encoder=EncoderConfig(layers=6, **enc),
            decoder=DecoderConfig(layers=6, heads=8, ffn_dim=2048, dropout=0.1, max_len=1024),
            loss=LossConfig(ctc_weight=0.2, label_smoothing=0.01),
            modality_dropout=ModalityDropoutConfig(p_audio_only=0.0, p_video_only=0.0),
        )
        return dataclasses.replace(cfg, **overrides) if overrides else cfg

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AVSRConfig:
        return from_plain(cls, data, "")

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> AVSRConfig:
        """From a config avsr wrote to a file (model.yaml, a run file), in any layout it has used."""
        return cls.from_dict(stored_config(data))


# ---------------------------------------------------------------------- generic helpers
_T = TypeVar("_T")


def to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def from_plain(cls: type[_T], data: Any, path: str) -> _T:
    where = path or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    if cls is AudioConfig:  # a tagged union: the class is the one registered for the kind
        try:
            cls = AudioConfig.for_kind(data.get("kind", "conv"))  # type: ignore[assignment]
        except ConfigError as exc:
            raise ConfigError(f"{path}.{exc}" if path else str(exc)) from None
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:
        if path and not str(exc).startswith(path):
            raise ConfigError(f"{path}.{exc}") from None
        raise
    except ValueError as exc:  # a config class that validates with ValueError (wav2vec 2.0's)
        raise ConfigError(f"{where}: {' '.join(str(exc).split())}") from None


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{path}: must not be null")
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _convert(non_none[0], value, path)
        for a in non_none:
            try:
                return _convert(a, value, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: {value!r} does not match {tp}")
    if dataclasses.is_dataclass(tp):
        return from_plain(tp, value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        args = get_args(tp)
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{path}: {value!r} is not one of {get_args(tp)}")
        return value
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


__all__ = [
    "AUDIO_CONFIGS",
    "AVSRConfig",
    "AudioConfig",
    "ConfigError",
    "ConvAudioConfig",
    "FbankAudioConfig",
    "DecoderConfig",
    "EncoderConfig",
    "FREEZABLE",
    "FusionConfig",
    "KernelConfig",
    "LossConfig",
    "ModalityDropoutConfig",
    "ResNet1DAudioConfig",
    "StackedFbankAudioConfig",
    "VisualConfig",
    "register_audio_config",
    "stored_config",
]
