"""SubRip (.srt) and WebVTT (.vtt) subtitles from word timings.

Words are grouped into cues of at most ``max_words`` words and ``max_seconds`` seconds, and a cue
never spans a gap between words longer than ``max_gap`` seconds or two segments. A segment without
word times (a model without a CTC head) is one cue with the segment's times.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from avsr.decoding.alignment import WordTiming
from avsr.media.atomic import atomic_path


def _cues(
    segments: Sequence[Sequence[WordTiming]],
    max_words: int,
    max_seconds: float,
    max_gap: float,
    labels: Sequence[str | None] | None = None,
) -> list[tuple[float, float, str]]:
    cues: list[tuple[float, float, str]] = []
    for number, words in enumerate(segments):
        label = labels[number] if labels is not None else None
        prefix = f"[{label}] " if label else ""
        current: list[WordTiming] = []
        for w in words:
            if current and (
                len(current) >= max_words
                or w.end - current[0].start > max_seconds
                or w.start - current[-1].end > max_gap
            ):
                cues.append((current[0].start, current[-1].end, prefix + " ".join(x.word for x in current)))
                current = []
            current.append(w)
        if current:
            cues.append((current[0].start, current[-1].end, prefix + " ".join(x.word for x in current)))
    return cues


def _stamp(seconds: float, separator: str) -> str:
    millis = int(round(max(seconds, 0.0) * 1000))
    h, rest = divmod(millis, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def format_subtitles(
    segments: Sequence[Sequence[WordTiming]],
    kind: str,
    *,
    max_words: int = 7,
    max_seconds: float = 3.5,
    max_gap: float = 1.0,
    labels: Sequence[str | None] | None = None,
) -> str:
    """The text of an .srt (``kind="srt"``) or .vtt (``kind="vtt"``) file; ``labels``: a speaker
    label per segment (``S1``), shown as ``[S1]`` before each of its cues."""
    cues = _cues(segments, max_words, max_seconds, max_gap, labels)
    if kind == "srt":
        blocks = [f"{i}\n{_stamp(a, ',')} --> {_stamp(b, ',')}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1)]
        return "\n".join(blocks)
    if kind == "vtt":
        blocks = [f"{_stamp(a, '.')} --> {_stamp(b, '.')}\n{text}\n" for a, b, text in cues]
        return "WEBVTT\n\n" + "\n".join(blocks)
    raise ValueError(f"subtitle kind must be srt or vtt, got {kind!r}")


def segment_words(segment) -> Sequence[WordTiming]:
    """A segment's words; a segment with text but no word times (a model without a CTC head, or
    tokens that could not be aligned) is one cue spanning the segment."""
    if segment.words or not segment.text:
        return segment.words
    return [WordTiming(segment.text, segment.start, segment.end, segment.score)]


def result_subtitles(result, kind: str) -> str:
    """The subtitles of a ``FileResult``; with speaker labels when it is ``labelled`` (``--speakers all``)."""
    labels = [s.speaker for s in result.segments] if result.labelled else None
    return format_subtitles([segment_words(s) for s in result.segments], kind, labels=labels)


def subtitle_paths(inputs: Sequence[str], target: Path, kind: str) -> list[Path]:
    """Where each input's subtitles go: ``target`` itself for a single input, else the folder
    ``target`` with ``<input stem>.<kind>``; inputs of the same stem (``a/talk.mp4``, ``b/talk.mp4``)
    are numbered in input order (``talk.1.srt``, ``talk.2.srt``) so that none overwrites another."""
    if len(inputs) == 1:
        return [target]
    stems = [Path(p).stem for p in inputs]
    counts, seen = Counter(stems), Counter()
    paths = []
    for stem in stems:
        seen[stem] += 1
        paths.append(target / (f"{stem}.{seen[stem]}.{kind}" if counts[stem] > 1 else f"{stem}.{kind}"))
    return paths


def write_subtitles(results: Sequence, inputs: Sequence[str], target: Path, kind: str) -> list[Path]:
    """Write one subtitle file per result (``FileResult``, whose ``path`` is one of ``inputs``) at
    its place among all ``inputs`` (`subtitle_paths`): an input that failed does not turn the folder
    of several into a file."""
    place = dict(zip(inputs, subtitle_paths(inputs, target, kind)))
    paths = [place[str(r.path)] for r in results]
    for result, path in zip(results, paths):
        text = result_subtitles(result, kind)
        with atomic_path(path) as temp:
            Path(temp).write_text(text, encoding="utf-8")
    return paths


__all__ = ["format_subtitles", "result_subtitles", "segment_words", "subtitle_paths", "write_subtitles"]
