"""avsr-decode: the whole chain on real media files (synthetic talking faces), its outputs and its
messages. The model is the micro architecture at random initialisation: these tests check what the
command does, not what a good model would say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avsr.cli import decode as decode_cli
from avsr.decoding.alignment import WordTiming
from avsr.decoding.subtitles import format_subtitles
from avsr.media import probe, read_video, write_mp4, write_wav


def _clips(corpus: Path, n: int) -> list[Path]:
    return sorted(corpus.glob("main/*/*.mp4"))[:n]


def _decode(model: Path, *args: str) -> int:
    return decode_cli.main(["--model", str(model), "--quiet", *args])


def test_decode_prints_the_transcript_and_json_with_word_times(micro_model_dir, lrs2_corpus, capsys):
    clip = _clips(lrs2_corpus, 1)[0]
    assert _decode(micro_model_dir, str(clip)) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and len(out.splitlines()) == 1
    assert _decode(micro_model_dir, str(clip), "--json", "--decoder", "greedy") == 0
    result = json.loads(capsys.readouterr().out)["files"][0]
    duration = probe(clip).duration
    assert result["modality"] == "av" and result["notes"] == []
    for segment in result["segments"]:
        assert 0 <= segment["start"] < segment["end"] <= duration + 0.05
        for word in segment["words"]:
            assert segment["start"] <= word["start"] < word["end"] <= segment["end"] + 1e-6
        assert segment["text"] == " ".join(w["word"] for w in segment["words"]) or not segment["words"]


def test_max_length_caps_the_output(micro_model_dir, lrs2_corpus, capsys):
    clip = _clips(lrs2_corpus, 1)[0]
    assert _decode(micro_model_dir, str(clip), "--json") == 0
    uncapped = json.loads(capsys.readouterr().out)["files"][0]["segments"]
    assert max(len(segment["text"]) for segment in uncapped) > 3  # the random model rambles
    assert _decode(micro_model_dir, str(clip), "--max-length", "3", "--json") == 0
    result = json.loads(capsys.readouterr().out)["files"][0]
    assert all(len(segment["text"]) <= 3 for segment in result["segments"])  # characters: one token each
    with pytest.raises(SystemExit) as exc:
        _decode(micro_model_dir, str(clip), "--max-length", "0")
    assert exc.value.code == 2 and "max_length must be at least 1" in capsys.readouterr().err


def test_timings_report_every_stage_of_the_chain(micro_model_dir, lrs2_corpus, capsys):
    clip = _clips(lrs2_corpus, 1)[0]
    assert _decode(micro_model_dir, str(clip), "--timings", "--decoder", "greedy") == 0
    err = capsys.readouterr().err
    assert f"timings for {probe(clip).duration:.1f} s of media" in err
    rows = {line.split()[0]: line.split() for line in err.splitlines()[1:] if "RTF" in line}
    assert list(rows) == ["media", "face", "crop", "model", "search", "align", "total"]
    seconds = {name: float(row[1]) for name, row in rows.items()}
    assert seconds["face"] > 0 and seconds["total"] > 0  # dlib on every frame takes time
    duration = probe(clip).duration
    for name, row in rows.items():  # each stage's real-time factor is its seconds per second of media
        assert float(row[4]) == pytest.approx(seconds[name] / duration, abs=0.005 / duration + 1e-4), name
    # each printed value is rounded to 0.01 s: the sum of seven roundings may be off by 0.035
    assert seconds["total"] == pytest.approx(
        sum(s for n, s in seconds.items() if n != "total"), abs=0.005 * len(seconds) + 1e-9
    )


def test_long_input_is_segmented_and_joined_in_order(micro_model_dir, long_video, capsys, tmp_path):
    srt, vtt = tmp_path / "out.srt", tmp_path / "out.vtt"
    assert (
        _decode(micro_model_dir, str(long_video), "--max-segment", "3", "--json", "--srt", str(srt), "--vtt", str(vtt))
        == 0
    )
    result = json.loads(capsys.readouterr().out)["files"][0]
    segments = result["segments"]
    assert len(segments) >= 3
    assert segments[0]["start"] == 0 and segments[-1]["end"] == pytest.approx(probe(long_video).duration, abs=0.05)
    for a, b in zip(segments, segments[1:]):
        assert a["end"] == pytest.approx(b["start"])  # owned ranges tile the input
    starts = [w["start"] for s in segments for w in s["words"]]
    assert starts == sorted(starts)
    assert srt.read_text().startswith("1\n00:00:") or srt.read_text() == ""
    assert vtt.read_text().startswith("WEBVTT\n")


def test_audio_only_on_an_audio_file(micro_model_dir, train_data, capsys):
    wav = sorted((train_data["path"] / "audio").rglob("*.wav"))[0]
    assert _decode(micro_model_dir, "--modality", "a", str(wav)) == 0
    # ... but lip reading it cannot be done
    with pytest.raises(SystemExit) as exc:
        _decode(micro_model_dir, "--modality", "v", str(wav))
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err == f"avsr-decode: error: {wav}: no video stream (use --modality a for audio files)\n"


@pytest.fixture(scope="module")
def faceless_video(lrs2_corpus: Path, tmp_path_factory) -> Path:
    av = read_video(_clips(lrs2_corpus, 1)[0])
    path = tmp_path_factory.mktemp("faceless") / "wall.mp4"
    write_mp4(path, np.full_like(av.frames, 128), av.audio)
    return path


def test_no_face_fails_lip_reading_and_falls_back_to_audio(micro_model_dir, faceless_video, capsys):
    with pytest.raises(SystemExit) as exc:
        _decode(micro_model_dir, "--modality", "v", str(faceless_video))
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "no face found" in err and "cannot lip-read it" in err and len(err.splitlines()) == 1
    assert _decode(micro_model_dir, "--modality", "av", str(faceless_video), "--json") == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)["files"][0]
    assert all(s["modality"] == "a" for s in result["segments"])
    assert "decoded from the audio only" in captured.err


def test_face_lost_for_part_of_the_video(micro_model_dir, lrs2_corpus, tmp_path, capsys):
    av = read_video(_clips(lrs2_corpus, 1)[0])
    frames = av.frames.copy()
    frames[5:40] = 128  # the face is gone for 1.4 s
    path = tmp_path / "lost.mp4"
    write_mp4(path, frames, av.audio)
    assert _decode(micro_model_dir, str(path), "--json") == 0
    captured = capsys.readouterr()
    assert "face lost 0.20-1.60 s" in captured.err
    assert "decoded from the audio only (face lost in" in captured.err
    assert json.loads(captured.out)["files"][0]["segments"][0]["modality"] == "a"


def test_bad_inputs_are_skipped_and_reported(micro_model_dir, lrs2_corpus, tmp_path, capsys):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    clip = _clips(lrs2_corpus, 1)[0]
    assert _decode(micro_model_dir, str(junk), str(clip), str(tmp_path / "missing.mp4")) == 1
    captured = capsys.readouterr()
    assert f"{clip}: " in captured.out and len(captured.out.splitlines()) == 1
    assert f"skipped {junk}:" in captured.err and "missing.mp4" in captured.err


def test_subtitles_of_several_inputs_go_in_a_folder_one_file_each(micro_model_dir, lrs2_corpus, tmp_path, capsys):
    by_stem: dict[str, list[Path]] = {}
    for clip in sorted(lrs2_corpus.glob("main/*/*.mp4")):
        by_stem.setdefault(clip.stem, []).append(clip)
    twins = next(clips[:2] for clips in by_stem.values() if len(clips) > 1)  # main/<a>/00001, main/<b>/00001
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    subs = tmp_path / "subs"
    # one input fails: the others still make a folder, not one file named "subs"
    assert _decode(micro_model_dir, "--decoder", "greedy", str(junk), *map(str, twins), "--srt", str(subs)) == 1
    stem = twins[0].stem
    assert subs.is_dir() and sorted(p.name for p in subs.iterdir()) == [f"{stem}.1.srt", f"{stem}.2.srt"]
    assert f"wrote {subs / f'{stem}.1.srt'}" in capsys.readouterr().err


def test_a_segment_length_of_zero_is_refused(micro_model_dir, lrs2_corpus, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _decode(micro_model_dir, "--segment", "0", str(_clips(lrs2_corpus, 1)[0]))
    err = capsys.readouterr().err
    assert (
        exit_info.value.code == 2
        and err.strip() == "avsr-decode: error: --segment must be a positive number of seconds, got 0"
    )


@pytest.fixture
def talks(lrs2_corpus: Path, tmp_path: Path) -> Path:
    """A folder of recordings as a user has one: clips in subfolders, a broken file, a text file."""
    root = tmp_path / "talks"
    for n, clip in enumerate(_clips(lrs2_corpus, 3)):
        target = root / ("day1" if n < 2 else "day2/am") / f"{clip.parent.name}_{clip.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(clip.read_bytes())
    (root / "day2" / "broken.mp4").write_bytes(b"not a video")
    (root / "notes.txt").write_text("not media")
    return root


def test_a_folder_is_transcribed_into_a_mirrored_tree_and_a_rerun_skips_it(micro_model_dir, talks, tmp_path, capsys):
    out = tmp_path / "out"
    assert _decode(micro_model_dir, str(talks), "--out-dir", str(out), "--decoder", "greedy", "--workers", "2") == 1
    err = capsys.readouterr().err
    assert f"skipped {talks / 'day2' / 'broken.mp4'}:" in err
    assert err.strip().splitlines()[-1] == f"avsr-decode: 1 of 4 inputs skipped: {talks / 'day2' / 'broken.mp4'}"
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    stems = sorted(str(p.relative_to(talks).with_suffix("")) for p in talks.rglob("*.mp4") if "broken" not in p.name)
    assert written == sorted(f"{s}.{kind}" for s in stems for kind in ("json", "srt", "txt", "vtt"))
    first = out / f"{stems[0]}.json"
    record = json.loads(first.read_text())
    assert record["model"] == str(micro_model_dir) and record["text"] + "\n" == (out / f"{stems[0]}.txt").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    # the rerun decodes only what is not finished (the broken file, again skipped)
    assert _decode(micro_model_dir, str(talks), "--out-dir", str(out), "--decoder", "greedy") == 1
    assert "3 of 4 inputs already done" in capsys.readouterr().err
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    first.unlink()
    assert _decode(micro_model_dir, str(talks), "--out-dir", str(out), "--decoder", "greedy", "--formats", "json") == 1
    assert json.loads(first.read_text()) == record  # redone alone, the same as with the others


def test_workers_give_the_transcripts_of_one_process(micro_model_dir, talks, capsys):
    runs = {}
    for workers in ("1", "2"):
        assert _decode(micro_model_dir, str(talks), "--decoder", "greedy", "--json", "--workers", workers) == 1
        runs[workers] = json.loads(capsys.readouterr().out)["files"]
    assert len(runs["1"]) == 3 and runs["1"] == runs["2"]


def test_a_list_names_inputs_inside_its_folder(micro_model_dir, talks, tmp_path, capsys):
    listing = talks / "list.txt"
    clip = next((talks / "day1").iterdir())
    listing.write_text(f"# wanted\nday1/{clip.name}\n../../etc/passwd\n")
    out = tmp_path / "out"
    assert _decode(micro_model_dir, "--list", str(listing), "--out-dir", str(out), "--formats", "txt") == 1
    err = capsys.readouterr().err
    assert f"skipped {listing}:3: " in err and "leads outside" in err
    assert [p.relative_to(out) for p in out.rglob("*.txt")] == [Path("day1") / f"{clip.stem}.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to transcribe: give files, folders or --list FILE"),
        (["x.mp4", "--workers", "0"], "--workers must be at least 1, got 0"),
        (["x.mp4", "--out-dir", "o", "--formats", "txt,pdf"], "--formats: pdf is not among txt, json, srt, vtt"),
        (
            ["x.mp4", "--out-dir", "o", "--srt", "s.srt"],
            "--srt/--vtt name one file or folder; with --out-dir, choose subtitles with --formats",
        ),
    ],
)
def test_bad_batch_invocations_are_one_line(micro_model_dir, args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _decode(micro_model_dir, *args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip() == f"avsr-decode: error: {message}"


def test_without_a_model_it_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AVSR_DEMO_DIR", raising=False)
    silence = tmp_path / "x.wav"
    write_wav(silence, np.zeros(16000, dtype=np.float32))
    with pytest.raises(SystemExit) as exc:
        decode_cli.main([str(silence)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "avsr-decode: error: no model at runs/demo/train/model: train one with 'bash scripts/demo.sh' or pass --model DIR (avsr-train's OUTPUT_DIR/model)"
    )


def test_subtitle_formats():
    words = [
        [WordTiming("PLACE", 0.0, 0.32, -0.1), WordTiming("RED", 0.4, 0.7, -0.1)],
        [WordTiming("NOW", 61.5, 61.9, -0.2)],
    ]
    assert format_subtitles(words, "srt") == (
        "1\n00:00:00,000 --> 00:00:00,700\nPLACE RED\n\n2\n00:01:01,500 --> 00:01:01,900\nNOW\n"
    )
    assert format_subtitles(words, "vtt") == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:00.700\nPLACE RED\n\n00:01:01.500 --> 00:01:01.900\nNOW\n"
    )


def _scene(scenes_corpus: Path, number: int) -> tuple[Path, dict]:
    video = scenes_corpus / "scenes" / f"{number:05d}.mp4"
    return video, json.loads(video.with_suffix(".json").read_text())


def _speaker_at(segments: list[dict], seconds: float) -> str | None:
    return next(s.get("speaker") for s in segments if s["start"] <= seconds < s["end"])


@pytest.mark.parametrize("modality", ["av", "a"])
def test_each_turn_of_a_conversation_is_given_to_its_speaker(micro_model_dir, scenes_corpus, modality, capsys):
    """Lips read (av) or only looked at to say who speaks (a): every turn's segment names the right face."""
    for number in (1, 2):  # listeners still, then mumbling other words
        video, truth = _scene(scenes_corpus, number)
        assert _decode(micro_model_dir, str(video), "--speakers", "all", "--modality", modality, "--json") == 0
        result = json.loads(capsys.readouterr().out)["files"][0]
        assert [f["label"] for f in result["faces"]] == ["S1", "S2"]
        assert result["faces"][0]["box"][0] < 160 <= result["faces"][1]["box"][0]
        for turn in truth["turns"]:
            assert _speaker_at(result["segments"], (turn["start"] + turn["end"]) / 2) == f"S{turn['person'] + 1}"
        assert all(s["modality"] == modality for s in result["segments"])
        assert set(result["speakers"]) <= {"S1", "S2"}
        lines = result["text"].splitlines()
        assert all(line.startswith(("[S1] ", "[S2] ")) for line in lines)


