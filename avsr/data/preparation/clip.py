"""Prepare one item: decode it, find the face, crop the mouth, write the crop video and the audio.

An item that cannot be prepared raises :class:`SkipItem` with a one-line reason; the runner
lists it in the report and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsr.data.corpora import CorpusItem
from avsr.data.manifest import ManifestRow
from avsr.face import (
    FaceAlignmentError,
    FaceChain,
    LandmarksFileError,
    MouthCropConfig,
    NoFaceError,
    PrecomputedLandmarks,
)
from avsr.media import MediaError, OutsideRootError, inside, read_audio, read_video, write_mp4, write_wav
from avsr.media.constants import AUDIO_RATE, SAMPLES_PER_FRAME, VIDEO_FPS


class SkipItem(Exception):
    """This item cannot be prepared; the message says why in one line."""


@dataclass(frozen=True)
class ClipSettings:
    """How a clip is prepared; the same for every item of a run."""

    crop_size: int = 96
    landmarks_dir: Path | None = None  # precomputed landmarks instead of the dlib detector
    max_av_mismatch: float = 0.2  # seconds the audio and video streams may differ in length
    crf: int = 0  # x264 quality of the crop videos: 0 lossless
    detect_every: int = 10  # dlib backend: detector every N frames, tracking between (1: no tracking)
    mouth_crop: str = "auto_avsr"  # whose mouth alignment: auto_avsr's or avhubert's (MouthCropConfig.for_style)


@dataclass
class PreparedClip:
    """A clip in memory, before it is written (the preview draws from this too)."""

    frames: np.ndarray  # (T, H, W, 3) RGB source frames
    landmarks: np.ndarray  # (T, 68, 2) after filling gaps
    detected: np.ndarray  # (T,) bool: landmarks found in this frame (not interpolated)
    crops: np.ndarray  # (T, S, S) uint8 grayscale mouth crops
    mouth_points: np.ndarray  # (T, 20, 2) mouth landmarks in crop coordinates
    audio: np.ndarray  # (T * 640,) float32 16 kHz mono


class ClipPreparer:
    """Per-process state (the face chain), built once per worker."""

    def __init__(self, settings: ClipSettings) -> None:
        self.settings = settings
        crop = MouthCropConfig.for_style(settings.mouth_crop, crop_size=settings.crop_size)
        self.precomputed = PrecomputedLandmarks(settings.landmarks_dir) if settings.landmarks_dir else None
        # detect_every=1 means "detect on every frame, no tracking": the slow, simple baseline.
        self.faces = FaceChain(None, crop) if self.precomputed else FaceChain.dlib(settings.detect_every, crop)

    def load(self, item: CorpusItem) -> PreparedClip:
        if item.problem:
            raise SkipItem(item.problem)
        if not item.text.strip():
            raise SkipItem("empty transcript")
        try:
            frames = read_video(item.video, with_audio=False, start=item.start, end=item.end).frames
            audio = read_audio(item.video, AUDIO_RATE, start=item.start, end=item.end)
        except MediaError as error:
            raise SkipItem(error.problem if hasattr(error, "problem") else str(error)) from None
        if len(frames) == 0:
            raise SkipItem("no video frames in the clip")
        video_seconds = len(frames) / VIDEO_FPS
        audio_seconds = len(audio) / AUDIO_RATE
        if abs(video_seconds - audio_seconds) > self.settings.max_av_mismatch:
            raise SkipItem(f"audio/video length mismatch (video {video_seconds:.2f} s, audio {audio_seconds:.2f} s)")
        audio = np.pad(audio, (0, max(0, len(frames) * SAMPLES_PER_FRAME - len(audio))))[
            : len(frames) * SAMPLES_PER_FRAME
        ]
        try:
            crops = self.faces(frames, self._stored_landmarks(item, frames))
        except NoFaceError:
            raise SkipItem("no face found in any frame") from None
        except FaceAlignmentError as error:
            raise SkipItem(f"face alignment failed ({error})") from None
        return PreparedClip(
            frames, crops.landmarks, crops.detected, crops.crops, crops.mouth_points, audio.astype(np.float32)
        )

    def _stored_landmarks(self, item: CorpusItem, frames: np.ndarray) -> list[np.ndarray | None] | None:
        """The clip's window of the precomputed landmarks; None: the chain's detector finds them."""
        if self.precomputed is None:
            return None
        try:
            whole = self.precomputed.landmarks_for(item.source)
        except LandmarksFileError as error:
            raise SkipItem(str(error)) from None
        if whole is None:
            raise SkipItem(f"no landmarks file for {item.source} in {self.settings.landmarks_dir}")
        first = int(round(item.start * VIDEO_FPS))
        window = list(whole[first : first + len(frames)])
        if len(window) < len(frames):
            window += [None] * (len(frames) - len(window))
        return window

    def prepare(self, item: CorpusItem, out_root: Path) -> ManifestRow:
        """Write ``video/<id>.mp4`` (grayscale mouth crops) and ``audio/<id>.wav``, atomically."""
        video = f"video/{item.id}.mp4"
        audio = f"audio/{item.id}.wav"
        # Checked before any work: an id is text from a list and must not lead out of OUT. OUT's own
        # symlinks (video/ on another disk) are the user's, so the text alone is checked.
        try:
            video_path, audio_path = (inside(out_root, name, follow_links=False) for name in (video, audio))
        except OutsideRootError as error:
            raise SkipItem(error.problem) from None
        clip = self.load(item)
        write_mp4(video_path, clip.crops, fps=VIDEO_FPS, crf=self.settings.crf)
        write_wav(audio_path, clip.audio, AUDIO_RATE)
        return ManifestRow(item.id, video, audio, len(clip.crops), len(clip.audio), item.text)
