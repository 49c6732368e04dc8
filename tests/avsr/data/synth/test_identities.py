"""Synthetic people: real sources with licences, distinct faces by dlib's recogniser, identity-disjoint
splits, the morph-weight rule, determinism, and a user's own photographs (--faces)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from avsr.cli import synth as synth_cli
from avsr.data.synth.identities import SOURCES
from avsr.data.synth.identities.cast import HELD_OUT_LIMIT
from avsr.data.synth.identities.identity import canonical_source
from avsr.data.synth.identities.measured import neutral_frame
from avsr.data.synth.recognise import SAME_PERSON, distance_matrix, face_descriptor
from tests.conftest import LRS2_ARGS


def read_meta(root: Path) -> dict:
    return json.loads((root / "synth_meta.json").read_text())


def test_every_source_is_an_installed_face_photograph_with_a_licence():
    assert len(SOURCES) >= 3 and len({s.name for s in SOURCES}) == len(SOURCES)
    for source in SOURCES:
        assert source.package and source.file().is_file(), source.name
        assert source.licence.strip() and source.attribution.strip(), source.name
        assert any(word in source.licence for word in ("Public domain", "CC0", "CC-BY", "MIT", "BSD")), source.licence
        image, landmarks = canonical_source(source)  # dlib finds the face
        assert image.dtype == np.uint8 and landmarks.shape == (68, 2)
    # distinct people to begin with
    descriptors = np.stack([face_descriptor(source.load()) for source in SOURCES])
    distances = distance_matrix(descriptors)
    assert distances[np.triu_indices(len(SOURCES), 1)].min() >= SAME_PERSON


def test_check_reports_distinct_speakers(lrs2_corpus: Path, capsys):
    """avsr-synth --check: dlib's recogniser judges every pair of speakers different people, and
    an independent recomputation from the recorded recipes agrees."""
    assert synth_cli.main([str(lrs2_corpus), *LRS2_ARGS, "--check", "1", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["identities"]
    assert found["identities"] == 4 and found["pairs"] == 6
    assert found["pairs_under_threshold"] == 0 and found["min_pair"] >= SAME_PERSON
    assert found["min_test_vs_train"] >= SAME_PERSON
    assert read_meta(lrs2_corpus)["identity_distinctness"] == found
    assert synth_cli.main([str(lrs2_corpus), *LRS2_ARGS, "--check", "1"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "faces (dlib" in x]
    assert len(line) == 1 and "0 of 6 pairs under 0.6" in line[0]


def test_casting_policy_is_not_part_of_the_measurement_key(tmp_path: Path):
    """A change of casting policy (cast.py) keeps what was measured; a change of the renderer does not."""
    from avsr.data.synth.identities.measured import POLICY_FILES, SYNTH_PACKAGE, code_digest

    package = tmp_path / "synth"
    shutil.copytree(SYNTH_PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest(package)
    assert before == code_digest(SYNTH_PACKAGE)
    for name in POLICY_FILES:
        with open(package / name, "a", encoding="utf-8") as file:
            file.write("\nATTEMPTS = 1000\n")
    assert code_digest.__wrapped__(package) == before
    with open(package / "face.py", "a", encoding="utf-8") as file:
        file.write("\n# another renderer\n")
    assert code_digest.__wrapped__(package) != before


def test_measurements_are_cached_and_checked(tmp_path: Path, monkeypatch):
    """What dlib measured on a recipe is stored under AVSR_CACHE_DIR and read back; a broken file
    or one stored under another key is measured again; ``off`` stores nothing."""
    from avsr.data.synth.identities.identity import Identity
    from avsr.data.synth.identities.measured import cached_measurement

    monkeypatch.setenv("AVSR_CACHE_DIR", str(tmp_path))
    identity = Identity("x", ((SOURCES[0], 1.0),))
    calls = []

    def measure() -> list[float]:
        calls.append(1)
        return [0.1, 1 / 3]

    assert cached_measurement(identity, "t", measure) == [0.1, 1 / 3] and len(calls) == 1
    assert cached_measurement(identity, "t", measure) == [0.1, 1 / 3] and len(calls) == 1
    (stored,) = (tmp_path / "identities").glob("*.json")
    stored.write_text("{ broken")
    assert cached_measurement(identity, "t", measure) == [0.1, 1 / 3] and len(calls) == 2
    stored.write_text(json.dumps({"key": "0" * 64, "value": [9.0]}))
    assert cached_measurement(identity, "t", measure) == [0.1, 1 / 3] and len(calls) == 3
    assert cached_measurement(Identity("y", ((SOURCES[1], 1.0),)), "t", measure) and len(calls) == 4
    monkeypatch.setenv("AVSR_CACHE_DIR", "off")
    assert cached_measurement(identity, "t", measure) == [0.1, 1 / 3] and len(calls) == 5
    assert len(list((tmp_path / "identities").glob("*"))) == 2


def test_casting_in_worker_processes_casts_the_people_one_process_casts(monkeypatch):
    """Workers measure candidates ahead of the decisions (``ahead.Measurer``): the same people,
    distances, lip-sync screens and speaker looks' screens as measuring in order in-process, and
    nothing the workers measured is measured again here (the cache is off)."""
    from avsr.data.synth.face import Appearance
    from avsr.data.synth.identities import measured
    from avsr.data.synth.identities.ahead import Measurer
    from avsr.data.synth.identities.cast import cast_identities

    monkeypatch.setenv("AVSR_CACHE_DIR", "off")
    splits, seeds = ["train", "train", "test"], [11, 12, 13]
    look = Appearance.sample(np.random.default_rng(5))

    def forget() -> None:
        measured._REMEMBERED.clear()
        measured.identity_descriptor.cache_clear()
        measured.identity_lip_sync.cache_clear()

    forget()
    with Measurer(2) as measurer:
        apart = cast_identities(splits, seeds, SOURCES, attempts=3, measurer=measurer)
        measurer.screen_appearances([(apart.identities[0], look, 96)])
    with monkeypatch.context() as patch:  # what the workers measured is read back, not measured again
        patch.setattr(measured, "screen_appearance", None)
        patch.setattr(measured, "screen_lip_sync", None)
        patch.setattr(measured, "face_descriptor", None)
        screened = measured.appearance_lip_sync(apart.identities[0], look, 96)
        assert cast_identities(splits, seeds, SOURCES, attempts=3).identities == apart.identities
    forget()
    alone = cast_identities(splits, seeds, SOURCES, attempts=3)
    assert [i.recipe() for i in apart.identities] == [i.recipe() for i in alone.identities]
    np.testing.assert_array_equal(apart.distances, alone.distances)
    assert apart.lip_sync == alone.lip_sync
    assert screened == measured.appearance_lip_sync(alone.identities[0], look, 96)


def test_a_plan_made_again_from_the_cache_starts_no_workers(tmp_path: Path, monkeypatch):
    """A resume plans the corpus again: everything casting needs is in the cache, so the
    measuring workers are never started (starting them costs seconds)."""
    from avsr.data.synth.identities import measured
    from avsr.data.synth.identities.ahead import Measurer
    from avsr.data.synth.identities.cast import cast_identities

    monkeypatch.setenv("AVSR_CACHE_DIR", str(tmp_path))
    splits, seeds = ["train", "train", "test"], [21, 22, 23]
    with Measurer(2) as measurer:
        first = cast_identities(splits, seeds, SOURCES, attempts=2, measurer=measurer)
        assert measurer._pool is not None
    measured._REMEMBERED.clear()  # as a new process: only the cache on disk knows them
    measured.identity_descriptor.cache_clear()
    measured.identity_lip_sync.cache_clear()
    with Measurer(2) as measurer:
        again = cast_identities(splits, seeds, SOURCES, attempts=2, measurer=measurer)
        assert measurer._pool is None
    assert again.identities == first.identities


def test_every_speaker_passed_the_lip_sync_screen(lrs2_corpus: Path):
    """Casting keeps only faces whose lips dlib follows (a grace_hopper-astronaut blend of seed 3
    did not: r 0.50 on the screening clips, 0.54 on its corpus clip); the metadata records each
    speaker's score."""
    from avsr.data.synth.verify import LIP_SYNC_THRESHOLD, SCREEN_THRESHOLD

    speakers = read_meta(lrs2_corpus)["speakers"]
    scores = [speaker["lip_sync_screen"] for speaker in speakers]
    assert len(scores) == 4 and all(score >= SCREEN_THRESHOLD for score in scores), scores
    # and again in the look each speaker was given (its pose, light, blur and compression): the
    # screen's margin where some look reaches it, the check's own threshold at least
    looks = [speaker["appearance_screen"] for speaker in speakers]
    assert all(score >= LIP_SYNC_THRESHOLD for score in looks), looks


