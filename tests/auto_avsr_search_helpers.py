"""Shared by tests/avsr/decoding/test_search_parity.py and scripts/reference/make_auto_avsr_search_parity.py.

The search parity file holds the n-best lists that auto_avsr's own ``BatchBeamSearch`` (ESPnet's,
from a checkout of mpc001/auto_avsr) finds with its VSR model at the sizes of
``AutoAVSRConfig.tiny``, on the weights ``search_state`` gives and the inputs ``search_inputs``
gives, under each of ``SEARCH_SETTINGS``. The same functions rebuild both here, so the test
compares our search on our converted model with auto_avsr's without its code.

Plain random weights (``random_state``) make a CTC head that never prefers the blank and a decoder
that never prefers <eos>: every hypothesis would run to the maximum length. Logit offsets give the
random model a spiky CTC (the blank's CTC bias) that often wants to end where the decoder does not
rank <eos> in its pre-beam (a small <eos> decoder bias), and a decoder that ranks the blank high (so
it takes a pre-beam place in ESPnet's search). Hypotheses then end on their own at many lengths and
end detection decides when the search stops; the settings with a ``max_length`` (ESPnet's
maxlenratio < 0) and the longer input cover hypotheses cut at the maximum length. Each rule of
``avsr.decoding.beam_search.SEMANTICS["espnet"]``, turned back to ours, fails at least two settings.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from auto_avsr_helpers import DATA, random_state
from avsr.models.pretrained.auto_avsr import PREPROCESSING

SEARCH_PARITY_FILE = DATA / "auto_avsr_search_parity.json"
SEARCH_MODALITY = "v"
SEARCH_SEED = 100
BLANK, EOS = 0, 5048
#: (parameter, vocabulary index, offset added to its random value)
LOGIT_OFFSETS = (
    ("ctc.ctc_lo.bias", BLANK, 10.0),
    ("decoder.output_layer.bias", EOS, 2.0),
    ("decoder.output_layer.bias", BLANK, 4.0),
)
#: (frames, seed) of each input video
SEARCH_INPUTS = ((12, 3), (30, 4))
#: beam, CTC weight, length bonus (ESPnet's "penalty"), max_length (None: the encoder frames,
#: ESPnet's maxlenratio = 0 with end detection; else its maxlenratio = -max_length, without)
SEARCH_SETTINGS = (
    {"beam": 10, "ctc_weight": 0.1, "length_bonus": 0.0, "max_length": None},
    {"beam": 40, "ctc_weight": 0.1, "length_bonus": 0.0, "max_length": None},  # auto_avsr's defaults
    {"beam": 10, "ctc_weight": 0.3, "length_bonus": 1.0, "max_length": None},
    {"beam": 40, "ctc_weight": 0.3, "length_bonus": 0.5, "max_length": None},
    {"beam": 10, "ctc_weight": 0.1, "length_bonus": 0.0, "max_length": 6},
    {"beam": 40, "ctc_weight": 0.3, "length_bonus": 1.0, "max_length": 8},
    {"beam": 1, "ctc_weight": 0.3, "length_bonus": 0.0, "max_length": None},
    {"beam": 3, "ctc_weight": 0.3, "length_bonus": 0.5, "max_length": None},
)


def search_state(table: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> dict[str, Tensor]:
    """``random_state(table, SEARCH_SEED)`` with ``LOGIT_OFFSETS`` added (auto_avsr's key names)."""
    state = random_state(table, SEARCH_SEED)
    for name, index, offset in LOGIT_OFFSETS:
        state[name][index] += offset
    return state


def search_videos() -> list[np.ndarray]:
    """The input mouth videos: (T, 88, 88) uint8 grey frames each (what avsr-decode crops)."""
    return [
        torch.randint(
            0, 256, (frames, 88, 88), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
        ).numpy()
        for frames, seed in SEARCH_INPUTS
    ]


def search_inputs() -> list[Tensor]:
    """The input videos as auto_avsr's VSR model reads them (its test transform, ``PREPROCESSING``):
    (T, 88, 88) float frames, x / 255 normalised by mean and std."""
    mean, std = PREPROCESSING["video_mean"], PREPROCESSING["video_std"]
    return [(torch.from_numpy(v).float() / 255.0 - mean) / std for v in search_videos()]


def output_tokens(yseq: list[int]) -> list[int]:
    """ESPnet's yseq without the leading <sos> and the trailing <eos> (two when a hypothesis chose
    <eos> in the last step: auto_avsr then appends one more; it drops them all from the text)."""
    tokens = yseq[1:]
    while tokens and tokens[-1] == EOS:
        tokens.pop()
    return tokens


@torch.no_grad()
def auto_avsr_search(anchors, src, model, encoded: Tensor, setting: dict) -> dict:
    """auto_avsr's own search (``anchors.auto_avsr_beam_search`` on its ``E2E`` ``model``) on one
    encoder output (T, D) under a setting: ``{"steps", "ended", "nbest": [{"tokens", "score"}]}``
    (the ``beam`` best of the ``ended`` hypotheses; ``steps``: the search's iterations)."""
    search = anchors.auto_avsr_beam_search(
        src, model, beam=setting["beam"], ctc_weight=setting["ctc_weight"], length_bonus=setting["length_bonus"]
    )
    steps = 0
    step = search.search

    def counted(*args, **kwargs):
        nonlocal steps
        steps += 1
        return step(*args, **kwargs)

    search.search = counted
    max_length = setting["max_length"]
    hyps = search(encoded, maxlenratio=0.0 if max_length is None else -float(max_length))
    nbest = [
        {"tokens": output_tokens(h.yseq.tolist()), "score": round(float(h.score), 6)} for h in hyps[: setting["beam"]]
    ]
    return {"steps": steps, "ended": len(hyps), "nbest": nbest}
