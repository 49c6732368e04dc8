"""A token language model driven one token at a time over the beam search's hypothesis rows.

It follows the `StepDecoder` protocol of `avsr.decoding.beam_search`, so the search fuses it
(``lm_weight`` x its log-probs, shallow fusion) for every row of every utterance in one batch.
Each step runs the LM over the rows' whole prefixes (B x beam rows, a few dozen tokens): simple,
and exact against the LM's own full forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from avsr.models.lm import TokenLM


class LMStepDecoder:
    def __init__(self, lm: TokenLM) -> None:
        self.lm = lm
        self.history: Tensor | None = None  # (N, t) tokens so far, <sos> first

    def start(self, rows: Tensor) -> None:
        self.history = torch.empty((len(rows), 0), dtype=torch.long, device=rows.device)

    @torch.inference_mode()
    def step(self, tokens: Tensor) -> Tensor:
        """Log-probs (N, V) of the next token after each row's prefix and ``tokens`` (N,)."""
        assert self.history is not None, "start() first"
        self.history = torch.cat([self.history, tokens[:, None].to(self.history.dtype)], dim=1)
        return self.lm(self.history)[:, -1]

    def reorder(self, index: Tensor) -> None:
        assert self.history is not None
        self.history = self.history[index]


__all__ = ["LMStepDecoder"]