def test_an_appearance_that_loses_the_lips_is_drawn_again():
    """A look in which dlib cannot follow the speaker's lips (here a face 19 px wide: no face at
    all) is replaced by another draw; a look that reads well is kept as drawn."""
    from dataclasses import replace

    from avsr.data.synth.corpus import SynthConfig, plan_corpus, screened_appearance
    from avsr.data.synth.face import Appearance
    from avsr.data.synth.verify import SCREEN_THRESHOLD

    plan = plan_corpus(SynthConfig(layout="lrs2", utterances=12, speakers=4, seed=3, pretrain_fraction=0.5))
    identity = plan.cast.identities[int(np.argmax(plan.cast.lip_sync))]  # the face dlib reads best
    lost = replace(Appearance(), face_width=0.12)
    chosen, screen = screened_appearance(identity, lost, seed=7, size=160)
    assert chosen != lost and chosen.face_width > 0.3 and screen >= SCREEN_THRESHOLD
    assert screened_appearance(identity, lost, seed=7, size=160) == (chosen, screen)  # same seed, same look
    readable = Appearance(motion=0.5)
    kept, screen = screened_appearance(identity, readable, seed=7, size=160)
    assert kept == readable and screen >= SCREEN_THRESHOLD


def test_speakers_are_different_people_on_their_rendered_faces(lrs2_corpus: Path):
    """The descriptor of each speaker's neutral frame, recomputed here from the plan."""
    from avsr.data.synth.corpus import SynthConfig, plan_corpus

    plan = plan_corpus(SynthConfig(layout="lrs2", utterances=12, speakers=4, seed=3, pretrain_fraction=0.5))
    frames = [neutral_frame(speaker.identity) for speaker in plan.speakers]
    # as the cast measures them: dlib's detector without upsampling on the 256 px frame (the
    # descriptor moves by up to about 0.06 with the detector's box)
    descriptors = np.stack([face_descriptor(frame, upsample=0) for frame in frames])
    distances = distance_matrix(descriptors)
    assert distances[np.triu_indices(4, 1)].min() >= SAME_PERSON
    assert len({frame.tobytes() for frame in frames}) == 4


