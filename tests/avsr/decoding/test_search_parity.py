"""Our beam search on a converted auto_avsr model finds auto_avsr's own n-best.

``tests/data/auto_avsr_search_parity.json`` holds what auto_avsr's ``BatchBeamSearch`` (ESPnet's)
found on its VSR model with the weights and inputs of ``auto_avsr_search_helpers``, under settings
that cover hypotheses ending on their own (end detection), with a length bonus, and cut at a
maximum length (made by ``scripts/reference/make_auto_avsr_search_parity.py``). Here the same
weights go through ``avsr-convert``'s converter, and our search with ``semantics="espnet"`` must
give the same n-best token sequences, the same scores (1e-4) and stop after the same number of
steps, with both inputs decoded in one batch.

Opt-in: with ``AVSR_AUTO_AVSR_SRC=/path/to/auto_avsr`` (a checkout of mpc001/auto_avsr), the same
comparison runs against auto_avsr's own search at full size (random weights).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml

from auto_avsr_helpers import import_anchors, module_table
from auto_avsr_search_helpers import (
    BLANK,
    EOS,
    SEARCH_MODALITY,
    SEARCH_PARITY_FILE,
    SEARCH_SETTINGS,
    auto_avsr_search,
    search_inputs,
    search_state,
    search_videos,
)
from avsr.cli import decode as decode_cli
from avsr.decoding.beam_search import BeamSearchConfig, Hypothesis, beam_search
from avsr.decoding.model_decoder import ModelStepDecoder
from avsr.decoding.recognizer import DecodeOptions, Recognizer
from avsr.models.avsr_model import AVSRModel
from avsr.models.io import load_model, read_model_yaml
from avsr.models.pretrained.auto_avsr import AutoAVSRConfig, convert_checkpoint
from avsr.models.pretrained.auto_avsr_checkpoint import expected_checkpoint_keys, map_state_dict, model_state

pytestmark = pytest.mark.usefixtures("one_thread")
SCORE_TOLERANCE = 1e-4


class CountingStepDecoder(ModelStepDecoder):
    """The model's step decoder, counting the search's steps (one decoder call per step)."""

    steps = 0

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        return super().step(tokens)


def encode(model, videos: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Our encoder output (B, T, D) and lengths (B,) for a padded batch of videos (T, 88, 88)."""
    lengths = torch.tensor([v.size(0) for v in videos])
    batch = torch.zeros(len(videos), int(lengths.max()), 88, 88)
    for i, v in enumerate(videos):
        batch[i, : v.size(0)] = v
    with torch.inference_mode():
        return model.encode(None, None, batch, lengths)


def search(model, encoded: torch.Tensor, lengths: torch.Tensor, setting: dict) -> tuple[list[list[Hypothesis]], int]:
    """Our n-best lists for a batch of encoder outputs under a setting, and the steps taken."""
    with torch.inference_mode():
        decoder = CountingStepDecoder(model, encoded, lengths, int(lengths.max()))
        config = BeamSearchConfig(semantics="espnet", **setting)
        nbest = beam_search(model.ctc_log_probs(encoded), lengths, decoder, config, BLANK, EOS)
    return nbest, decoder.steps


def assert_same_nbest(ours: list[Hypothesis], theirs: list[dict], what: str) -> None:
    assert [h.tokens for h in ours] == [h["tokens"] for h in theirs], what
    gaps = [abs(h.score - t["score"]) for h, t in zip(ours, theirs)]
    assert max(gaps) <= SCORE_TOLERANCE, f"{what}: scores differ by up to {max(gaps):.2e}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The reference weights as an auto_avsr checkpoint, converted into our model folder."""
    root = tmp_path_factory.mktemp("search_parity")
    config = AutoAVSRConfig.tiny(SEARCH_MODALITY)
    keys = expected_checkpoint_keys(config, "v1.0.0")
    table = {k: (s, torch.int64 if k.endswith("num_batches_tracked") else torch.float32) for k, s in keys.items()}
    torch.save(search_state(table), root / "vsr.pth")
    return convert_checkpoint(root / "vsr.pth", root / "model", modality=SEARCH_MODALITY)


@pytest.fixture(scope="module")
def converted(folder: Path) -> tuple[AVSRModel, torch.Tensor, torch.Tensor]:
    """The converted model, its encoder output for the reference inputs (one padded batch) and
    their lengths."""
    model = load_model(folder)
    return (model, *encode(model, search_inputs()))


