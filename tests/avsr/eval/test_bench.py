"""avsr-bench and the Recognizer behind it: results files, repeatable noise, skips and errors.

The model is the tiny architecture at random initialisation saved as an exported model folder:
these tests are about what the command does with a model, not about how good the model is.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jiwer
import numpy as np
import pytest

from avsr.cli import bench as bench_cli
from avsr.data.manifest import read_manifest, write_manifest
from avsr.data.tokenizers import load_tokenizer
from avsr.decoding.recognizer import DecodeOptions, Recognizer
from avsr.eval.bench import BenchError, noise_for, parse_snrs
from avsr.training import augment
from avsr.training.media import read_mouth_video, read_wav
from micro_models import export_micro_model


@pytest.fixture(scope="module")
def test_manifest(train_data) -> Path:
    manifest = train_data["path"] / "test.tsv"
    assert len(read_manifest(manifest)) >= 2
    return manifest


def _bench(model: Path, manifest: Path, out: Path, *extra: str) -> int:
    return bench_cli.main(["--model", str(model), "--manifest", str(manifest), "--out", str(out), "--quiet", *extra])


def test_parse_snrs():
    assert parse_snrs("clean, 20,0,-5,0") == [None, 20.0, 0.0, -5.0]
    with pytest.raises(BenchError, match="loud"):
        parse_snrs("clean,loud")


def test_noise_is_repeatable_and_mixed_at_the_snr():
    babble = np.random.default_rng(1).standard_normal(16000).astype(np.float32)
    speech = np.sin(np.arange(8000) / 7.0).astype(np.float32)
    a = noise_for(3, "babble", 8000, babble, seed=0)
    assert np.array_equal(a, noise_for(3, "babble", 8000, babble, seed=0))
    assert not np.array_equal(a, noise_for(4, "babble", 8000, babble, seed=0))
    for snr in (10.0, 0.0, -5.0):
        mixed = augment.mix_at_snr(speech, a, snr)
        assert augment.snr_db(speech, mixed - speech) == pytest.approx(snr, abs=1e-3)


def _partly_heard_manifest(model: Path, manifest: Path, folder: Path) -> Path:
    """The manifest with each reference prefixed by what the model hears in its clean audio, so
    that WERs differ between utterances and conditions (a random model scores 100 % otherwise,
    whatever transcripts a result was computed from)."""
    rows = read_manifest(manifest)
    heard = Recognizer.load(model).transcribe(
        [read_wav(manifest.parent / r.audio) for r in rows], None, DecodeOptions(decoder="greedy")
    )
    folder.mkdir()
    for media in ("video", "audio"):
        (folder / media).symlink_to(manifest.parent / media)
    write_manifest(
        folder / manifest.name, [dataclasses.replace(r, text=f"{h.text} {r.text}".strip()) for r, h in zip(rows, heard)]
    )
    return folder / manifest.name


def test_bench_writes_results_and_repeats_exactly(micro_model_dir, test_manifest, tmp_path, capsys):
    test_manifest = _partly_heard_manifest(micro_model_dir, test_manifest, tmp_path / "data")
    out = tmp_path / "bench"
    assert (
        _bench(
            micro_model_dir, test_manifest, out, "--decoder", "greedy", "--snr", "clean,0", "--noise", "babble,white"
        )
        == 0
    )
    table = capsys.readouterr().out
    assert table.startswith("| modality | clean | babble 0dB | white 0dB |")
    assert {"| audio |", "| video |", "| audio-visual |"} <= {
        line[: line.index("|", 2) + 1] for line in table.splitlines() if line.startswith("| ")
    }
    payload = json.loads((out / "results.json").read_text())
    rows = payload["results"]
    keys = {(r["modality"], r["noise"], r["snr_db"]) for r in rows}
    assert keys == {
        ("a", "clean", None),
        ("a", "babble", 0.0),
        ("a", "white", 0.0),
        ("v", "clean", None),
        ("av", "clean", None),
        ("av", "babble", 0.0),
        ("av", "white", 0.0),
    }
    n = len(read_manifest(test_manifest))
    words = sum(len(r.text.split()) for r in read_manifest(test_manifest))
    normalize = load_tokenizer(micro_model_dir / "tokenizer").normalize
    for r in rows:
        assert r["utterances"] == n and r["words"] == words and r["rtf"] > 0
        # the WER is what the condition's own transcripts give (recomputed with jiwer)
        name = f"{r['modality']}_clean" if r["noise"] == "clean" else f"{r['modality']}_{r['noise']}_{r['snr_db']:g}dB"
        lines = [line.split("\t") for line in (out / "hyps" / f"{name}.tsv").read_text().splitlines()[1:]]
        assert sorted(i for i, _, _ in lines) == sorted(row.id for row in read_manifest(test_manifest))
        expected = jiwer.wer([normalize(ref) for _, ref, _ in lines], [normalize(hyp) for _, _, hyp in lines])
        assert r["wer"] == pytest.approx(expected, abs=1e-9), name
    assert payload["results"][0]["wer"] < 1 and len({r["wer"] for r in rows}) > 1  # a check with teeth
    assert payload["real_time_factor"] > 0 and payload["decoder"]["decoder"] == "greedy"
    assert (out / "wer_vs_snr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hyps = (out / "hyps" / "av_babble_0dB.tsv").read_text().splitlines()
    assert hyps[0] == "id\treference\thypothesis" and len(hyps) == n + 1

    # The same command gives the same numbers: noise is seeded per utterance.
    again = tmp_path / "again"
    assert (
        _bench(
            micro_model_dir,
            test_manifest,
            again,
            "--decoder",
            "greedy",
            "--snr",
            "clean,0",
            "--noise",
            "babble,white",
            "--json",
        )
        == 0
    )
    second = json.loads(capsys.readouterr().out)["results"]
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("decode_seconds", "rtf")} for r in rs]  # noqa: E731
    assert strip(second) == strip(rows)


def _second_manifest(manifest: Path, folder: Path, name: str) -> Path:
    """The manifest's rows, reversed, under another name in another folder (same media)."""
    folder.mkdir()
    for media in ("video", "audio"):
        (folder / media).symlink_to(manifest.parent / media)
    write_manifest(folder / name, read_manifest(manifest)[::-1])
    return folder / name