@pytest.mark.parametrize("fixture", ["lrs2_corpus", "lrw_corpus"])
def test_splits_are_identity_disjoint_and_held_out_faces_are_not_training_photographs(fixture: str, request):
    meta = read_meta(request.getfixturevalue(fixture))
    speakers = meta["speakers"]
    recipes = [json.dumps(s["identity"], sort_keys=True) for s in speakers]
    assert len(set(recipes)) == len(speakers), "each speaker is its own identity"
    by_split: dict[str, set[str]] = {}
    for speaker, recipe in zip(speakers, recipes):
        by_split.setdefault(speaker["split"], set()).add(recipe)
    assert not by_split["train"] & by_split.get("test", set()) and not by_split["train"] & by_split.get("val", set())
    training_photos = {source["name"] for s in speakers if s["split"] == "train" for source in s["identity"]["sources"]}
    for speaker in speakers:
        weights = [source["weight"] for source in speaker["identity"]["sources"]]
        assert abs(sum(weights) - 1) < 1e-3
        if speaker["split"] in ("val", "test"):
            for source in speaker["identity"]["sources"]:
                if source["name"] in training_photos:
                    assert source["weight"] <= HELD_OUT_LIMIT + 1e-9, (speaker["index"], source)
    for source in meta["face_sources"]:
        assert source["licence"] and source["path"]
    for utterance in meta["utterances"]:  # each clip names its speaker and identity
        assert utterance["identity"] == speakers[utterance["speaker"]]["identity"]["name"]


def test_test_seen_holds_clips_of_training_speakers_only(lrs2_corpus: Path, tmp_path: Path):
    meta = read_meta(lrs2_corpus)
    split_of = {s["index"]: s["split"] for s in meta["speakers"]}
    seen = [u for u in meta["utterances"] if u["split"] == "test_seen"]
    tests = [u for u in meta["utterances"] if u["split"] == "test"]
    assert len(seen) == max(1, round(len(tests) / 4))
    assert all(split_of[u["speaker"]] == "train" for u in seen)
    listed = (lrs2_corpus / "test_seen.txt").read_text().splitlines()
    assert sorted(listed) == sorted(u["key"].split("/", 1)[1] for u in seen)
    for name in ("pretrain", "train"):
        assert not set(listed) & set((lrs2_corpus / f"{name}.txt").read_text().splitlines())


def test_prepare_writes_a_test_seen_manifest(train_data: dict[str, Path], lrs2_corpus: Path):
    rows = (train_data["path"] / "test_seen.tsv").read_text().splitlines()
    assert len(rows) - 1 == len((lrs2_corpus / "test_seen.txt").read_text().splitlines())


