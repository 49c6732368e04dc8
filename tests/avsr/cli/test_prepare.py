"""avsr-prepare on synthetic corpora: crops, manifests, skipped items, resuming, shards, tokenizers."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from avsr.cli import prepare as prepare_cli
from avsr.data.corpora import list_corpus, parse_transcript
from avsr.data.manifest import read_manifest
from avsr.data.preparation.clip import ClipPreparer, ClipSettings
from avsr.data.preparation.runner import PrepareConfig, prepare_corpus, read_outcomes
from avsr.media import probe, read_audio, read_video, write_mp4

PREP_ARGS = ["--workers", "2", "--quiet", "--json"]


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_cli(args: list[str], capsys) -> dict:
    assert prepare_cli.main(args) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="session")
def prepared_lrs2(lrs2_corpus: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "lrs2"
    assert (
        prepare_cli.main(["lrs2", str(lrs2_corpus), str(out), "--workers", "2", "--quiet", "--max-duration", "3"]) == 0
    )
    return out


def test_manifests_match_the_files(lrs2_corpus: Path, prepared_lrs2: Path):
    items = {item.id: item for item in list_corpus("lrs2", lrs2_corpus, max_seconds=3)}
    seen = set()
    for split in ("pretrain", "train", "val", "test", "test_seen"):
        manifest = prepared_lrs2 / f"{split}.tsv"
        assert manifest.is_file(), split
        for row in read_manifest(manifest):
            seen.add(row.id)
            item = items[row.id]
            assert item.split == split
            assert row.text == item.text and row.text
            clip = read_video(prepared_lrs2 / row.video, with_audio=False)
            assert clip.frames.shape[0] == row.frames
            assert clip.frames.shape[1:3] == (96, 96)
            audio = read_audio(prepared_lrs2 / row.audio)
            assert len(audio) == row.samples == row.frames * 640
    assert seen == set(items), "every item prepared (none of these is bad)"
    assert (prepared_lrs2 / "report.tsv").read_text().splitlines() == ["id\tsource\treason"]


def test_crop_frames_are_grayscale(prepared_lrs2: Path):
    row = read_manifest(prepared_lrs2 / "train.tsv")[0]
    frames = read_video(prepared_lrs2 / row.video, with_audio=False).frames
    assert np.abs(frames[..., 0].astype(int) - frames[..., 1]).max() <= 2


def test_crop_is_centred_on_the_mouth(lrs2_corpus: Path):
    preparer = ClipPreparer(ClipSettings(crop_size=96))
    item = next(i for i in list_corpus("lrs2", lrs2_corpus) if i.split == "test")
    clip = preparer.load(item)
    assert clip.detected.all()
    points = clip.mouth_points
    assert (points >= 0).all() and (points < 96).all(), "the whole mouth is inside the crop"
    centre = points.mean(axis=1)
    assert np.abs(centre - 48).max() < 6, "the mouth is centred"


def test_long_pretrain_clips_are_cut_at_word_boundaries(lrs2_corpus: Path, prepared_lrs2: Path):
    rows = read_manifest(prepared_lrs2 / "pretrain.tsv")
    pieces = [r for r in rows if r.id.rsplit("_", 1)[-1].isdigit() and "_" in r.id.rsplit("/", 1)[-1]]
    assert pieces, "the fixture's pretrain clips are longer than 3 s"
    for row in pieces:
        assert row.frames <= 3 * 25 + 1
        source_id = row.id.rsplit("_", 1)[0]
        transcript = parse_transcript(lrs2_corpus / f"{source_id}.txt")
        assert row.text in transcript.text
    whole = {r.id.rsplit("_", 1)[0] for r in pieces}
    for source_id in whole:
        joined = " ".join(r.text for r in sorted(rows, key=lambda r: r.id) if r.id.startswith(source_id + "_"))
        assert joined == parse_transcript(lrs2_corpus / f"{source_id}.txt").text


@pytest.fixture()
def broken_corpus(lrs2_corpus: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the synthetic corpus with a corrupt file, a faceless clip, an empty transcript and
    a clip whose audio stops half-way."""
    src = tmp_path / "src"
    shutil.copytree(lrs2_corpus, src)
    ids = [line for line in (src / "train.txt").read_text().split()] + [
        line for line in (src / "test.txt").read_text().split()
    ]
    corrupt, faceless, empty, short_audio = (src / "main" / f"{i}" for i in ids[:4])
    data = corrupt.with_suffix(".mp4").read_bytes()
    corrupt.with_suffix(".mp4").write_bytes(data[: len(data) // 3])
    clip = read_video(faceless.with_suffix(".mp4"))
    write_mp4(faceless.with_suffix(".mp4"), np.zeros_like(clip.frames), clip.audio)
    empty.with_suffix(".txt").write_text("Text:  \nConf:  4\n")
    clip = read_video(short_audio.with_suffix(".mp4"))
    write_mp4(short_audio.with_suffix(".mp4"), clip.frames, clip.audio[: len(clip.audio) // 2])
    return src, {
        f"main/{ids[0]}": "truncated or corrupt",
        f"main/{ids[1]}": "no face found",
        f"main/{ids[2]}": "empty transcript",
        f"main/{ids[3]}": "audio/video length mismatch",
    }


def test_bad_items_are_reported_and_skipped(broken_corpus, tmp_path: Path, capsys):
    src, expected = broken_corpus
    before = tree_hash(src)
    out = tmp_path / "out"
    report = run_cli(["lrs2", str(src), str(out), *PREP_ARGS], capsys)
    assert report["skipped"] == 4 and report["prepared"] == report["items"] - 4
    lines = (out / "report.tsv").read_text().splitlines()[1:]
    reasons = {line.split("\t")[0]: line.split("\t")[2] for line in lines}
    assert set(reasons) == set(expected)
    for item_id, reason in expected.items():
        assert reason in reasons[item_id], (item_id, reasons[item_id])
    manifest_ids = {
        row.id
        for split in ("train", "val", "test", "pretrain")
        if (out / f"{split}.tsv").exists()
        for row in read_manifest(out / f"{split}.tsv")
    }
    assert not manifest_ids & set(expected)
    assert tree_hash(src) == before, "the source corpus is never modified"


def test_interrupted_run_resumes_without_redoing(lrs2_corpus: Path, tmp_path: Path):
    out = tmp_path / "out"
    config = PrepareConfig("lrs2", lrs2_corpus, out, workers=1)
    done = []

    def stop_after_three(outcome):
        done.append(outcome.id)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(config, on_outcome=stop_after_three)
    assert set(read_outcomes(out)) == set(done)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "video").rglob("*.mp4")}
    log = next((out / ".records").glob("*.jsonl"))
    with open(log, "a") as handle:
        handle.write('{"id": "torn')  # a kill in the middle of a line
    summary = prepare_corpus(config)
    assert summary.already_done == 3
    assert summary.prepared == summary.items - 3
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    assert sum(summary.manifests.values()) == summary.items
    again = prepare_corpus(config)
    assert again.prepared == 0 and again.already_done == again.items


def test_a_rerun_with_other_crop_options_is_refused(lrs2_corpus: Path, prepared_lrs2: Path, capsys):
    before = tree_hash(prepared_lrs2)
    for extra, message in [
        (["--crop-size", "64"], "was prepared with --crop-size 96, not --crop-size 64: use another output folder"),
        (["--mouth-crop", "avhubert"], "was prepared with --mouth-crop auto_avsr, not --mouth-crop avhubert"),
        (["--max-duration", "6"], "was prepared with --max-duration 3.0, not --max-duration 6.0"),
    ]:
        args = ["lrs2", str(lrs2_corpus), str(prepared_lrs2), "--quiet", "--max-duration", "3", *extra]
        with pytest.raises(SystemExit) as exit_info:
            prepare_cli.main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert tree_hash(prepared_lrs2) == before  # nothing written
    same = run_cli(["lrs2", str(lrs2_corpus), str(prepared_lrs2), "--quiet", "--max-duration", "3", "--json"], capsys)
    assert same["prepared"] == 0 and same["already_done"] == same["items"]  # the same options resume


def test_shards_split_the_work(lrs2_corpus: Path, tmp_path: Path):
    out = tmp_path / "out"
    first = prepare_corpus(PrepareConfig("lrs2", lrs2_corpus, out, shard=0, shards=2))
    second = prepare_corpus(PrepareConfig("lrs2", lrs2_corpus, out, shard=1, shards=2))
    total = len(list_corpus("lrs2", lrs2_corpus))
    assert first.items + second.items == total
    assert first.prepared + second.prepared == total
    assert sum(second.manifests.values()) == total


def test_lrw_clips_prepare_to_29_frames(lrw_corpus: Path, tmp_path: Path, capsys):
    out = tmp_path / "lrw"
    report = run_cli(["lrw", str(lrw_corpus), str(out), *PREP_ARGS, "--crop-size", "88"], capsys)
    assert report["prepared"] == 10 and report["skipped"] == 0
    for split, rows in report["manifests"].items():
        for row in read_manifest(out / f"{split}.tsv"):
            assert row.frames == 29 and row.samples == 29 * 640
            assert row.id.split("/")[0] == row.text
            assert probe(out / row.video).width == 88


def test_precomputed_landmarks_in_auto_avsr_form(lrs2_corpus: Path, tmp_path: Path, capsys):
    """Landmarks from files (one 68x2 array or None per frame, pickled) replace the detector."""
    from avsr.face import DlibLandmarker

    landmarker = DlibLandmarker()
    items = [i for i in list_corpus("lrs2", lrs2_corpus) if i.split == "test"][:2]
    marks = tmp_path / "landmarks"
    for item in items:
        frames = read_video(item.video, with_audio=False).frames
        per_frame = [landmarker(frame) for frame in frames]
        per_frame[1] = None  # a gap the pipeline must fill
        (marks / item.id).parent.mkdir(parents=True, exist_ok=True)
        with open(marks / f"{item.id}.pkl", "wb") as handle:
            pickle.dump(per_frame, handle)
    out = tmp_path / "out"
    report = run_cli(["lrs2", str(lrs2_corpus), str(out), *PREP_ARGS, "--landmarks", str(marks)], capsys)
    prepared = {row.id for row in read_manifest(out / "test.tsv")} if (out / "test.tsv").exists() else set()
    assert {item.id for item in items} <= prepared
    assert report["skip_reasons"] and all("no landmarks file" in reason for reason in report["skip_reasons"])


def test_preview_contact_sheet(prepared_lrs2: Path, lrs2_corpus: Path, capsys):
    report = run_cli(
        ["lrs2", str(lrs2_corpus), str(prepared_lrs2), *PREP_ARGS, "--max-duration", "3", "--preview", "4"], capsys
    )
    assert report["prepared"] == 0, "a rerun redoes nothing"
    assert report["preview"]["items"] == 4
    import cv2

    sheet = cv2.imread(report["preview"]["png"])
    assert sheet is not None and sheet.shape[0] >= 160
    assert probe(report["preview"]["mp4"]).duration > 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["lrs2", "{src}", "{src}/inside"], "must not be inside the source"),
        (["lrs2", "{missing}", "{out}"], "no such directory"),
        (["lrw", "{empty}", "{out}"], "no LRW clips"),
        (["lrs2", "{src}", "{out}", "--shard", "2/2"], "--shard must be I/N"),
        (["lrs2", "{src}", "{out}", "--crop-size", "8"], "--crop-size must be between"),
    ],
)
def test_bad_invocations_give_one_line_errors(lrs2_corpus: Path, tmp_path: Path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    values = {"src": lrs2_corpus, "out": tmp_path / "out", "missing": tmp_path / "missing", "empty": tmp_path / "empty"}
    with pytest.raises(SystemExit) as exit_info:
        prepare_cli.main([a.format(**values) for a in args] + ["--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (lrs2_corpus / "inside").exists()


@pytest.mark.parametrize("kind, size", [("char", None), ("unigram", 40), ("bpe", 40)])
def test_tokenizer_from_manifest_round_trips(prepared_lrs2: Path, tmp_path: Path, capsys, kind, size):
    from avsr.data.tokenizers import load_tokenizer

    out = tmp_path / kind
    args = [
        "tokenizer",
        str(prepared_lrs2 / "train.tsv"),
        str(prepared_lrs2 / "pretrain.tsv"),
        str(out),
        "--kind",
        kind,
    ]
    if size:
        args += ["--vocab-size", str(size)]
    assert prepare_cli.main(args) == 0
    assert kind in capsys.readouterr().out
    tokenizer = load_tokenizer(out)
    for row in read_manifest(prepared_lrs2 / "test.tsv"):
        assert tokenizer.decode(tokenizer.encode(row.text)) == row.text


# --------------------------------------------------------------------------- hostile and broken lists


def _files_outside(root: Path, keep: Path) -> set[Path]:
    return {p for p in root.rglob("*") if keep not in p.parents and p != keep}


def test_hostile_list_lines_are_refused_and_reported(lrs2_corpus: Path, tmp_path: Path, capsys):
    """Split-list lines leading out of SRC (``..``, absolute, a symlink) are skipped and reported;
    nothing is read from or written outside SRC and OUT; names with spaces and flagged test lines
    work; a missing media file and a missing transcript are each reported as what they are."""
    src = tmp_path / "a" / "src"
    shutil.copytree(lrs2_corpus, src)
    good = (src / "train.txt").read_text().split()[:2]
    for name in ("pretrain.txt", "val.txt", "train.txt", "test.txt", "test_seen.txt"):
        (src / name).unlink()
    clip = src / "main" / good[0]
    outside = {"escape/evil": tmp_path / "escape" / "evil", "abs": tmp_path / "abs" / "clip"}
    for target in outside.values():
        target.parent.mkdir(parents=True)
        for suffix in (".mp4", ".txt"):
            shutil.copy(clip.with_suffix(suffix), target.with_suffix(suffix))
    (src / "main" / "link").mkdir()
    for suffix in (".mp4", ".txt"):
        (src / "main" / "link" / f"00001{suffix}").symlink_to(outside["escape/evil"].with_suffix(suffix))
    (src / "main" / "spaced").mkdir()
    for suffix in (".mp4", ".txt"):
        shutil.copy(clip.with_suffix(suffix), src / "main" / "spaced" / f"name with space{suffix}")
    (src / "main" / "nomedia").mkdir()
    shutil.copy(clip.with_suffix(".txt"), src / "main" / "nomedia" / "00001.txt")
    (src / "main" / "notext").mkdir()
    shutil.copy(clip.with_suffix(".mp4"), src / "main" / "notext" / "00001.mp4")
    lines = [
        good[0],
        "../../../escape/evil",
        str(outside["abs"]),
        "link/00001",
        "spaced/name with space",
        "nomedia/00001",
        "notext/00001",
    ]
    (src / "train.txt").write_text("\n".join(lines) + "\n")
    (src / "test.txt").write_text(f"{good[1]} NF\n")
    before = _files_outside(tmp_path, tmp_path / "o")
    out = tmp_path / "o" / "out"
    report = run_cli(["lrs2", str(src), str(out), *PREP_ARGS], capsys)
    assert report["prepared"] == 3 and report["skipped"] == 5
    rows = {row.id for split in ("train", "test") for row in read_manifest(out / f"{split}.tsv")}
    assert rows == {f"main/{good[0]}", "main/spaced/name with space", f"main/{good[1]}"}
    reasons = {line.split("\t")[0]: line.split("\t")[2] for line in (out / "report.tsv").read_text().splitlines()[1:]}
    assert len(reasons) == 5
    for item_id, reason in reasons.items():
        if "nomedia" in item_id:
            assert reason == "missing media file"
        elif "notext" in item_id:
            assert reason == "no transcript file"
        else:
            assert "leads outside" in reason, (item_id, reason)
    assert _files_outside(tmp_path, tmp_path / "o") == before, "nothing written outside OUT"
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["out"]


@pytest.mark.parametrize("kind", ["lrw", "lrs3"])
def test_globbed_symlinks_out_of_the_root_are_refused(lrw_corpus: Path, tmp_path: Path, kind):
    """LRS3 and LRW are globbed: a clip that is a symlink to a file outside the root is refused."""
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not yours")
    root = tmp_path / "root"
    if kind == "lrw":
        shutil.copytree(lrw_corpus, root)
        word = sorted(p for p in (root / "lipread_mp4").iterdir())[0]
        link = word / "train" / f"{word.name}_99999.mp4"
    else:
        (root / "trainval" / "spk").mkdir(parents=True)
        link = root / "trainval" / "spk" / "00001.mp4"
    link.symlink_to(secret)
    items = {item.video: item for item in list_corpus(kind, root)}
    assert items[link].problem.startswith("path leads outside"), items[link]
    assert all(not item.problem for video, item in items.items() if video != link)


def test_manifest_rows_leading_outside_are_refused(tmp_path: Path):
    from avsr.data.manifest import ManifestError, resolve

    manifest = tmp_path / "data" / "train.tsv"
    manifest.parent.mkdir()
    good = "a\tvideo/a.mp4\taudio/a.wav\t10\t6400\tHELLO"
    for bad in ["b\t../../etc/passwd.mp4\taudio/b.wav\t10\t6400\tX", f"b\tvideo/b.mp4\t{tmp_path}/b.wav\t10\t6400\tX"]:
        manifest.write_text("id\tvideo\taudio\tframes\tsamples\ttext\n" + good + "\n" + bad + "\n")
        with pytest.raises(ManifestError) as caught:
            read_manifest(manifest)
        assert str(caught.value).startswith(f"{manifest}:3: ") and "outside" in str(caught.value)
        assert "\n" not in str(caught.value)
    # What training and avsr-bench see: the same one line, through their own error types.
    from avsr.eval.bench import BenchError, load_utterances
    from avsr.training.data import DatasetError, read_manifest_rows

    for reader, error in ((read_manifest_rows, DatasetError), (lambda m: load_utterances(m, None), BenchError)):
        with pytest.raises(error) as caught:
            reader(manifest)
        assert str(caught.value).startswith(f"{manifest}:3: ") and "leads outside" in str(caught.value)
    with pytest.raises(ManifestError, match="outside"):
        resolve(manifest, "../x.wav")
    assert resolve(manifest, "video/a.mp4") == (manifest.parent / "video" / "a.mp4").resolve()


def test_a_landmarks_memory_bomb_is_one_skipped_item(lrs2_corpus: Path, tmp_path: Path, capsys):
    """A 92-byte pickle asking numpy for 10^13 bytes no longer aborts the run (and every rerun)."""
    rebuild = np.ndarray.__reduce__(np.zeros(1))[0]

    class Bomb:
        def __reduce__(self):
            return (rebuild, (np.ndarray, (10**13,), b"b"))

    item = next(i for i in list_corpus("lrs2", lrs2_corpus) if i.split == "test")
    marks = tmp_path / "landmarks" / f"{item.id}.pkl"
    marks.parent.mkdir(parents=True)
    marks.write_bytes(pickle.dumps(Bomb(), protocol=4))
    out = tmp_path / "out"
    for _ in range(2):  # the rerun (retrying skipped items) also completes
        report = run_cli(
            ["lrs2", str(lrs2_corpus), str(out), *PREP_ARGS, "--landmarks", str(marks.parents[2]), "--retry-skipped"],
            capsys,
        )
        assert report["prepared"] == 0 and report["skipped"] == report["items"]
    reasons = {line.split("\t")[0]: line.split("\t")[2] for line in (out / "report.tsv").read_text().splitlines()[1:]}
    assert reasons[item.id].startswith(f"{marks}: too large: asks for an array of shape (10000000000000,)")


def test_disk_full_stops_in_one_line_and_the_rerun_completes(lrs2_corpus: Path, tmp_path: Path):
    """Output that cannot be written (a full small tmpfs, or a file-size limit where mounting is not
    allowed): one line on stderr, exit 1, no temporary files; with room again the rerun completes."""
    from tests.disk_full import can_mount, full_then_room

    mode = "tmpfs" if can_mount() else "fsize"
    src = tmp_path / "src"
    shutil.copytree(lrs2_corpus, src)
    (src / "train.txt").write_text("".join(f"{name}\n" for name in (src / "train.txt").read_text().split()[:2]))
    for name in ("pretrain.txt", "val.txt", "test.txt", "test_seen.txt"):
        (src / name).unlink()
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "avsr.cli.prepare",
        "lrs2",
        str(src),
        str(out / "prepared"),
        "--workers",
        "2",
        "--quiet",
        "--json",
    ]
    runs = full_then_room(command, out, [64_000], mode)
    assert runs[0]["rc"] != 0, "the first run has no room"
    for run in runs:
        assert not run["temporary"], run
        if run["rc"] != 0:
            assert run["rc"] == 1
            lines = run["stderr"].strip().splitlines()
            assert len(lines) == 1, run["stderr"]
            assert (
                lines[0].startswith("avsr-prepare: error: ")
                and "cannot write" in lines[0]
                and "rerun resumes" in lines[0]
            )
    assert runs[-1]["rc"] == 0, runs[-1]["stderr"]
    final = json.loads(runs[-1]["stdout"])
    assert final["prepared"] + final["already_done"] == final["items"] == 2 and final["manifests"] == {"train": 2}


def test_mouth_crop_style_follows_the_chosen_alignment(lrs2_corpus: Path):
    """--mouth-crop avhubert crops as AV-HuBERT's align_mouth.py (for fine-tuning its models on
    what they were trained on); the default is auto_avsr's alignment."""
    from avsr.face import MouthCropConfig, MouthCropper

    item = next(i for i in list_corpus("lrs2", lrs2_corpus) if i.split == "test")
    default = ClipPreparer(ClipSettings()).load(item)
    avhubert = ClipPreparer(ClipSettings(mouth_crop="avhubert")).load(item)
    np.testing.assert_array_equal(default.landmarks, avhubert.landmarks)
    assert default.crops.shape == avhubert.crops.shape and not np.array_equal(default.crops, avhubert.crops)
    want = MouthCropper(MouthCropConfig.for_style("avhubert")).crop(avhubert.frames, avhubert.landmarks).crops
    np.testing.assert_array_equal(avhubert.crops, want)
    with pytest.raises(SystemExit):
        prepare_cli.main(["lrs2", str(lrs2_corpus), "/nonexistent/out", "--mouth-crop", "seed"])


def test_decoding_crops_a_clip_as_preparation_did(lrs2_corpus: Path):
    """avsr-decode's face chain and avsr-prepare's are one: the same video gives the same crops,
    so a model decodes what it was trained on."""
    from avsr.decoding.transcribe import face_chain, mouth_crops

    item = next(i for i in list_corpus("lrs2", lrs2_corpus) if i.split == "test")
    prepared = ClipPreparer(ClipSettings()).load(item)
    crops, found = mouth_crops(face_chain(), read_video(item.video, with_audio=False).frames)
    np.testing.assert_array_equal(crops, prepared.crops)
    np.testing.assert_array_equal(found, prepared.detected)
