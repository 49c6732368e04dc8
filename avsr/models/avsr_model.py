"""The one AVSR model used by training and inference alike.

::

    audio (B,S) --front-end--> (B,Ta,Da) --Linear--> audio encoder (B,T,da) --+
                                                                              +-- fusion --> joint encoder (B,T,d)
    video (B,T,H,W) --3-D stem+ResNet--> (B,Tv,Dv) --Linear--> video encoder -+        |               |
                                                                                   CTC head     attention decoder

The fusion is one of `avsr.models.fusion.FUSIONS` (``fusion.kind``: concat, sum, gated, ...).

Audio and video are aligned at 25 frames per second: when both are given the streams are trimmed
to the shorter one (per batch and per utterance: ``lengths = min(audio frames, video frames)``;
``trim_streams`` says where, or fits the audio to the video). A modality that is not given
(``None``) or dropped by modality dropout is replaced, after its per-modality encoder, by a
learned "absent" embedding (or zeros: ``absent_modality``), so one model decodes A, V and AV.

The published families are configurations of this model (`avsr.models.pretrained`): auto_avsr's
(ESPnet conformers, no joint encoder, an MLP fusion) and AV-HuBERT's (projection-only
per-modality encoders, a raw concatenation, a wav2vec 2.0 joint encoder, tied embeddings, no CTC
head).

Encoders and decoder are fairseq2 0.8.1 blocks (``StandardTransformerEncoder/Decoder``,
``ConformerBlock`` with LayerNorm convolution norm), with ``BatchLayout`` built from the lengths.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from fairseq2.gang import create_fake_gangs
from fairseq2.models.conformer import ConformerBlock, ConformerConvolution
from fairseq2.models.transformer import (
    AttentionBiasCache,
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
from fairseq2.models.transformer.multihead_attention import AttentionState, FullAttentionState
from fairseq2.models.transformer.sdpa.relative import RelativePositionalEncoding
from fairseq2.models.wav2vec2.position_encoder import Wav2Vec2PositionEncoder
from fairseq2.nn import (
    BatchLayout,
    IncrementalStateBag,
    Linear,
    SinusoidalPositionEncoder,
    StandardEmbedding,
    StandardLayerNorm,
    init_scaled_embedding,
)
from torch import Tensor, nn

from avsr.models.config import FREEZABLE, AVSRConfig, ConfigError, DecoderConfig, EncoderConfig, KernelConfig
from avsr.models.espnet import ESPNET_LAYER_NORM_EPS, ESPnetPositionEncoder
from avsr.models.espnet import ConformerConvolution as ESPnetConformerConvolution
from avsr.models.frontends import build_audio_frontend, build_visual_frontend
from avsr.models.fusion import FUSIONS, ConcatFusion, GatedFusion, SumFusion, register_fusion
from avsr.models.loss import ctc_loss_sum, decoder_io, label_smoothed_nll_sum
from avsr.models.rel_attention import RelativeAttention
from avsr.nn.frozen import set_trainable
from avsr.nn.sequence import lengths_to_mask


@dataclass
class ModelOutput:
    """``loss = w * ctc_loss + (1 - w) * att_loss``; both are means per token (CTC over the
    ``num_targets`` target tokens, CE over the ``num_targets + batch_size`` decoder outputs, i.e.
    with the final eos). ``accuracy`` is the attention decoder's teacher-forced token accuracy."""

    loss: Tensor
    ctc_loss: Tensor
    att_loss: Tensor
    num_targets: int
    accuracy: Tensor
    batch_size: int


def make_layout(seqs: Tensor, lengths: Tensor) -> BatchLayout:
    return BatchLayout.of(seqs, [int(n) for n in lengths.tolist()])


def _fs2_kwargs() -> dict[str, Any]:
    """fairseq2 attention/FFN layers are tensor-parallel-ready: built without ``gangs`` they call
    ``get_current_gangs()``, which silently runs ``init_fairseq2()`` (seconds of imports, and a
    later explicit ``init_fairseq2()`` then raises "already called"). We never shard these
    layers, so they get single-process fake gangs (tensor-parallel size 1: plain linear layers).
    Data parallelism (DDP/FSDP) is unaffected. The device is given too (else fairseq2 asks its
    runtime for the current device); the model is moved with ``.to()`` afterwards."""
    return {"gangs": create_fake_gangs(torch.device("cpu")), "device": torch.get_default_device()}


def _layer_norm(dim: int, eps: float = 1e-5) -> StandardLayerNorm:
    return StandardLayerNorm(dim, bias=True, eps=eps)


# ---------------------------------------------------------------------- encoders
def _transformer_layer(c: EncoderConfig, activation: nn.Module | None = None) -> StandardTransformerEncoderLayer:
    sdpa = create_default_sdpa(IdentityBias(), dropout_p=c.dropout)
    return StandardTransformerEncoderLayer(
        StandardMultiheadAttention(c.model_dim, c.heads, sdpa, **_fs2_kwargs()),
        _layer_norm(c.model_dim),
        StandardFeedForwardNetwork(
            c.model_dim, c.ffn_dim, bias=True, inner_activation=activation, inner_dropout_p=c.dropout, **_fs2_kwargs()
        ),
        _layer_norm(c.model_dim),
        norm_order=TransformerNormOrder.PRE if c.norm_order == "pre" else TransformerNormOrder.POST,
        dropout_p=c.dropout,
    )


