"""Live cutting: pieces close at pauses after speech, at the longest length, or every target without audio."""

from __future__ import annotations

import numpy as np

from avsr.decoding.live import _Piece
from avsr.decoding.segment import SegmentConfig
from avsr.media.live import LiveChunk

FRAME = 640


def tone(frames: int) -> np.ndarray:
    return (0.3 * np.sin(np.arange(frames * FRAME) / 3)).astype(np.float32)


def silence(frames: int) -> np.ndarray:
    return np.zeros(frames * FRAME, np.float32)


def feed(piece: _Piece, audio: np.ndarray, video: bool = True) -> list[int]:
    """Feed 40 ms of audio (and a frame) at a time; the cuts taken, in frames from the start."""
    cuts = []
    for k in range(len(audio) // FRAME):
        if video:
            piece.add(LiveChunk("video", k / 25, np.zeros((4, 4, 3), np.uint8)))
        piece.add(LiveChunk("audio", k / 25, audio[k * FRAME : (k + 1) * FRAME]))
        cut = piece.cut_point()
        if cut is not None:
            cuts.append(piece.origin + cut)
            piece.take(cut)
    return cuts


def test_a_pause_after_speech_cuts_in_its_middle():
    piece = _Piece(True, True, SegmentConfig())
    audio = np.concatenate([silence(5), tone(40), silence(12), tone(30), silence(12)])
    cuts = feed(piece, audio)
    # pauses of 0.3 s (8 frames) close a piece: cut at the middle of the 8 quiet frames seen
    assert cuts == [45 + 4, 45 + 12 + 30 + 4]


def test_a_click_is_no_speech():
    piece = _Piece(True, True, SegmentConfig())
    audio = np.concatenate([tone(30), silence(12), tone(2), silence(20), tone(30), silence(10)])
    assert feed(piece, audio) == [34, 34 + 8 + 2 + 20 + 30 + 4]  # the 2-frame click joins the next piece


def test_speech_without_pauses_is_cut_at_the_longest_length():
    piece = _Piece(True, True, SegmentConfig(max_seconds=4.0, target_seconds=2.0))
    assert feed(piece, tone(250)) == [100, 200]


def test_without_audio_pieces_are_the_target_length():
    piece = _Piece(True, False, SegmentConfig(target_seconds=2.0))
    for k in range(120):
        piece.add(LiveChunk("video", k / 25, np.zeros((4, 4, 3), np.uint8)))
    assert piece.cut_point() == 50
    taken = piece.take(50)
    assert taken.video.shape == (50, 4, 4, 3) and taken.audio is None and taken.heard
    assert piece.cut_point() == 50 and piece.origin == 50


def test_audio_waits_for_its_video():
    piece = _Piece(True, True, SegmentConfig())
    for k in range(60):
        piece.add(LiveChunk("audio", k / 25, (tone(1) if k < 40 else silence(1))))
    assert piece.cut_point() is None  # the pause is there, the frames are not yet
    for k in range(60):
        piece.add(LiveChunk("video", k / 25, np.zeros((4, 4, 3), np.uint8)))
    cut = piece.cut_point()
    assert cut is not None and 40 < cut < 60
    taken = piece.take(cut)
    assert taken.video.shape[0] == cut and len(taken.audio) == cut * FRAME
