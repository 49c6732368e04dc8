"""Who is speaking: lips that move with the sound (avsr.decoding.speakers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avsr.decoding.speakers import active_face, loudness, mouth_opening, speaking_scores, synchrony
from avsr.face import FaceChain
from avsr.media import read_audio, read_video


def syllables(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A loudness-like signal: bursts of 3-6 frames with gaps, in dB."""
    out = np.full(frames, -60.0)
    t = 0
    while t < frames:
        length = int(rng.integers(3, 7))
        out[t : t + length] = rng.uniform(-25, -10)
        t += length + int(rng.integers(1, 4))
    return out


def test_lips_in_step_with_the_sound_beat_lips_out_of_step():
    rng = np.random.default_rng(0)
    sound = syllables(rng, 150)
    speaker = (sound + 60) / 50 + rng.normal(0, 0.05, 150)  # opens with the sound
    mumbler = (syllables(rng, 150) + 60) / 50  # moves as much, with other words
    still = np.full(150, 0.05)
    assert synchrony(speaker, sound) > 0.8
    assert abs(synchrony(mumbler, sound)) < 0.4
    assert synchrony(still, sound) == 0.0
    assert active_face([still, mumbler, speaker], sound, 0, 150) == 2


def test_a_small_lag_between_lips_and_sound_is_allowed():
    rng = np.random.default_rng(1)
    sound = syllables(rng, 120)
    lips = np.roll((sound + 60) / 50, 2)  # the lips two frames behind
    assert synchrony(lips, sound) > 0.9
    assert synchrony(lips, sound, max_offset=0) < 0.6


def test_a_face_seen_in_too_little_of_the_stretch_is_no_candidate():
    rng = np.random.default_rng(2)
    sound = syllables(rng, 100)
    speaker = (sound + 60) / 50
    hidden = speaker.copy()
    hidden[20:] = np.nan  # the same lips, but seen in a fifth of the frames
    other = (syllables(rng, 100) + 60) / 50
    scores = speaking_scores([hidden, other], sound, 0, 100)
    assert np.isnan(scores[0]) and np.isfinite(scores[1])
    assert active_face([hidden, other], sound, 0, 100) == 1


def test_without_sound_the_lips_that_move_most_speak():
    rng = np.random.default_rng(3)
    moving = (syllables(rng, 80) + 60) / 50
    assert active_face([np.full(80, 0.1), moving], None, 0, 80) == 1


def test_loudness_is_floored_below_the_loud_frames():
    audio = np.zeros(16000, np.float32)
    audio[:8000] = 0.3 * np.sin(np.arange(8000) / 5)
    sound = loudness(audio, 25)
    assert sound.shape == (25,)
    assert sound.min() >= np.percentile(sound, 95) - 45.0 - 1e-3  # digital silence: -120 dB before the floor
    assert loudness(audio, 30).shape == (30,)  # padded to the video's frames


def test_the_speaker_of_every_turn_of_the_synthetic_conversations(scenes_corpus: Path):
    """The tracker's faces and the sound alone (no model) name the person of each turn."""
    chain = FaceChain.dlib()
    right = total = 0
    for video in sorted((scenes_corpus / "scenes").glob("*.mp4")):
        truth = json.loads(video.with_suffix(".json").read_text())
        frames = read_video(video, with_audio=False).frames
        tracks = chain.face_tracks(frames)
        openings = [mouth_opening(t.landmarks) for t in tracks]
        sound = loudness(read_audio(video, 16000), len(frames))
        for turn in truth["turns"]:
            start, end = int(turn["start"] * 25), int(turn["end"] * 25)
            right += active_face(openings, sound, start, end) == turn["person"]  # tracks are left to right
            total += 1
    assert total >= 6 and right == total


def test_still_lips_that_happen_to_match_the_sound_are_no_candidate():
    rng = np.random.default_rng(4)
    sound = syllables(rng, 120)
    jitter = 0.05 + 0.002 * (sound + 60) / 50  # a still mouth whose landmarks shiver with the sound
    speaker = (sound + 60) / 50 + rng.normal(0, 0.3, 120)  # moving lips, a noisy match
    assert synchrony(jitter, sound) > synchrony(speaker, sound)
    scores = speaking_scores([jitter, speaker], sound, 0, 120)
    assert np.isnan(scores[0]) and active_face([jitter, speaker], sound, 0, 120) == 1
