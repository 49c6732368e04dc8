"""Audio front-end: fairseq2's wav2vec 2.0 on raw 16 kHz waveforms, 50 Hz -> 25 Hz.

    waveform (B, S) float, lengths (B,) samples
      -> [per-utterance z-normalisation over the valid samples: ``normalize_waveform``]
      -> CNN feature extractor (7 strided convs, 320 samples per frame = 50 Hz)   always frozen
      -> feature LayerNorm, projection, [masking when training], conv positions,
         transformer layers (fairseq2 ``Wav2Vec2Frontend`` + ``StandardTransformerEncoder``)
                                                      frozen for ``freeze_transformer_steps``
      -> one layer's output (``layer``) or a softmax-weighted sum of all of them
      -> Conv1d(kernel ``downsample_kernel_size``, stride 2) to 25 Hz          always trained
      -> (B, T, output_dim), frame lengths (B,)

**Frame count (25 Hz).** An utterance of ``s`` samples gives ``T = (s + 320) // 640`` frames,
i.e. ``round(s / 640)``; for a 640-aligned input (``s = 640 * n``, one video frame = 640 samples)
exactly ``n`` frames come out. The CNN gives ``floor((s - 400) / 320) + 1`` frames at 50 Hz
(``2n - 1`` for ``s = 640 n``); before the stride-2 convolution the 50 Hz sequence is zero-padded
on the right (or trimmed) to what ``T`` frames need: at most one 25 Hz frame of padding.
Inputs shorter than 400 samples (the CNN's receptive field) are rejected.

**Padding.** Lengths go into fairseq2 ``BatchLayout``s (attention masks, positional-conv zeroing);
the first conv block's GroupNorm (base models), which PyTorch computes over the whole padded
width, is computed here over each utterance's valid frames only; positions beyond a length are
zeroed before the downsampling conv. So padding never changes the outputs of the valid frames
(tested against one-at-a-time runs), and padded output frames are zero.

**Freezing.** The CNN never trains (``requires_grad=False``, run under ``no_grad``). The rest of
wav2vec 2.0 (feature LayerNorm/projection, positional conv, transformer, mask embedding) is frozen
while ``step < freeze_transformer_steps``: the trainer calls ``set_step(step)`` (alias
``update_freezing``) before each step; it toggles ``requires_grad`` and, while frozen, the
forward runs that part under ``no_grad``. ``forward`` already honours the schedule for step 0
before the first call, but the ``requires_grad`` flags change only in ``set_step``: build the
model, wrap it in DDP (with ``find_unused_parameters=True`` when a freezing schedule, LayerDrop
or masking is used), build the optimiser over ``optimizer_parameters()`` (not over
``requires_grad`` parameters at step 0, which would drop the transformer for good), then call
``set_step``. The downsampling conv and the layer weights always train.

**Layers.** ``layer`` indexes the hidden states as Hugging Face's ``hidden_states`` do: 0 = the
transformer input (after the positional convolution), ``i`` = after layer ``i``, ``L``/``-1`` =
the encoder output (after the final LayerNorm of pre-LN models). Layers above the chosen one are
not run and never trained. ``weighted_layer_sum=True`` mixes all ``L+1`` with learned softmax
weights (SUPERB style).

**Masking** (fine-tuning augmentation as fairseq1's wav2vec 2.0 fine-tuning, training mode only):
time spans of ``mask_length`` frames replaced by the learned mask embedding (``mask_prob``,
at least ``mask_min_spans`` spans), channel spans of ``mask_channel_length`` set to zero
(``mask_channel_prob``). Random numbers come from torch's global CPU generator.

**Checkpoints.** ``load_pretrained(frontend, path)`` takes our converted safetensors, a fairseq1
``.pt`` (e.g. ``wav2vec_small.pt``, ``wav2vec_vox_new.pt``), a fairseq2 ``.pt``, or a Hugging Face
model directory (``avsr.models.convert``); loading is strict (one-line error naming missing and
unexpected keys and shape mismatches; architectural options that shapes cannot show, such as
pre/post-LN or head count, are compared with the checkpoint's config). The state dict keys of
the wav2vec 2.0 part are fairseq2 ``Wav2Vec2Model`` names (``encoder_frontend.*``, ``encoder.*``,
``masker.temporal_mask_embed``).

**Dtype/device.** Works on whatever device the module is on; give float32 waveforms (bf16/fp16
autocast is fine: the GroupNorm/LayerNorm of the CNN run in float32). ``lengths`` may live on
any device (they are read on the host once per batch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from fairseq2.models.transformer import AttentionBiasCache, TransformerNormOrder
from fairseq2.models.wav2vec2 import Wav2Vec2EncoderConfig
from fairseq2.models.wav2vec2.factory import Wav2Vec2EncoderFactory
from fairseq2.models.wav2vec2.masker import Wav2Vec2Masker
from fairseq2.nn import BatchLayout
from torch import Tensor, nn

from avsr.media.constants import SAMPLES_PER_FRAME
from avsr.models.config import AudioConfig
from avsr.models.convert import CheckpointError, ConvertedWav2Vec2, convert_checkpoint
from avsr.models.convert.common import (
    GUESSED_FIELDS,
    MASK_EMBED_KEY,
    encoder_config_from_dict,
    encoder_config_to_dict,
    structural_differences,
)
from avsr.nn.frozen import FreezeSchedule, set_trainable
from avsr.nn.state import state_problems

#: Samples per 25 Hz output frame (one video frame at 25 fps).
#: Samples per wav2vec 2.0 frame (50 Hz); the CNN's total stride.
WAV2VEC2_STRIDE = 320
#: The CNN's receptive field in samples: the shortest input that gives one frame.
MIN_SAMPLES = 400

#: Key prefixes of the wav2vec 2.0 part of the state dict (fairseq2 ``Wav2Vec2Model`` names).
WAV2VEC2_PREFIXES = ("encoder_frontend.", "encoder.", "masker.")


# --------------------------------------------------------------------------- architectures
def _base() -> Wav2Vec2EncoderConfig:
    return Wav2Vec2EncoderConfig()


def _large() -> Wav2Vec2EncoderConfig:
    c = _base()
    c.model_dim, c.num_encoder_layers, c.num_encoder_attn_heads, c.ffn_inner_dim = 1024, 24, 16, 4096
    c.dropout_p, c.layer_drop_p = 0.0, 0.2
    return c


def _large_lv60k() -> Wav2Vec2EncoderConfig:
    c = _large()
    c.layer_norm_features = False
    c.feature_extractor_bias = True
    c.feature_extractor_layer_norm_convs = True
    c.layer_drop_p = 0.0
    c.norm_order = TransformerNormOrder.PRE
    return c


def _tiny() -> Wav2Vec2EncoderConfig:
    """Test size: the real 7-layer CNN (320-sample stride) at 16 channels, 2 layers of width 32."""
    return Wav2Vec2EncoderConfig(
        model_dim=32,
        feature_dim=16,
        feature_extractor_layer_descs=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2,
        pos_conv_kernel_size=16,
        num_pos_conv_groups=4,
        num_encoder_layers=2,
        num_encoder_attn_heads=4,
        ffn_inner_dim=64,
        dropout_p=0.0,
        attn_dropout_p=0.0,
        layer_drop_p=0.0,
    )


#: Encoder architectures by name. ``base``/``large``/``large_lv60k`` mirror fairseq2 0.8.1's
#: registered ``wav2vec2`` archs (``models/wav2vec2/config.py``; checked in the tests) without
#: initialising fairseq2's asset/DI runtime. ``large_lv60k`` is the architecture of fairseq1's
#: ``wav2vec_vox_new.pt`` (LayerNorm CNN with bias, pre-LN transformer).
WAV2VEC2_ARCHS = {"base": _base, "large": _large, "large_lv60k": _large_lv60k, "tiny": _tiny}


def frames_for_samples(samples: int) -> int:
    """Number of 25 Hz frames the front-end returns for ``samples`` samples."""
    return (int(samples) + SAMPLES_PER_FRAME // 2) // SAMPLES_PER_FRAME


# --------------------------------------------------------------------------- config
@dataclass(kw_only=True)
class Wav2Vec2FrontEndConfig(AudioConfig):
    """Options of the wav2vec 2.0 audio front-end (see the module docstring); the ``wav2vec2``
    kind of `AudioConfig`."""

    kind: str = "wav2vec2"
    #: Encoder architecture: one of ``WAV2VEC2_ARCHS`` (base, large, large_lv60k, tiny).
    arch: str = "base"
    #: Overrides of fairseq2 ``Wav2Vec2EncoderConfig`` fields applied onto ``arch``
    #: (e.g. ``{"num_encoder_layers": 6}``; ``norm_order`` as "pre"/"post").
    encoder: dict[str, Any] = field(default_factory=dict)
    #: Checkpoint loaded by ``build_wav2vec2_frontend`` (any format ``load_pretrained`` takes).
    #: Leave ``None`` when the weights come from a checkpoint of the whole model.
    pretrained: str | None = None
    #: Feature size after the stride-2 conv; ``None`` = the encoder's model_dim.
    output_dim: int | None = None
    #: Kernel of the stride-2 conv (the seed paper: 2).
    downsample_kernel_size: int = 2
    #: Which hidden state to output: 0 = transformer input, L or -1 = last layer.
    layer: int = -1
    #: Output a learned softmax-weighted sum of all L+1 hidden states instead of ``layer``.
    weighted_layer_sum: bool = False
    #: The transformer (all of wav2vec 2.0 but the CNN) is frozen while step < this.
    freeze_transformer_steps: int = 0
    #: z-normalise each waveform over its valid samples. ``None``: as fairseq1 trained them, i.e.
    #: on for LayerNorm CNNs (Large LV-60 / ``large_lv60k``), off for GroupNorm ones (base, large).
    #: ``from_pretrained`` sets it from the checkpoint when the checkpoint says.
    normalize_waveform: bool | None = None
    #: Time masking when training (fairseq1 fine-tuning ``mask_prob``/``mask_length``).
    mask_prob: float = 0.0
    mask_length: int = 10
    mask_min_spans: int = 2
    #: Channel masking when training (``mask_channel_prob``/``mask_channel_length``).
    mask_channel_prob: float = 0.0
    mask_channel_length: int = 10
    #: Fine-tuning regularisation; ``None`` keeps the architecture's value.
    dropout_p: float | None = None
    attn_dropout_p: float | None = None
    ffn_inner_dropout_p: float | None = None
    layer_drop_p: float | None = None

    def __post_init__(self) -> None:
        if self.arch not in WAV2VEC2_ARCHS:
            raise ValueError(f"wav2vec2 arch: expected one of {sorted(WAV2VEC2_ARCHS)}, got {self.arch!r}")
        if not isinstance(self.encoder, Mapping):
            raise ValueError("wav2vec2 encoder: expected a mapping of Wav2Vec2EncoderConfig overrides")
        self.encoder = dict(self.encoder)
        for name in ("mask_prob", "mask_channel_prob"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"wav2vec2 {name}: must be in [0, 1), got {value!r}")
        for name in ("dropout_p", "attn_dropout_p", "ffn_inner_dropout_p", "layer_drop_p"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= float(value) < 1.0:
                raise ValueError(f"wav2vec2 {name}: must be in [0, 1), got {value!r}")
        for name in ("mask_length", "mask_channel_length", "downsample_kernel_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"wav2vec2 {name}: must be >= 1")
        if self.mask_min_spans < 0 or self.freeze_transformer_steps < 0:
            raise ValueError("wav2vec2 mask_min_spans and freeze_transformer_steps must be >= 0")
        if self.output_dim is not None and self.output_dim < 1:
            raise ValueError("wav2vec2 output_dim: must be >= 1")
        self.encoder_config()  # validate the overrides now

    def encoder_config(self) -> Wav2Vec2EncoderConfig:
        """The fairseq2 encoder config: ``arch`` + ``encoder`` overrides + regularisation options."""
        config = encoder_config_from_dict(self.encoder, WAV2VEC2_ARCHS[self.arch]())
        for name in ("dropout_p", "attn_dropout_p", "ffn_inner_dropout_p", "layer_drop_p"):
            value = getattr(self, name)
            if value is not None:
                setattr(config, name, float(value))
        if config.use_fbank:
            raise ValueError("wav2vec2: use_fbank=True is not supported (the front-end takes waveforms)")
        stride = 1
        for _, _, s in config.feature_extractor_layer_descs:
            stride *= int(s)
        if stride != WAV2VEC2_STRIDE:
            raise ValueError(f"wav2vec2: the CNN strides must multiply to {WAV2VEC2_STRIDE} (50 Hz), got {stride}")
        if config.model_dim % config.num_encoder_attn_heads:
            raise ValueError("wav2vec2: model_dim must be a multiple of num_encoder_attn_heads")
        return config

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Wav2Vec2FrontEndConfig:
        """From a YAML/JSON mapping; unknown keys raise ``TypeError`` (as the constructor does)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TypeError(f"unknown wav2vec2 front-end option(s): {', '.join(unknown)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_pretrained(cls, path: str | Path, **options: Any) -> Wav2Vec2FrontEndConfig:
        """A config whose encoder is the architecture stored in checkpoint ``path`` (all encoder
        fields written out, so the config rebuilds the model without the file), with
        ``pretrained=path`` and the checkpoint's waveform normalisation unless given."""
        converted = convert_checkpoint(path)
        if converted.encoder_config is None:
            raise CheckpointError(f"{path}: the checkpoint does not store its architecture; give arch/encoder")
        options.setdefault("pretrained", str(path))
        if converted.normalize_waveform is not None:
            options.setdefault("normalize_waveform", bool(converted.normalize_waveform))
        encoder = encoder_config_to_dict(converted.encoder_config)
        encoder.update(options.pop("encoder", {}) or {})
        return cls(arch=options.pop("arch", "base"), encoder=encoder, **options)


# --------------------------------------------------------------------------- masking
def _span_mask(lengths: Sequence[int], width: int, prob: float, span: int, min_spans: int) -> Tensor:
    """Boolean (len(lengths), width) mask of random spans inside each row's valid length,
    fairseq1 ``compute_mask_indices`` style ("static" lengths, overlaps allowed): about
    ``prob * n / span`` spans per row (random rounding), at least ``min_spans``, never the whole
    row. Rows too short for a span of 2 stay unmasked. Built on the CPU."""
    mask = torch.zeros(len(lengths), width, dtype=torch.bool)
    for row, n in enumerate(lengths):
        n = min(int(n), width)
        s = min(span, n - 1)
        if prob <= 0.0 or s < 1:
            continue
        num = max(min_spans, int(prob * n / span + float(torch.rand(()))))
        num = min(num, n - s + 1)
        if num <= 0:
            continue
        starts = torch.randperm(n - s + 1)[:num]
        idx = (starts[:, None] + torch.arange(s)).flatten()
        mask[row, idx] = True
        if bool(mask[row, :n].all()):
            mask[row, int(torch.randint(n, ()))] = False
    return mask


class Wav2Vec2FineTuneMasker(Wav2Vec2Masker):
    """Time masking with the (pretrained) mask embedding + channel masking with zeros.

    Its parameter is named like fairseq2's ``StandardWav2Vec2Masker`` (``temporal_mask_embed``),
    so checkpoints' ``mask_emb``/``masked_spec_embed`` load into it."""

    def __init__(
        self,
        model_dim: int,
        *,
        mask_prob: float,
        mask_length: int,
        min_spans: int,
        channel_prob: float,
        channel_length: int,
    ) -> None:
        super().__init__()
        self.mask_prob = mask_prob
        self.mask_length = mask_length
        self.min_spans = min_spans
        self.channel_prob = channel_prob
        self.channel_length = channel_length
        self.temporal_mask_embed: nn.Parameter | None
        if mask_prob > 0.0:
            self.temporal_mask_embed = nn.Parameter(torch.empty(model_dim))
            nn.init.uniform_(self.temporal_mask_embed)
        else:
            self.register_parameter("temporal_mask_embed", None)

    def forward(self, seqs: Tensor, seqs_layout: BatchLayout) -> tuple[Tensor, Tensor]:
        batch, width, dim = seqs.shape
        lengths = list(seqs_layout.seq_lens) if seqs_layout.padded else [width] * batch
        temporal = torch.zeros(batch, width, dtype=torch.bool, device=seqs.device)
        if self.temporal_mask_embed is not None:
            temporal = _span_mask(lengths, width, self.mask_prob, self.mask_length, self.min_spans).to(seqs.device)
            seqs = torch.where(temporal.unsqueeze(-1), self.temporal_mask_embed.to(seqs.dtype), seqs)
        if self.channel_prob > 0.0:
            channels = _span_mask([dim] * batch, dim, self.channel_prob, self.channel_length, 0).to(seqs.device)
            seqs = seqs.masked_fill(channels.unsqueeze(1), 0.0)
        return seqs, temporal

    def extra_repr(self) -> str:
        return (
            f"mask_prob={self.mask_prob}, mask_length={self.mask_length}, min_spans={self.min_spans}, "
            f"channel_prob={self.channel_prob}, channel_length={self.channel_length}"
        )


class _KeepDroppedLayerInGraph(torch.autograd.Function):
    """LayerDrop that still ties the dropped layer into the graph with a zero gradient (as
    fairseq2's encoder does), so DDP sees every parameter used in every step."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, dropped: Tensor) -> Tensor:  # noqa: ARG004
        return x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return grad, torch.zeros_like(grad)


def _masked_group_norm(x: Tensor, lengths: Tensor, norm: nn.GroupNorm) -> Tensor:
    """GroupNorm of (B, C, T) over each row's first ``lengths[b]`` frames only (float32)."""
    batch, channels, width = x.shape
    groups = norm.num_groups
    valid = (torch.arange(width, device=x.device)[None, :] < lengths[:, None]).to(torch.float32)
    valid = valid.view(batch, 1, 1, width)
    xf = x.float().view(batch, groups, channels // groups, width)
    count = valid.sum(dim=3, keepdim=True) * (channels // groups)
    mean = (xf * valid).sum(dim=(2, 3), keepdim=True) / count
    var = (((xf - mean) * valid) ** 2).sum(dim=(2, 3), keepdim=True) / count
    y = ((xf - mean) * torch.rsqrt(var + norm.eps)).view(batch, channels, width)
    if norm.weight is not None:
        y = y * norm.weight.float()[None, :, None] + norm.bias.float()[None, :, None]
    return y.type_as(x)


# --------------------------------------------------------------------------- the front-end
class Wav2Vec2FrontEnd(nn.Module):
    """wav2vec 2.0 (fairseq2) + stride-2 conv: (B, S) 16 kHz -> (B, T, output_dim) at 25 Hz."""

    output_dim: int

    def __init__(self, config: Wav2Vec2FrontEndConfig) -> None:
        super().__init__()
        enc_cfg = config.encoder_config()
        self.config = config
        self.encoder_config = enc_cfg
        factory = Wav2Vec2EncoderFactory(enc_cfg)
        # fairseq2 modules under fairseq2 Wav2Vec2Model names: converted checkpoints load as is.
        self.encoder_frontend = factory.create_encoder_frontend()
        self.encoder = factory.create_encoder()
        self.masker: Wav2Vec2FineTuneMasker | None
        if config.mask_prob > 0.0 or config.mask_channel_prob > 0.0:
            self.masker = Wav2Vec2FineTuneMasker(
                enc_cfg.model_dim,
                mask_prob=config.mask_prob,
                mask_length=config.mask_length,
                min_spans=config.mask_min_spans,
                channel_prob=config.mask_channel_prob,
                channel_length=config.mask_channel_length,
            )
        else:
            self.masker = None

        num_layers = enc_cfg.num_encoder_layers
        self.num_layers = num_layers
        if config.weighted_layer_sum:
            self.hidden_index = num_layers
            self.layer_weights: nn.Parameter | None = nn.Parameter(torch.zeros(num_layers + 1))
        else:
            if not -(num_layers + 1) <= config.layer <= num_layers:
                raise ValueError(f"wav2vec2 layer: must be in [{-(num_layers + 1)}, {num_layers}], got {config.layer}")
            self.hidden_index = config.layer % (num_layers + 1)
            self.layer_weights = None

        self.normalize_waveform = (
            bool(config.normalize_waveform)
            if config.normalize_waveform is not None
            else bool(enc_cfg.feature_extractor_layer_norm_convs)
        )
        self.model_dim = enc_cfg.model_dim
        self.output_dim = int(config.output_dim or enc_cfg.model_dim)
        self.downsample = nn.Conv1d(enc_cfg.model_dim, self.output_dim, config.downsample_kernel_size, stride=2)

        # The CNN never trains; layers above the selected one are never run.
        set_trainable(self._cnn_parameters(), False)
        set_trainable(self._unused_parameters(), False)
        self.step = 0
        self._frozen = config.freeze_transformer_steps > 0

    # ---------------------------------------------------------------- parameter groups
    def _cnn_parameters(self) -> Iterator[nn.Parameter]:
        extractor = self.encoder_frontend.feature_extractor
        return iter(extractor.parameters()) if extractor is not None else iter(())

    def _unused_parameters(self) -> Iterator[nn.Parameter]:
        for layer in list(self.encoder.layers)[self.hidden_index :]:
            yield from layer.parameters()
        if self.hidden_index < self.num_layers and getattr(self.encoder, "layer_norm", None) is not None:
            yield from self.encoder.layer_norm.parameters()

    def transformer_parameters(self) -> list[nn.Parameter]:
        """The parameters ``freeze_transformer_steps`` freezes (wav2vec 2.0 minus the CNN and
        the layers that are never run)."""
        skip = {id(p) for p in self._cnn_parameters()} | {id(p) for p in self._unused_parameters()}
        params = [p for p in self.encoder_frontend.parameters() if id(p) not in skip]
        params += [p for p in self.encoder.parameters() if id(p) not in skip]
        if self.masker is not None:
            params += list(self.masker.parameters())
        return params

    def optimizer_parameters(self) -> list[nn.Parameter]:
        """Everything that trains at some point (build the optimiser from this, not from
        ``requires_grad`` at step 0): transformer + downsampling conv + layer weights."""
        params = self.transformer_parameters() + list(self.downsample.parameters())
        if self.layer_weights is not None:
            params.append(self.layer_weights)
        return params

    # ---------------------------------------------------------------- freezing schedule
    @property
    def transformer_frozen(self) -> bool:
        return self._frozen

    def set_step(self, step: int) -> None:
        """Apply the freezing schedule for optimiser step ``step`` (0-based): the transformer is
        frozen while ``step < freeze_transformer_steps`` and trainable afterwards."""
        self.step = int(step)
        frozen = FreezeSchedule(self.config.freeze_transformer_steps).frozen_at(self.step)
        self._frozen = frozen
        set_trainable(self.transformer_parameters(), not frozen)

    def update_freezing(self, step: int) -> None:
        """Alias of ``set_step`` (the name the model assembler calls)."""
        self.set_step(step)

    def train(self, mode: bool = True) -> Wav2Vec2FrontEnd:
        super().train(mode)
        if self.encoder_frontend.feature_extractor is not None:
            self.encoder_frontend.feature_extractor.eval()  # frozen; no dropout there anyway
        return self

    # ---------------------------------------------------------------- forward
    def _check_inputs(self, waveform: Tensor, lengths: Tensor) -> list[int]:
        if waveform.dim() != 2:
            raise ValueError(f"wav2vec2 front-end: waveform must be (B, S), got shape {tuple(waveform.shape)}")
        if lengths.dim() != 1 or lengths.numel() != waveform.size(0):
            raise ValueError(
                f"wav2vec2 front-end: lengths must be (B,) = ({waveform.size(0)},), got {tuple(lengths.shape)}"
            )
        lens = [int(x) for x in lengths.tolist()]
        width = waveform.size(1)
        for n in lens:
            if n > width:
                raise ValueError(f"wav2vec2 front-end: a length of {n} samples exceeds the batch width {width}")
            if n < MIN_SAMPLES:
                raise ValueError(
                    f"wav2vec2 front-end: an utterance of {n} samples is shorter than the CNN's "
                    f"{MIN_SAMPLES}-sample receptive field"
                )
        return lens

    def _run_cnn(self, waveform: Tensor, lens: list[int]) -> tuple[Tensor, list[int]]:
        padded = any(n != waveform.size(1) for n in lens)
        x = waveform.float()
        if padded:
            valid = torch.arange(x.size(1), device=x.device)[None, :] < torch.tensor(lens, device=x.device)[:, None]
            x = x.masked_fill(~valid, 0.0)
        if self.normalize_waveform:
            n = torch.tensor(lens, device=x.device, dtype=torch.float32)[:, None]
            mean = x.sum(1, keepdim=True) / n
            centred = x - mean
            if padded:
                centred = centred.masked_fill(~valid, 0.0)
            var = (centred**2).sum(1, keepdim=True) / n
            x = centred * torch.rsqrt(var + 1e-5)
        extractor = self.encoder_frontend.feature_extractor
        x = x.to(extractor.layers[0].conv.weight.dtype).unsqueeze(1)  # (B, 1, S) in the model's dtype
        cur = list(lens)
        for layer, (_, kernel, stride) in zip(extractor.layers, self.encoder_config.feature_extractor_layer_descs):
            x = layer.conv(x)
            cur = [(c - kernel) // stride + 1 for c in cur]
            if min(cur) < 1:
                raise ValueError("wav2vec2 front-end: an utterance is too short for the CNN")
            if layer.dropout is not None:
                x = layer.dropout(x)
            if layer.group_norm is not None:
                if padded:
                    x = _masked_group_norm(x, torch.tensor(cur, device=x.device), layer.group_norm)
                else:
                    x = layer.group_norm(x)
            if layer.layer_norm is not None:
                x = layer.layer_norm(x.transpose(1, 2)).transpose(1, 2)
            x = layer.activation(x)
        return x.transpose(1, 2), cur  # (B, T50, C)

    def _run_transformer(self, feats: Tensor, layout: BatchLayout) -> Tensor | list[Tensor]:
        frontend = self.encoder_frontend
        seqs = frontend.post_extract_layer_norm(feats)
        masker = self.masker if (self.training and self.masker is not None) else None
        seqs, _ = frontend.process_features(seqs, layout, masker)
        hidden: list[Tensor] | None = [seqs] if self.layer_weights is not None else None
        encoder = self.encoder
        n_run = self.hidden_index
        drop_p = float(getattr(encoder, "layer_drop_p", 0.0))
        drops = (torch.rand(n_run) <= drop_p).tolist() if (self.training and drop_p > 0.0) else [False] * n_run
        cache = AttentionBiasCache()
        for i in range(n_run):
            layer = encoder.layers[i]
            if drops[i]:
                if torch.is_grad_enabled():
                    seqs = _KeepDroppedLayerInGraph.apply(seqs, layer(seqs, layout, cache))
            else:
                seqs = layer(seqs, layout, cache)
            if hidden is not None:
                hidden.append(seqs)
        if n_run == self.num_layers:
            if getattr(encoder, "layer_norm", None) is not None:
                seqs = encoder.layer_norm(seqs)
                if hidden is not None:
                    hidden[-1] = seqs
            if getattr(encoder, "dropout", None) is not None:
                seqs = encoder.dropout(seqs)
        return hidden if hidden is not None else seqs

    def extract_features(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The selected wav2vec 2.0 features at 50 Hz, before the stride-2 conv.

        Returns (B, T50, model_dim) with zeros beyond each length, and the 50 Hz lengths (int64)."""
        lens = self._check_inputs(waveform, lengths)
        with torch.no_grad():
            feats, lens50 = self._run_cnn(waveform, lens)
        batch, width = feats.shape[:2]
        padded = any(n != width for n in lens50)
        layout = BatchLayout((batch, width), lens50 if padded else None, device=feats.device)
        with torch.no_grad() if self._frozen else nullcontext():
            out = self._run_transformer(feats, layout)
        if isinstance(out, list):
            assert self.layer_weights is not None
            weights = torch.softmax(self.layer_weights, dim=0).to(out[0].dtype)
            out = (torch.stack(out, dim=0) * weights.view(-1, 1, 1, 1)).sum(dim=0)
        lens50_t = torch.tensor(lens50, dtype=torch.int64, device=out.device)
        if padded:
            valid = torch.arange(width, device=out.device)[None, :] < lens50_t[:, None]
            out = out.masked_fill(~valid.unsqueeze(-1), 0.0)
        return out, lens50_t

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) float waveform at 16 kHz + (B,) int64 lengths in samples ->
        (B, T, output_dim) features at 25 Hz + (B,) int64 frame lengths, ``T = max((s + 320) // 640)``."""
        feats, _ = self.extract_features(waveform, lengths)
        frames = [frames_for_samples(n) for n in lengths.tolist()]
        out_width = max(frames)
        kernel = self.downsample.kernel_size[0]
        left = (kernel - 1) // 2
        need = 2 * (out_width - 1) + kernel  # input width giving exactly out_width outputs
        x = feats.transpose(1, 2)  # (B, D, T50)
        right = need - left - x.size(2)
        x = F.pad(x, (left, right)) if right >= 0 else F.pad(x[:, :, : x.size(2) + right], (left, 0))
        y = self.downsample(x).transpose(1, 2)  # (B, T, output_dim)
        frame_lens = torch.tensor(frames, dtype=torch.int64, device=y.device)
        if min(frames) != out_width:
            valid = torch.arange(out_width, device=y.device)[None, :] < frame_lens[:, None]
            y = y.masked_fill(~valid.unsqueeze(-1), 0.0)
        return y, frame_lens

    def extra_repr(self) -> str:
        return (
            f"model_dim={self.model_dim}, output_dim={self.output_dim}, layers={self.num_layers}, "
            f"hidden_index={self.hidden_index}, weighted_layer_sum={self.layer_weights is not None}, "
            f"freeze_transformer_steps={self.config.freeze_transformer_steps}"
        )


# --------------------------------------------------------------------------- building and loading
def build_wav2vec2_frontend(config: Wav2Vec2FrontEndConfig) -> Wav2Vec2FrontEnd:
    """Build the front-end; load ``config.pretrained`` (strictly) when it is set."""
    frontend = Wav2Vec2FrontEnd(config)
    if config.pretrained:
        load_pretrained(frontend, config.pretrained)
    return frontend


def load_pretrained(frontend: Wav2Vec2FrontEnd, path: str | Path) -> ConvertedWav2Vec2:
    """Load wav2vec 2.0 weights from ``path`` into ``frontend``, strictly.

    ``path``: our converted safetensors, a fairseq1 or fairseq2 ``.pt``, or a Hugging Face model
    directory (or its config.json / weights file). Every wav2vec 2.0 parameter of the front-end
    must come from the checkpoint with the same shape, and every checkpoint tensor must be used
    (pretraining-only heads are dropped by the converters; the mask embedding is ignored when the
    front-end does no time masking). Otherwise a one-line ``CheckpointError`` lists the missing
    and unexpected keys and the shape mismatches, and nothing is loaded. The downsampling conv and
    layer weights are new and keep their initialisation. Returns the converted checkpoint."""
    converted = convert_checkpoint(path)
    source = dict(converted.state_dict)
    if converted.encoder_config is not None:
        # Without a config in the file, heads and pre/post-LN were guessed: trust the front-end's.
        ignore = GUESSED_FIELDS if converted.config_from_shapes else ()
        diffs = structural_differences(frontend.encoder_config, converted.encoder_config, ignore=ignore)
        if diffs:
            raise CheckpointError(f"{path}: architecture differs from the front-end's: {'; '.join(diffs)}")
        if converted.config_from_shapes and (
            frontend.encoder_config.norm_order != converted.encoder_config.norm_order
        ):  # the transformer's one extra LayerNorm sits where the front-end's norm order wants it
            src, dst = (
                ("encoder.layer_norm.", "encoder_frontend.layer_norm.")
                if frontend.encoder_config.norm_order == TransformerNormOrder.POST
                else ("encoder_frontend.layer_norm.", "encoder.layer_norm.")
            )
            source = {(dst + k[len(src) :] if k.startswith(src) else k): v for k, v in source.items()}
    target = {k: v for k, v in frontend.state_dict(keep_vars=True).items() if k.startswith(WAV2VEC2_PREFIXES)}
    if MASK_EMBED_KEY in source and MASK_EMBED_KEY not in target:
        source.pop(MASK_EMBED_KEY)  # only used for time masking, which this front-end does not do
    problems = state_problems(target, source)
    if problems:
        raise CheckpointError(f"{path}: checkpoint does not fit the wav2vec 2.0 front-end: {'; '.join(problems)}")
    with torch.no_grad():
        for key, tensor in target.items():
            tensor.copy_(source[key])
    return converted


__all__ = [
    "MIN_SAMPLES",
    "SAMPLES_PER_FRAME",
    "WAV2VEC2_ARCHS",
    "CheckpointError",
    "Wav2Vec2FineTuneMasker",
    "Wav2Vec2FrontEnd",
    "Wav2Vec2FrontEndConfig",
    "build_wav2vec2_frontend",
    "frames_for_samples",
    "load_pretrained",
]
