"""avsr-synth: layouts, transcript formats, speaker splits, determinism, media, lip sync."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avsr.cli import synth as synth_cli
from avsr.data.synth.corpus import SynthConfig, plan_corpus
from avsr.data.synth.text import GRID_SLOTS, grid_vocabulary
from avsr.data.synth.verify import verify_corpus
from avsr.media import probe, read_video
from tests.conftest import LRS2_ARGS

LRS2_WORD_LINE = re.compile(r"^([A-Z']+) (\d+\.\d\d) (\d+\.\d\d) (\d+\.\d+)$")


def read_meta(root: Path) -> dict:
    return json.loads((root / "synth_meta.json").read_text())


def text_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.suffix in (".txt", ".json")}


def test_lrs2_layout_matches_split_lists(lrs2_corpus: Path):
    listed = {}
    for split in ("pretrain", "train", "val", "test", "test_seen"):
        lines = (lrs2_corpus / f"{split}.txt").read_text().splitlines()
        listed[split] = lines
        folder = "pretrain" if split == "pretrain" else "main"
        for line in lines:
            assert re.fullmatch(r"\d{19}/\d{5}", line), line
            assert (lrs2_corpus / folder / f"{line}.mp4").is_file()
            assert (lrs2_corpus / folder / f"{line}.txt").is_file()
    assert sum(len(v) for v in listed.values()) == 12
    assert listed["train"] and listed["test"] and listed["val"] and listed["test_seen"]
    mp4s = list(lrs2_corpus.rglob("*.mp4"))
    assert len(mp4s) == 12
    assert not list(lrs2_corpus.rglob(".*.tmp")), "no temporary files left behind"


def test_lrs2_transcripts_are_in_lrs2_format(lrs2_corpus: Path):
    vocabulary = set(grid_vocabulary())
    for txt in (lrs2_corpus / "main").rglob("*.txt"):
        lines = txt.read_text().splitlines()
        assert lines[0].startswith("Text:  ")
        words = lines[0][len("Text:  ") :].split()
        assert len(words) == len(GRID_SLOTS)
        assert set(words) <= vocabulary
        assert lines[1].startswith("Conf:  ")
        assert lines[2] == "" and lines[3] == "WORD START END ASDSCORE"
        timed = [LRS2_WORD_LINE.match(line) for line in lines[4:]]
        assert all(timed) and [m.group(1) for m in timed] == words
        starts = [float(m.group(2)) for m in timed]
        ends = [float(m.group(3)) for m in timed]
        duration = probe(txt.with_suffix(".mp4")).duration
        assert starts == sorted(starts) and all(s < e for s, e in zip(starts, ends))
        assert 0 < starts[0] and ends[-1] <= duration + 0.01


def test_pretrain_clips_are_longer_multi_sentence(lrs2_corpus: Path):
    pretrain = list((lrs2_corpus / "pretrain").rglob("*.txt"))
    assert pretrain, "the fixture's settings put clips in pretrain"
    for txt in pretrain:
        words = txt.read_text().splitlines()[0].split()[1:]
        assert len(words) >= 2 * len(GRID_SLOTS)


def test_speakers_disjoint_between_splits(lrs2_corpus: Path, lrw_corpus: Path):
    for root in (lrs2_corpus, lrw_corpus):
        meta = read_meta(root)
        split_of = {s["index"]: s["split"] for s in meta["speakers"]}
        speakers_in = {}
        for utterance in meta["utterances"]:
            split = "train" if utterance["split"] in ("pretrain", "test_seen") else utterance["split"]
            assert split_of[utterance["speaker"]] == split
            speakers_in.setdefault(split, set()).add(utterance["speaker"])
        assert not speakers_in.get("train", set()) & speakers_in.get("test", set())
        assert not speakers_in.get("val", set()) & speakers_in.get("test", set())
    groups = {}
    for utterance in read_meta(lrs2_corpus)["utterances"]:
        group = utterance["key"].split("/")[1]
        groups.setdefault(group, set()).add(
            "train" if utterance["split"] in ("pretrain", "test_seen") else utterance["split"]
        )
    assert all(len(splits) == 1 for splits in groups.values()), "an LRS2 programme id spans two splits"


def test_clip_media_is_25fps_video_with_16khz_audio(lrs2_corpus: Path):
    for mp4 in sorted(lrs2_corpus.rglob("*.mp4"))[:3]:
        info = probe(mp4)
        assert info.has_video and info.has_audio
        assert info.fps == pytest.approx(25.0) and info.sample_rate == 16000
        assert (info.width, info.height) == (160, 160)
        clip = read_video(mp4)
        assert clip.frames.shape[1:] == (160, 160, 3)
        assert len(clip.audio) == len(clip.frames) * 640
        assert np.abs(clip.audio).max() > 0.05, "the clip has audible speech"


def test_lrw_layout_and_format(lrw_corpus: Path):
    clips = sorted((lrw_corpus / "lipread_mp4").glob("*/*/*.mp4"))
    assert len(clips) == 10
    words = {p.parts[-3] for p in clips}
    assert len(words) == 3
    for mp4 in clips:
        word, split, name = mp4.parts[-3:]
        assert split in ("train", "val", "test")
        assert re.fullmatch(rf"{word}_\d{{5}}\.mp4", name)
        lines = mp4.with_suffix(".txt").read_text().splitlines()
        assert lines[0] == f"Text: {word}"
        assert lines[1].startswith("Conf: ")
        duration = float(re.fullmatch(r"Duration: (\d+\.\d+) seconds", lines[2]).group(1))
        assert 0.05 < duration < 1.16
        clip = read_video(mp4)
        assert clip.frames.shape == (29, 256, 256, 3)
        assert len(clip.audio) == 29 * 640


def test_lrw_target_word_is_centred(lrw_corpus: Path):
    """The target is spoken in the middle: the centre of the clip is not silent."""
    for mp4 in sorted((lrw_corpus / "lipread_mp4").glob("*/*/*.mp4")):
        audio = read_video(mp4).audio
        middle = audio[len(audio) // 2 - 800 : len(audio) // 2 + 800]
        assert np.sqrt(np.mean(middle**2)) > 0.01


def test_same_seed_same_text_files_whatever_the_workers(lrs2_corpus: Path, tmp_path: Path):
    again = tmp_path / "again"
    args = list(LRS2_ARGS)
    args[args.index("--workers") + 1] = "1"
    assert synth_cli.main([str(again), *args]) == 0
    assert text_files(again) == text_files(lrs2_corpus)


def test_other_seed_other_corpus():
    one = plan_corpus(SynthConfig(utterances=5, speakers=3, seed=1))
    two = plan_corpus(SynthConfig(utterances=5, speakers=3, seed=2))
    assert [u.words for u in one.utterances] != [u.words for u in two.utterances]


def test_open_vocabulary_sentences_vary_in_length():
    plan = plan_corpus(SynthConfig(utterances=30, speakers=3, vocabulary="open", seed=0))
    lengths = {len(u.words) for u in plan.utterances if u.split != "pretrain"}
    assert len(lengths) > 2
    assert len({w for u in plan.utterances for w in u.words}) > 60


def test_rerun_resumes_without_rewriting(lrs2_corpus: Path, capsys):
    before = {p: p.stat().st_mtime_ns for p in lrs2_corpus.rglob("*.mp4")}
    assert synth_cli.main([str(lrs2_corpus), *LRS2_ARGS]) == 0
    assert {p: p.stat().st_mtime_ns for p in lrs2_corpus.rglob("*.mp4")} == before
    assert "12 clips" in capsys.readouterr().out


def test_interrupted_item_is_redone(lrs2_corpus: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(lrs2_corpus), str(copy)], check=True)
    victim = sorted(copy.rglob("*.txt"))
    victim = [p for p in victim if p.parent.parent.name in ("main", "pretrain")][0]
    victim.unlink()  # as if killed between the mp4 and the txt
    assert synth_cli.main([str(copy), *LRS2_ARGS]) == 0
    assert victim.is_file()
    assert victim.read_bytes() == (lrs2_corpus / victim.relative_to(copy)).read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--speakers", "2"], "--speakers must be at least 3"),
        (["--utterances", "0"], "--utterances must be at least 1"),
        (["--layout", "lrw", "--words", "100000"], "--words must be between 1 and"),
        (["--image-size", "8"], "--image-size must be between"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_options_give_one_line_error(tmp_path: Path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        synth_cli.main([str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_refuses_a_directory_holding_something_else(lrs2_corpus: Path, tmp_path: Path, capsys):
    (tmp_path / "stuff.txt").write_text("mine")
    for root, extra in ((tmp_path, []), (lrs2_corpus, ["--seed", "99"])):
        with pytest.raises(SystemExit) as exit_info:
            synth_cli.main([str(root), *LRS2_ARGS, *extra])
        assert exit_info.value.code == 2
        assert "choose another directory" in capsys.readouterr().err
    assert (tmp_path / "stuff.txt").read_text() == "mine"


def test_console_script_runs(tmp_path: Path):
    out = tmp_path / "tiny"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "avsr.cli.synth",
            str(out),
            "--utterances",
            "3",
            "--speakers",
            "3",
            "--workers",
            "1",
            "--quiet",
            "--json",
            "--preview",
            str(tmp_path / "strip.png"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["utterances"] == 3 and summary["layout"] == "lrs2" and summary["hours"] > 0
    assert (tmp_path / "strip.png").stat().st_size > 1000


def test_lips_follow_the_speech(lrs2_corpus: Path):
    """dlib, on the decoded H.264 frames, finds the face in every frame and measures an inner-lip
    gap that tracks the rendered jaw opening."""
    plan = plan_corpus(SynthConfig(layout="lrs2", utterances=12, speakers=4, seed=3, pretrain_fraction=0.5))
    reports = verify_corpus(lrs2_corpus, plan, count=3)
    for key, report in reports:
        print(f"{key}: faces {report.faces_found}/{report.frames}, r = {report.correlation:.3f}")
        assert report.face_in_every_frame, key
        assert report.correlation >= 0.8, (key, report.correlation)


def test_disk_full_stops_in_one_line_and_the_rerun_completes(tmp_path: Path):
    """A corpus folder that fills up (a small tmpfs, or a file-size limit where mounting is not
    allowed): one line on stderr, exit 1, no temporary files; with room again the rerun completes."""
    from tests.disk_full import can_mount, full_then_room

    mode = "tmpfs" if can_mount() else "fsize"
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "avsr.cli.synth",
        str(out / "corpus"),
        "--utterances",
        "2",
        "--speakers",
        "3",
        "--image-size",
        "64",
        "--workers",
        "2",
        "--quiet",
        "--json",
    ]
    runs = full_then_room(command, out, [32_000], mode)
    assert runs[0]["rc"] == 1
    lines = runs[0]["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avsr-synth: error: ") and "cannot write" in lines[0], runs[0][
        "stderr"
    ]
    assert not runs[0]["temporary"] and not runs[1]["temporary"]
    assert runs[1]["rc"] == 0, runs[1]["stderr"]
    assert json.loads(runs[1]["stdout"])["utterances"] == 2
