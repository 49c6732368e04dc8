"""avsr-synth --layout scenes: conversations of several people with the truth of who speaks when."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avsr.cli import synth as synth_cli
from avsr.decoding.segment import frame_energy_db
from avsr.media import probe, read_audio


def scenes(root: Path) -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.with_suffix(".json").read_text())) for p in sorted((root / "scenes").glob("*.mp4"))]


def test_each_scene_has_its_truth_and_media(scenes_corpus: Path):
    found = scenes(scenes_corpus)
    assert len(found) == 2
    assert [truth["listeners"] for _, truth in found] == ["still", "mumble"]
    for video, truth in found:
        info = probe(video)
        people = truth["people"]
        assert len(people) == 2 and len({p["identity"] for p in people}) == 2
        assert (info.width, info.height) == (2 * 160, 160)
        assert [p["panel"] for p in people] == [[0, 0, 160, 160], [160, 0, 160, 160]]
        turns = truth["turns"]
        assert len(turns) >= 3 and {t["person"] for t in turns} == {0, 1}
        assert all(a["person"] != b["person"] for a, b in zip(turns, turns[1:]))
        assert all(a["end"] < b["start"] for a, b in zip(turns, turns[1:]))
        assert turns[-1]["end"] <= info.duration
        text = video.with_suffix(".txt").read_text().splitlines()
        assert text[0].split(None, 1)[1] == " ".join(t["text"] for t in turns)


def test_the_sound_is_in_the_turns_and_silent_between(scenes_corpus: Path):
    for video, truth in scenes(scenes_corpus):
        energy = frame_energy_db(read_audio(video, 16000))
        loud = np.percentile(energy, 95)
        for a, b in zip(truth["turns"], truth["turns"][1:]):
            pause = energy[int(a["end"] * 25) + 2 : int(b["start"] * 25) - 1]
            assert pause.max() < loud - 30, (video.name, a, b)
        for turn in truth["turns"]:
            assert energy[int(turn["start"] * 25) : int(turn["end"] * 25)].max() > loud - 6


def test_too_many_people_per_scene_is_one_line(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synth_cli.main([str(tmp_path / "c"), "--layout", "scenes", "--speakers", "3", "--people-per-scene", "4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--people-per-scene must be between 2 and 4, and at most --speakers" in err and "\n" not in err
