"""Make tests/data/auto_avsr_search_parity.json with auto_avsr's own beam search.

    python scripts/reference/make_auto_avsr_search_parity.py --auto-avsr-src /path/to/auto_avsr

Needs: our environment (torch, numpy) and a checkout of github:mpc001/auto_avsr (tag v1.0.0 =
commit 30951b5 was used; its search code is the same at later commits). Nothing is installed:
the checkout's ``espnet`` package is imported from ``--auto-avsr-src``
(``scripts/reference/anchors.py``). It builds auto_avsr's VSR ``E2E`` at the sizes of
``AutoAVSRConfig.tiny`` with the weights ``search_state`` gives (``tests/auto_avsr_search_helpers.py``),
encodes each of ``search_inputs`` with it, and runs ESPnet's ``BatchBeamSearch`` as auto_avsr sets
it up under each of ``SEARCH_SETTINGS``, one utterance at a time as auto_avsr decodes. For every
(setting, input) it keeps the ``beam`` best ended hypotheses (their tokens without <sos>/<eos>, and
their scores) and the number of search steps. ``tests/avsr/decoding/test_search_parity.py`` decodes the same
with our converted model and our search (``semantics="espnet"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "scripts" / "reference"), str(ROOT / "tests")]

import torch  # noqa: E402

import anchors  # noqa: E402
from auto_avsr_helpers import module_table  # noqa: E402
from auto_avsr_search_helpers import (  # noqa: E402
    LOGIT_OFFSETS,
    SEARCH_INPUTS,
    SEARCH_MODALITY,
    SEARCH_PARITY_FILE,
    SEARCH_SEED,
    SEARCH_SETTINGS,
    auto_avsr_search,
    search_inputs,
    search_state,
)
from avsr.models.pretrained.auto_avsr import AutoAVSRConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auto-avsr-src", type=Path, required=True, help="a checkout of mpc001/auto_avsr (v1.0.0)")
    parser.add_argument("--out", type=Path, default=SEARCH_PARITY_FILE)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = AutoAVSRConfig.tiny(SEARCH_MODALITY)
    try:
        model = anchors.build_auto_avsr(args.auto_avsr_src, config)
        model.load_state_dict(search_state(module_table(model)), strict=True)
        with torch.no_grad():
            encoded = [anchors.auto_avsr_encode(model, video, None)[0] for video in search_inputs()]
        cases = [
            {**setting, "input": i, **auto_avsr_search(anchors, args.auto_avsr_src, model, enc, setting)}
            for setting in SEARCH_SETTINGS
            for i, enc in enumerate(encoded)
        ]
    except anchors.AnchorError as exc:
        parser.error(str(exc))
    out = {
        "source": f"{anchors.auto_avsr_source(args.auto_avsr_src)} BatchBeamSearch, made by "
        "scripts/reference/make_auto_avsr_search_parity.py",
        "model": {
            "config": "AutoAVSRConfig.tiny",
            "modality": SEARCH_MODALITY,
            "seed": SEARCH_SEED,
            "logit_offsets": [list(o) for o in LOGIT_OFFSETS],
        },
        "inputs": [{"frames": f, "seed": s} for f, s in SEARCH_INPUTS],
        "cases": cases,
    }
    args.out.write_text(json.dumps(out) + "\n")
    for case in cases:
        lengths = sorted({len(h["tokens"]) for h in case["nbest"]})
        print(
            f"beam {case['beam']:2d} ctc {case['ctc_weight']} bonus {case['length_bonus']} max {case['max_length']} "
            f"input {case['input']}: {case['steps']} steps, {case['ended']} ended, lengths {lengths}, "
            f"best {case['nbest'][0]['score']:.3f}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