def _conformer_block(c: EncoderConfig) -> ConformerBlock:
    d = c.model_dim

    def ffn() -> StandardFeedForwardNetwork:
        return StandardFeedForwardNetwork(
            d,
            c.ffn_dim,
            bias=True,
            inner_activation=nn.SiLU(),
            inner_dropout_p=c.dropout,
            **_fs2_kwargs(),
        )

    sdpa = RelativeAttention(d, c.heads, RelativePositionalEncoding(d, c.max_len), IdentityBias())
    return ConformerBlock(
        _layer_norm(d),
        ffn(),
        _layer_norm(d),
        StandardMultiheadAttention(d, c.heads, sdpa, **_fs2_kwargs()),
        _layer_norm(d),
        # LayerNorm, not BatchNorm: fairseq2's DDP turns BatchNorm into (CUDA-only) SyncBatchNorm.
        ConformerConvolution(d, c.conv_kernel, norm_type="layer_norm"),
        _layer_norm(d),
        ffn(),
        _layer_norm(d),
        dropout_p=c.dropout,
    )


def _espnet_conformer_block(c: EncoderConfig) -> ConformerBlock:
    """ESPnet's ``EncoderLayer`` (auto_avsr): ``x + FFN/2``, ``x + MHA``, ``x + Conv``,
    ``x + FFN/2``, LayerNorm; ReLU FFNs, LayerNorm eps 1e-12, convolutions with biases."""
    d = c.model_dim

    def ffn() -> StandardFeedForwardNetwork:
        return StandardFeedForwardNetwork(d, c.ffn_dim, bias=True, inner_dropout_p=c.dropout, **_fs2_kwargs())

    def norm() -> StandardLayerNorm:
        return _layer_norm(d, ESPNET_LAYER_NORM_EPS)

    sdpa = RelativeAttention(d, c.heads, RelativePositionalEncoding(d, c.max_len), IdentityBias())
    return ConformerBlock(
        norm(),
        ffn(),
        norm(),
        StandardMultiheadAttention(d, c.heads, sdpa, **_fs2_kwargs()),
        norm(),
        ESPnetConformerConvolution(d, c.conv_kernel),  # type: ignore[arg-type]  # fairseq2's interface
        norm(),
        ffn(),
        norm(),
        dropout_p=c.dropout,
    )


def _pre_norm_only(c: EncoderConfig) -> nn.Module | None:
    """A LayerNorm after the last layer of a pre-norm stack (post-norm layers end normalised)."""
    return _layer_norm(c.model_dim) if c.norm_order == "pre" else None


def _post_norm_only(c: EncoderConfig) -> nn.Module | None:
    """wav2vec 2.0's LayerNorm after the positions, in its post-norm variant."""
    return _layer_norm(c.model_dim) if c.norm_order == "post" else None


def _none(c: EncoderConfig) -> None:
    return None


@dataclass(frozen=True)
class EncoderKind:
    """What ``EncoderConfig.kind`` selects: the layer (None: no layers), the norm after the last
    one, the positions added to the projected input (None: the layers encode them, or none),
    the norm after the positions, whether the input gets a LayerNorm before the projection
    (wav2vec 2.0) or is scaled by sqrt(d) after it (ESPnet), and whether the layers' relative
    position table limits the length (``max_len``)."""

    block: Callable[[EncoderConfig], nn.Module] | None
    final_norm: Callable[[EncoderConfig], nn.Module | None] = _none
    positions: Callable[[EncoderConfig], nn.Module | None] = _none
    position_norm: Callable[[EncoderConfig], nn.Module | None] = _none
    input_norm: bool = False
    scale_input: bool = False
    length_limited: bool = False


#: EncoderConfig.kind -> its parts (the kinds config.ENCODER_KINDS allows)
ENCODERS: dict[str, EncoderKind] = {
    "transformer": EncoderKind(
        _transformer_layer, _pre_norm_only, positions=lambda c: SinusoidalPositionEncoder(c.model_dim, c.max_len)
    ),
    # no final norm: each conformer block ends with its own LayerNorm
    "conformer": EncoderKind(_conformer_block, length_limited=True),
    "espnet_conformer": EncoderKind(
        _espnet_conformer_block,
        lambda c: _layer_norm(c.model_dim, ESPNET_LAYER_NORM_EPS),
        scale_input=True,
        length_limited=True,
    ),
    "wav2vec2": EncoderKind(
        lambda c: _transformer_layer(c, nn.GELU()),
        _pre_norm_only,
        positions=lambda c: Wav2Vec2PositionEncoder(c.model_dim, c.pos_conv_kernel, c.pos_conv_groups),
        position_norm=_post_norm_only,
        input_norm=True,
    ),
    "projection": EncoderKind(None),
}


