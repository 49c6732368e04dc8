"""Moving a trained model to another tokenizer: the layers indexed by output unit keep the rows of
the units both tokenizers share (matched by the unit's string) and start fresh for the others.

Those layers are the CTC head and the decoder's embedding and output projection (``TOKEN_ROWS``:
each tensor's first dimension is the vocabulary). The blank and sos/eos have the same strings in
every avsr tokenizer, so they always carry over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

TOKEN_ROWS = (
    "ctc_head.weight",
    "ctc_head.bias",
    "decoder.frontend.embed.weight",
    "decoder.final_proj.weight",
    "decoder.final_proj.bias",
)


def remap_vocabulary(
    state: Mapping[str, Tensor], source_pieces: Sequence[str], target_pieces: Sequence[str], fresh: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], int]:
    """``state`` (trained on ``source_pieces``) with its ``TOKEN_ROWS`` rebuilt for ``target_pieces``:
    row ``j`` is the trained row of the same piece where the source has it, else ``fresh``'s row
    ``j`` (the new model's initialisation). Returns the new state and how many pieces carried over."""
    index = {piece: i for i, piece in enumerate(source_pieces)}
    pairs = [(j, index[piece]) for j, piece in enumerate(target_pieces) if piece in index]
    dst = torch.tensor([j for j, _ in pairs], dtype=torch.long)
    src = torch.tensor([i for _, i in pairs], dtype=torch.long)
    out = dict(state)
    for key in TOKEN_ROWS:
        if key in state and key in fresh:
            rows = fresh[key].detach().clone()
            if pairs:
                rows[dst] = state[key][src].to(rows.dtype)
            out[key] = rows
    return out, len(pairs)


__all__ = ["TOKEN_ROWS", "remap_vocabulary"]
