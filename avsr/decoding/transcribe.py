"""Transcribe media files: decode -> face and mouth crops -> segments -> model -> words with times.

The face chain is the one ``avsr-prepare`` uses (dlib landmarks with tracking, gap filling,
mean-face alignment, 96 px mouth crops), or the alignment a converted model records (AV-HuBERT's),
so the model sees what it was trained on. In ``av`` mode a
file with one modality only (a silent video, an audio file, a video with no face anywhere) is
decoded from the modality it has, when the model can, and a segment where the face is lost for
more than a quarter of the frames is decoded from the audio alone; both are reported in ``notes``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
from avsr.decoding.speakers import active_face
from avsr.decoding.stages import StageTimes
from avsr.face.tracks import median_box
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
    speaker: str | None = None  # the face whose lips were read (S1, S2, ...); None: none was
    box: tuple[int, int, int, int] | None = None  # that face's median box in the segment: x, y, width, height


@dataclass
class FileResult:
    path: str
    modality: str
    segments: list[SegmentResult]
    notes: list[str]
    faces: list[dict] = field(default_factory=list)  # label, box (median over the video), frames seen
    labelled: bool = False  # --speakers all: the text and subtitles name who says what

    @property
    def text(self) -> str:
        """The words in order; labelled, one ``[S1] words`` line per change of speaker."""
        if not self.labelled or not any(s.speaker for s in self.segments):  # no faces: nobody to name
            return " ".join(s.text for s in self.segments if s.text)
        lines: list[list[str]] = []
        for label, text in ((s.speaker, s.text) for s in self.segments if s.text):
            if lines and lines[-1][0] == label:
                lines[-1].append(text)
            else:
                lines.append([label, text])
        return "\n".join(f"[{label or '?'}] {' '.join(texts)}" for label, *texts in lines)

    def speaker_texts(self) -> dict[str, str]:
        """Each speaking face's words, in order: one transcript per speaker."""
        texts: dict[str, list[str]] = {}
        for segment in self.segments:
            if segment.text and segment.speaker is not None:
                texts.setdefault(segment.speaker, []).append(segment.text)
        return {label: " ".join(parts) for label, parts in texts.items()}

    @property
    def words(self) -> list[WordTiming]:
        return [w for s in self.segments for w in s.words]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "modality": self.modality,
            "text": self.text,
            "notes": self.notes,
            **({"faces": self.faces, "speakers": self.speaker_texts()} if self.faces else {}),
            "segments": [
                {
                    "start": round(s.start, 3),
                    "end": round(s.end, 3),
                    "modality": s.modality,
                    "text": s.text,
                    "score": round(s.score, 4),
                    **({"speaker": s.speaker, "box": list(s.box) if s.box else None} if s.speaker else {}),
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
    face: int | None = None  # index into the file's faces whose lips are read


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
    labelled: bool = False,
) -> list[FileResult]:
    """Segment every input, decode all segments in batches (per modality actually used), and join
    the words each segment owns into one result per file. Where an input shows several faces,
    each segment reads the lips of the face speaking in it (`avsr.decoding.speakers`), and
    segments do not join across a change of speaker. ``times`` collects model, search and align
    seconds; ``labelled`` (``--speakers all``) makes the results name the speakers in their text."""
    jobs: list[_Job] = []
    notes = [list(x.notes) for x in loaded]
    for f, item in enumerate(loaded):
        speaker_of = _speaker_choice(item)
        for seg in plan_segments(item.frames, item.audio, segmenting, speaker_of):
            used = item.modality or modality
            face = None  # whose lips are read, or (audio only) who speaks
            if item.faces:
                face = speaker_of(seg.start, seg.end) if speaker_of else 0
            if used == "av" and face is not None and "a" in recognizer.modalities:
                lost = 1.0 - float(item.faces[face].found[seg.start : seg.end].mean())
                if lost > MAX_LOST_SHARE:
                    used = "a"
                    notes[f].append(
                        f"{seg.start / VIDEO_FPS:.2f}-{seg.end / VIDEO_FPS:.2f} s decoded from the audio only (face lost in {100 * lost:.0f}% of the frames)"
                    )
            if used not in recognizer.modalities:
                raise RecognizerError(
                    f"{item.path}: needs {used!r} decoding, which this model cannot do ({', '.join(recognizer.modalities)})"
                )
            jobs.append(_Job(f, seg, used, face))
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
                [loaded[j.file].faces[j.face].crops[j.segment.start : j.segment.end] for j in batch]
                if "video" in inputs
                else None
            )
            for job, t in zip(batch, recognizer.transcribe(audios, videos, options, timings=True, times=times)):
                results[job.file].append(_own(job, t, loaded[job.file]))
    return [
        FileResult(
            item.path,
            item.modality or modality,
            sorted(results[f], key=lambda s: s.start),
            notes[f],
            _faces_seen(item),
            labelled,
        )
        for f, item in enumerate(loaded)
    ]


def _speaker_choice(item: LoadedInput) -> Callable[[int, int], int] | None:
    """``speaker_of(start, end)``: the index of the face speaking in those frames, where the
    input has several faces (None otherwise: there is nothing to choose)."""
    if len(item.faces) < 2:
        return None
    openings = [face.opening for face in item.faces]

    @functools.cache  # segment planning asks about the same stretches again, and so does the caller
    def speaker_of(start: int, end: int) -> int:
        return active_face(openings, item.sound, start, end)

    return speaker_of


def _faces_seen(item: LoadedInput) -> list[dict]:
    """The faces of an input for the JSON: label, median box over the video, frames seen."""
    return [
        {"label": face.label, "box": list(median_box(face.boxes) or []) or None, "frames": int(face.found.sum())}
        for face in item.faces
    ]


def _batches(jobs: list[_Job], max_frames: int) -> list[list[_Job]]:
    out: list[list[_Job]] = []
    for job in jobs:  # longest first: a batch's cost is its size times its first item's length
        if out and (len(out[-1]) + 1) * (out[-1][0].segment.end - out[-1][0].segment.start) <= max_frames:
            out[-1].append(job)
        else:
            out.append([job])
    return out


def _own(job: _Job, transcript, item: LoadedInput) -> SegmentResult:
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
    face = item.faces[job.face] if job.face is not None else None
    box = median_box(face.boxes[seg.start : seg.end]) if face is not None else None
    return SegmentResult(
        seg.keep_start / VIDEO_FPS,
        seg.keep_end / VIDEO_FPS,
        job.modality,
        text,
        transcript.score,
        words,
        face.label if face is not None else None,
        box,
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
