"""Transcribe media files: decode -> face and mouth crops -> segments -> model -> words with times.

The face chain is the one ``avsr-prepare`` uses (dlib landmarks with tracking, gap filling,
mean-face alignment, 96 px mouth crops), or the alignment a converted model records (AV-HuBERT's),
so the model sees what it was trained on. In ``av`` mode a
file with one modality only (a silent video, an audio file, a video with no face anywhere) is
decoded from the modality it has, when the model can, and a segment where the face is lost for
more than a quarter of the frames is decoded from the audio alone; both are reported in ``notes``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from avsr.decoding.alignment import WordTiming
from avsr.decoding.recognizer import MODALITY_INPUTS, DecodeOptions, Recognizer, RecognizerError, fit_audio
from avsr.decoding.segment import Segment, SegmentConfig, plan_segments
from avsr.decoding.stages import StageTimes, timed
from avsr.media import MediaError, probe, read_audio, read_video
from avsr.media.constants import AUDIO_RATE, SAMPLES_PER_FRAME, VIDEO_FPS

if TYPE_CHECKING:
    from avsr.face import FaceChain, MouthCropConfig

CROP_SIZE = 96
#: A segment is decoded from the audio alone when the face is missing in more than this share of it.
MAX_LOST_SHARE = 0.25


class TranscribeError(ValueError):
    """This file cannot be transcribed in the requested modality; the message is one line."""


@dataclass
class LoadedInput:
    path: str
    frames: int
    audio: np.ndarray | None = None  # (frames * 640,) float32
    crops: np.ndarray | None = None  # (frames, 96, 96) uint8
    face_found: np.ndarray | None = None  # (frames,) bool: a face detected in the frame (not filled in)
    notes: list[str] = field(default_factory=list)
    modality: str | None = None
    """The modality it is decoded in: the one asked for, or the one left after a fallback (None:
    the one asked for)."""


@dataclass
class SegmentResult:
    start: float
    end: float
    modality: str
    text: str
    score: float
    words: list[WordTiming]


@dataclass
class FileResult:
    path: str
    modality: str
    segments: list[SegmentResult]
    notes: list[str]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    @property
    def words(self) -> list[WordTiming]:
        return [w for s in self.segments for w in s.words]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "modality": self.modality,
            "text": self.text,
            "notes": self.notes,
            "segments": [
                {
                    "start": round(s.start, 3),
                    "end": round(s.end, 3),
                    "modality": s.modality,
                    "text": s.text,
                    "score": round(s.score, 4),
                    "words": [
                        {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3), "score": round(w.score, 4)}
                        for w in s.words
                    ],
                }
                for s in self.segments
            ],
        }


def face_chain(detect_every: int = 10, crop_config: MouthCropConfig | None = None) -> FaceChain:
    """avsr-prepare's face chain for decoding: dlib with tracking, crops made as the model's
    training crops were (``crop_config``: :attr:`Recognizer.mouth_crop`; default: avsr-prepare's,
    auto_avsr's alignment at 96 px)."""
    from avsr.face import FaceChain, MouthCropConfig

    return FaceChain.dlib(detect_every, crop_config or MouthCropConfig(crop_size=CROP_SIZE))


def mouth_crops(chain: FaceChain, frames: np.ndarray, times: StageTimes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(crops (T, S, S) uint8, face_found (T,) bool), timing the landmarks ("face") and the crops
    ("crop") apart; NoFaceError if no frame has a face."""
    with timed(times, "face"):
        landmarks = chain.landmarks(frames)
    with timed(times, "crop"):
        crops = chain.crop(frames, landmarks)
    return crops.crops, np.asarray(crops.detected, dtype=bool)


#: In ``av`` mode, the modality left when one stream is missing (or the face is).
FALLBACK = {"audio": "v", "video": "a"}


def load_input(
    path: str | os.PathLike[str],
    modality: str,
    faces: Callable[[], FaceChain],
    times: StageTimes | None = None,
    *,
    decodable: Sequence[str] = tuple(MODALITY_INPUTS),
) -> LoadedInput:
    """Read what ``modality`` needs from ``path``. ``faces()`` gives the (lazily built) face chain;
    ``times`` collects the seconds spent on media, face and crop.

    In ``av`` mode a file without an audio stream (a silent video), without a video stream (an
    audio file) or without a face anywhere is decoded from the modality that is there, if it is
    one of ``decodable`` (the model's), with a note saying so; otherwise TranscribeError."""
    from avsr.face import FaceAlignmentError, NoFaceError

    p = os.fspath(path)
    try:
        info = probe(p)
    except MediaError as exc:
        raise TranscribeError(str(exc)) from None
    have = {"audio": info.has_audio, "video": info.has_video}
    missing = [x for x in MODALITY_INPUTS[modality] if not have[x]]
    loaded = LoadedInput(p, 0, modality=modality)
    if modality == "av" and len(missing) == 1:
        _fall_back(loaded, f"no {missing[0]} stream", FALLBACK[missing[0]], decodable)
    elif missing:
        hints = {"audio": " (use --modality v for silent videos)", "video": " (use --modality a for audio files)"}
        hint = hints[missing[0]] if len(missing) == 1 and any(have.values()) else ""
        raise TranscribeError(f"{p}: no {' or '.join(missing)} stream{hint}")
    inputs = MODALITY_INPUTS[loaded.modality]
    try:
        with timed(times, "media"):
            if "video" not in inputs:
                audio = read_audio(p, AUDIO_RATE)
                loaded.frames = max(1, len(audio) // SAMPLES_PER_FRAME)
                loaded.audio = fit_audio(audio, loaded.frames)
                return loaded
            clip = read_video(p, with_audio=False)
            loaded.frames = len(clip.frames)
            if "audio" in inputs:
                loaded.audio = fit_audio(read_audio(p, AUDIO_RATE), loaded.frames)
    except MediaError as exc:
        raise TranscribeError(str(exc)) from None
    try:
        loaded.crops, loaded.face_found = mouth_crops(faces(), clip.frames, times)
    except (NoFaceError, FaceAlignmentError) as exc:
        if loaded.modality == "v":
            reason = (
                f"{exc}: cannot lip-read it" if modality == "v" else f"no audio stream, and {exc}: nothing to decode"
            )
            raise TranscribeError(f"{p}: {reason}") from None
        _fall_back(loaded, str(exc), "a", decodable)
        return loaded
    for start, end in _lost_runs(loaded.face_found):
        loaded.notes.append(f"face lost {start / VIDEO_FPS:.2f}-{end / VIDEO_FPS:.2f} s")
    return loaded


def _fall_back(loaded: LoadedInput, reason: str, modality: str, decodable: Sequence[str]) -> None:
    """Decode ``loaded`` from ``modality`` alone (``reason``: what is missing), or refuse it."""
    kept = MODALITY_INPUTS[modality][0]
    if modality not in decodable:
        raise TranscribeError(
            f"{loaded.path}: {reason}: this model cannot decode the {kept} alone (it decodes {', '.join(decodable)})"
        )
    loaded.modality = modality
    loaded.notes.append(f"{reason}: decoded from the {kept} only")


def _lost_runs(found: np.ndarray, min_frames: int = 5) -> list[tuple[int, int]]:
    runs, start = [], None
    for t, ok in enumerate(np.append(found, True)):
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            if t - start >= min_frames:
                runs.append((start, t))
            start = None
    return runs


@dataclass
class _Job:
    file: int
    segment: Segment
    modality: str


def segmenting_for(
    recognizer: Recognizer, target_seconds: float | None = None, max_seconds: float = 12.0
) -> SegmentConfig:
    """Cut long inputs into pieces of about ``target_seconds``, by default as long as the model's
    training utterances (their median, recorded at export) where known."""
    target = target_seconds if target_seconds is not None else recognizer.typical_input_seconds
    target = target or SegmentConfig.target_seconds
    return SegmentConfig(target_seconds=min(target, max_seconds), max_seconds=max_seconds)


def transcribe_files(
    recognizer: Recognizer,
    loaded: Sequence[LoadedInput],
    modality: str,
    options: DecodeOptions,
    segmenting: SegmentConfig,
    *,
    max_frames_per_batch: int = 3000,
    times: StageTimes | None = None,
) -> list[FileResult]:
    """Segment every input, decode all segments in batches (per modality actually used), and join
    the words each segment owns into one result per file. ``times`` collects model, search and
    align seconds."""
    jobs: list[_Job] = []
    notes = [list(x.notes) for x in loaded]
    for f, item in enumerate(loaded):
        for seg in plan_segments(item.frames, item.audio, segmenting):
            used = item.modality or modality
            if used == "av" and item.face_found is not None and "a" in recognizer.modalities:
                lost = 1.0 - float(item.face_found[seg.start : seg.end].mean())
                if lost > MAX_LOST_SHARE:
                    used = "a"
                    notes[f].append(
                        f"{seg.start / VIDEO_FPS:.2f}-{seg.end / VIDEO_FPS:.2f} s decoded from the audio only (face lost in {100 * lost:.0f}% of the frames)"
                    )
            if used not in recognizer.modalities:
                raise RecognizerError(
                    f"{item.path}: needs {used!r} decoding, which this model cannot do ({', '.join(recognizer.modalities)})"
                )
            jobs.append(_Job(f, seg, used))
    results: dict[int, list[SegmentResult]] = {f: [] for f in range(len(loaded))}
    for used in dict.fromkeys(j.modality for j in jobs):
        group = sorted(
            (j for j in jobs if j.modality == used), key=lambda j: j.segment.end - j.segment.start, reverse=True
        )
        for batch in _batches(group, max_frames_per_batch):
            inputs = MODALITY_INPUTS[used]
            audios = (
                [
                    loaded[j.file].audio[j.segment.start * SAMPLES_PER_FRAME : j.segment.end * SAMPLES_PER_FRAME]
                    for j in batch
                ]
                if "audio" in inputs
                else None
            )
            videos = (
                [loaded[j.file].crops[j.segment.start : j.segment.end] for j in batch] if "video" in inputs else None
            )
            for job, t in zip(batch, recognizer.transcribe(audios, videos, options, timings=True, times=times)):
                results[job.file].append(_own(job, t))
    return [
        FileResult(item.path, item.modality or modality, sorted(results[f], key=lambda s: s.start), notes[f])
        for f, item in enumerate(loaded)
    ]


def _batches(jobs: list[_Job], max_frames: int) -> list[list[_Job]]:
    out: list[list[_Job]] = []
    for job in jobs:  # longest first: a batch's cost is its size times its first item's length
        if out and (len(out[-1]) + 1) * (out[-1][0].segment.end - out[-1][0].segment.start) <= max_frames:
            out[-1].append(job)
        else:
            out.append([job])
    return out


def _own(job: _Job, transcript) -> SegmentResult:
    """The words of a segment that fall in the frames it owns, at absolute times."""
    seg = job.segment
    offset = seg.start / VIDEO_FPS
    keep_all = seg.keep_start == seg.start and seg.keep_end == seg.end
    words = []
    for w in transcript.words:
        mid = offset + (w.start + w.end) / 2
        if keep_all or seg.keep_start / VIDEO_FPS <= mid < seg.keep_end / VIDEO_FPS:
            words.append(WordTiming(w.word, offset + w.start, offset + w.end, w.score))
    text = transcript.text if keep_all or not transcript.words else " ".join(w.word for w in words)
    return SegmentResult(
        seg.keep_start / VIDEO_FPS, seg.keep_end / VIDEO_FPS, job.modality, text, transcript.score, words
    )


__all__ = [
    "FileResult",
    "LoadedInput",
    "SegmentResult",
    "TranscribeError",
    "load_input",
    "face_chain",
    "mouth_crops",
    "segmenting_for",
    "transcribe_files",
]