def test_labelled_subtitles_and_text(micro_model_dir, scenes_corpus, tmp_path, capsys):
    video, truth = _scene(scenes_corpus, 1)
    out = tmp_path / "out"
    assert _decode(micro_model_dir, str(video), "--speakers", "all", "--out-dir", str(out), "--formats", "srt,txt") == 0
    srt = (out / "00001.srt").read_text()
    cues = [block.splitlines()[2] for block in srt.strip().split("\n\n")]
    assert cues and all(cue.startswith(("[S1] ", "[S2] ")) for cue in cues)
    assert (out / "00001.txt").read_text().startswith("[S")
    err = capsys.readouterr().err
    assert "2 faces (S1 at " in err and "the one speaking is chosen per segment" in err


@pytest.mark.parametrize(("args", "label"), [(["--face", "2"], "S2"), (["--face-box", "170,10,140,140"], "S2")])
def test_a_pinned_face_is_read_throughout(micro_model_dir, scenes_corpus, args, label, capsys):
    video, _ = _scene(scenes_corpus, 1)
    assert _decode(micro_model_dir, str(video), *args, "--json") == 0
    result = json.loads(capsys.readouterr().out)["files"][0]
    assert {s["speaker"] for s in result["segments"]} == {label}
    assert [f["label"] for f in result["faces"]] == [label]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--face", "3"], "--face 3: 2 faces found"), (["--face-box", "0,0,8,8"], "no face found there")],
)
def test_a_pinned_face_that_is_not_there_is_one_line(micro_model_dir, scenes_corpus, args, message, capsys):
    video, _ = _scene(scenes_corpus, 1)
    with pytest.raises(SystemExit) as exit_info:
        _decode(micro_model_dir, str(video), *args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and "\n" not in err and err.endswith(message) and str(video) in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--face", "1", "--face-box", "1,2,3,4"], "--face and --face-box both pin a face: give one"),
        (["--face", "0"], "--face counts from 1 (S1), got 0"),
        (["--face-box", "1,2,3"], "--face-box wants X,Y,W,H in whole pixels with W and H > 0, got '1,2,3'"),
        (
            ["--speakers", "all", "--face", "1"],
            "--speakers all labels every speaking face; --face/--face-box read one face only: give one",
        ),
    ],
)
def test_bad_face_options_are_one_line(micro_model_dir, args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _decode(micro_model_dir, "x.mp4", *args)
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip() == f"avsr-decode: error: {message}"


def test_speaker_labels_of_an_audio_file_are_left_out(micro_model_dir, train_data, capsys):
    wav = sorted((train_data["path"] / "audio").rglob("*.wav"))[0]
    assert _decode(micro_model_dir, str(wav), "--modality", "a", "--speakers", "all") == 0
    out = capsys.readouterr().out
    assert out.strip() and not out.startswith("[")
