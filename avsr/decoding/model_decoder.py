"""Drive an AVSRModel's attention decoder one token at a time for the batched beam search."""

from __future__ import annotations

import torch
from fairseq2.nn import BatchLayout
from torch import Tensor

from avsr.models.avsr_model import AVSRModel, block_size, make_layout


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
        # (token, encoder) layouts, the same every step, when each utterance's encoder output is
        # read once by its block of beams; None: one encoder row per hypothesis
        self._layouts: tuple[BatchLayout, BatchLayout] | None = None

    def start(self, rows: Tensor) -> None:
        self.rows = rows
        self.bag = self.model.new_state_bag(self.max_length + 1)
        self._layouts = None
        if block_size(rows, self.encoded.size(0)) is not None:  # the search's layout: beams in blocks
            self._layouts = (
                BatchLayout((len(rows), 1), None, device=rows.device),
                make_layout(self.encoded, self.encoded_lens),
            )

    def step(self, tokens: Tensor) -> Tensor:
        assert self.rows is not None and self.bag is not None
        if self._layouts is not None:
            encoded, lengths = self.encoded, self.encoded_lens
        else:
            encoded, lengths = self.encoded[self.rows], self.encoded_lens[self.rows]
        logits = self.model.decode(tokens[:, None], encoded, lengths, self.bag, layouts=self._layouts)
        return torch.log_softmax(logits[:, -1].float(), dim=-1)

    def reorder(self, index: Tensor) -> None:
        assert self.rows is not None and self.bag is not None
        self.bag.reorder(index)
        self.rows = self.rows[index]


def best_paths(model: AVSRModel, encoded: Tensor, encoded_lens: Tensor) -> list[list[int]]:
    """Each utterance's quick best guess, as token ids (training's validation WER): greedy CTC, or
    for a model without a CTC head the attention decoder's greedy path (beam 1, at most one token
    per encoder frame). ``model`` in eval mode; ``encoded`` (B, T, d), ``encoded_lens`` (B,)."""
    from avsr.decoding.beam_search import BeamSearchConfig, beam_search
    from avsr.decoding.ctc import greedy_ctc

    if model.has_ctc:
        return greedy_ctc(model.ctc_log_probs(encoded), encoded_lens, model.blank_id)
    decoder = ModelStepDecoder(model, encoded, encoded_lens, max(int(encoded_lens.max()), 1))
    nbest = beam_search(None, encoded_lens, decoder, BeamSearchConfig(beam=1), model.blank_id, model.eos_id)
    return [hyps[0].tokens if hyps else [] for hyps in nbest]
