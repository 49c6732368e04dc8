"""Drive an AVSRModel's attention decoder one token at a time for the batched beam search."""

from __future__ import annotations

import torch
from torch import Tensor

from fairseq2.nn import BatchLayout

from avsr.models.avsr_model import AVSRModel, make_layout


class ModelStepDecoder:
    """The :class:`~avsr.decoding.beam_search.StepDecoder` of an AVSRModel (eval mode).

    Keeps fairseq2's incremental state (self-attention keys/values per hypothesis row; the
    projected encoder keys/values once per utterance) and reorders it as the search keeps or
    drops rows.
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
        self._per_utterance = False
        self._layouts: tuple[BatchLayout, BatchLayout] | None = None  # the same every step

    def start(self, rows: Tensor) -> None:
        self.rows = rows
        self.bag = self.model.new_state_bag(self.max_length + 1)
        # The search's rows come in blocks of beams per utterance: the decoder then reads each
        # utterance's encoder output once (any other layout: one encoder row per hypothesis).
        group = len(rows) // max(1, self.encoded.size(0))
        blocked = torch.arange(len(rows), device=rows.device) // max(group, 1)
        self._per_utterance = group >= 1 and len(rows) % self.encoded.size(0) == 0 and torch.equal(rows, blocked)

    def step(self, tokens: Tensor) -> Tensor:
        assert self.rows is not None and self.bag is not None
        if self._per_utterance:
            encoded, lengths = self.encoded, self.encoded_lens
            if self._layouts is None or self._layouts[0].width != 1 or len(self._layouts[0].seq_lens) != len(tokens):
                self._layouts = (BatchLayout.of(tokens[:, None]), make_layout(encoded, lengths))
            layouts = self._layouts
        else:
            encoded, lengths, layouts = self.encoded[self.rows], self.encoded_lens[self.rows], None
        logits = self.model.decode(tokens[:, None], encoded, lengths, self.bag, layouts=layouts)
        return torch.log_softmax(logits[:, -1].float(), dim=-1)

    def reorder(self, index: Tensor) -> None:
        assert self.rows is not None and self.bag is not None
        self.bag.reorder(index)
        self.rows = self.rows[index]
