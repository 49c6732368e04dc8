"""AV-HuBERT's fine-tuned seq2seq model (facebookresearch/av_hubert ``AVHubertSeq2Seq``) rebuilt
from our building blocks (fairseq2 0.8.1 transformer layers, our 3-D stem and decoder attention).

::

    audio (B,S) 16 kHz -> log fbank, 4 frames stacked (B,T,104) -> Linear -> (B,T,D) --+
                                                                                      concat (B,T,2D)
    video (B,T,88,88) -> 3-D stem 5x7x7 + PReLU + ResNet-18 (PReLU) (B,T,512) -> Linear -+
      -> LayerNorm(2D) -> Linear(2D -> D) -> conv positions (k=128, 16 groups) -> transformer
      (wav2vec 2.0 / HuBERT layers, pre-LN with a final LayerNorm) -> (B,T,D)
      -> transformer decoder (sinusoidal positions from 2 as fairseq's, unscaled embeddings,
         pre-LN + final LayerNorm, ReLU FFN; output projection tied to the embeddings)

A modality that is not given is a zero (B,T,D) stream, as ``AVHubertModel.extract_finetune`` does.
With both, audio features are cut or zero-padded to the video's frames (``load_feature``).
There is no CTC head (``has_ctc = False``): decoding is attention-only beam search.

Token ids are ours (:mod:`avsr.data.tokenizers.base`): 0 is the slot of fairseq's ``<pad>``
(never emitted), the last id is ``</s>`` (sos = eos, as fairseq's generator starts with eos),
and ids 1..V-2 are fairseq's ``<s>``, ``<unk>`` and the sentencepiece pieces in dictionary
order; the converter permutes the embedding rows accordingly
(:func:`avsr.models.pretrained.avhubert.fairseq_order`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from fairseq2.models.transformer import (
    CausalAttentionBias,
    IdentityBias,
    StandardFeedForwardNetwork,
    StandardMultiheadAttention,
    StandardTransformerDecoder,
    StandardTransformerDecoderLayer,
    StandardTransformerEncoder,
    StandardTransformerEncoderLayer,
    TransformerEmbeddingFrontend,
    TransformerNormOrder,
    create_default_sdpa,
)
from fairseq2.models.wav2vec2 import Wav2Vec2Frontend
from fairseq2.models.wav2vec2.position_encoder import Wav2Vec2PositionEncoder
from fairseq2.nn import BatchLayout, IncrementalStateBag, Linear, SinusoidalPositionEncoder, StandardEmbedding
from torch import Tensor, nn

from avsr.models.avsr_model import DecoderSelfAttention, EncoderDecoderAttention, TokenDecoder, _fs2_kwargs, make_layout
from avsr.models.config import ConfigError
from avsr.nn.sequence import lengths_to_mask
from avsr.models.pretrained.avhubert_features import avhubert_audio_features
from avsr.models.visual import Stem3D

MODALITIES = ("audio", "video")
FUSIONS = ("concat", "add")


@dataclass(frozen=True)
class AVHubertConfig:
    """The architecture of a fine-tuned AV-HuBERT seq2seq model (names after fairseq1's options).

    Named sizes: :meth:`base` and :meth:`large` (the published fine-tuned models) and :meth:`tiny`
    (tests). ``resnet_channels``: the stem's and the four ResNet stages' widths (AV-HuBERT's are
    fixed at 64, 64, 128, 256, 512; ``tiny`` narrows them).
    """

    vocab_size: int = 1000
    #: What the model was fine-tuned on (the recogniser offers these: audio and video -> a, v, av).
    modalities: tuple[str, ...] = MODALITIES
    audio_filters: int = 26
    audio_stack: int = 4
    normalize_audio: bool = True
    resnet_channels: tuple[int, ...] = (64, 64, 128, 256, 512)
    resnet_relu: str = "prelu"
    modality_fuse: str = "concat"
    encoder_dim: int = 768
    encoder_layers: int = 12
    encoder_heads: int = 12
    encoder_ffn_dim: int = 3072
    encoder_norm_first: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    decoder_layers: int = 6
    decoder_heads: int = 4
    decoder_ffn_dim: int = 3072
    decoder_norm_first: bool = True
    share_embeddings: bool = True
    scale_embedding: bool = False
    max_target_positions: int = 2048

    def __post_init__(self) -> None:
        for name in ("vocab_size", "audio_filters", "audio_stack", "encoder_dim", "encoder_layers", "encoder_heads",
                     "encoder_ffn_dim", "conv_pos", "conv_pos_groups", "decoder_layers", "decoder_heads",
                     "decoder_ffn_dim", "max_target_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
        if self.vocab_size < 3:
            raise ConfigError(f"vocab_size: needs at least 3 ids, got {self.vocab_size}")
        if not self.modalities or any(m not in MODALITIES for m in self.modalities) or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"modalities: {list(self.modalities)!r} is not a non-empty subset of {list(MODALITIES)}")
        if len(self.resnet_channels) != 5 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.resnet_channels):
            raise ConfigError(f"resnet_channels: five positive integers (stem, stages 1-4), got {list(self.resnet_channels)!r}")
        if self.resnet_relu not in ("prelu", "relu"):
            raise ConfigError(f"resnet_relu: {self.resnet_relu!r} is not one of prelu, relu")
        if self.modality_fuse not in FUSIONS:
            raise ConfigError(f"modality_fuse: {self.modality_fuse!r} is not one of {', '.join(FUSIONS)}")
        for name, dim, heads in (("encoder", self.encoder_dim, self.encoder_heads), ("decoder", self.encoder_dim, self.decoder_heads)):
            if dim % heads:
                raise ConfigError(f"{name}_heads: {heads} does not divide the model width {dim}")
        if self.encoder_dim % self.conv_pos_groups:
            raise ConfigError(f"conv_pos_groups: {self.conv_pos_groups} does not divide encoder_dim {self.encoder_dim}")
        if self.encoder_dim % 2:
            raise ConfigError(f"encoder_dim: must be even (sinusoidal positions), got {self.encoder_dim}")

    @property
    def model_dim(self) -> int:
        """Encoder and decoder width (AV-HuBERT's seq2seq decoder attends without a projection,
        so ``decoder_embed_dim`` must equal ``encoder_embed_dim``)."""
        return self.encoder_dim

    @property
    def blank_id(self) -> int:
        """Our layout's id 0: fairseq's ``<pad>``, which the search never emits (no CTC blank)."""
        return 0

    @property
    def eos_id(self) -> int:
        return self.vocab_size - 1

    @property
    def audio_feature_dim(self) -> int:
        return self.audio_filters * self.audio_stack

    # ------------------------------------------------------------------ sizes
    @classmethod
    def base(cls, vocab_size: int = 1000, **overrides: Any) -> AVHubertConfig:
        """BASE: 12 encoder layers, 768-d, 12 heads, FFN 3072; decoder 6 layers, 4 heads, FFN 3072."""
        return cls(vocab_size=vocab_size, **overrides)

    @classmethod
    def large(cls, vocab_size: int = 1000, **overrides: Any) -> AVHubertConfig:
        """LARGE: 24 encoder layers, 1024-d, 16 heads, FFN 4096; decoder 9 layers, 8 heads, FFN 4096."""
        sizes = dict(encoder_dim=1024, encoder_layers=24, encoder_heads=16, encoder_ffn_dim=4096,
                     decoder_layers=9, decoder_heads=8, decoder_ffn_dim=4096)
        return cls(vocab_size=vocab_size, **{**sizes, **overrides})

    @classmethod
    def tiny(cls, vocab_size: int = 20, **overrides: Any) -> AVHubertConfig:
        """A few-hundred-thousand-parameter model with the same structure (tests)."""
        sizes = dict(resnet_channels=(8, 8, 8, 16, 16), encoder_dim=32, encoder_layers=2, encoder_heads=4,
                     encoder_ffn_dim=64, conv_pos=8, conv_pos_groups=4, decoder_layers=2, decoder_heads=4,
                     decoder_ffn_dim=64, max_target_positions=256)
        return cls(vocab_size=vocab_size, **{**sizes, **overrides})

    # ------------------------------------------------------------------ YAML
    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AVHubertConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"avhubert config: expected a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"avhubert config: unknown key(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            default = fields[name].default
            if isinstance(default, tuple):
                if not isinstance(value, (list, tuple)):
                    raise ConfigError(f"{name}: expected a list, got {value!r}")
                value = tuple(value)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"{name}: expected true or false, got {value!r}")
            elif isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{name}: expected an integer, got {value!r}")
            elif isinstance(default, str) and not isinstance(value, str):
                raise ConfigError(f"{name}: expected a string, got {value!r}")
            values[name] = value
        return cls(**values)


# ---------------------------------------------------------------------- video front-end
class BasicBlock(nn.Module):
    """AV-HuBERT's ResNet basic block (``avhubert/resnet.py``): like torchvision's, but with its
    own activation after each convolution (``relu1``, ``relu2``: PReLU per channel)."""

    def __init__(self, inplanes: int, planes: int, stride: int, relu: str) -> None:
        super().__init__()
        act = (lambda: nn.PReLU(planes)) if relu == "prelu" else nn.ReLU
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = act()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = act()
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + residual)


class ResNetTrunk(nn.Module):
    """``layer1..layer4`` of two basic blocks each (strides 1, 2, 2, 2), then global average pool."""

    def __init__(self, channels: tuple[int, ...], relu: str) -> None:
        super().__init__()
        inplanes = channels[0]
        for stage, (planes, stride) in enumerate(zip(channels[1:], (1, 2, 2, 2)), start=1):
            self.add_module(f"layer{stage}", nn.Sequential(BasicBlock(inplanes, planes, stride, relu), BasicBlock(planes, planes, 1, relu)))
            inplanes = planes
        self.output_dim = inplanes

    def forward(self, x: Tensor) -> Tensor:
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return x.mean(dim=(2, 3))


class VideoFrontEnd(nn.Module):
    """AV-HuBERT's ``ResEncoder``: Conv3d(1, 64, 5x7x7, stride (1,2,2)) + BatchNorm + PReLU + max
    pool 3x3/2 per frame (our :class:`~avsr.models.visual.Stem3D`), then the ResNet-18 trunk on
    the valid frames; (B, T, H, W) normalised grey frames -> (B, T, 512), zero past the lengths."""

    def __init__(self, channels: tuple[int, ...], relu: str) -> None:
        super().__init__()
        self.stem = Stem3D(channels[0], nn.BatchNorm2d, relu)
        self.trunk = ResNetTrunk(channels, relu)
        self.output_dim = self.trunk.output_dim

    def forward(self, video: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if video.dim() == 5 and video.size(1) == 1:  # (B, 1, T, H, W) as AV-HuBERT collates it
            video = video.squeeze(1)
        if video.dim() != 4:
            raise ValueError(f"video must be (B, T, H, W) grey frames, got shape {tuple(video.shape)}")
        batch, width = video.shape[:2]
        lengths = lengths.to(video.device).clamp(max=width)
        mask = lengths_to_mask(lengths, width)
        video = video * mask[:, :, None, None].to(video.dtype)  # the 3-D conv then sees zeros, as its own padding
        frames = self.trunk(self.stem(video, mask))
        out = frames.new_zeros(batch, width, self.output_dim)
        out[mask] = frames
        return out, lengths


# ---------------------------------------------------------------------- decoder
class Decoder(TokenDecoder):
    """fairseq1's ``TransformerDecoder`` as AV-HuBERT configures it, from fairseq2 layers."""

    def __init__(self, config: AVHubertConfig) -> None:
        super().__init__()
        d, v = config.model_dim, config.vocab_size
        self.frontend = TransformerEmbeddingFrontend(
            d, StandardEmbedding(v, d), SinusoidalPositionEncoder(d, config.max_target_positions, _legacy_pad_idx=1),
            no_scale=not config.scale_embedding,
        )
        order = TransformerNormOrder.PRE if config.decoder_norm_first else TransformerNormOrder.POST
        layers = []
        for _ in range(config.decoder_layers):
            layers.append(StandardTransformerDecoderLayer(
                DecoderSelfAttention(d, config.decoder_heads, create_default_sdpa(CausalAttentionBias()), **_kwargs()),
                _layer_norm(d),
                EncoderDecoderAttention(d, config.decoder_heads, create_default_sdpa(IdentityBias()), **_kwargs()),
                _layer_norm(d),
                StandardFeedForwardNetwork(d, config.decoder_ffn_dim, bias=True, **_kwargs()),  # ReLU, as fairseq's default
                _layer_norm(d),
                norm_order=order,
            ))
        self.layers = StandardTransformerDecoder(layers, _layer_norm(d) if config.decoder_norm_first else None)
        self.final_proj = None if config.share_embeddings else Linear(d, v, bias=False)

    def output(self, seqs: Tensor) -> Tensor:
        weight = self.frontend.embed.weight if self.final_proj is None else self.final_proj.weight
        return F.linear(seqs, weight)


def _kwargs() -> dict[str, Any]:
    """fairseq2 layer options (single-process fake gangs, see ``avsr_model._fs2_kwargs``) on the
    current default device, so that ``with torch.device("meta")`` builds a Large model for free."""
    return {**_fs2_kwargs(), "device": torch.get_default_device()}


def _layer_norm(dim: int) -> nn.Module:
    from fairseq2.nn import StandardLayerNorm

    return StandardLayerNorm(dim, bias=True)


# ---------------------------------------------------------------------- the model
class AVHubertModel(nn.Module):
    """AV-HuBERT seq2seq (no CTC head); the interface of :class:`~avsr.models.avsr_model.AVSRModel`
    that decoding uses: ``encode``, ``decode``, ``new_state_bag``, ``config.modalities``."""

    family = "avhubert"
    has_ctc = False

    def __init__(self, config: AVHubertConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = config.vocab_size
        self.blank_id = config.blank_id
        self.eos_id = config.eos_id
        d = config.model_dim
        self.audio_proj = Linear(config.audio_feature_dim, d, bias=True)
        self.video_frontend = VideoFrontEnd(config.resnet_channels, config.resnet_relu)
        self.video_proj = Linear(self.video_frontend.output_dim, d, bias=True)
        fused = 2 * d if config.modality_fuse == "concat" else d
        self.encoder_frontend = Wav2Vec2Frontend(
            d, fused, None, Wav2Vec2PositionEncoder(d, config.conv_pos, config.conv_pos_groups),
            layer_norm=not config.encoder_norm_first,
        )
        order = TransformerNormOrder.PRE if config.encoder_norm_first else TransformerNormOrder.POST
        layers = [
            StandardTransformerEncoderLayer(
                StandardMultiheadAttention(d, config.encoder_heads, create_default_sdpa(IdentityBias()), **_kwargs()),
                _layer_norm(d),
                StandardFeedForwardNetwork(d, config.encoder_ffn_dim, bias=True, inner_activation=nn.GELU(), **_kwargs()),
                _layer_norm(d),
                norm_order=order,
            )
            for _ in range(config.encoder_layers)
        ]
        self.encoder = StandardTransformerEncoder(layers, _layer_norm(d) if config.encoder_norm_first else None)
        self.decoder = Decoder(config)
        self.metadata: dict[str, Any] = {}

    # ------------------------------------------------------------------ encoder side
    def audio_features(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) 16 kHz waveforms -> AV-HuBERT's stacked, normalised filterbanks (B, T, 104)."""
        c = self.config
        return avhubert_audio_features(audio, audio_lens, num_filters=c.audio_filters, stack=c.audio_stack,
                                       normalize=c.normalize_audio)

    def encode(self, audio: Tensor | None, audio_lens: Tensor | None, video: Tensor | None,
               video_lens: Tensor | None) -> tuple[Tensor, Tensor]:
        """-> (encoded (B, T, D), lengths (B,)); positions past the lengths are zero. ``audio``
        (B, S) float 16 kHz in [-1, 1] (lengths in samples), ``video`` (B, T, H, W) normalised
        grey frames (lengths in frames); either may be None (a zero stream, as AV-HuBERT)."""
        if audio is None and video is None:
            raise ValueError("no input: give audio, video or both")
        a = v = None
        if audio is not None:
            if audio_lens is None:
                audio_lens = torch.full((audio.size(0),), audio.size(1), dtype=torch.long, device=audio.device)
            a, lens = self.audio_features(audio, audio_lens.to(audio.device))
            a = self.audio_proj(a.to(self.audio_proj.weight.dtype))
        if video is not None:
            if video_lens is None:
                video_lens = torch.full((video.size(0),), video.size(1), dtype=torch.long, device=video.device)
            v, lens = self.video_frontend(video.to(self.video_proj.weight.dtype), video_lens)
            v = self.video_proj(v)
            if a is not None:  # audio cut or zero-padded to the video's frames (load_feature)
                width = v.size(1)
                a = a[:, :width] if a.size(1) >= width else F.pad(a, (0, 0, 0, width - a.size(1)))
        ref = v if v is not None else a
        assert ref is not None
        lens = lens.to(device=ref.device, dtype=torch.long).clamp(min=1, max=ref.size(1))
        if a is None:
            a = torch.zeros_like(ref)
        if v is None:
            v = torch.zeros_like(ref)
        fused = torch.cat([a, v], dim=-1) if self.config.modality_fuse == "concat" else a + v
        layout = make_layout(fused, lens)
        x = self.encoder_frontend.post_extract_layer_norm(fused)
        x, _ = self.encoder_frontend.process_features(x, layout)
        x = self.encoder(x, layout)
        return x * lengths_to_mask(lens, x.size(1))[:, :, None].to(x.dtype), lens

    def ctc_log_probs(self, encoded: Tensor) -> Tensor:
        raise RuntimeError("AV-HuBERT has no CTC head (decode with the attention-only beam search)")

    # ------------------------------------------------------------------ decoder side
    def new_state_bag(self, max_len: int) -> IncrementalStateBag:
        return IncrementalStateBag(max_len + 1)

    def decode(self, tokens: Tensor, encoded: Tensor, encoded_lens: Tensor, state_bag: IncrementalStateBag | None = None,
               *, token_lens: Tensor | None = None, layouts: tuple[BatchLayout, BatchLayout] | None = None) -> Tensor:
        """Decoder logits (B, L, V) for ``tokens`` (B, L) starting with eos; as
        :meth:`AVSRModel.decode <avsr.models.avsr_model.AVSRModel.decode>` (full or incremental)."""
        return self.decoder.decode(tokens, encoded, encoded_lens, state_bag, token_lens=token_lens, layouts=layouts)


def build_from_config(config: dict[str, Any]) -> AVHubertModel:
    """The model (random weights) for the ``config`` mapping of a model.yaml (family ``avhubert``)."""
    return AVHubertModel(AVHubertConfig.from_dict(config))


__all__ = ["AVHubertConfig", "AVHubertModel", "build_from_config"]