def test_same_seed_same_identities_in_a_fresh_process(lrs2_corpus: Path):
    code = (
        "import json; from avsr.data.synth.corpus import SynthConfig, plan_corpus; "
        "p = plan_corpus(SynthConfig(layout='lrs2', utterances=12, speakers=4, seed=3, pretrain_fraction=0.5)); "
        "print(json.dumps([s.identity.recipe() for s in p.speakers]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [s["identity"] for s in read_meta(lrs2_corpus)["speakers"]]


def _photo(path: Path, image: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def test_faces_folder_animates_the_users_photographs(tmp_path: Path, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    _photo(faces / "me.png", skimage.data.astronaut())
    shutil.copy(next(s for s in SOURCES if s.name == "luispedro").file(), faces / "friend.jpg")
    out = tmp_path / "corpus"
    args = [
        str(out),
        "--faces",
        str(faces),
        "--utterances",
        "3",
        "--speakers",
        "3",
        "--image-size",
        "96",
        "--workers",
        "1",
        "--quiet",
        "--json",
    ]
    assert synth_cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["utterances"] == 3
    meta = read_meta(out)
    assert {s["name"] for s in meta["face_sources"]} == {"user:me.png", "user:friend.jpg"}
    used = {source["name"] for s in meta["speakers"] for source in s["identity"]["sources"]}
    assert used <= {"user:me.png", "user:friend.jpg"}
    assert len(list(out.rglob("*.mp4"))) == 3


@pytest.mark.parametrize("bad", ["coffee.png", "notes.jpg"])
def test_faces_folder_with_a_non_face_gives_one_line(tmp_path: Path, capsys, bad: str):
    faces = tmp_path / "faces"
    faces.mkdir()
    _photo(faces / "me.png", skimage.data.astronaut())
    if bad == "coffee.png":
        _photo(faces / bad, skimage.data.coffee())  # a real photograph, no face in it
    else:
        (faces / bad).write_text("not a picture")
    with pytest.raises(SystemExit) as exit_info:
        synth_cli.main(
            [str(tmp_path / "out"), "--faces", str(faces), "--utterances", "3", "--speakers", "3", "--quiet"]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and bad in err, err
    assert not (tmp_path / "out").exists()


def test_fewer_identities_than_speakers_is_refused(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synth_cli.main([str(tmp_path / "out"), "--speakers", "4", "--identities", "3", "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--identities must be at least --speakers" in err


def test_people_strip_shows_each_speaker_once(lrs2_corpus: Path, tmp_path: Path, capsys):
    """``--people PNG``: one frame of each of the first 8 speakers, side by side (the README's strip)."""
    png = tmp_path / "people.png"
    assert synth_cli.main([str(lrs2_corpus), *LRS2_ARGS, "--people", str(png)]) == 0
    assert f"people strip: {png} (4 speakers)" in capsys.readouterr().out
    image = cv2.imread(str(png))
    assert image.shape == (160, 4 * 160, 3)
    tiles = [tile.astype(np.int16) for tile in np.split(image, 4, axis=1)]
    assert min(np.abs(a - b).mean() for i, a in enumerate(tiles) for b in tiles[i + 1 :]) > 10


def test_distinct_from_casts_people_who_are_not_another_corpus(lrs2_corpus: Path, tmp_path: Path, capsys):
    """``--distinct-from CORPUS``: the same settings would cast the same four people; with CORPUS
    to avoid, every new person is at least 0.6 from each of its people, and --check says so."""
    from avsr.data.synth.corpus import recorded_people

    people = recorded_people(lrs2_corpus)
    # rebuilt as recorded (the record's 4 decimals included)
    assert json.loads(json.dumps([p.recipe() for p in people])) == [
        s["identity"] for s in read_meta(lrs2_corpus)["speakers"]
    ]
    args = [arg if arg != "12" else "4" for arg in LRS2_ARGS] + ["--image-size", "96"]
    out = tmp_path / "other"
    assert synth_cli.main([str(out), *args, "--distinct-from", str(lrs2_corpus), "--check", "1", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["identities"]
    assert found["avoided"] == 4 and found["pairs_under_threshold_vs_avoided"] == 0
    assert found["min_vs_avoided"] >= SAME_PERSON
    assert read_meta(out)["identity_distinctness"]["min_vs_avoided"] == found["min_vs_avoided"]
    assert synth_cli.main([str(out), *args, "--distinct-from", str(lrs2_corpus), "--check", "1"]) == 0
    assert "against the 4 people of --distinct-from: min distance" in capsys.readouterr().out


@pytest.mark.parametrize("other", ["empty", "faces"])
def test_distinct_from_an_unusable_corpus_gives_one_line(lrs2_corpus: Path, tmp_path: Path, capsys, other: str):
    source = tmp_path / "source"
    source.mkdir()
    if other == "faces":  # made from a user's photograph that this run does not have
        meta = read_meta(lrs2_corpus)
        meta["speakers"][0]["identity"]["sources"][0]["name"] = "user:me.png"
        (source / "synth_meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit) as exit_info:
        synth_cli.main([str(tmp_path / "out"), *LRS2_ARGS, "--distinct-from", str(source)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    expected = "not a corpus made by avsr-synth" if other == "empty" else "'user:me.png'; pass the --faces folder"
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out").exists()