def test_bench_two_manifests_and_corrupted_video(micro_model_dir, test_manifest, tmp_path, capsys):
    seen = _second_manifest(test_manifest, tmp_path / "seen", "test_seen.tsv")
    out = tmp_path / "bench"
    args = (
        "--manifest",
        str(seen),
        "--decoder",
        "greedy",
        "--snr",
        "clean,0",
        "--video-corruption",
        "none,frozen,blur",
    )
    assert _bench(micro_model_dir, test_manifest, out, *args) == 0
    table = capsys.readouterr().out
    assert table.startswith("| manifest | video | modality | clean | babble 0dB |")
    assert "| test_seen | frozen | audio-visual |" in table and "| test | - | audio |" in table
    assert "Audio-visual minus audio, WER points" in table and "| test_seen | blur | " in table
    payload = json.loads((out / "results.json").read_text())
    assert payload["manifests"] == {"test": str(test_manifest), "test_seen": str(seen)}
    assert payload["video_corruptions"] == ["none", "frozen", "blur"]
    keys = [(r["manifest"], r["video_corruption"], r["modality"], r["noise"], r["snr_db"]) for r in payload["results"]]
    per_manifest = {("none", "a", "clean", None), ("none", "a", "babble", 0.0)}
    for corruption in ("none", "frozen", "blur"):
        per_manifest |= {
            (corruption, "v", "clean", None),
            (corruption, "av", "clean", None),
            (corruption, "av", "babble", 0.0),
        }
    assert sorted(keys, key=str) == sorted({(m, *k) for m in ("test", "test_seen") for k in per_manifest}, key=str)
    n = len(read_manifest(test_manifest))
    assert all(r["utterances"] == n for r in payload["results"])
    hyps = {p.name for p in (out / "hyps").iterdir()}
    assert {
        "test_v_clean.tsv",
        "test_v_clean_frozen.tsv",
        "test_seen_av_babble_0dB_blur.tsv",
        "test_seen_a_clean.tsv",
    } <= hyps
    assert not any("a_clean_" in h for h in hyps)  # audio-only does not see the video: decoded once

    def hyp_texts(name: str) -> dict[str, str]:
        return {i: h for i, _, h in (line.split("\t") for line in (out / "hyps" / name).read_text().splitlines()[1:])}

    # the corrupted crops reach the model: the same utterances give other hypotheses; the two
    # manifests hold the same clips, so they get the same corruption only where the seed says so
    assert hyp_texts("test_v_clean.tsv") == hyp_texts("test_seen_v_clean.tsv")
    assert hyp_texts("test_v_clean.tsv") != hyp_texts("test_v_clean_frozen.tsv")
    assert hyp_texts("test_v_clean_frozen.tsv") != hyp_texts("test_v_clean_blur.tsv")
    # repeatable from the seed
    again = tmp_path / "again"
    assert _bench(micro_model_dir, test_manifest, again, *args, "--json") == 0
    second = json.loads(capsys.readouterr().out)["results"]
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("decode_seconds", "rtf")} for r in rs]  # noqa: E731
    assert strip(second) == strip(payload["results"])
    for name in hyps:
        assert (again / "hyps" / name).read_text() == (out / "hyps" / name).read_text()


