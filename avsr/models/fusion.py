"""Fusion of the per-modality streams into the joint encoder's input: the registry and its kinds.

Every fusion takes the per-modality encoder outputs in (audio, video) order, each (B, T, d_i) on
the same frames, and returns (B, T, joint dim). A modality that is absent (not given, or dropped
by modality dropout) arrives as the model's learned "absent" embedding, so a fusion always sees
every stream.

- ``concat`` (the seed's mid fusion): LayerNorm per stream, concatenate, project.
- ``sum``: LayerNorm and a projection per stream, then the sum.
- ``gated``: as ``sum``, but each frame's projections are mixed with weights that a small gate
  computes from the normalised streams themselves (a softmax over the streams). The model can
  thus turn a stream down frame by frame when it looks unreliable: a blurred, occluded, frozen or
  foreign mouth, or a face it never learned to read, while concatenation weighs every stream the
  same whatever its quality.
- ``mlp`` (auto_avsr's ``MLPHead``): concatenate, Linear -> BatchNorm or LayerNorm -> ReLU -> Linear.
- ``identity``: one stream, passed on unchanged (a single-modality model without a joint encoder).
- ``raw_concat``, ``raw_sum`` (AV-HuBERT's ``modality_fuse``): the streams concatenated or added
  as they are, with no parameters; their width (``output_dim``) is what the joint encoder's input
  projection takes.

A fusion module's ``output_dim`` is its output width: the joint width unless it says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from fairseq2.nn import StandardLayerNorm
from torch import Tensor, nn

from avsr.models.config import ConfigError, FusionConfig
from avsr.nn.projectors import ProjectorConfig, build_projector


def _layer_norm(dim: int) -> StandardLayerNorm:
    return StandardLayerNorm(dim, bias=True)


class ConcatFusion(nn.Module):
    """Per-stream LayerNorm, concatenation, projection to the joint width (the seed's mid fusion:
    a Linear; ``fusion.projector`` picks another of `avsr.nn.projectors`)."""

    def __init__(self, config: FusionConfig, in_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(_layer_norm(d) for d in in_dims)
        self.proj = build_projector(ProjectorConfig(config.projector), sum(in_dims), out_dim)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None

    def forward(self, streams: Sequence[Tensor]) -> Tensor:
        x = self.proj(torch.cat([n(s) for n, s in zip(self.norms, streams)], dim=-1))
        return self.dropout(x) if self.dropout is not None else x


class SumFusion(nn.Module):
    """Per-stream LayerNorm and projection to the joint width, then the sum."""

    def __init__(self, config: FusionConfig, in_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(_layer_norm(d) for d in in_dims)
        self.projs = nn.ModuleList(build_projector(ProjectorConfig(config.projector), d, out_dim) for d in in_dims)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None

    def forward(self, streams: Sequence[Tensor]) -> Tensor:
        x = sum(p(n(s)) for p, n, s in zip(self.projs, self.norms, streams))
        assert isinstance(x, Tensor)
        return self.dropout(x) if self.dropout is not None else x


class GatedFusion(nn.Module):
    """Reliability-gated fusion: a per-frame convex mixture of the projected streams.

    With ``n_i = LayerNorm_i(s_i)`` for the K streams (B, T, d_i)::

        g = W2 SiLU(W1 [n_1; ...; n_K])        (B, T, K)   the gate sees every stream at once
        w = softmax(g, over the K streams)      (B, T, K)   weights, each frame's sum to 1
        out = sum_i w_i * P_i(n_i)              (B, T, out_dim)

    The gate looks at all streams together so that it can judge one against the others (lips
    that do not move with the sound), not only how each looks alone. ``W2`` starts at zero: at
    initialisation every stream weighs ``1/K`` (the ``sum`` fusion, scaled). ``P_i`` is
    ``fusion.projector``; the gate's hidden width is the joint width. With a single stream the
    weight is 1 and this is the ``sum`` fusion.
    """

    def __init__(self, config: FusionConfig, in_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(_layer_norm(d) for d in in_dims)
        self.projs = nn.ModuleList(build_projector(ProjectorConfig(config.projector), d, out_dim) for d in in_dims)
        self.gate = nn.Sequential(nn.Linear(sum(in_dims), out_dim), nn.SiLU(), nn.Linear(out_dim, len(in_dims)))
        nn.init.zeros_(self.gate[-1].weight)
        nn.init.zeros_(self.gate[-1].bias)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None

    def weights(self, streams: Sequence[Tensor]) -> Tensor:
        """The gate's per-frame stream weights (B, T, K): non-negative, summing to 1 over K."""
        return self._weights([n(s) for n, s in zip(self.norms, streams)])

    def _weights(self, normed: Sequence[Tensor]) -> Tensor:
        return torch.softmax(self.gate(torch.cat(list(normed), dim=-1)).float(), dim=-1).to(normed[0].dtype)

    def forward(self, streams: Sequence[Tensor]) -> Tensor:
        normed = [n(s) for n, s in zip(self.norms, streams)]
        w = self._weights(normed)
        x = sum(w[..., i : i + 1] * p(x_i) for i, (p, x_i) in enumerate(zip(self.projs, normed)))
        assert isinstance(x, Tensor)
        return self.dropout(x) if self.dropout is not None else x


