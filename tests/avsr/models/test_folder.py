"""The model folder as a contract (model.yaml, weights, tokenizer/): every path it names stays
inside it, its tokenizer is the one it was trained with, and avsr-decode's ``av`` mode falls back
to the modality a file has, the same way for every kind of file.

Hostile folders are made from real ones (the micro model, tokenizers trained by avsr's own trainer)
and fed to the real commands; each case is one line on stderr and an exit status, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from avsr.cli import bench as bench_cli
from avsr.cli import convert as convert_cli
from avsr.cli import decode as decode_cli
from avsr.cli import prepare as prepare_cli
from avsr.data.tokenizers import load_tokenizer
from avsr.media import probe, read_video, write_mp4, write_wav

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _decode(model: Path, *args: str) -> int:
    return _run(decode_cli.main, ["--model", str(model), "--quiet", *args])


def _one_error_line(err: str, program: str = "avsr-decode") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), err
    return lines[0]


def _copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _edit_yaml(model: Path, edit) -> None:
    path = model / "model.yaml"
    meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(meta)
    path.write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def wav(train_data) -> Path:
    return sorted((train_data["path"] / "audio").rglob("*.wav"))[0]


# ---------------------------------------------------------------------- paths stay inside the folder
@pytest.mark.parametrize("how", ["relative", "absolute", "symlink"])
def test_weights_outside_the_model_folder_are_refused(micro_model_dir, wav, tmp_path, how, capsys):
    """model.yaml's weights.file (or a symlink it names) may not lead out of the folder, even to
    weights whose checksum matches."""
    model = _copy_model(micro_model_dir, tmp_path / "model")
    outside = tmp_path / "elsewhere" / "weights.safetensors"
    outside.parent.mkdir()
    shutil.move(model / "model.safetensors", outside)
    if how == "symlink":
        (model / "model.safetensors").symlink_to(outside)
    else:
        named = "../elsewhere/weights.safetensors" if how == "relative" else str(outside)
        _edit_yaml(model, lambda meta: meta["weights"].update(file=named))
    assert _decode(model, "--modality", "a", str(wav)) == 2
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert "model.yaml" in line or "model.safetensors" in line
    assert "outside" in line and captured.out == ""


def test_mean_face_outside_the_model_folder_is_refused(micro_model_dir, wav, tmp_path, capsys):
    """mouth_crop.mean_face names a file to read: the shipped one, or one inside the folder."""
    from avsr.face import default_mean_face

    model = _copy_model(micro_model_dir, tmp_path / "model")
    outside = tmp_path / "faces" / "mean_face.npy"
    outside.parent.mkdir()
    shutil.copyfile(default_mean_face(), outside)
    _edit_yaml(model, lambda meta: meta["extra"].update(mouth_crop={"style": "auto_avsr", "mean_face": str(outside)}))
    assert _decode(model, "--modality", "a", str(wav)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "mean_face" in line and "outside" in line
    # inside the folder it is used
    shutil.copyfile(default_mean_face(), model / "mean_face.npy")
    _edit_yaml(
        model, lambda meta: meta["extra"].update(mouth_crop={"style": "auto_avsr", "mean_face": "mean_face.npy"})
    )
    assert _decode(model, "--modality", "a", str(wav)) == 0


def test_sharded_weights_outside_a_hugging_face_folder_are_refused(tmp_path):
    """A model.safetensors.index.json may only name shards in its own folder."""
    import transformers
    from safetensors.torch import save_file

    from avsr.models.convert import CheckpointError, convert_checkpoint

    config = transformers.Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    folder, outside = tmp_path / "hf", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in transformers.Wav2Vec2Model(config).state_dict().items()}
    save_file(state, outside / "shard.safetensors")
    index = {"metadata": {}, "weight_map": {k: "../elsewhere/shard.safetensors" for k in state}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as info:
        convert_checkpoint(folder)
    message = str(info.value)
    assert "model.safetensors.index.json" in message and "outside" in message and "\n" not in message
    # the same shard beside the index loads
    shutil.copyfile(outside / "shard.safetensors", folder / "shard.safetensors")
    index["weight_map"] = {k: "shard.safetensors" for k in state}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert convert_checkpoint(folder).encoder_config is not None


def test_sentence_transformers_modules_outside_the_folder_are_refused(tmp_path):
    """modules.json names the sub-folders of a sentence-transformers model; one that leads out of the
    folder (here: to a real model elsewhere) is refused before anything is loaded from it."""
    from vision_language.encoders import TextEncoderConfig, build_text_encoder, minilm_path

    folder = tmp_path / "text_model"
    folder.mkdir()
    for target in (str(minilm_path()), os.path.relpath(minilm_path(), folder)):
        (folder / "modules.json").write_text(
            json.dumps(
                [
                    {"idx": 0, "name": "0", "path": target, "type": "sentence_transformers.models.Transformer"},
                ]
            )
        )
        with pytest.raises(ValueError) as info:
            build_text_encoder(TextEncoderConfig(path=str(folder)))
        message = str(info.value)
        assert "modules.json" in message and "outside" in message and "\n" not in message


# ---------------------------------------------------------------------- the tokenizer it was trained with
@pytest.fixture(scope="module")
def swapped_model(micro_model_dir, train_data, tmp_path_factory) -> Path:
    """The micro model with its tokenizer replaced by another one avsr's trainer made from the same
    manifests (lower case): same size, consistent checksums, different fingerprint."""
    model = _copy_model(micro_model_dir, tmp_path_factory.mktemp("swapped") / "model")
    shutil.rmtree(model / "tokenizer")
    prepared = train_data["path"]
    argv = [
        "tokenizer",
        str(prepared / "train.tsv"),
        str(prepared / "pretrain.tsv"),
        str(model / "tokenizer"),
        "--kind",
        "char",
        "--case",
        "lower",
    ]
    assert prepare_cli.main(argv) == 0
    original, swapped = load_tokenizer(micro_model_dir / "tokenizer"), load_tokenizer(model / "tokenizer")
    assert swapped.vocab_size == original.vocab_size and swapped.fingerprint != original.fingerprint
    return model


def _assert_fingerprint_refusal(line: str, model: Path) -> None:
    assert str(model / "tokenizer") in line and "fingerprint" in line and "model.yaml" in line


def test_decode_refuses_a_swapped_tokenizer(swapped_model, wav, capsys):
    assert _decode(swapped_model, "--modality", "a", str(wav)) == 2
    captured = capsys.readouterr()
    _assert_fingerprint_refusal(_one_error_line(captured.err), swapped_model)
    assert captured.out == ""


def test_bench_refuses_a_swapped_tokenizer(swapped_model, train_data, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = [
        "--model",
        str(swapped_model),
        "--manifest",
        str(train_data["path"] / "test.tsv"),
        "--out",
        str(out),
        "--modalities",
        "a",
        "--snr",
        "clean",
        "--decoder",
        "greedy",
        "--limit",
        "1",
        "--quiet",
    ]
    assert _run(bench_cli.main, argv) == 2
    _assert_fingerprint_refusal(_one_error_line(capsys.readouterr().err, "avsr-bench"), swapped_model)
    assert not out.exists()


def test_a_model_yaml_without_a_tokenizer_fingerprint_is_refused(micro_model_dir, wav, tmp_path, capsys):
    model = _copy_model(micro_model_dir, tmp_path / "model")
    assert yaml.safe_load((model / "model.yaml").read_text())["extra"]["tokenizer_fingerprint"]  # exports record it
    _edit_yaml(model, lambda meta: meta["extra"].pop("tokenizer_fingerprint"))
    assert _decode(model, "--modality", "a", str(wav)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "model.yaml" in line and "tokenizer fingerprint" in line


def test_fine_tuning_from_a_folder_checks_its_tokenizer(micro_model_dir, swapped_model, train_data):
    """init_from: the folder must be consistent, and its token-dependent parts (CTC head, decoder)
    may only start a run that uses the same tokenizer."""
    from avsr.models.io import load_config
    from avsr.training.avsr_config import AVSRModelSection, InitFromModel
    from avsr.training.config_loading import TrainConfigError
    from avsr.training.recipe import _create_model, initialise_weights

    run_tokenizer = load_tokenizer(train_data["tokenizer"])
    other_tokenizer = load_tokenizer(swapped_model / "tokenizer")
    model = _create_model(load_config(micro_model_dir))

    def init(folder: Path, modules: list[str], tokenizer) -> list[str]:
        section = AVSRModelSection(init_from=[InitFromModel(path=folder, modules=modules)])
        return initialise_weights(model, section, tokenizer=tokenizer)

    with pytest.raises(TrainConfigError, match="fingerprint") as info:  # the folder itself is inconsistent
        init(swapped_model, ["audio_encoder"], run_tokenizer)
    assert "model.init_from" in str(info.value) and str(swapped_model / "tokenizer") in str(info.value)
    with pytest.raises(TrainConfigError, match="another tokenizer") as info:  # the run's tokenizer is not the folder's
        init(micro_model_dir, ["audio_encoder", "decoder"], other_tokenizer)
    assert "decoder" in str(info.value) and "\n" not in str(info.value)
    assert len(init(micro_model_dir, ["audio_encoder"], other_tokenizer)) == 1  # tokenizer-free parts may move
    assert len(init(micro_model_dir, ["audio_encoder", "ctc_head", "decoder"], run_tokenizer)) == 3


def test_convert_refuses_a_model_folder_with_a_swapped_tokenizer(swapped_model, tmp_path, capsys):
    """avsr-convert --tokenizer accepts a model folder (its tokenizer, checked against its model.yaml)."""
    from auto_avsr_helpers import micro_auto_avsr, random_state
    from avsr.models.pretrained.auto_avsr_checkpoint import expected_checkpoint_keys

    config = micro_auto_avsr(vocab_size=load_tokenizer(swapped_model / "tokenizer").vocab_size)
    shapes = expected_checkpoint_keys(config, "head")
    state = random_state(
        {k: (s, torch.int64 if k.endswith("tracked") else torch.float32) for k, s in shapes.items()}, 3
    )
    checkpoint = tmp_path / "vsr.pth"
    torch.save(state, checkpoint)
    assert (
        _run(convert_cli.main, ["auto_avsr", str(checkpoint), str(tmp_path / "out"), "--tokenizer", str(swapped_model)])
        == 2
    )
    _assert_fingerprint_refusal(_one_error_line(capsys.readouterr().err, "avsr-convert"), swapped_model)
    assert not (tmp_path / "out" / "model.yaml").exists()


# ---------------------------------------------------------------------- av mode: the modality that is there
@pytest.fixture(scope="module")
def talking_clip(lrs2_corpus: Path):
    """A synthetic talking face with its voice (dlib finds the face)."""
    return read_video(sorted(lrs2_corpus.glob("main/*/*.mp4"))[0])


@pytest.fixture(scope="module")
def one_modality_files(talking_clip, tmp_path_factory) -> dict[str, Path]:
    """The same talk as a silent video, an audio file and a video without a face."""
    root = tmp_path_factory.mktemp("one_modality")
    files = {"silent": root / "silent.mp4", "audio": root / "voice.wav", "faceless": root / "wall.mp4"}
    write_mp4(files["silent"], talking_clip.frames)
    write_wav(files["audio"], talking_clip.audio)
    write_mp4(files["faceless"], np.full_like(talking_clip.frames, 128), talking_clip.audio)
    assert not probe(files["silent"]).has_audio and not probe(files["audio"]).has_video
    return files


FALLBACKS = {
    "silent": ("v", "no audio stream: decoded from the video only"),
    "audio": ("a", "no video stream: decoded from the audio only"),
    "faceless": ("a", "no face found"),
}


@pytest.mark.parametrize("kind", sorted(FALLBACKS))
def test_av_mode_falls_back_to_the_modality_that_is_there(micro_model_dir, one_modality_files, kind, capsys):
    path = one_modality_files[kind]
    used, note = FALLBACKS[kind]
    assert _decode(micro_model_dir, "--decoder", "greedy", "--json", str(path)) == 0  # default: av
    captured = capsys.readouterr()
    result = json.loads(captured.out)["files"][0]
    assert result["segments"] and all(s["modality"] == used for s in result["segments"])
    notes = [line for line in captured.err.splitlines() if line.startswith(f"avsr-decode: {path}: ")]
    assert len(notes) == 1 and note in notes[0], captured.err
    assert notes[0].endswith(f": decoded from the {'audio' if used == 'a' else 'video'} only")


@pytest.fixture(scope="module")
def av_only_model(tmp_path_factory) -> Path:
    """An auto_avsr audio-visual model folder (it decodes only with both streams), random weights."""
    from auto_avsr_helpers import micro_auto_avsr
    from avsr.data.tokenizers import Tokenizer
    from avsr.models.avsr_model import AVSRModel
    from avsr.models.io import save_model

    tokenizer = Tokenizer.from_sentencepiece(*_shipped_auto_avsr_tokenizer())
    config = micro_auto_avsr(modalities=("audio", "video"), fusion_hidden_dim=32, vocab_size=tokenizer.vocab_size)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("auto_avsr_av") / "model"
    out.mkdir()
    tokenizer.save(out / "tokenizer")
    save_model(out, AVSRModel(config.avsr_config()).eval(), extra={"tokenizer_fingerprint": tokenizer.fingerprint})
    return out


def _shipped_auto_avsr_tokenizer() -> tuple[Path, Path]:
    from avsr.models.pretrained.auto_avsr_checkpoint import SPM_MODEL, SPM_UNITS

    return SPM_MODEL, SPM_UNITS


def test_av_mode_skips_files_the_model_cannot_decode_alone(av_only_model, one_modality_files, capsys):
    from avsr.decoding.recognizer import Recognizer

    assert Recognizer.load(av_only_model).modalities == ("av",)
    for kind, kept in (("silent", "video"), ("audio", "audio"), ("faceless", "audio")):
        assert _decode(av_only_model, str(one_modality_files[kind])) == 1, kind
        line = _one_error_line(capsys.readouterr().err)
        assert (
            str(one_modality_files[kind]) in line
            and f"this model cannot decode the {kept} alone (it decodes av)" in line
        ), line
    # several inputs: each is skipped with its line, and none left is an error
    assert _decode(av_only_model, str(one_modality_files["silent"]), str(one_modality_files["audio"])) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[1].strip() for line in err[:2]] == [
        "skipped " + str(one_modality_files["silent"]),
        "skipped " + str(one_modality_files["audio"]),
    ]
    assert err[-1] == "avsr-decode: error: none of the 2 inputs could be decoded"