class SequenceEncoder(nn.Module):
    """[LayerNorm] -> [Linear input projection] -> positions -> dropout -> layers -> norm.

    Transformer layers get sinusoidal absolute positions; conformer blocks use relative-position
    self-attention (Transformer-XL style) and no absolute positions. ``espnet_conformer`` scales
    the projected input by sqrt(d) and ends with a LayerNorm (ESPnet's encoder); ``wav2vec2``
    normalises the input first and adds convolutional positions; ``projection`` is the Linear
    alone. Padded positions of the output are zero. (B, T, input_dim) -> (B, T, model_dim);
    ``input_dim=None``: the input is already (B, T, model_dim), no projection.
    """

    def __init__(self, config: EncoderConfig, input_dim: int | None = None) -> None:
        super().__init__()
        kind = ENCODERS[config.kind]
        d = config.model_dim
        self.model_dim = d
        self.max_len = config.max_len if kind.length_limited else None
        self.input_norm = _layer_norm(input_dim or d) if kind.input_norm else None
        self.proj = Linear(input_dim, d, bias=True) if input_dim is not None else None
        self.pos_encoder = kind.positions(config)
        self.pos_norm = kind.position_norm(config)
        self.input_scale = math.sqrt(d) if kind.scale_input else None
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None
        self.layers = (
            StandardTransformerEncoder([kind.block(config) for _ in range(config.layers)], kind.final_norm(config))
            if config.layers and kind.block is not None
            else None
        )

    def forward(self, seqs: Tensor, lengths: Tensor) -> Tensor:
        if self.max_len is not None and seqs.size(1) > self.max_len:
            raise ValueError(
                f"input of {seqs.size(1)} frames is longer than the model's limit of {self.max_len} "
                "(config max_len; decode shorter segments)"
            )
        layout = make_layout(seqs, lengths)
        if self.input_norm is not None:
            seqs = self.input_norm(seqs)
        if self.proj is not None:
            seqs = self.proj(seqs)
        if self.input_scale is not None:
            seqs = seqs * self.input_scale
        if self.pos_encoder is not None:
            seqs = self.pos_encoder(seqs, layout)
        if self.pos_norm is not None:
            seqs = self.pos_norm(seqs)
        if self.dropout is not None:
            seqs = self.dropout(seqs)
        if self.layers is not None:
            seqs = self.layers(seqs, layout)
        return seqs * lengths_to_mask(lengths, seqs.size(1))[:, :, None].to(seqs.dtype)


# ---------------------------------------------------------------------- decoder
class AttentionDecoder(nn.Module):
    """Token embedding + positions -> fairseq2 decoder layers -> vocabulary; full or one
    incremental step with a state bag. ``DecoderConfig`` chooses the published variants: the
    position table (ours, ESPnet's, fairseq1's), scaled or unscaled embeddings, an output bias
    (ESPnet) or an output projection tied to the embeddings (AV-HuBERT)."""

    def __init__(self, config: DecoderConfig, model_dim: int, vocab_size: int) -> None:
        super().__init__()
        d = model_dim
        embed = StandardEmbedding(vocab_size, d, init_fn=init_scaled_embedding)
        self.frontend = TransformerEmbeddingFrontend(
            d,
            embed,
            POSITION_ENCODERS[config.positions](d, config.max_len),
            no_scale=not config.scale_embeddings,
            dropout_p=config.dropout,
        )
        eps = config.layer_norm_eps
        pre = config.norm_order == "pre"
        order = TransformerNormOrder.PRE if pre else TransformerNormOrder.POST
        layers = []
        for _ in range(config.layers):
            self_attn = DecoderSelfAttention(
                d,
                config.heads,
                create_default_sdpa(CausalAttentionBias(), dropout_p=config.dropout),
                **_fs2_kwargs(),
            )
            cross_attn = EncoderDecoderAttention(
                d,
                config.heads,
                create_default_sdpa(IdentityBias(), dropout_p=config.dropout),
                **_fs2_kwargs(),
            )
            ffn = StandardFeedForwardNetwork(
                d, config.ffn_dim, bias=True, inner_dropout_p=config.dropout, **_fs2_kwargs()
            )
            layers.append(
                StandardTransformerDecoderLayer(
                    self_attn,
                    _layer_norm(d, eps),
                    cross_attn,
                    _layer_norm(d, eps),
                    ffn,
                    _layer_norm(d, eps),
                    norm_order=order,
                    dropout_p=config.dropout,
                )
            )
        self.layers = StandardTransformerDecoder(layers, _layer_norm(d, eps) if pre else None)
        self.final_proj = (
            None if config.tie_embeddings else Linear(d, vocab_size, bias=config.output_bias, init_fn=_init_final_proj)
        )
        self.max_len = config.max_len

    def output(self, seqs: Tensor) -> Tensor:
        """(B, L, d) -> logits (B, L, V)."""
        if self.final_proj is None:
            return F.linear(seqs, self.frontend.embed.weight)
        return self.final_proj(seqs)

    def forward(
        self,
        tokens: Tensor,
        token_layout: BatchLayout,
        encoded: Tensor,
        encoded_layout: BatchLayout,
        state_bag: IncrementalStateBag | None = None,
    ) -> Tensor:
        seqs, token_layout = self.frontend(tokens, token_layout, state_bag=state_bag)
        seqs = self.layers(seqs, token_layout, encoded, encoded_layout, state_bag=state_bag)
        return self.output(seqs)

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
        """See :meth:`AVSRModel.decode`: check the mode, build the batch layouts unless given,
        run, and advance the bag's step counter."""
        if state_bag is not None:
            if self.training:
                raise RuntimeError("incremental decoding needs eval mode (call model.eval())")
            if token_lens is not None:
                raise ValueError("token_lens (padding) is not supported in incremental decoding")
        if layouts is None:
            layouts = (
                make_layout(tokens, token_lens) if token_lens is not None else BatchLayout.of(tokens),
                make_layout(encoded, encoded_lens),
            )
        logits = self(tokens, layouts[0], encoded, layouts[1], state_bag)
        if state_bag is not None:
            state_bag.increment_step_nr(tokens.size(1))
        return logits