def test_bench_manifests_that_cannot_be_told_apart(micro_model_dir, test_manifest, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _bench(micro_model_dir, test_manifest, tmp_path / "out", "--manifest", str(test_manifest))
    assert exc.value.code == 2 and "both be labelled 'prepared/test'" in capsys.readouterr().err
    other = _second_manifest(test_manifest, tmp_path / "other", "test.tsv")  # same stem, another folder
    assert (
        _bench(
            micro_model_dir,
            test_manifest,
            tmp_path / "out",
            "--manifest",
            str(other),
            "--modalities",
            "a",
            "--snr",
            "clean",
            "--decoder",
            "greedy",
        )
        == 0
    )
    assert "| prepared/test | audio |" in capsys.readouterr().out


def test_bench_skips_an_unreadable_utterance(micro_model_dir, test_manifest, tmp_path, capsys):
    rows = read_manifest(test_manifest)
    broken = tmp_path / "data"
    shutil.copytree(test_manifest.parent / "video", broken / "video")
    shutil.copytree(test_manifest.parent / "audio", broken / "audio")
    (broken / rows[0].video).write_bytes(b"not a video")
    write_manifest(broken / "test.tsv", rows)
    assert (
        _bench(
            micro_model_dir,
            broken / "test.tsv",
            tmp_path / "out",
            "--decoder",
            "greedy",
            "--snr",
            "clean",
            "--modalities",
            "v,av",
        )
        == 0
    )
    err = capsys.readouterr().err
    assert f"skipped {rows[0].id}:" in err
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all(r["utterances"] == len(rows) - 1 for r in payload["results"])
    assert payload["skipped"][0].startswith(rows[0].id)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--modalities", "a,x"], "unknown modality 'x'"),
        (["--noise", "pink"], "unknown noise 'pink'"),
        (["--snr", "clean,loud"], "SNR 'loud'"),
        (["--beam", "0"], "beam must be at least 1"),
        (["--video-corruption", "none,rain"], "unknown video corruption 'rain'"),
    ],
)
def test_bench_bad_options_are_one_line_errors(micro_model_dir, test_manifest, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        _bench(micro_model_dir, test_manifest, tmp_path / "out", *args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("avsr-bench: error:") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_bench_missing_model_or_manifest(micro_model_dir, test_manifest, tmp_path, capsys):
    with pytest.raises(SystemExit):
        _bench(tmp_path / "nowhere", test_manifest, tmp_path / "out")
    assert "not a model folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _bench(micro_model_dir, tmp_path / "missing.tsv", tmp_path / "out")
    assert "missing.tsv: manifest not found" in capsys.readouterr().err


def test_bench_refuses_a_modality_the_model_lacks(train_data, test_manifest, tmp_path, capsys):
    audio_only = export_micro_model(tmp_path / "model", train_data["tokenizer"], drop="visual")
    with pytest.raises(SystemExit):
        _bench(audio_only, test_manifest, tmp_path / "out", "--modalities", "a,v")
    assert "no video branch; it decodes a" in capsys.readouterr().err


def test_recognizer_batched_equals_one_at_a_time(micro_model_dir, test_manifest):
    recognizer = Recognizer.load(micro_model_dir)
    assert recognizer.preprocessing.crop_size == 88 and recognizer.preprocessing.video_mean == pytest.approx(0.42)
    base = test_manifest.parent
    rows = read_manifest(test_manifest)[:3]
    audios = [read_wav(base / r.audio) for r in rows]
    videos = [read_mouth_video(base / r.video) for r in rows]
    for options in (DecodeOptions(decoder="greedy"), DecodeOptions(decoder="beam", beam=4, ctc_weight=0.3)):
        together = recognizer.transcribe(audios, videos, options)
        alone = [recognizer.transcribe([a], [v], options)[0] for a, v in zip(audios, videos)]
        assert [t.tokens for t in together] == [t.tokens for t in alone]
        assert [t.score for t in together] == pytest.approx([t.score for t in alone], rel=1e-4)
