"""Check that a generated clip's lips really follow its speech, with an independent landmarker.

dlib's 68-point predictor is run on the decoded mp4 frames (after H.264 compression, as any
consumer of the corpus sees them), tracking the face between sparse detections as ``avsr-prepare``
does; the inner-lip gap it measures, normalised by the distance between the eyes, is correlated
with the jaw opening the renderer was told to draw. ``verify_speakers`` reports it per speaker
(per identity): the worst of a speaker's clips decides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from avsr.data.synth.visemes import OPEN
from avsr.face import DlibLandmarker, DlibVideoLandmarker, VideoLandmarker
from avsr.media import read_video

UPPER_INNER = [61, 62, 63]
LOWER_INNER = [67, 66, 65]
Landmarker = DlibLandmarker | VideoLandmarker
LIP_SYNC_THRESHOLD = 0.8  # the correlation every identity must reach


def inner_lip_gap(landmarks: np.ndarray) -> float:
    """Mean vertical gap between the inner lips, in units of the inter-ocular distance."""
    eyes = np.linalg.norm(landmarks[36:42].mean(axis=0) - landmarks[42:48].mean(axis=0))
    gaps = np.linalg.norm(landmarks[LOWER_INNER] - landmarks[UPPER_INNER], axis=1)
    return float(gaps.mean() / eyes)


@dataclass(frozen=True)
class LipSyncReport:
    frames: int
    faces_found: int
    correlation: float  # Pearson r between measured gap and rendered opening (frames with a face)

    @property
    def face_in_every_frame(self) -> bool:
        return self.faces_found == self.frames


def measure_lip_sync(
    video: str | os.PathLike[str], opening: np.ndarray, landmarker: Landmarker | None = None
) -> LipSyncReport:
    """Compare the landmarker's inner-lip gap on every frame of ``video`` with ``opening`` (T,)."""
    frames = read_video(video, with_audio=False).frames
    if len(frames) != len(opening):
        raise ValueError(f"{video}: {len(frames)} frames but {len(opening)} opening values")
    return measure_frames(frames, opening, landmarker)


def measure_frames(frames: np.ndarray, opening: np.ndarray, landmarker: Landmarker | None = None) -> LipSyncReport:
    """The same check on decoded frames (T, H, W, 3) uint8 RGB, already in memory.

    ``landmarker``: a video landmarker (default: dlib tracking between sparse detections, as
    ``avsr-prepare`` landmarks a clip) or a per-frame one (``DlibLandmarker``: the detector on
    every frame, whose box jumps between scales on small faces).
    """
    landmarker = landmarker or DlibVideoLandmarker(track=True)
    opening = np.asarray(opening, np.float64)
    if isinstance(landmarker, VideoLandmarker):
        found_points = landmarker.landmarks(frames)
    else:
        found_points = [landmarker(frame) for frame in frames]
    gaps = np.full(len(frames), np.nan)
    for index, points in enumerate(found_points):
        if points is not None:
            gaps[index] = inner_lip_gap(points)
    found = ~np.isnan(gaps)
    if found.sum() > 2 and np.std(gaps[found]) > 0 and np.std(opening[found]) > 0:
        correlation = float(np.corrcoef(gaps[found], opening[found])[0, 1])
    else:
        correlation = float("nan")
    return LipSyncReport(len(frames), int(found.sum()), correlation)


@dataclass(frozen=True)
class SpeakerLipSync:
    """Lip sync of one speaker's clips: the worst clip decides (every identity must pass)."""

    speaker: int
    identity: str | None  # the speaker's identity name where the plan records one
    clips: tuple[tuple[str, LipSyncReport], ...]

    @property
    def correlation(self) -> float:
        """The lowest clip correlation (nan when any clip could not be measured)."""
        values = [report.correlation for _, report in self.clips]
        return float("nan") if not values or any(np.isnan(values)) else float(min(values))

    @property
    def face_in_every_frame(self) -> bool:
        return all(report.face_in_every_frame for _, report in self.clips)

    def passes(self, threshold: float = LIP_SYNC_THRESHOLD) -> bool:
        return self.face_in_every_frame and self.correlation >= threshold


def verify_corpus(root: str | os.PathLike[str], plan, count: int = 3) -> list[tuple[str, LipSyncReport]]:
    """Lip-sync reports for the first ``count`` clips of a generated corpus (``plan`` from
    :func:`avsr.data.synth.corpus.plan_corpus`); the rendered openings are recomputed, which the
    seeded plan makes exact."""
    return verify_clips(root, plan, plan.utterances[:count])


def verify_clips(root: str | os.PathLike[str], plan, utterances) -> list[tuple[str, LipSyncReport]]:
    """Lip-sync reports for the given utterances of a generated corpus (their mp4 files)."""
    from avsr.data.synth.corpus import UtteranceRenderer

    renderer = UtteranceRenderer(plan.config, plan.speakers)
    landmarker = DlibVideoLandmarker(track=True)
    reports = []
    for utterance in utterances:
        opening = renderer.compose(utterance).track[:, OPEN]
        video = os.path.join(os.fspath(root), f"{utterance.key}.mp4")
        reports.append((utterance.key, measure_lip_sync(video, opening, landmarker)))
    return reports


def verify_speakers(root: str | os.PathLike[str], plan, clips_per_speaker: int = 1) -> list[SpeakerLipSync]:
    """Lip sync per speaker: each speaker's first ``clips_per_speaker`` clips, measured on the
    corpus's mp4 files. A speaker with no clips in the plan is left out."""
    chosen: dict[int, list] = {}
    for utterance in plan.utterances:
        picks = chosen.setdefault(utterance.speaker, [])
        if len(picks) < clips_per_speaker:
            picks.append(utterance)
    reports = dict(verify_clips(root, plan, [u for picks in chosen.values() for u in picks]))
    results = []
    for speaker in sorted(chosen):
        identity = getattr(plan.speakers[speaker], "identity", None)
        name = None if identity is None else str(getattr(identity, "name", identity))
        results.append(SpeakerLipSync(speaker, name, tuple((u.key, reports[u.key]) for u in chosen[speaker])))
    return results