#: DecoderConfig.positions -> the position encoder for (model_dim, max_len): fairseq2's sinusoids,
#: ESPnet's interleaved table (no limit), fairseq1's (positions from 2, after its padding index 1).
POSITION_ENCODERS: dict[str, Callable[[int, int], nn.Module]] = {
    "sinusoidal": lambda d, max_len: SinusoidalPositionEncoder(d, max_len),
    "espnet": lambda d, max_len: ESPnetPositionEncoder(d),
    "fairseq": lambda d, max_len: SinusoidalPositionEncoder(d, max_len, _legacy_pad_idx=1),
}


class DecoderSelfAttention(StandardMultiheadAttention):
    """fairseq2's causal self-attention; one incremental step (one new token per row, no padding)
    attends to all cached keys directly, without the batch layout fairseq2 rebuilds per layer and
    step (a Python loop over the rows: as slow as the attention itself for a batch of beams)."""

    def forward(  # type: ignore[override]
        self,
        seqs: Tensor,
        seqs_layout: BatchLayout,
        keys: Tensor,
        keys_layout: BatchLayout,
        values: Tensor,
        bias_cache: AttentionBiasCache,
        *,
        state_bag: IncrementalStateBag | None = None,
        **kwargs: Any,
    ) -> Tensor:
        one_step = state_bag is not None and not self.training and seqs.size(1) == 1 and seqs is keys
        if not one_step or kwargs or self.num_query_groups > 1 or seqs_layout.padded:
            return super().forward(
                seqs, seqs_layout, keys, keys_layout, values, bias_cache, state_bag=state_bag, **kwargs
            )
        assert state_bag is not None
        q = self._project_q(seqs, seqs_layout, state_bag)  # (N, 1, H, d)
        k, v = self._project_kv(keys, keys_layout, values, state_bag)
        state = state_bag.maybe_get_state(self, AttentionState)
        if state is None:
            state_bag.set_state(self, FullAttentionState(k, v, state_bag.max_num_steps, state_bag.capacity_increment))
        else:
            state.append(k, v)
            k, v = state.get()  # (N, steps so far, H, d): the new token sees them all
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.output_proj(out.transpose(1, 2).flatten(-2, -1))


class EncoderDecoderAttention(StandardMultiheadAttention):
    """fairseq2's multi-head attention over the encoder output; in incremental decoding the
    projected encoder keys/values are kept once per utterance (`EncoderKVState`), not once per
    hypothesis: the beams of an utterance attend to them together, which reads them once per step
    instead of ``beam`` times. Training and full-sequence decoding are fairseq2's own path."""

    def forward(  # type: ignore[override]
        self,
        seqs: Tensor,
        seqs_layout: BatchLayout,
        keys: Tensor,
        keys_layout: BatchLayout,
        values: Tensor,
        bias_cache: AttentionBiasCache,
        *,
        state_bag: IncrementalStateBag | None = None,
        **kwargs: Any,
    ) -> Tensor:
        if self.training or state_bag is None or kwargs:
            return super().forward(
                seqs, seqs_layout, keys, keys_layout, values, bias_cache, state_bag=state_bag, **kwargs
            )
        state = state_bag.maybe_get_state(self, EncoderKVState)
        if state is None:
            k, v = self._project_kv(keys, keys_layout, values)  # (B, T, H, d), one row per utterance
            state = EncoderKVState.for_rows(k, v, keys_layout, seqs.size(0))
            state_bag.set_state(self, state)
        q = self._project_q(seqs, seqs_layout, state_bag)  # (N, S, H, d)
        return self.output_proj(state.attend(q).flatten(-2, -1))


def block_size(rows: Tensor, sources: int) -> int | None:
    """``g`` when ``rows`` (which source each row reads) is ``[0]*g + [1]*g + ...`` over ``sources``
    sources (the beams of each utterance in a block), else None."""
    if sources < 1 or len(rows) % sources:
        return None
    group = len(rows) // sources
    blocked = torch.arange(len(rows), device=rows.device) // group
    return group if torch.equal(rows, blocked) else None


