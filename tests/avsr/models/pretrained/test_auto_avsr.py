"""auto_avsr's published models in our toolkit: key tables, conversion, parity, decoding.

- The full-size key tables (``tests/data/auto_avsr_*_keys.tsv``) were dumped from auto_avsr's own
  model classes (VSR, ASR and AV at tag v1.0.0; VSR and ASR at 182b628, the "head" layout). Each
  must map completely onto our model built on the meta device, with every shape equal, and
  back again.
- The tiny variant keeps every layer, so its keys are the same and only the widths shrink.
  Random checkpoints of it are converted with ``avsr-convert``, and our outputs are compared with
  the ones auto_avsr's own code computed on the same weights and inputs
  (``tests/data/auto_avsr_parity.json``; see ``auto_avsr_helpers``).
- The converted models decode a real video with ``avsr-decode``.
- Opt-in: with ``AVSR_AUTO_AVSR_SRC=/path/to/auto_avsr`` (a checkout of mpc001/auto_avsr at tag
  v1.0.0), auto_avsr's own models are built at full size with random weights and compared with
  ours (about 6 GB of memory for the audio-visual one).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from auto_avsr_helpers import (
    DATA,
    PARITY_COLUMNS,
    PARITY_FILE,
    PARITY_SEEDS,
    PARITY_TOKENS,
    import_anchors,
    micro_auto_avsr,
    module_table,
    parity_inputs,
    random_state,
    read_key_table,
)
from avsr.cli import convert as convert_cli
from avsr.cli import decode as decode_cli
from avsr.data.tokenizers import load_tokenizer
from avsr.decoding.recognizer import Preprocessing, Recognizer, RecognizerError
from avsr.face import MouthCropConfig
from avsr.models.avsr_model import AVSRModel
from avsr.models.io import load_model, read_model_yaml
from avsr.models.pretrained.auto_avsr import AutoAVSRConfig, ConversionError, build_from_config
from avsr.models.pretrained.auto_avsr_checkpoint import (
    expected_checkpoint_keys,
    map_state_dict,
    model_state,
    read_checkpoint,
)

TABLES = {  # file -> (layout, CLI modality, parameters in millions: VSR 250 M, ASR 243 M in auto_avsr's README)
    "auto_avsr_vsr_keys.tsv": ("v1.0.0", "v", 250.38),
    "auto_avsr_asr_keys.tsv": ("v1.0.0", "a", 243.05),
    "auto_avsr_av_keys.tsv": ("v1.0.0", "av", 443.98),
    "auto_avsr_vsr_head_keys.tsv": ("head", "v", 250.38),
    "auto_avsr_asr_head_keys.tsv": ("head", "a", 243.05),
}
SEEDS = PARITY_SEEDS  # the seeds of the parity file
# Small models: one intra-op thread (on a busy machine an AV encode takes 0.45 s with one thread,
# 1 to 6 s with two).
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_table(modality: str, layout: str = "v1.0.0") -> dict:
    shapes = expected_checkpoint_keys(AutoAVSRConfig.tiny(modality), layout)
    return {k: (s, torch.int64 if k.endswith("num_batches_tracked") else torch.float32) for k, s in shapes.items()}


def convert(argv: list[str]) -> int:
    try:
        return convert_cli.main(argv)
    except SystemExit as exc:
        return int(exc.code)


# ---------------------------------------------------------------------- full-size key tables
@pytest.mark.parametrize("name", sorted(TABLES))
def test_published_key_tables_map_onto_the_base_model(name: str) -> None:
    layout, modality, millions = TABLES[name]
    table = read_key_table(DATA / name)
    keymap, mapping, config = map_state_dict({k: s for k, (s, _) in table.items()}, name)
    assert keymap.layout == layout and config == AutoAVSRConfig.base(modality)
    assert len(mapping) == len(table) == len(set(mapping.values()))
    # ... and back: the base model's weights are exactly the table's keys and shapes
    assert expected_checkpoint_keys(config, layout) == {k: s for k, (s, _) in table.items()}
    params = sum(np.prod(s) for k, (s, dt) in table.items() if dt.is_floating_point and "running_" not in k)
    assert round(params / 1e6, 2) == millions


def test_tiny_variant_has_the_published_key_names() -> None:
    for name, (layout, modality, _) in TABLES.items():
        assert set(tiny_table(modality, layout)) == set(read_key_table(DATA / name)), name


def test_config_round_trip_and_checks() -> None:
    config = AutoAVSRConfig.tiny("av")
    assert AutoAVSRConfig.from_dict(config.to_dict()) == config
    assert (config.blank_id, config.eos_id, config.kind) == (0, 5048, "avsr")
    model = build_from_config(config.to_dict())
    assert isinstance(model, AVSRModel) and model.decodable_modalities == ("av",)
    with pytest.raises(ValueError, match="unknown key"):
        AutoAVSRConfig.from_dict({**config.to_dict(), "layers": 3})
    with pytest.raises(ValueError, match="modalities"):
        AutoAVSRConfig.from_dict({**config.to_dict(), "modalities": ["lips"]})


# ---------------------------------------------------------------------- conversion and parity
@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    """Random tiny checkpoints of each kind (VSR as Lightning writes them), converted with the CLI."""
    root = tmp_path_factory.mktemp("auto_avsr")
    out = {}
    for modality, seed in SEEDS.items():
        state = random_state(tiny_table(modality), seed)
        path = root / f"{modality}.pth"
        if modality == "v":  # Lightning: {"state_dict": {"model.<key>": ...}, ...}
            torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3}, path)
        else:
            torch.save(state, path)
        out[modality] = root / f"{modality}_model"
        assert convert(["auto_avsr", str(path), str(out[modality]), "--modality", modality]) == 0
    return out


@pytest.fixture(scope="module")
def models(converted) -> dict[str, AVSRModel]:
    return {modality: load_model(path) for modality, path in converted.items()}


@pytest.mark.parametrize("modality", ["v", "a", "av"])
@torch.no_grad()
def test_converted_model_reproduces_auto_avsr(converted, models, modality: str) -> None:
    """Encoder output, CTC log-probs and decoder logits against auto_avsr's own code (the
    reference was computed at float32; agreement is about 1e-6)."""
    reference = json.loads(PARITY_FILE.read_text())
    assert reference["columns"] == PARITY_COLUMNS and reference["tokens"] == PARITY_TOKENS
    expected = reference["models"][modality]
    model = models[modality]
    assert isinstance(model, AVSRModel) and model.config == AutoAVSRConfig.tiny(modality).avsr_config()
    meta = read_model_yaml(converted[modality])
    assert meta["family"] == "avsr" and meta["extra"]["source"]["layout"] == "v1.0.0"
    assert meta["extra"]["preprocessing"] == {"crop_size": 88, "video_mean": 0.421, "video_std": 0.165}
    assert load_tokenizer(converted[modality] / "tokenizer").vocab_size == 5049
    assert meta["extra"]["mouth_crop"]["style"] == "auto_avsr"
    assert MouthCropConfig.from_mapping(meta["extra"]["mouth_crop"]) == MouthCropConfig()  # auto_avsr's 96 px crops

    video, audio = parity_inputs()
    encoded, lengths = model.encode(
        audio[None] if "a" in modality else None,
        torch.tensor([audio.numel()]),
        video[None] if "v" in modality else None,
        torch.tensor([video.size(0)]),
    )
    assert lengths.tolist() == [expected["frames"]]
    torch.testing.assert_close(encoded[0, :, :16], torch.tensor(expected["encoder"]), atol=1e-4, rtol=0)
    log_probs = model.ctc_log_probs(encoded)[0][:, PARITY_COLUMNS]
    torch.testing.assert_close(log_probs, torch.tensor(expected["ctc_log_probs"]), atol=1e-4, rtol=0)
    tokens = torch.tensor([PARITY_TOKENS])
    logits = model.decode(tokens, encoded, lengths)
    torch.testing.assert_close(
        logits[0][:, PARITY_COLUMNS], torch.tensor(expected["decoder_logits"]), atol=1e-4, rtol=0
    )
    # incremental decoding (the beam search's way) gives the same logits
    bag = model.new_state_bag(len(PARITY_TOKENS))
    steps = torch.cat([model.decode(tokens[:, i : i + 1], encoded, lengths, bag) for i in range(len(PARITY_TOKENS))], 1)
    torch.testing.assert_close(steps, logits, atol=1e-4, rtol=0)


@torch.no_grad()
def test_a_padded_batch_gives_each_item_its_own_result(models) -> None:
    model = models["av"]
    video, audio = parity_inputs()
    short = 9  # frames
    videos = torch.zeros(2, video.size(0), 88, 88)
    videos[0], videos[1, :short] = video, video[:short]
    audios = torch.zeros(2, audio.numel())
    audios[0], audios[1, : short * 640] = audio, audio[: short * 640]
    batch, lengths = model.encode(
        audios, torch.tensor([audio.numel(), short * 640]), videos, torch.tensor([video.size(0), short])
    )
    alone, _ = model.encode(audio[None, : short * 640], None, video[None, :short], None)
    assert lengths.tolist() == [video.size(0), short]
    torch.testing.assert_close(batch[1, :short], alone[0], atol=1e-5, rtol=0)
    assert batch[1, short:].abs().max() == 0
    with pytest.raises(ValueError, match="needs audio and video"):
        model.encode(audios, None, None, None)
    # so the recognizer offers only audio-visual decoding for it; single-modality models, theirs
    recognizers = {m: Recognizer(models[m], None, Preprocessing(), torch.device("cpu")) for m in models}
    assert {m: r.modalities for m, r in recognizers.items()} == {"v": ("v",), "a": ("a",), "av": ("av",)}
    with pytest.raises(RecognizerError, match="this model cannot decode 'v'; it decodes av"):
        recognizers["av"].check_modality("v")
    with pytest.raises(RecognizerError, match="has no audio/video branch; it decodes v"):
        recognizers["v"].check_modality("av")


AUTO_AVSR_SRC = os.environ.get("AVSR_AUTO_AVSR_SRC")


@pytest.mark.slow
@pytest.mark.skipif(
    not AUTO_AVSR_SRC,
    reason="opt-in: set AVSR_AUTO_AVSR_SRC to a checkout of mpc001/auto_avsr (tag v1.0.0) "
    "to compare with its own code at full size",
)
@pytest.mark.parametrize("modality", ["v", "a", "av"])
@torch.no_grad()
def test_full_size_models_match_auto_avsr_own_code(modality: str) -> None:
    """The published sizes, random weights: auto_avsr's own E2E (from the checkout) and ours,
    given the checkpoint through the converter's key mapping, agree on the encoder output, the
    CTC log-probs and the decoder logits over the whole vocabulary."""
    anchors = import_anchors()
    config = AutoAVSRConfig.base(modality)
    theirs = anchors.build_auto_avsr(AUTO_AVSR_SRC, config)
    state = random_state(module_table(theirs), PARITY_SEEDS[modality])
    theirs.load_state_dict(state, strict=True)
    _, mapping, mapped_config = map_state_dict({k: tuple(v.shape) for k, v in state.items()}, "reference", modality)
    assert mapped_config == config
    ours = AVSRModel(config.avsr_config()).eval()
    ours.load_state_dict(model_state(state, mapping), strict=True)
    state.clear()
    del state
    gc.collect()
    video, audio = parity_inputs()
    video, audio = (video if "v" in modality else None), (audio if "a" in modality else None)
    tokens = torch.tensor([PARITY_TOKENS])
    want_enc, want_ctc, want_logits = anchors.auto_avsr_outputs(theirs, video, audio, tokens)
    enc, lens = ours.encode(None if audio is None else audio[None], None, None if video is None else video[None], None)
    got = {"encoder": enc, "ctc": ours.ctc_log_probs(enc), "decoder": ours.decode(tokens, enc, lens)}
    want = {"encoder": want_enc, "ctc": want_ctc, "decoder": want_logits}
    diffs = {k: float((got[k] - want[k]).abs().max()) for k in got}
    print(f"auto_avsr {modality} full size, max |ours - theirs|: {diffs}")
    assert lens.tolist() == [want_enc.size(1)]
    for name in got:  # values of order 1 to 10 through 12 + 6 layers in float32
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=1e-5, msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------------- bad checkpoints
MICRO = micro_auto_avsr(encoder_layers=2, decoder_layers=3)


@pytest.fixture(scope="module")
def micro_vsr_state() -> dict[str, torch.Tensor]:
    """A small VSR checkpoint in the head layout (fewer layers and channels than tiny)."""
    shapes = expected_checkpoint_keys(MICRO, "head")
    return random_state({k: (s, torch.int64 if k.endswith("tracked") else torch.float32) for k, s in shapes.items()}, 5)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_file", "nope.pth: no such file"),
        ("not_a_state_dict", "not a state dict"),
        ("code", "holds pickled Python objects (pathlib.PosixPath) that a weights-only load refuses to run"),
        ("text", "cannot be read as a weights-only PyTorch checkpoint (not a pickle of tensors: Unsupported operand"),
        ("unmapped", "1 key(s) not mapped to the auto_avsr model: encoder.encoders.0.extra.weight"),
        ("missing", "1 weight(s) of the model missing: decoder.decoders.2.norm1.bias"),
        ("shape", "shape mismatch(es): decoder.decoders.1.feed_forward.w_1.weight (100, 32) vs (64, 32)"),
        ("modality", "holds an auto_avsr 'v' model, not 'a'"),
    ],
)
def test_bad_checkpoints_exit_2_with_one_line(case: str, expected: str, micro_vsr_state, tmp_path, capsys) -> None:
    state = dict(micro_vsr_state)
    path = tmp_path / "bad.pth"
    extra: list[str] = []
    if case == "missing_file":
        path = tmp_path / "nope.pth"
    elif case == "not_a_state_dict":
        torch.save([1, 2, 3], path)
    elif case == "code":
        torch.save({"x": Path("somewhere")}, path)  # unpickling it would run code: refused
    elif case == "text":
        path.write_text("not a checkpoint")
    else:
        if case == "unmapped":
            state["encoder.encoders.0.extra.weight"] = torch.zeros(2)
        elif case == "missing":
            del state["decoder.decoders.2.norm1.bias"]
        elif case == "shape":
            state["decoder.decoders.1.feed_forward.w_1.weight"] = torch.zeros(100, 32)
        elif case == "modality":
            extra = ["--modality", "a"]
        torch.save(state, path)
    assert convert(["auto_avsr", str(path), str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("avsr-convert: error: ") and expected in err, err
    assert str(path) in err and "weights_only" not in err  # never torch's advice to load unsafely
    assert not (tmp_path / "out" / "model.yaml").exists()


def test_checkpoint_wrappers_and_missing_converter(micro_vsr_state, tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in micro_vsr_state.items()}, "optimizer_states": []}, path)
    state = read_checkpoint(path)
    assert state.keys() == micro_vsr_state.keys()
    keymap, _, config = map_state_dict({k: tuple(v.shape) for k, v in state.items()}, str(path))
    assert keymap.layout == "head" and config == MICRO
    with pytest.raises(ConversionError, match="not an auto_avsr checkpoint"):
        map_state_dict({"some.weight": (3,)}, "x.pth")
    monkeypatch.setitem(convert_cli.CONVERTERS, "avhubert", "avsr.models.pretrained.no_such_module:convert_checkpoint")
    assert convert(["avhubert", str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avsr-convert: error: the avhubert converter is not available") and len(err.splitlines()) == 1


# ---------------------------------------------------------------------- back to auto_avsr's layout
@pytest.mark.parametrize("modality", ["v", "a", "av"])
def test_round_trip_to_auto_avsr_is_bit_identical(converted, modality: str, tmp_path, capsys) -> None:
    """auto_avsr checkpoint -> avsr-convert -> model folder -> avsr-convert --to auto_avsr: the
    same keys, dtypes and bits as the checkpoint it came from."""
    original = random_state(tiny_table(modality), SEEDS[modality])
    out = tmp_path / "back.pth"
    assert convert(["--to", "auto_avsr", str(converted[modality]), str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    back = torch.load(out, weights_only=True)
    assert back.keys() == original.keys()
    for key, value in original.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


def test_round_trip_in_the_head_layout(micro_vsr_state, tmp_path) -> None:
    path = tmp_path / "micro.pth"
    torch.save(micro_vsr_state, path)
    assert convert(["auto_avsr", str(path), str(tmp_path / "model")]) == 0
    assert convert(["--to", "auto_avsr", str(tmp_path / "model"), str(tmp_path / "back.pth")]) == 0
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert back.keys() == micro_vsr_state.keys() and all(torch.equal(back[k], v) for k, v in micro_vsr_state.items())


def test_export_refuses_a_model_of_another_architecture(micro_model_dir, tmp_path, capsys) -> None:
    """Our own small model is not auto_avsr's: one line, exit 2, nothing written."""
    out = tmp_path / "x.pth"
    assert convert(["--to", "auto_avsr", str(micro_model_dir), str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        len(err.splitlines()) == 1 and err.startswith("avsr-convert: error: ") and "not auto_avsr's architecture" in err
    ), err
    assert not out.exists()
    assert convert(["--to", "auto_avsr", str(tmp_path / "nowhere"), str(out)]) == 2
    assert "no such model folder" in capsys.readouterr().err


@torch.no_grad()
def test_folders_converted_before_the_one_model_still_load(converted, models, tmp_path) -> None:
    """A folder written when auto_avsr had its own model class (family auto_avsr, its config,
    video_frontend.*, the audio trunk directly under audio_frontend, fusion reading (video, audio))
    loads into the one model and computes the same."""
    import yaml
    from safetensors.torch import load_file, save_file

    from avsr.models.io import file_sha256

    source = converted["av"]
    old = tmp_path / "old"
    old.mkdir()
    state = load_file(source / "model.safetensors")
    legacy = {}
    for key, value in state.items():
        if key.startswith("visual_frontend."):
            key = "video_frontend." + key[len("visual_frontend.") :]
        elif key.startswith("audio_frontend.trunk."):
            key = "audio_frontend." + key[len("audio_frontend.trunk.") :]
        elif key == "fusion.fc1.weight":
            half = value.size(1) // 2
            value = torch.cat([value[:, half:], value[:, :half]], dim=1)
        legacy[key] = value
    save_file(legacy, old / "model.safetensors")
    meta = read_model_yaml(source)
    meta.update(
        family="auto_avsr",
        config=AutoAVSRConfig.tiny("av").to_dict(),
        weights={"file": "model.safetensors", "sha256": file_sha256(old / "model.safetensors")},
    )
    (old / "model.yaml").write_text(yaml.safe_dump(meta))
    loaded = load_model(old)
    video, audio = parity_inputs()
    want = models["av"].encode(audio[None], None, video[None], None)[0]
    torch.testing.assert_close(loaded.encode(audio[None], None, video[None], None)[0], want, atol=0, rtol=0)


# ---------------------------------------------------------------------- avsr-decode (conftest's face_video)
@pytest.mark.parametrize("modality", ["v", "a", "av"])
def test_avsr_decode_runs_a_converted_model(converted, face_video, modality: str, capsys) -> None:
    # no --modality: the model's own (VSR: lip reading, ASR: audio, AV: both)
    args = [
        "--model",
        str(converted[modality]),
        "--quiet",
        "--beam",
        "3",
        "--ctc-weight",
        "0.1",
        "--max-length",
        "6",
        "--json",
        str(face_video),
    ]
    assert decode_cli.main(args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)["files"][0]
    assert result["modality"] == modality and result["notes"] == [] and result["segments"], captured.err


def test_export_takes_a_model_trained_from_another_base_config(converted, tmp_path, capsys) -> None:
    """A model of auto_avsr's architecture trained with avsr-train carries the settings of the base
    config it was merged over where no tensor fixes them (length limits, the encoder of a branch
    it has not got, what stands for a missing stream): it still writes out; a setting that changes
    a tensor does not."""
    import yaml

    for name, change, ok in (
        ("merged", lambda c: c.update(absent_modality="learned", trim_streams="before_encoders"), True),
        ("eps", lambda c: c["decoder"].update(layer_norm_eps=1e-5), False),
    ):
        folder = tmp_path / name
        shutil.copytree(converted["a"], folder)
        meta = read_model_yaml(folder)
        config = meta["config"]
        config["decoder"]["max_len"], config["audio_encoder"]["max_len"] = 512, 1000
        config["video_encoder"] = {**config["video_encoder"], "kind": "transformer", "layers": 1}
        change(config)
        (folder / "model.yaml").write_text(yaml.safe_dump(meta))
        code = convert(["--to", "auto_avsr", str(folder), str(tmp_path / f"{name}.pth")])
        err = capsys.readouterr().err
        assert code == (0 if ok else 2), err
        assert ok or "not auto_avsr's architecture" in err
