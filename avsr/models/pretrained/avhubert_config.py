"""AV-HuBERT's fine-tuned seq2seq model (facebookresearch/av_hubert ``AVHubertSeq2Seq``) as a
configuration of the one model (`avsr.models.avsr_model.AVSRModel`)::

    audio (B,S) 16 kHz -> log fbank, 4 frames stacked (B,T,104) -> Linear -> (B,T,D) --------------+
                                                                                                   concat (B,T,2D)
    video (B,T,88,88) -> 3-D stem 5x7x7 + PReLU + ResNet-18 (PReLU) (B,T,512) -> Linear (B,T,D) --+
      -> LayerNorm(2D) -> Linear(2D -> D) -> conv positions (k=128, 16 groups) -> transformer
      (wav2vec 2.0 / HuBERT layers, GELU, pre-LN with a final LayerNorm) -> (B,T,D)
      -> transformer decoder (fairseq's sinusoidal positions from 2, unscaled embeddings,
         pre-LN + final LayerNorm, ReLU FFN; output projection tied to the embeddings)

In the one model's terms (``AVHubertConfig.avsr_config``): the ``stacked_fbank`` audio front-end,
``prelu`` ResNet blocks, ``projection`` per-modality encoders, the ``raw_concat`` (or ``raw_sum``)
fusion, a ``wav2vec2`` joint encoder, ``positions: fairseq`` with ``scale_embeddings: false`` and
``tie_embeddings: true``, no CTC head; a modality not given is a zero stream (``absent_modality:
zeros``, as ``AVHubertModel.extract_finetune``) and with both, the audio frames are cut or
zero-padded to the video's (``trim_streams: audio_to_video``, as ``load_feature``).

Token ids are ours (:mod:`avsr.data.tokenizers.base`): 0 is the slot of fairseq's ``<pad>``
(never emitted), the last id is ``</s>`` (sos = eos, as fairseq's generator starts with eos),
and ids 1..V-2 are fairseq's ``<s>``, ``<unk>`` and the sentencepiece pieces in dictionary
order; the converter permutes the embedding rows accordingly
(:func:`avsr.models.pretrained.avhubert.fairseq_order`). Folders converted before the one model
(``family: avhubert``) load through ``build_from_config`` and ``stored_state``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from avsr.models.config import (
    AVSRConfig,
    ConfigError,
    DecoderConfig,
    EncoderConfig,
    FusionConfig,
    LossConfig,
    StackedFbankAudioConfig,
    VisualConfig,
    from_plain,
)

MODALITIES = ("audio", "video")
#: AV-HuBERT's ``modality_fuse`` -> the one model's fusion kind.
FUSIONS = {"concat": "raw_concat", "add": "raw_sum"}
#: AV-HuBERT's ResNet-18 widths (stem, stages 1-4) at width 1: its code fixes them.
RESNET_CHANNELS = (64, 64, 128, 256, 512)


def resnet_width(channels: tuple[int, ...]) -> float | None:
    """The ``VisualConfig.width`` whose ResNet-18 has these (stem, stage 1-4) channels, or None."""
    width = channels[0] / 64
    expected = tuple(max(1, round(c * width)) for c in RESNET_CHANNELS)
    return width if tuple(channels) == expected else None


@dataclass(frozen=True)
class AVHubertConfig:
    """The sizes of a fine-tuned AV-HuBERT seq2seq model (names after fairseq1's options).

    Named sizes: :meth:`base` and :meth:`large` (the published fine-tuned models) and :meth:`tiny`
    (tests). ``resnet_width`` scales AV-HuBERT's ResNet-18 (64, 64, 128, 256, 512; tiny: 1/8).
    ``modalities``: what the model was fine-tuned on; the model has both branches whatever they are,
    and decodes only these (audio and video: a, v and av).
    """

    vocab_size: int = 1000
    modalities: tuple[str, ...] = MODALITIES
    audio_filters: int = 26
    audio_stack: int = 4
    normalize_audio: bool = True
    resnet_width: float = 1.0
    resnet_relu: str = "prelu"
    modality_fuse: str = "concat"
    encoder_dim: int = 768
    encoder_layers: int = 12
    encoder_heads: int = 12
    encoder_ffn_dim: int = 3072
    encoder_norm_first: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    #: dropout of the encoder and of the decoder when fine-tuned (AV-HuBERT's ``dropout`` and
    #: ``decoder_dropout``); none at inference.
    dropout: float = 0.0
    decoder_dropout: float = 0.0
    decoder_layers: int = 6
    decoder_heads: int = 4
    decoder_ffn_dim: int = 3072
    decoder_norm_first: bool = True
    share_embeddings: bool = True
    scale_embedding: bool = False
    max_target_positions: int = 2048

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "audio_filters",
            "audio_stack",
            "encoder_dim",
            "encoder_layers",
            "encoder_heads",
            "encoder_ffn_dim",
            "conv_pos",
            "conv_pos_groups",
            "decoder_layers",
            "decoder_heads",
            "decoder_ffn_dim",
            "max_target_positions",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
        if self.vocab_size < 3:
            raise ConfigError(f"vocab_size: needs at least 3 ids, got {self.vocab_size}")
        mods = tuple(self.modalities)
        if not mods or any(m not in MODALITIES for m in mods) or len(set(mods)) != len(mods):
            raise ConfigError(f"modalities: {list(mods)!r} is not a non-empty subset of {list(MODALITIES)}")
        object.__setattr__(self, "modalities", mods)
        if self.resnet_relu not in ("prelu", "relu"):
            raise ConfigError(f"resnet_relu: {self.resnet_relu!r} is not one of prelu, relu")
        if self.modality_fuse not in FUSIONS:
            raise ConfigError(f"modality_fuse: {self.modality_fuse!r} is not one of {', '.join(FUSIONS)}")
        for name in ("dropout", "decoder_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name}: must be in [0, 1), got {value!r}")
        # the rest (heads dividing the width, the positions' groups, the stack) the model's config checks
        self.avsr_config()

    @property
    def model_dim(self) -> int:
        """Encoder and decoder width (AV-HuBERT's seq2seq decoder attends without a projection,
        so ``decoder_embed_dim`` must equal ``encoder_embed_dim``)."""
        return self.encoder_dim

    # ------------------------------------------------------------------ sizes
    @classmethod
    def base(cls, vocab_size: int = 1000, **overrides: Any) -> AVHubertConfig:
        """BASE: 12 encoder layers, 768-d, 12 heads, FFN 3072; decoder 6 layers, 4 heads, FFN 3072."""
        return cls(vocab_size=vocab_size, **overrides)

    @classmethod
    def large(cls, vocab_size: int = 1000, **overrides: Any) -> AVHubertConfig:
        """LARGE: 24 encoder layers, 1024-d, 16 heads, FFN 4096; decoder 9 layers, 8 heads, FFN 4096."""
        sizes = dict(
            encoder_dim=1024,
            encoder_layers=24,
            encoder_heads=16,
            encoder_ffn_dim=4096,
            decoder_layers=9,
            decoder_heads=8,
            decoder_ffn_dim=4096,
        )
        return cls(vocab_size=vocab_size, **{**sizes, **overrides})

    @classmethod
    def tiny(cls, vocab_size: int = 20, **overrides: Any) -> AVHubertConfig:
        """A few-hundred-thousand-parameter model with the same structure (tests)."""
        sizes = dict(
            resnet_width=0.125,
            encoder_dim=32,
            encoder_layers=2,
            encoder_heads=4,
            encoder_ffn_dim=64,
            conv_pos=8,
            conv_pos_groups=4,
            decoder_layers=2,
            decoder_heads=4,
            decoder_ffn_dim=64,
            max_target_positions=256,
        )
        return cls(vocab_size=vocab_size, **{**sizes, **overrides})

    # ------------------------------------------------------------------ the one model
    def avsr_config(self) -> AVSRConfig:
        """The one model's config for these sizes (AV-HuBERT's loss: attention only, label smoothing 0.1)."""
        d = self.encoder_dim
        projection = EncoderConfig(kind="projection", layers=0, model_dim=d, heads=self.encoder_heads, dropout=0.0)
        short = {"audio": "a", "video": "v"}
        decodes = ("a", "v", "av") if len(self.modalities) == 2 else (short[self.modalities[0]],)
        return AVSRConfig(
            vocab_size=self.vocab_size,
            blank_id=0,
            eos_id=self.vocab_size - 1,
            audio=StackedFbankAudioConfig(
                filters=self.audio_filters, stack=self.audio_stack, normalize=self.normalize_audio
            ),
            visual=VisualConfig(
                trunk="resnet18",
                norm="batch",
                activation=self.resnet_relu,
                block_activation=self.resnet_relu,
                width=self.resnet_width,
            ),
            audio_encoder=projection,
            video_encoder=projection,
            fusion=FusionConfig(kind=FUSIONS[self.modality_fuse]),
            encoder=EncoderConfig(
                kind="wav2vec2",
                layers=self.encoder_layers,
                model_dim=d,
                heads=self.encoder_heads,
                ffn_dim=self.encoder_ffn_dim,
                dropout=self.dropout,
                norm_order="pre" if self.encoder_norm_first else "post",
                pos_conv_kernel=self.conv_pos,
                pos_conv_groups=self.conv_pos_groups,
            ),
            decoder=DecoderConfig(
                layers=self.decoder_layers,
                heads=self.decoder_heads,
                ffn_dim=self.decoder_ffn_dim,
                dropout=self.decoder_dropout,
                norm_order="pre" if self.decoder_norm_first else "post",
                max_len=self.max_target_positions,
                positions="fairseq",
                scale_embeddings=self.scale_embedding,
                tie_embeddings=self.share_embeddings,
            ),
            loss=LossConfig(ctc_weight=0.0, label_smoothing=0.1),
            absent_modality="zeros",
            trim_streams="audio_to_video",
            ctc_head=False,
            decode_modalities=decodes,
        )

    # ------------------------------------------------------------------ YAML
    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AVHubertConfig:
        """Strict; also reads the layout folders converted before the one model wrote
        (``resnet_channels`` instead of ``resnet_width``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"avhubert config: expected a mapping, got {type(data).__name__}")
        data = dict(data)
        if "resnet_channels" in data:
            channels = data.pop("resnet_channels")
            width = (
                resnet_width(tuple(channels)) if isinstance(channels, (list, tuple)) and len(channels) == 5 else None
            )
            if width is None:
                raise ConfigError(f"resnet_channels: {channels!r} is not AV-HuBERT's ResNet-18 at some width")
            data["resnet_width"] = width
        return from_plain(cls, data, "avhubert config")


