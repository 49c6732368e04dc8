"""A token-level language model for shallow fusion in the beam search.

A causal transformer over the recogniser's own output units (same tokenizer, same ids: the blank
is never predicted, ``<sos/eos>`` opens and closes a sentence), so its log-probabilities add
straight to the decoder's and the CTC prefix scorer's. Saved as a model folder of family ``lm``
(`avsr.models.io`): ``model.safetensors``, ``model.yaml`` and the tokenizer, whose fingerprint
must match the recogniser's (`avsr.decoding.recognizer.Recognizer.attach_lm`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from avsr.models.config import from_plain

FAMILY = "lm"


@dataclass(frozen=True)
class TokenLMConfig:
    vocab_size: int
    blank_id: int = 0
    model_dim: int = 256
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    #: longest sentence in tokens (the position table)
    max_len: int = 512

    @property
    def eos_id(self) -> int:
        return self.vocab_size - 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenLMConfig:
        return from_plain(cls, dict(data) if isinstance(data, Mapping) else data, "lm config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TokenLM(nn.Module):
    """``forward(tokens (B, T)) -> log-probs (B, T, V)`` of the next token at every position
    (causal: position t sees tokens 0..t). The blank gets -inf."""

    family = FAMILY

    def __init__(self, config: TokenLMConfig) -> None:
        super().__init__()
        self.config = config
        d = config.model_dim
        self.embed = nn.Embedding(config.vocab_size, d)
        self.positions = nn.Embedding(config.max_len, d)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, config.ffn_dim, config.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.output = nn.Linear(d, config.vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        length = tokens.size(1)
        if length > self.config.max_len:
            tokens = tokens[:, -self.config.max_len :]  # a longer prefix keeps its last max_len tokens
            length = self.config.max_len
        positions = torch.arange(length, device=tokens.device)
        x = self.embed(tokens) * math.sqrt(self.config.model_dim) + self.positions(positions)
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        x = self.norm(self.layers(x, mask=causal, is_causal=True))
        logits = self.output(x).float()
        logits[..., self.config.blank_id] = float("-inf")
        return logits.log_softmax(dim=-1)

    def sentence_log_prob(self, units: Tensor, lengths: Tensor) -> Tensor:
        """(B,) log-probability of each sentence ``units`` (B, L) (ids without sos/eos, padded
        past ``lengths``), its closing ``<eos>`` included."""
        eos = self.config.eos_id
        batch = units.size(0)
        inputs = torch.cat([torch.full((batch, 1), eos, dtype=units.dtype, device=units.device), units], dim=1)
        targets = torch.cat([units, torch.full((batch, 1), eos, dtype=units.dtype, device=units.device)], dim=1)
        targets = targets.scatter(1, lengths[:, None].to(units.device), eos)  # <eos> right after each sentence
        log_probs = self(inputs).gather(2, targets[..., None]).squeeze(-1)
        keep = torch.arange(targets.size(1), device=units.device)[None, :] <= lengths[:, None].to(units.device)
        return log_probs.masked_fill(~keep, 0.0).sum(dim=1)


def build_from_config(config: Mapping[str, Any]) -> TokenLM:
    """The (untrained) LM of a ``family: lm`` model.yaml's ``config`` (`avsr.models.io`)."""
    return TokenLM(TokenLMConfig.from_dict(config))


__all__ = ["FAMILY", "TokenLM", "TokenLMConfig", "build_from_config"]
