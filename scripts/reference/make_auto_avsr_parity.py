"""Make tests/data/auto_avsr_parity.json with auto_avsr's own model code.

    python scripts/reference/make_auto_avsr_parity.py --auto-avsr-src /path/to/auto_avsr

Needs: our environment (torch) and a checkout of github:mpc001/auto_avsr at tag v1.0.0
(commit 30951b5; later commits dropped the audio-visual model). Nothing is installed: the
checkout's ``espnet`` package is imported from ``--auto-avsr-src`` (``scripts/reference/anchors.py``).
For each model kind (VSR 'v', ASR 'a', audio-visual 'av') it builds auto_avsr's ``E2E`` at the
sizes of ``AutoAVSRConfig.tiny``, fills it with ``random_state`` of its own state's names and
shapes (``tests/auto_avsr_helpers.py``), runs it in float32 on ``parity_inputs`` and keeps the
first 16 encoder columns, and the CTC log-probs and decoder logits at ``PARITY_COLUMNS``.
``tests/avsr/models/pretrained/test_auto_avsr.py`` compares our converted models with the file.
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
from auto_avsr_helpers import (  # noqa: E402
    PARITY_COLUMNS,
    PARITY_FILE,
    PARITY_SEEDS,
    PARITY_TOKENS,
    PARITY_WIDTH,
    module_table,
    parity_inputs,
    random_state,
)
from avsr.models.pretrained.auto_avsr import AutoAVSRConfig  # noqa: E402


def rounded(t: torch.Tensor) -> list:
    return [[round(float(x), 6) for x in row] for row in t]


@torch.no_grad()
def reference(src: Path, modality: str, seed: int) -> dict:
    """One model kind's entry of the parity file."""
    config = AutoAVSRConfig.tiny(modality)
    model = anchors.build_auto_avsr(src, config)
    model.load_state_dict(random_state(module_table(model), seed), strict=True)
    video, audio = parity_inputs()
    encoded, log_probs, logits = anchors.auto_avsr_outputs(
        model, video if "v" in modality else None, audio if "a" in modality else None, torch.tensor([PARITY_TOKENS])
    )
    return {
        "seed": seed,
        "frames": encoded.size(1),
        "encoder": rounded(encoded[0, :, :PARITY_WIDTH]),
        "ctc_log_probs": rounded(log_probs[0][:, PARITY_COLUMNS]),
        "decoder_logits": rounded(logits[0][:, PARITY_COLUMNS]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auto-avsr-src", type=Path, required=True, help="a checkout of mpc001/auto_avsr (v1.0.0)")
    parser.add_argument("--out", type=Path, default=PARITY_FILE)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        models = {m: reference(args.auto_avsr_src, m, seed) for m, seed in PARITY_SEEDS.items()}
    except anchors.AnchorError as exc:
        parser.error(str(exc))
    source = (
        f"{anchors.auto_avsr_source(args.auto_avsr_src)} E2E on AutoAVSRConfig.tiny weights from random_state(seed), "
        "made by scripts/reference/make_auto_avsr_parity.py"
    )
    out = {"source": source, "columns": PARITY_COLUMNS, "tokens": PARITY_TOKENS, "models": models}
    args.out.write_text(json.dumps(out) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