class MLPFusion(nn.Module):
    """auto_avsr's audio-visual fusion: ``fc2(ReLU(norm(fc1([audio; video]))))``, with BatchNorm
    over the hidden channels (or LayerNorm: ``hidden_norm``). auto_avsr concatenates (video,
    audio); its converter swaps the halves of ``fc1``'s columns, which is exact."""

    def __init__(self, config: FusionConfig, in_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(sum(in_dims), config.hidden_dim)
        self.batch_norm = config.hidden_norm == "batch"
        self.norm = nn.BatchNorm1d(config.hidden_dim) if self.batch_norm else nn.LayerNorm(config.hidden_dim)
        self.fc2 = nn.Linear(config.hidden_dim, out_dim)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None

    def forward(self, streams: Sequence[Tensor]) -> Tensor:
        x = self.fc1(torch.cat(list(streams), dim=-1))  # (B, T, hidden)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2) if self.batch_norm else self.norm(x)
        x = self.fc2(torch.relu(x))
        return self.dropout(x) if self.dropout is not None else x


class IdentityFusion(nn.Module):
    """The one stream as it is (its width must be the joint width)."""

    def __init__(self, config: FusionConfig, in_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        if len(in_dims) != 1 or in_dims[0] != out_dim:
            raise ConfigError(f"fusion.kind identity: needs one stream of width {out_dim}, got widths {list(in_dims)}")

    def forward(self, streams: Sequence[Tensor]) -> Tensor:
        return streams[0]


class RawConcatFusion(nn.Module):
    """The streams concatenated as they are: (B, T, sum d_i)."""

    def __init__(self, config: FusionConfig, in_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.output_dim = sum(in_dims)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None

    def forward(self, streams: Sequence[Tensor]) -> Tensor:
        x = torch.cat(list(streams), dim=-1)
        return self.dropout(x) if self.dropout is not None else x


class RawSumFusion(nn.Module):
    """The streams added as they are (all of one width): (B, T, d)."""

    def __init__(self, config: FusionConfig, in_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        if len(set(in_dims)) != 1:
            raise ConfigError(f"fusion.kind raw_sum: the streams need one width, got {list(in_dims)}")
        self.output_dim = in_dims[0]
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else None

    def forward(self, streams: Sequence[Tensor]) -> Tensor:
        x = sum(streams[1:], streams[0])
        return self.dropout(x) if self.dropout is not None else x


FusionFactory = Callable[[FusionConfig, Sequence[int], int], nn.Module]
#: fusion kind -> factory(config, per-stream dims in (audio, video) order, joint dim) -> module
#: whose ``forward(list of (B, T, d_i)) -> (B, T, joint dim)``.
FUSIONS: dict[str, FusionFactory] = {
    "concat": ConcatFusion,
    "sum": SumFusion,
    "gated": GatedFusion,
    "mlp": MLPFusion,
    "identity": IdentityFusion,
    "raw_concat": RawConcatFusion,
    "raw_sum": RawSumFusion,
}


def register_fusion(kind: str, factory: FusionFactory) -> None:
    FUSIONS[kind] = factory


__all__ = [
    "ConcatFusion",
    "FUSIONS",
    "FusionFactory",
    "GatedFusion",
    "IdentityFusion",
    "MLPFusion",
    "RawConcatFusion",
    "RawSumFusion",
    "SumFusion",
    "register_fusion",
]
