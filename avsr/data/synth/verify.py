"""Check that a generated clip's lips really follow its speech, with an independent landmarker.

dlib's 68-point predictor is run on the decoded mp4 frames (after H.264 compression, as any
consumer of the corpus sees them), tracking the face between sparse detections as ``avsr-prepare``
does (with sparser confirmations, see ``check_landmarker``); the inner-lip gap it measures,
normalised by the distance between the eyes, is correlated with the jaw opening the renderer was
told to draw. ``verify_speakers`` reports it per speaker
(per identity): the worst of a speaker's clips decides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from avsr.data.synth.visemes import OPEN
from avsr.face import DlibLandmarker, DlibVideoLandmarker, VideoLandmarker
from avsr.media import read_video

UPPER_INNER = [61, 62, 63]
LOWER_INNER = [67, 66, 65]
Landmarker = DlibLandmarker | VideoLandmarker
LIP_SYNC_THRESHOLD = 0.8  # the correlation every identity must reach
CHECK_DETECT_EVERY = 50  # frames between the detector's confirmations of a tracked face
SCREEN_THRESHOLD = 0.85  # what a new identity must reach on the screening clips (margin over 0.8)
SCREEN_SENTENCES = ("bin blue at f two now", "place white by k nine soon")
SCREEN_FRAME_SIZE = 160  # LRS2's frame size: the smaller face, the harder one to track


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


def check_landmarker() -> DlibVideoLandmarker:
    """dlib tracking the face from frame to frame, re-detecting only when the track is lost or
    every ``CHECK_DETECT_EVERY`` frames.

    ``avsr-prepare`` confirms every 10 frames; on some faces (grace_hopper at 160 px, glasses and
    a hat) a confirmation now and then snaps to a wrong, much larger box for a few frames, which
    scatters the inner-lip gap and says nothing about the lips (measured: 2 of 24 sampled
    speakers under 0.8 that way, none with sparse confirmation or with detection on every frame).
    """
    return DlibVideoLandmarker(track=True, detect_every=CHECK_DETECT_EVERY)


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

    ``landmarker``: a video landmarker (default: :func:`check_landmarker`) or a per-frame one
    (``DlibLandmarker``: the detector on every frame, whose box jumps between scales on small faces).
    """
    landmarker = landmarker or check_landmarker()
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


@lru_cache(maxsize=1)
def _screen_tracks() -> tuple[np.ndarray, ...]:
    """Mouth tracks (T, 3) of the screening sentences (espeak-ng), with rest before and after."""
    from avsr.data.synth.tts import SPEAKER_VOICES, Synthesizer
    from avsr.data.synth.visemes import mouth_track

    synthesizer = Synthesizer()
    tracks = []
    for index, text in enumerate(SCREEN_SENTENCES):
        speech = synthesizer.speak(text, SPEAKER_VOICES[index]).pad(before=0.3, after=0.3)
        tracks.append(mouth_track(speech.phonemes, int(np.ceil(speech.duration * 25)), 25))
    return tuple(tracks)


def screen_lip_sync(rig) -> float:
    """The lowest lip-sync correlation of a rigged face (``avsr.data.synth.rig.FaceRig``) on the
    screening clips: two sentences, one frontal and still, one turned, nodding and mirrored, at
    160 px, tracked in memory (no H.264).

    Casting keeps only faces that pass: a few blends put the lips where dlib's predictor
    cannot follow them (the inner-lip points collapse onto a dark open mouth), and no speaker
    should be one whose lips the check cannot read.
    """
    from avsr.data.synth.face import Appearance, TalkingFace

    face = TalkingFace(SCREEN_FRAME_SIZE, rig)
    poses = (Appearance(motion=0.5), Appearance(yaw=15.0, pitch=8.0, mirror=True, motion_seed=1))
    return _lowest_correlation(face, poses)


def screen_appearance(rig, appearance, size: int) -> float:
    """The lowest lip-sync correlation of a face as one speaker shows it: the screening sentences
    rendered at the corpus's frame ``size`` with the speaker's own ``appearance`` (framing, pose,
    light, blur) and compressed as hard as its clips are (``appearance.crf``).

    A face that passes the casting screen can still be lost under a hard combination (turned
    12 degrees, dark on one side and compressed at crf 32 read 0.51), so each speaker's drawn
    appearance is screened too.
    """
    from avsr.data.synth.face import TalkingFace

    face = TalkingFace(size, rig)
    return _lowest_correlation(face, (appearance, appearance), seeds=(0, 1), crf=appearance.crf)


def _lowest_correlation(face, appearances, seeds=(0, 0), crf: int | None = None) -> float:
    """The worst correlation over the screening sentences, each rendered with its appearance and
    clip seed; nan when a frame loses the face. ``crf``: compress the frames as H.264 would at
    that quality first."""
    values = []
    for track, appearance, seed in zip(_screen_tracks(), appearances, seeds):
        frames = face.render(track, appearance, 25.0, seed=seed)
        if crf is not None:
            frames = _compressed(frames, crf)
        report = measure_frames(frames, track[:, OPEN])
        if not report.face_in_every_frame or np.isnan(report.correlation):
            return float("nan")
        values.append(report.correlation)
    return float(min(values))


def _compressed(frames: np.ndarray, crf: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames with the blocking of H.264 at ``crf``, made by JPEG at a matching
    quality (crf 18 -> 95, 28 -> 60, 35 -> 36).

    x264 itself is not used: the same frames encoded twice in one process came out different
    now and then (two bitstreams, lip sync 0.90 or 0.94), and the plan built on the screen must
    be the same every time.
    """
    quality = int(np.clip(round(95 - 3.5 * (crf - 18)), 25, 95))
    out = np.empty_like(frames)
    for index, frame in enumerate(frames):
        _, data = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        out[index] = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return out


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
    landmarker = check_landmarker()
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