class EncoderKVState(AttentionState):
    """Projected encoder keys/values (B, T, H, d) of one cross-attention layer during incremental
    decoding, with the encoder row each hypothesis row reads (``rows``, (N,)).

    A reorder only changes ``rows``, so it is exact for any order and never copies keys or values.
    While the rows are in blocks (utterance ``b`` owns rows ``b*g .. b*g+g-1``, which the beam
    search keeps), the ``g`` queries of an utterance are one attention call over its keys.
    """

    def __init__(self, k: Tensor, v: Tensor, key_mask: Tensor, rows: Tensor) -> None:
        self._k, self._v = k, v
        self._key_mask = key_mask  # (B, T) bool: valid encoder frames
        self._rows = rows
        self._group = self._block_size()

    @classmethod
    def for_rows(cls, k: Tensor, v: Tensor, layout: BatchLayout, num_rows: int) -> EncoderKVState:
        """``num_rows`` hypothesis rows over ``k.size(0)`` encoder rows: the same rows, or blocks
        of ``num_rows // k.size(0)`` rows per encoder row."""
        sources = k.size(0)
        if num_rows % sources:
            raise ValueError(f"{num_rows} decoder rows cannot be split over {sources} encoder rows")
        lengths = torch.as_tensor(layout.seq_lens, device=k.device)
        key_mask = torch.arange(k.size(1), device=k.device)[None, :] < lengths[:, None]
        rows = torch.arange(num_rows, device=k.device) // (num_rows // sources)
        return cls(k, v, key_mask, rows)

    def _block_size(self) -> int | None:
        return block_size(self._rows, self._k.size(0))

    def attend(self, q: Tensor) -> Tensor:
        """Scaled dot-product attention of queries (N, S, H, d) over each row's encoder frames."""
        n, s, h, d = q.shape
        if self._group is not None:  # (B, H, g*S, d) queries per utterance
            queries = q.reshape(self._k.size(0), self._group * s, h, d).transpose(1, 2)
            keys, values, mask = self._k.transpose(1, 2), self._v.transpose(1, 2), self._key_mask
        else:
            queries = q.transpose(1, 2)
            keys, values = self._k[self._rows].transpose(1, 2), self._v[self._rows].transpose(1, 2)
            mask = self._key_mask[self._rows]
        out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask[:, None, None, :])
        return out.transpose(1, 2).reshape(n, s, h, d)

    def append(self, k: Tensor, v: Tensor) -> None:
        raise RuntimeError("encoder keys/values are static during decoding")

    def get(self) -> tuple[Tensor, Tensor]:
        return self._k[self._rows], self._v[self._rows]

    def reorder(self, new_order: Tensor) -> None:
        self._rows = self._rows.index_select(0, new_order.to(self._rows.device))
        self._group = self._block_size()

    def size_bytes(self) -> int:
        return self.capacity_bytes()

    def capacity_bytes(self) -> int:
        return 2 * self._k.numel() * self._k.dtype.itemsize


