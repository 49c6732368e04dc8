"""Drive an AVSRModel's attention decoder one token at a time for the batched beam search."""

from __future__ import annotations

import torch
from torch import Tensor

from avsr.models.avsr_model import AVSRModel


class ModelStepDecoder:
    """The :class:`~avsr.decoding.beam_search.StepDecoder` of an AVSRModel (eval mode).

    Keeps fairseq2's incremental state (self-attention keys/values and the projected encoder
    keys/values) per hypothesis row, and reorders it as the search keeps or drops rows.
    """

    def __init__(self, model: AVSRModel, encoded: Tensor, encoded_lens: Tensor, max_length: int) -> None:
        if model.training:
            raise RuntimeError("beam search needs the model in eval mode (call model.eval())")
        self.model = model
        self.encoded = encoded
        self.encoded_lens = encoded_lens
        self.max_length = max_length
        self.rows: Tensor | None = None
        self.bag = None

    def start(self, rows: Tensor) -> None:
        self.rows = rows
        self.bag = self.model.new_state_bag(self.max_length + 1)

    def step(self, tokens: Tensor) -> Tensor:
        assert self.rows is not None and self.bag is not None
        logits = self.model.decode(tokens[:, None], self.encoded[self.rows], self.encoded_lens[self.rows], self.bag)
        return torch.log_softmax(logits[:, -1].float(), dim=-1)

    def reorder(self, index: Tensor) -> None:
        assert self.rows is not None and self.bag is not None
        self.bag.reorder(index)
        self.rows = self.rows[index]
