"""Projectors: trainable maps from a frozen backbone's features into a shared space.

One family for both packages: the AVSR fusion projects the concatenated audio and video streams
to the joint encoder's width with one of these, and ``vision_language`` aligns image and text
encoders with them. Kinds:

* ``linear``: one ``nn.Linear`` (SAIL's alignment probe; the seed paper's fusion);
* ``mlp``: Linear -> GELU -> dropout -> Linear, hidden width ``hidden_factor`` x the input;
* ``gated_mlp``: SAIL's "star" MLP ``g(ReLU6(f1(x)) * f2(x))``, hidden width ``hidden_factor`` x
  the input (SAIL: 8), pre-activations clamped to +-1e3 as SAIL does, Xavier init, zero biases;
* ``token``: Freeze-Align's token projector ``Linear(x) + Linear(GELU(Linear(x)))`` (a linear path
  plus a residual MLP); it maps every token of a sequence, pooling is the caller's.

``input_norm`` puts a LayerNorm on the input (SAIL's alignment layer; Freeze-Align's token
projector). A plain ``linear`` projector without it is an ``nn.Linear`` itself, so models that
used a bare Linear keep their checkpoint keys (``weight``, ``bias``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

PROJECTOR_KINDS = ("linear", "mlp", "gated_mlp", "token")


@dataclass
class ProjectorConfig:
    kind: str = "linear"
    #: hidden width as a multiple of the input width (mlp, gated_mlp, token); None: 4 (mlp,
    #: token) or 8 (gated_mlp, as SAIL).
    hidden_factor: float | None = None
    input_norm: bool = False
    dropout: float = 0.0
    bias: bool = True

    def __post_init__(self) -> None:
        if self.kind not in PROJECTOR_KINDS:
            raise ValueError(f"projector kind: {self.kind!r} is not one of {', '.join(PROJECTOR_KINDS)}")
        if self.hidden_factor is not None and not self.hidden_factor > 0:
            raise ValueError(f"projector hidden_factor: must be > 0, got {self.hidden_factor!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"projector dropout: must be in [0, 1), got {self.dropout!r}")

    def hidden_dim(self, in_dim: int) -> int:
        factor = self.hidden_factor if self.hidden_factor is not None else (8.0 if self.kind == "gated_mlp" else 4.0)
        return max(1, int(round(in_dim * factor)))


class LinearProjector(nn.Linear):
    """A Linear layer (a class of its own so that configs and reports can name it)."""


class MLPProjector(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, out_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(nn.functional.gelu(self.fc1(x))))


class GatedMLPProjector(nn.Module):
    """SAIL's star MLP: a ReLU6 gate times a linear branch, then the output layer."""

    CLAMP = 1e3

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.gate = nn.Linear(in_dim, hidden, bias=bias)
        self.value = nn.Linear(in_dim, hidden, bias=bias)
        self.out = nn.Linear(hidden, out_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)
        for layer in (self.gate, self.value, self.out):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        gate = nn.functional.relu6(self.gate(x).clamp(-self.CLAMP, self.CLAMP))
        value = self.value(x).clamp(-self.CLAMP, self.CLAMP)
        return self.out(self.dropout(gate * value))


class TokenProjector(nn.Module):
    """Freeze-Align's patch/token projector: a linear map plus a residual GELU MLP."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=bias)
        self.fc1 = nn.Linear(in_dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, out_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(x)
        return self.linear(x) + self.fc2(nn.functional.gelu(self.fc1(x)))


class NormedProjector(nn.Module):
    """LayerNorm on the input, then the projector."""

    def __init__(self, in_dim: int, proj: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = proj

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.norm(x))


def build_projector(config: ProjectorConfig, in_dim: int, out_dim: int) -> nn.Module:
    """A projector ``(..., in_dim) -> (..., out_dim)`` of the configured kind."""
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"projector: dimensions must be >= 1, got {in_dim} -> {out_dim}")
    hidden = config.hidden_dim(in_dim)
    proj: nn.Module
    if config.kind == "linear":
        proj = LinearProjector(in_dim, out_dim, bias=config.bias)
    elif config.kind == "mlp":
        proj = MLPProjector(in_dim, hidden, out_dim, config.dropout, config.bias)
    elif config.kind == "gated_mlp":
        proj = GatedMLPProjector(in_dim, hidden, out_dim, config.dropout, config.bias)
    else:
        proj = TokenProjector(in_dim, hidden, out_dim, config.dropout, config.bias)
    return NormedProjector(in_dim, proj) if config.input_norm else proj


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["PROJECTOR_KINDS", "ProjectorConfig", "build_projector", "count_parameters"]
