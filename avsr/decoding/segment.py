"""Split a long recording into pieces the model can take: at pauses where there are pauses,
otherwise fixed windows that overlap.

Times are in video frames (25 per second; 640 audio samples each). Every segment owns a range of
frames (``keep_start``..``keep_end``): segments cut at pauses own all of themselves, overlapping
windows own up to the middle of their overlap, so the owned ranges tile the recording exactly and a
word is kept by the one segment that owns its midpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLES_PER_FRAME = 640


@dataclass(frozen=True)
class SegmentConfig:
    max_seconds: float = 12.0
    """Longest segment (the synthetic recipe trains on utterances up to 12 s)."""
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


def plan_segments(num_frames: int, audio: np.ndarray | None, config: SegmentConfig) -> list[Segment]:
    """Segments covering ``num_frames`` frames; pauses are looked for in ``audio`` when given."""
    longest = int(config.max_seconds * 25)
    if num_frames <= longest:
        return [Segment(0, num_frames, 0, num_frames)]
    overlap = int(round(config.overlap_seconds * 25))
    cuts = [(a + b) // 2 for a, b in find_pauses(audio, config)] if audio is not None else []
    segments: list[Segment] = []
    start, keep_start = 0, 0
    while num_frames - start > longest:
        # the last pause that leaves a segment of at least a quarter of the longest
        candidates = [c for c in cuts if start + longest // 4 <= c <= start + longest]
        if candidates:
            cut = candidates[-1]
            segments.append(Segment(start, cut, keep_start, cut))
            start = keep_start = cut
            continue
        end = start + longest
        keep_end = end - overlap // 2
        segments.append(Segment(start, end, keep_start, keep_end))
        start, keep_start = end - overlap, keep_end
    segments.append(Segment(start, num_frames, keep_start, num_frames))
    return segments


__all__ = ["Segment", "SegmentConfig", "find_pauses", "frame_energy_db", "plan_segments"]
