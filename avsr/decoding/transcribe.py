"""Transcribe media files: decode -> face and mouth crops -> segments -> model -> words with times.

The face chain is the one ``avsr-prepare`` uses (dlib landmarks with tracking, gap filling,
mean-face alignment, 96 px mouth crops), or the alignment a converted model records (AV-HuBERT's),
so the model sees what it was trained on. In ``av`` mode a
file with one modality only (a silent video, an audio file, a video with no face anywhere) is
decoded from the modality it has, when the model can, and a segment where the face is lost for
more than a quarter of the frames is decoded from the audio alone; both are reported in ``notes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from avsr.decoding.alignment import WordTiming
from avsr.decoding.reading import (
    MODALITY_INPUTS,
    LoadedInput,
    TranscribeError,
    face_chain,
    load_input,
    mouth_crops,
)
from avsr.decoding.recognizer import DecodeOptions, Recognizer, RecognizerError
from avsr.decoding.segment import Segment, SegmentConfig, plan_segments
from avsr.decoding.stages import StageTimes
from avsr.media.constants import SAMPLES_PER_FRAME, VIDEO_FPS

#: A segment is decoded from the audio alone when the face is missing in more than this share of it.
MAX_LOST_SHARE = 0.25


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
