"""Split a long recording into pieces the model can take: at pauses where there are pauses,
otherwise fixed windows that overlap.

A model trained on single sentences does badly on pieces that span a sentence boundary (the numbers
are in docs/experiments/segmentation.md, measured by benchmarks/segments.py), so the recording is
cut at every pause and the pieces are joined again only while they stay within ``target_seconds``,
which ``avsr-decode`` sets to the median length of the model's training utterances.

Times are in video frames (25 per second; 640 audio samples each). Every segment owns a range of
frames (``keep_start``..``keep_end``): segments cut at pauses own all of themselves, overlapping
windows own up to the middle of their overlap, so the owned ranges tile the recording exactly and a
word is kept by the one segment that owns its midpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avsr.media.constants import SAMPLES_PER_FRAME


@dataclass(frozen=True)
class SegmentConfig:
    target_seconds: float = 4.0
    """Pieces between pauses are joined while the result is at most this long."""
    max_seconds: float = 12.0
    """Longest segment: a stretch without pauses longer than this is cut into overlapping windows."""
    min_pause_seconds: float = 0.3
    """A quiet stretch at least this long is a pause."""
    silence_db: float = -35.0
    """A frame is quiet when its energy is this far below the loudest frames (95th percentile)."""
    overlap_seconds: float = 1.0
    """Overlap of fixed windows where no pause can be found."""

    def __post_init__(self) -> None:
        if self.max_seconds <= 2 * self.overlap_seconds or self.overlap_seconds < 0:
            raise ValueError("max_seconds must exceed twice overlap_seconds, and overlap_seconds be >= 0")
        if self.min_pause_seconds <= 0:
            raise ValueError("min_pause_seconds must be > 0")
        if not 0 < self.target_seconds <= self.max_seconds:
            raise ValueError("target_seconds must be > 0 and at most max_seconds")


@dataclass(frozen=True)
class Segment:
    start: int  # first frame
    end: int  # one past the last frame
    keep_start: int  # the frames whose words this segment reports
    keep_end: int


def frame_energy_db(audio: np.ndarray) -> np.ndarray:
    """Energy of each 640-sample frame in dB (the last partial frame included)."""
    frames = max(1, int(np.ceil(len(audio) / SAMPLES_PER_FRAME)))
    padded = np.zeros(frames * SAMPLES_PER_FRAME, dtype=np.float64)
    padded[: len(audio)] = audio
    power = np.mean(padded.reshape(frames, SAMPLES_PER_FRAME) ** 2, axis=1)
    return 10.0 * np.log10(power + 1e-12)


def find_pauses(audio: np.ndarray, config: SegmentConfig) -> list[tuple[int, int]]:
    """(start, end) frames of the quiet stretches of at least ``min_pause_seconds``."""
    energy = frame_energy_db(audio)
    quiet = energy < np.percentile(energy, 95) + config.silence_db
    min_frames = max(1, int(round(config.min_pause_seconds * 25)))
    pauses, start = [], None
    for t, q in enumerate(np.append(quiet, False)):
        if q and start is None:
            start = t
        elif not q and start is not None:
            if t - start >= min_frames:
                pauses.append((start, t))
            start = None
    return pauses


def plan_segments(
    num_frames: int,
    audio: np.ndarray | None,
    config: SegmentConfig,
    speaker_of: Callable[[int, int], int] | None = None,
) -> list[Segment]:
    """Segments covering ``num_frames`` frames; pauses are looked for in ``audio`` when given.
    ``speaker_of(start, end)``: who speaks in those frames, where several people may; pieces
    between pauses are then joined only when the same person speaks in both, so that a segment
    has one speaker (a turn without a pause in it stays one segment)."""
    target = max(1, int(config.target_seconds * 25))
    if num_frames <= target and speaker_of is None:
        return [Segment(0, num_frames, 0, num_frames)]
    cuts = [(a + b) // 2 for a, b in find_pauses(audio, config)] if audio is not None else []
    pieces: list[tuple[int, int]] = []
    for cut in [c for c in cuts if 0 < c < num_frames] + [num_frames]:
        start = pieces[-1][1] if pieces else 0
        same = speaker_of is None or (pieces and speaker_of(*pieces[-1]) == speaker_of(start, cut))
        if pieces and cut - pieces[-1][0] <= target and same:
            pieces[-1] = (pieces[-1][0], cut)  # still short enough: join it to the previous piece
        else:
            pieces.append((start, cut))
    segments: list[Segment] = []
    for start, end in pieces:
        segments += _windows(start, end, config)
    return segments


def _windows(start: int, end: int, config: SegmentConfig) -> list[Segment]:
    """``start``..``end`` as it is, or as overlapping windows when longer than ``max_seconds``;
    each window owns its frames up to the middle of the overlap with the next."""
    longest = int(config.max_seconds * 25)
    overlap = int(round(config.overlap_seconds * 25))
    segments: list[Segment] = []
    keep_start = start
    while end - start > longest:
        window_end = start + longest
        keep_end = window_end - overlap // 2
        segments.append(Segment(start, window_end, keep_start, keep_end))
        start, keep_start = window_end - overlap, keep_end
    segments.append(Segment(start, end, keep_start, end))
    return segments


__all__ = ["Segment", "SegmentConfig", "find_pauses", "frame_energy_db", "plan_segments"]