REFERENCE = json.loads(SEARCH_PARITY_FILE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("setting", SEARCH_SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_nbest_matches_auto_avsr_own_search(converted, setting: dict) -> None:
    model, encoded, lengths = converted
    cases = [c for c in REFERENCE["cases"] if all(c[k] == v for k, v in setting.items())]
    assert len(cases) == len(lengths) == len(REFERENCE["inputs"])
    together, _ = search(model, encoded, lengths, setting)
    for i, (case, nbest) in enumerate(zip(cases, together)):
        what = f"input {case['input']}"
        assert_same_nbest(nbest, case["nbest"], what)
        # alone, the same, and it stops where ESPnet's search stops
        alone, steps = search(model, encoded[i : i + 1, : lengths[i]], lengths[i : i + 1], setting)
        assert steps == case["steps"], what
        assert [h.tokens for h in alone[0]] == [h.tokens for h in nbest], what


def test_converted_models_decode_with_auto_avsr_own_search_by_default(folder: Path) -> None:
    """A converted folder recommends auto_avsr's decoding (beam 40, CTC weight 0.1, ESPnet's
    search); the recognizer (avsr-decode, avsr-bench) uses it where no flag says otherwise, and
    its 1-best from the raw mouth videos is auto_avsr's."""
    assert read_model_yaml(folder)["extra"]["decoding"] == {"beam": 40, "ctc_weight": 0.1, "semantics": "espnet"}
    recognizer = Recognizer.load(folder)
    assert recognizer.resolve(DecodeOptions()) == DecodeOptions(
        beam=40, ctc_weight=0.1, length_normalisation=0.0, semantics="espnet"
    )
    chosen = recognizer.resolve(DecodeOptions(beam=3, semantics="exact"))
    assert chosen == DecodeOptions(beam=3, ctc_weight=0.1, length_normalisation=0.0, semantics="exact")
    default = {"beam": 40, "ctc_weight": 0.1, "length_bonus": 0.0, "max_length": None}
    expected = [c["nbest"][0]["tokens"] for c in REFERENCE["cases"] if all(c[k] == v for k, v in default.items())]
    got = recognizer.transcribe(None, search_videos(), DecodeOptions())
    assert [t.tokens for t in got] == expected and all(expected)


def test_unusable_recorded_decoding_settings_are_one_line(
    folder: Path, tmp_path: Path, face_video: Path, capsys
) -> None:
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    meta = yaml.safe_load((model / "model.yaml").read_text())
    meta["extra"]["decoding"]["beam"] = "forty"
    (model / "model.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(SystemExit) as exc:
        decode_cli.main(["--model", str(model), "--quiet", str(face_video)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert (
        f"{model / 'model.yaml'}: its decoding settings are not usable (decoding.beam must be an integer, got 'forty')"
        in err
    )
    with pytest.raises(SystemExit) as exc:
        decode_cli.main(["--model", str(folder), "--quiet", "--search-semantics", "fairseq", str(face_video)])
    assert exc.value.code == 2 and "invalid choice: 'fairseq'" in capsys.readouterr().err


def test_reference_covers_every_regime() -> None:
    """The file exercises what differs between the searches: hypotheses that end on their own
    (end detection stops before the frames run out), a length bonus, and the maximum length."""
    frames = [i["frames"] for i in REFERENCE["inputs"]]
    natural = [c for c in REFERENCE["cases"] if c["max_length"] is None]
    assert any(c["steps"] < frames[c["input"]] for c in natural if c["length_bonus"] > 0)
    capped = [c for c in REFERENCE["cases"] if c["max_length"] is not None]
    assert any(all(len(h["tokens"]) == c["max_length"] for h in c["nbest"]) for c in capped)
    assert {c["beam"] for c in REFERENCE["cases"]} >= {10, 40} and {c["ctc_weight"] for c in REFERENCE["cases"]} >= {
        0.1,
        0.3,
    }


# ---------------------------------------------------------------------- opt-in, full size
AUTO_AVSR_SRC = os.environ.get("AVSR_AUTO_AVSR_SRC")
FULL_SIZE_SETTINGS = (
    {"beam": 10, "ctc_weight": 0.1, "length_bonus": 0.0, "max_length": None},
    {"beam": 40, "ctc_weight": 0.1, "length_bonus": 0.0, "max_length": None},
    {"beam": 10, "ctc_weight": 0.3, "length_bonus": 1.0, "max_length": None},
    {"beam": 10, "ctc_weight": 0.1, "length_bonus": 0.0, "max_length": 6},
)


@pytest.mark.slow
@pytest.mark.skipif(
    not AUTO_AVSR_SRC,
    reason="opt-in: set AVSR_AUTO_AVSR_SRC to a checkout of mpc001/auto_avsr "
    "to compare with its own search at full size",
)
@torch.no_grad()
def test_full_size_search_matches_auto_avsr_own_search() -> None:
    """auto_avsr's VSR model at the published size with ``search_state``'s kind of weights, in its
    own code and in ours (through the converter's key mapping): the same n-best under each setting,
    one 30-frame input (both searches in float32 on the same encoder output)."""
    anchors = import_anchors()
    config = AutoAVSRConfig.base(SEARCH_MODALITY)
    theirs = anchors.build_auto_avsr(AUTO_AVSR_SRC, config)
    state = search_state(module_table(theirs))
    theirs.load_state_dict(state, strict=True)
    _, mapping, _ = map_state_dict({k: tuple(v.shape) for k, v in state.items()}, "reference", SEARCH_MODALITY)
    ours = AVSRModel(config.avsr_config()).eval()
    ours.load_state_dict(model_state(state, mapping), strict=True)
    state.clear()
    del state
    gc.collect()
    video = search_inputs()[-1]
    encoded = anchors.auto_avsr_encode(theirs, video, None)[0]
    report = []
    for setting in FULL_SIZE_SETTINGS:
        start = time.perf_counter()
        theirs_search = auto_avsr_search(anchors, AUTO_AVSR_SRC, theirs, encoded, setting)
        their_seconds = time.perf_counter() - start
        start = time.perf_counter()
        nbest, steps = search(ours, *encode(ours, [video]), setting)
        our_seconds = time.perf_counter() - start
        assert_same_nbest(nbest[0], theirs_search["nbest"], str(setting))
        assert steps == theirs_search["steps"], str(setting)
        gap = max(abs(h.score - t["score"]) for h, t in zip(nbest[0], theirs_search["nbest"]))
        lengths = sorted({len(h.tokens) for h in nbest[0]})
        report.append(
            f"{setting}: {len(nbest[0])} hypotheses identical (lengths {lengths}), scores within {gap:.1e}, "
            f"{steps} steps; auto_avsr {their_seconds:.1f} s (search), ours {our_seconds:.1f} s (encoder + search)"
        )
    print("\n".join(report))