def _trim(a: Tensor, a_lens: Tensor, v: Tensor, v_lens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cut (B, Ta, da) audio and (B, Tv, dv) video to their common frames: both streams and the
    shared lengths ``min(a_lens, v_lens)`` (B,)."""
    lens = torch.minimum(a_lens.to(v_lens.device), v_lens)
    width = min(a.size(1), v.size(1), max(int(lens.max()), 1))
    return a[:, :width], v[:, :width], lens


def _fit_frames(a: Tensor, width: int) -> Tensor:
    """(B, T, d) cut or zero-padded to (B, width, d) (AV-HuBERT fits the audio to the video)."""
    return a[:, :width] if a.size(1) >= width else F.pad(a, (0, 0, 0, width - a.size(1)))


def _init_final_proj(proj: Linear) -> None:
    nn.init.normal_(proj.weight, std=proj.input_dim**-0.5)
    if proj.bias is not None:
        nn.init.zeros_(proj.bias)


# ---------------------------------------------------------------------- the model
class AVSRModel(nn.Module):
    """Hybrid CTC/attention audio-visual speech recogniser; see the module docstring.

    Sub-modules (the names ``AVSRConfig.freeze`` uses): ``audio_frontend``, ``visual_frontend``,
    ``audio_encoder``, ``video_encoder`` (each with its input projection), ``fusion``, ``encoder``
    (joint), ``ctc_head``, ``decoder``; plus the parameters ``absent_audio``/``absent_video``
    when the model has both modalities.
    """

    def __init__(self, config: AVSRConfig, *, pretrained: bool = True) -> None:
        """``pretrained=False``: do not read the pretrained checkpoints the config names (e.g.
        ``audio.pretrained`` of a wav2vec2 front-end); ``load_model`` uses it, the weights then come from the file."""
        super().__init__()
        self.config = config
        # Training's modality dropout; a modality schedule stage may set its own for a while.
        self.modality_dropout = config.modality_dropout
        self.vocab_size = config.vocab_size
        self.blank_id = config.blank_id
        self.eos_id = int(config.eos_id)  # type: ignore[arg-type]
        d = config.model_dim
        self.model_dim = d
        dims: list[int] = []
        if config.audio is not None:
            self.audio_frontend = build_audio_frontend(config.audio, pretrained)
            self.audio_encoder = SequenceEncoder(config.audio_encoder, int(self.audio_frontend.output_dim))
            dims.append(config.audio_encoder.model_dim)
        else:
            self.audio_frontend = None
            self.audio_encoder = None
        if config.visual is not None:
            self.visual_frontend = build_visual_frontend(config.visual)
            self.video_encoder = SequenceEncoder(config.video_encoder, int(self.visual_frontend.output_dim))
            dims.append(config.video_encoder.model_dim)
        else:
            self.visual_frontend = None
            self.video_encoder = None
        self._stream_dims = dims
        if len(dims) == 2 and config.absent_modality == "learned":
            self.absent_audio = nn.Parameter(torch.randn(dims[0]) * 0.02)
            self.absent_video = nn.Parameter(torch.randn(dims[1]) * 0.02)
        else:
            self.absent_audio = None
            self.absent_video = None
        try:
            fusion_factory = FUSIONS[config.fusion.kind]
        except KeyError:
            raise ConfigError(f"fusion.kind: {config.fusion.kind!r} is not one of {', '.join(FUSIONS)}") from None
        self.fusion = fusion_factory(config.fusion, dims, d)
        fused_dim = int(getattr(self.fusion, "output_dim", d))
        self.encoder = (
            SequenceEncoder(config.encoder, fused_dim if fused_dim != d else None)
            if config.encoder is not None
            else None
        )
        self.ctc_head = Linear(d, config.vocab_size, bias=True) if config.ctc_head else None
        self.decoder = AttentionDecoder(config.decoder, d, config.vocab_size)
        for name in config.freeze:
            module = getattr(self, name)
            if module is None:
                raise ConfigError(f"freeze: the model has no {name}")
            set_trainable(module.parameters(), False)
        self._frozen = tuple(config.freeze)
        # Parts a training schedule holds frozen for now (`hold_parts`), with what it froze.
        self._held: dict[str, list[nn.Parameter]] = {}
        self.set_kernels(config.kernels)

    def compile_layerwise(self, *args: Any, **kwargs: Any) -> None:
        """``torch.compile`` (arguments as its) each encoder and decoder layer and the visual
        trunk in place, as fairseq2 compiles its own decoders: the ``BatchLayout`` of a batch is
        built between compiled regions (dynamo cannot trace its construction), and the
        parameters and state-dict keys stay what they were."""
        from fairseq2.models.transformer import TransformerDecoderLayer, TransformerEncoderLayer

        from avsr.models.visual import ResNetTrunk

        for module in self.modules():
            if isinstance(module, (TransformerEncoderLayer, TransformerDecoderLayer, ResNetTrunk)):
                module.compile(*args, **kwargs)

    def set_kernels(self, kernels: KernelConfig) -> None:
        """How the forward computes from now on (fused attention, channels-last frames): handed to
        the modules concerned; no weight changes, so it can change at any time."""
        from avsr.models.visual import VisualFrontEnd  # (lazily, as build_visual_frontend: torchvision)

        self.config = dataclasses.replace(self.config, kernels=kernels)
        for module in self.modules():
            if isinstance(module, RelativeAttention):
                module.fused = kernels.sdpa
            elif isinstance(module, VisualFrontEnd):
                module.channels_last = kernels.channels_last

    # ------------------------------------------------------------------ training helpers
    def train(self, mode: bool = True) -> AVSRModel:
        """As ``nn.Module.train``, but frozen parts (``config.freeze``) stay in eval mode."""
        super().train(mode)
        for name in (*self._frozen, *self._held):
            getattr(self, name).eval()
        return self

    def hold_parts(self, names: frozenset[str] | set[str]) -> None:
        """Hold exactly ``names`` (sub-module names) frozen for now: no gradient, eval mode. Call
        before every step (after ``update_freezing``, which it overrides); a released part gets
        back the gradients it had. Parts in ``config.freeze`` stay frozen whatever this says."""
        for name in FREEZABLE:
            module = getattr(self, name, None)
            if module is None or name in self._frozen:
                continue
            if name in names:
                held = self._held.setdefault(name, [])
                newly = [p for p in module.parameters() if p.requires_grad]
                set_trainable(newly, False)
                held += newly
                module.eval()
            elif name in self._held:
                set_trainable(self._held.pop(name), True)
                module.train(self.training)

    def update_freezing(self, step: int) -> None:
        """Call before every optimiser step (0-based): forwards the step to front-ends with a
        freezing schedule (wav2vec 2.0: transformer frozen while ``step < freeze_transformer_steps``).
        Parts listed in ``config.freeze`` stay frozen whatever the schedule says."""
        for name in ("audio_frontend", "visual_frontend"):
            frontend = getattr(self, name)
            fn = getattr(frontend, "update_freezing", None) if frontend is not None else None
            if callable(fn) and name not in self._frozen:
                fn(step)

    def optimizer_parameters(self) -> list[nn.Parameter]:
        """Every parameter that trains at some point: build the optimiser from this (not from
        ``requires_grad`` at step 0, when a freezing schedule may hold the wav2vec 2.0 transformer).
        Excludes ``config.freeze`` parts and what a front-end never trains (wav2vec 2.0's CNN)."""
        params: list[nn.Parameter] = []
        for name, child in self.named_children():
            if name in self._frozen:
                continue
            fn = getattr(child, "optimizer_parameters", None)
            if callable(fn):
                params.extend(fn())
            else:
                params.extend(p for p in child.parameters() if p.requires_grad)
        params.extend(p for p in (self.absent_audio, self.absent_video) if p is not None)
        return params

    def new_state_bag(self, max_len: int) -> IncrementalStateBag:
        """A state bag for ``decode`` good for up to ``max_len`` tokens (the leading eos included)."""
        return IncrementalStateBag(max_len + 1)

    @property
    def has_ctc(self) -> bool:
        """Whether it has a CTC head (AV-HuBERT's models decode attention-only)."""
        return self.ctc_head is not None

    @property
    def decodable_modalities(self) -> tuple[str, ...]:
        """The CLI modalities (a, v, av) this model decodes (see ``AVSRConfig``)."""
        return self.config.decodable_modalities

    # ------------------------------------------------------------------ encoder side
    def encode(
        self,
        audio: Tensor | None,
        audio_lens: Tensor | None,
        video: Tensor | None,
        video_lens: Tensor | None,
        *,
        video_corrupted: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """-> (encoded (B, T, d), lengths (B,) int64). Positions past the lengths are zero.

        ``audio`` (B, S) float32 16 kHz with ``audio_lens`` in samples; ``video`` (B, T, H, W)
        normalised grey frames with ``video_lens`` in frames. Either may be None (absent-modality
        path). A modality the model has no branch for is ignored. In training mode, modality
        dropout applies per utterance when both are given; ``video_corrupted`` (B,) bool marks
        videos that training on degraded video corrupted, whose audio it never drops.
        """
        use_audio = audio is not None and self.audio_frontend is not None
        use_video = video is not None and self.visual_frontend is not None
        if not (use_audio or use_video):
            raise ValueError(f"no input for this model's modalities ({', '.join(self.config.modalities)})")
        two = len(self.config.modalities) == 2
        if two and self.config.absent_modality == "refused" and not (use_audio and use_video):
            raise ValueError("this model needs audio and video input (it has nothing to stand for a missing one)")
        a = v = None
        if use_audio:
            assert audio is not None and self.audio_frontend is not None
            if audio_lens is None:
                audio_lens = torch.full((audio.size(0),), audio.size(1), dtype=torch.long, device=audio.device)
            a, a_lens = self.audio_frontend(audio, audio_lens.to(audio.device))
            a_lens = a_lens.to(torch.long)
        if use_video:
            assert video is not None and self.visual_frontend is not None
            if video_lens is None:
                video_lens = torch.full((video.size(0),), video.size(1), dtype=torch.long, device=video.device)
            v, v_lens = self.visual_frontend(video, video_lens.to(video.device))
            v_lens = v_lens.to(torch.long)
        if a is not None and v is not None:
            if a.size(0) != v.size(0):
                raise ValueError(f"audio batch {a.size(0)} != video batch {v.size(0)}")
            if self.config.trim_streams == "before_encoders":
                a, v, a_lens = _trim(a, a_lens, v, v_lens)
                v_lens = a_lens
            elif self.config.trim_streams == "audio_to_video":
                a, a_lens = _fit_frames(a, v.size(1)), v_lens
        if a is not None:
            a_lens = a_lens.clamp(min=1)
            a = self.audio_encoder(a[:, : int(a_lens.max())], a_lens)  # type: ignore[misc]
            lens = a_lens
        if v is not None:
            v_lens = v_lens.clamp(min=1)
            v = self.video_encoder(v[:, : int(v_lens.max())], v_lens)  # type: ignore[misc]
            lens = v_lens
        if a is not None and v is not None and self.config.trim_streams == "after_encoders":
            a, v, lens = _trim(a, a_lens, v, v_lens)
        width = int(lens.max())
        if two and self.config.absent_modality != "refused":
            ref = a if a is not None else v
            assert ref is not None
            if a is None:
                a = self._absent(0, ref, width)
            if v is None:
                v = self._absent(1, ref, width)
            elif use_audio and self.training:
                a, v = self._modality_dropout(a, v, video_corrupted)
        streams = [s for s in (a, v) if s is not None]
        fused = self.fusion(streams)
        if self.encoder is None:  # the fused streams are the encoder output: padding must be zero
            return fused * lengths_to_mask(lens, width)[:, :, None].to(fused.dtype), lens
        return self.encoder(fused, lens), lens

    def _modality_dropout(self, a: Tensor, v: Tensor, video_corrupted: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # Always through torch.where (even with p = 0): learned absent embeddings then take part in
        # every training step, so DDP needs no find_unused_parameters for them.
        # A corrupted video keeps its audio: alone, it would teach the lip reader wrong words.
        p_a = self.modality_dropout.p_audio_only
        p_v = self.modality_dropout.p_video_only
        u = torch.rand(a.size(0), device=a.device) if (p_a > 0 or p_v > 0) else a.new_ones(a.size(0))
        drop_video = (u < p_a)[:, None, None]
        drop_audio = (u >= p_a) & (u < p_a + p_v)
        if video_corrupted is not None:
            drop_audio = drop_audio & ~video_corrupted.to(device=a.device, dtype=torch.bool)
        drop_audio = drop_audio[:, None, None]
        a = torch.where(drop_audio, self._absent(0, a, a.size(1)), a)
        v = torch.where(drop_video, self._absent(1, v, v.size(1)), v)
        return a, v

    def _absent(self, stream: int, like: Tensor, width: int) -> Tensor:
        """What stands for stream 0 (audio) or 1 (video) when it is missing: (B, width, d_i) of
        the learned embedding, or zeros (``absent_modality``); batch, dtype and device of ``like``."""
        learned = (self.absent_audio, self.absent_video)[stream]
        if learned is None:
            return like.new_zeros(like.size(0), width, self._stream_dims[stream])
        return learned.to(like.dtype).expand(like.size(0), width, -1)

    def ctc_log_probs(self, encoded: Tensor) -> Tensor:
        """(B, T, d) -> CTC log-posteriors (B, T, V), float32."""
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head (attention-only: decode with --ctc-weight 0)")
        return torch.log_softmax(self.ctc_head(encoded).float(), dim=-1)

    # ------------------------------------------------------------------ decoder side
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
        """Attention-decoder logits (B, L, V) for ``tokens`` (B, L) that start with eos (= sos).

        Full mode (``state_bag=None``): ``tokens`` is the whole prefix; ``token_lens`` may mark
        right padding. Incremental mode (eval only): pass a bag from ``new_state_bag(max_len)``,
        first the prefix (usually ``[[eos]]*B``), then only the new token(s) of each step; the bag
        keeps the self-attention K/V and the projected encoder K/V, and this method advances its
        step counter by ``L``. In incremental mode ``encoded`` may have one row per utterance
        while ``tokens`` has ``g`` rows per utterance in blocks (the beams: rows ``b*g .. b*g+g-1``
        belong to utterance ``b``); the encoder keys/values are then projected and kept once per
        utterance. For beam search, call ``state_bag.reorder(rows)`` with the kept rows; any
        reorder is exact, and the encoder side never copies. ``layouts``: the (token, encoder)
        batch layouts, when the caller keeps them across steps (they cost a Python loop per row).
        """
        return self.decoder.decode(tokens, encoded, encoded_lens, state_bag, token_lens=token_lens, layouts=layouts)

    # ------------------------------------------------------------------ training forward
    def forward(
        self,
        audio: Tensor | None,
        audio_lens: Tensor | None,
        video: Tensor | None,
        video_lens: Tensor | None,
        targets: Tensor,
        target_lens: Tensor,
        *,
        video_corrupted: Tensor | None = None,
    ) -> ModelOutput:
        """Joint CTC/attention loss. ``targets`` (B, L) int64 token ids without sos/eos, padded
        with -1; ``target_lens`` (B,); ``video_corrupted``: see :meth:`encode`."""
        encoded, lens = self.encode(audio, audio_lens, video, video_lens, video_corrupted=video_corrupted)
        targets = targets.to(encoded.device)
        target_lens = target_lens.to(encoded.device)
        self._check_targets(targets, target_lens)
        num_targets = int(target_lens.sum())
        batch = targets.size(0)
        w = self.config.loss.ctc_weight
        zero = encoded.new_zeros((), dtype=torch.float32)

        if w > 0:
            ctc = ctc_loss_sum(self.ctc_log_probs(encoded), lens, targets, target_lens, self.blank_id)
            ctc = ctc / max(num_targets, 1)
        else:
            ctc = zero

        dec_in, dec_out, dec_lens = decoder_io(targets, target_lens, self.eos_id)
        if w < 1:
            logits = self.decode(dec_in, encoded, lens, token_lens=dec_lens)
            att_sum, correct, n = label_smoothed_nll_sum(logits, dec_out, self.config.loss.label_smoothing)
            att = att_sum / max(n, 1)
            accuracy = correct.float() / max(n, 1)
        else:
            att, accuracy = zero, zero
        loss = w * ctc + (1 - w) * att
        return ModelOutput(
            loss=loss,
            ctc_loss=ctc.detach(),
            att_loss=att.detach(),
            num_targets=num_targets,
            accuracy=accuracy.detach(),
            batch_size=batch,
        )

    def _check_targets(self, targets: Tensor, target_lens: Tensor) -> None:
        if targets.dim() != 2 or target_lens.dim() != 1 or target_lens.size(0) != targets.size(0):
            raise ValueError(
                f"targets must be (B, L) with target_lens (B,), got {tuple(targets.shape)} and {tuple(target_lens.shape)}"
            )
        if targets.numel() == 0:
            return
        valid = lengths_to_mask(target_lens, targets.size(1))
        if bool((target_lens > targets.size(1)).any()):
            raise ValueError("a target length exceeds the targets tensor width")
        vals = targets[valid]
        if vals.numel() and (int(vals.min()) < 0 or int(vals.max()) >= self.vocab_size):
            raise ValueError(f"target ids must be in [0, {self.vocab_size}), got {int(vals.min())}..{int(vals.max())}")
        if bool((vals == self.blank_id).any()) or bool((vals == self.eos_id).any()):
            raise ValueError("targets must not contain the blank or eos id (the model adds eos itself)")


__all__ = [
    "AVSRModel",
    "AttentionDecoder",
    "ConcatFusion",
    "FUSIONS",
    "GatedFusion",
    "ModelOutput",
    "SequenceEncoder",
    "SumFusion",
    "make_layout",
    "register_fusion",
]
