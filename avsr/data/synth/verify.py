"""Check that a generated clip's lips really follow its speech, with an independent landmarker.

dlib's 68-point predictor is run on the decoded mp4 frames (after H.264 compression, as any
consumer of the corpus sees them); the inner-lip gap it measures, normalised by the distance
between the eyes, is correlated with the jaw opening the renderer was told to draw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from avsr.data.synth.visemes import OPEN
from avsr.face import DlibLandmarker
from avsr.media import read_video

UPPER_INNER = [61, 62, 63]
LOWER_INNER = [67, 66, 65]


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


def measure_lip_sync(video: str | os.PathLike[str], opening: np.ndarray, landmarker: DlibLandmarker | None = None) -> LipSyncReport:
    """Compare the landmarker's inner-lip gap on every frame of ``video`` with ``opening`` (T,)."""
    landmarker = landmarker or DlibLandmarker(upsample=1)
    frames = read_video(video, with_audio=False).frames
    if len(frames) != len(opening):
        raise ValueError(f"{video}: {len(frames)} frames but {len(opening)} opening values")
    gaps = np.full(len(frames), np.nan)
    for index, frame in enumerate(frames):
        points = landmarker(frame)
        if points is not None:
            gaps[index] = inner_lip_gap(points)
    found = ~np.isnan(gaps)
    if found.sum() > 2 and np.std(gaps[found]) > 0 and np.std(opening[found]) > 0:
        correlation = float(np.corrcoef(gaps[found], opening[found])[0, 1])
    else:
        correlation = float("nan")
    return LipSyncReport(len(frames), int(found.sum()), correlation)


def verify_corpus(root: str | os.PathLike[str], plan, count: int = 3) -> list[tuple[str, LipSyncReport]]:
    """Lip-sync reports for the first ``count`` clips of a generated corpus (``plan`` from
    :func:`avsr.data.synth.corpus.plan_corpus`); the rendered openings are recomputed, which the
    seeded plan makes exact."""
    from avsr.data.synth.corpus import UtteranceRenderer

    renderer = UtteranceRenderer(plan.config, plan.speakers)
    landmarker = DlibLandmarker(upsample=1)
    reports = []
    for utterance in plan.utterances[:count]:
        opening = renderer.compose(utterance).track[:, OPEN]
        video = os.path.join(os.fspath(root), f"{utterance.key}.mp4")
        reports.append((utterance.key, measure_lip_sync(video, opening, landmarker)))
    return reports
