"""Who is speaking: of the faces in view, the one whose lips move with the sound.

Per face, the gap between the inner lips in each frame (in units of the face's size, so near and
far faces compare) is correlated with the loudness of the sound in that frame (dB), at the best
offset within ``MAX_OFFSET`` frames (lips lead the sound a little, and files are not always in
sync), after removing both signals' slow trend (a listener mouthing words of their own moves
during a turn too, but not syllable by syllable with it); over a stretch of the recording, the face with the highest correlation speaks. A listener
whose lips are still, or move with words of their own that are not heard, correlates far less.
A face seen in under ``MIN_VISIBLE`` of a stretch is no candidate there, nor are lips that hardly
move (under ``MIN_MOTION`` of the liveliest face's movement): a still mouth's landmark jitter can
correlate with the sound by chance. Without sound (a silent
video) the face whose lips move most is taken.

The accuracy of this choice on conversations with a known truth (``avsr-synth --layout scenes``)
is measured by ``benchmarks/speakers.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avsr.decoding.segment import frame_energy_db

INNER_TOP = (61, 62, 63)
INNER_BOTTOM = (67, 66, 65)
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)
MAX_OFFSET = 3  # frames (120 ms) the lips may lead or lag the sound
MIN_VISIBLE = 0.5  # share of a stretch's frames a face must be seen in to be a candidate
LOUDNESS_RANGE = 45.0  # dB below the loud frames (95th percentile) that loudness is floored at
MIN_FRAMES = 8  # fewer frames in common than this: no correlation
MIN_MOTION = 0.35  # lips moving less than this share of the liveliest face's (syllable-rate std) are no candidate
TREND_FRAMES = 9  # moving average removed before correlating (0.36 s: slower than syllables)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(T,) float32 inner-lip gap per frame, in eye distances; NaN where ``landmarks`` (T, 68, 2) are."""
    points = np.asarray(landmarks, dtype=np.float64)
    gap = np.linalg.norm(points[:, list(INNER_TOP)] - points[:, list(INNER_BOTTOM)], axis=2).mean(axis=1)
    eyes = np.linalg.norm(points[:, LEFT_EYE].mean(axis=1) - points[:, RIGHT_EYE].mean(axis=1), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (gap / eyes).astype(np.float32)


def loudness(audio: np.ndarray, frames: int) -> np.ndarray:
    """(frames,) float32 loudness of each video frame's 640 samples in dB, floored at
    ``LOUDNESS_RANGE`` below the loud frames (digital silence would otherwise dominate)."""
    energy = frame_energy_db(np.asarray(audio, dtype=np.float32))[:frames]
    if len(energy) < frames:
        energy = np.pad(energy, (0, frames - len(energy)), constant_values=energy.min() if len(energy) else -120.0)
    return np.maximum(energy, np.percentile(energy, 95) - LOUDNESS_RANGE).astype(np.float32)


def syllabic(signal: np.ndarray, window: int = TREND_FRAMES) -> np.ndarray:
    """``signal`` (T,) less its moving average over ``window`` frames (NaN kept): the syllable-rate
    movement, without the slow rise and fall that every moving mouth shares with a turn of speech."""
    values = np.asarray(signal, dtype=np.float64)
    seen = ~np.isnan(values)
    if not seen.any():
        return values
    filled = np.where(seen, values, np.nanmean(values))
    half = window // 2
    trend = np.convolve(np.pad(filled, (half, window - 1 - half), mode="edge"), np.ones(window) / window, "valid")
    return np.where(seen, filled - trend, np.nan)


def synchrony(opening: np.ndarray, sound: np.ndarray, max_offset: int = MAX_OFFSET) -> float:
    """The highest Pearson correlation of the syllable-rate movement (:func:`syllabic`) of
    ``opening`` and ``sound`` (same length, NaN: unseen) with the lips shifted by up to
    ``max_offset`` frames either way; NaN when too few frames."""
    opening, sound = syllabic(opening), syllabic(sound)
    best = np.nan
    for offset in range(-max_offset, max_offset + 1):
        lips = opening[max(offset, 0) : len(opening) + min(offset, 0)]
        heard = sound[max(-offset, 0) : len(sound) + min(-offset, 0)]
        both = ~np.isnan(lips) & ~np.isnan(heard)
        if both.sum() < MIN_FRAMES:
            continue
        x, y = lips[both] - lips[both].mean(), heard[both] - heard[both].mean()
        denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
        r = float((x * y).sum()) / denominator if denominator > 1e-9 else 0.0
        best = r if np.isnan(best) else max(best, r)
    return best


def speaking_scores(openings: Sequence[np.ndarray], sound: np.ndarray | None, start: int, end: int) -> list[float]:
    """Per face, how much it looks like the speaker of frames ``start``..``end``: the synchrony of
    its lips with ``sound`` (or, without sound, how much its lips move); NaN for a face seen in
    too little of the stretch to tell, or (with sound) whose lips hardly move."""
    scores, motion = [], []
    for opening in openings:
        lips = opening[start:end]
        seen = len(lips) > 0 and np.mean(~np.isnan(lips)) >= MIN_VISIBLE
        motion.append(float(np.nanstd(syllabic(lips))) if seen else np.nan)
        if not seen:
            scores.append(np.nan)
        elif sound is None:
            scores.append(float(np.nanstd(lips)))
        else:
            scores.append(synchrony(lips, sound[start:end]))
    if sound is not None and np.isfinite(motion).any():  # lips that hardly move say nothing, whatever they match
        most = np.nanmax(motion)
        scores = [np.nan if not m >= MIN_MOTION * most else score for score, m in zip(scores, motion)]
    return scores


def active_face(openings: Sequence[np.ndarray], sound: np.ndarray | None, start: int, end: int) -> int:
    """The index of the face speaking in frames ``start``..``end``: the best score of
    :func:`speaking_scores`; when no face can be scored, the one seen in most of the stretch."""
    scores = np.array(speaking_scores(openings, sound, start, end), dtype=np.float64)
    if np.isfinite(scores).any():
        return int(np.nanargmax(np.where(np.isfinite(scores), scores, -np.inf)))
    return int(np.argmax([np.sum(~np.isnan(o[start:end])) for o in openings]))


__all__ = ["active_face", "loudness", "mouth_opening", "speaking_scores", "syllabic", "synchrony"]