# ---------------------------------------------------------------------- folders converted before the one model
def build_from_config(config: Mapping[str, Any]):  # -> AVSRModel
    """The model (untrained) of a ``family: avhubert`` model.yaml's ``config`` (``avsr.models.io``)."""
    from avsr.models.avsr_model import AVSRModel

    return AVSRModel(AVHubertConfig.from_dict(config).avsr_config(), pretrained=False)


#: names in folders converted before the one model -> today's (first match wins)
_STORED_NAMES = [
    (r"^audio_proj\.", "audio_encoder.proj."),
    (r"^video_proj\.", "video_encoder.proj."),
    (r"^video_frontend\.", "visual_frontend."),
    (r"^encoder_frontend\.post_extract_layer_norm\.", "encoder.input_norm."),
    (r"^encoder_frontend\.model_dim_proj\.", "encoder.proj."),
    (r"^encoder_frontend\.pos_encoder\.", "encoder.pos_encoder."),
    (r"^encoder_frontend\.layer_norm\.", "encoder.pos_norm."),
    (r"^encoder\.layers\.(\d+)\.", r"encoder.layers.layers.\1."),
    (r"^encoder\.layer_norm\.", "encoder.layers.layer_norm."),
]
_STORED = [(re.compile(p), r) for p, r in _STORED_NAMES]


def stored_state(state: Mapping[str, Tensor], config: Mapping[str, Any]) -> dict[str, Tensor]:
    """Weights of a folder converted before the one model, under today's names."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for pattern, replacement in _STORED:
            if pattern.search(key):
                key = pattern.sub(replacement, key, count=1)
                break
        out[key] = value
    return out


__all__ = ["AVHubertConfig", "FUSIONS", "build_from_config", "resnet_width", "stored_state"]
