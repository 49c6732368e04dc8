"""Decode any file PyAV opens into 25 fps RGB frames and 16 kHz mono float32 audio.

Both streams are measured from one origin (the earlier start of the video and audio streams), so
frame k (at k/fps s) and audio sample n (at n/sample_rate s) refer to the same clock. Frames are
chosen by timestamp, not by counting, which makes 29.97 fps and variable-frame-rate sources come out
right. The streaming iterators hold one decoded frame at a time; the whole-clip readers are built on
them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.container import InputContainer

from avsr.media.constants import AUDIO_RATE, VIDEO_FPS
from avsr.media.errors import MediaError, media_errors
from avsr.media.source import (
    audio_stream,
    check_complete,
    declared_end,
    open_input,
    origin,
    time_base,
    video_stream,
)
from avsr.media.timing import as_fraction, resample_by_time

# Seek this far before the requested start: demuxers index keyframes by decode time, and the
# keyframe's display time can be a few frames later.
_SEEK_MARGIN = Fraction(1)


@dataclass
class AVClip:
    """A decoded clip: ``frames`` (T, H, W, 3) uint8 RGB, ``audio`` (S,) float32 mono or None.

    When audio is present, ``len(audio) == round(T * sample_rate / fps)``.
    """

    frames: np.ndarray
    audio: np.ndarray | None
    fps: float
    sample_rate: int

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Seconds covered by the frames."""
        return self.num_frames / self.fps


def _check_window(start: float, end: float | None) -> tuple[Fraction, Fraction | None]:
    start_q = as_fraction(start, "start")
    end_q = None if end is None else as_fraction(end, "end")
    if start_q < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if end_q is not None and end_q <= start_q:
        raise ValueError(f"end must be greater than start, got start={start}, end={end}")
    return start_q, end_q


def _check_rate(value: float | Fraction, name: str) -> Fraction:
    rate = as_fraction(value, name)
    if rate <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return rate


def _frame_time(frame: Any, stream: av.stream.Stream, zero: Fraction) -> Fraction | None:
    if frame.pts is None:
        return None
    return Fraction(frame.pts) * time_base(stream) - zero


def _seek(container: InputContainer, stream: av.stream.Stream, when: Fraction) -> bool:
    """Seek ``stream`` to a keyframe at or before absolute time ``when``; False if impossible."""
    try:
        container.seek(math.floor(when / time_base(stream)), stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError:
        return False
    return True


def _decoded_from(
    container: InputContainer, stream: av.stream.Stream, zero: Fraction, target: Fraction
) -> Iterator[Any]:
    """Decoded frames of ``stream`` starting at or before ``target`` (seconds from ``zero``).

    Seeks when the target is far enough in, and falls back to decoding from the beginning if the
    demuxer lands after the target (files without an index).
    """
    if target > _SEEK_MARGIN and _seek(container, stream, zero + target - _SEEK_MARGIN):
        frames = container.decode(stream)
        first = next(frames, None)
        first_time = None if first is None else _frame_time(first, stream, zero)
        if first is not None and first_time is not None and first_time <= target:
            yield first
            yield from frames
            return
        container.seek(0)
    yield from container.decode(stream)


def _timed_video(
    path: str, container: InputContainer, stream: av.VideoStream, zero: Fraction, start: Fraction
) -> Iterator[tuple[Fraction, Fraction | None, av.VideoFrame]]:
    """(time, duration, frame) for each decoded frame; raises at the end if the file was cut short."""
    rate = stream.average_rate or stream.guessed_rate
    nominal = 1 / Fraction(rate) if rate else Fraction(1) / as_fraction(VIDEO_FPS)
    previous: Fraction | None = None
    decoded_end = Fraction(0)
    count = 0
    for frame in _decoded_from(container, stream, zero, start):
        time = _frame_time(frame, stream, zero)
        if time is None:  # no timestamp: assume the nominal rate
            time = Fraction(0) if previous is None else previous + nominal
        ticks = getattr(frame, "duration", None)
        duration = Fraction(ticks) * time_base(stream) if ticks else None
        decoded_end = max(decoded_end, time + (duration or nominal))
        previous = time
        count += 1
        yield time, duration, frame
    if count == 0:
        raise MediaError(path, "truncated or corrupt (no video frames decoded)")
    check_complete(path, decoded_end, declared_end(container, stream, zero))


def to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """RGB array of ``frame`` at the stream's first size, turned upright per its display matrix."""
    image: np.ndarray = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    quarter_turns = round(getattr(frame, "rotation", 0) / 90) % 4
    if quarter_turns:
        image = np.ascontiguousarray(np.rot90(image, quarter_turns))
    return image


def _frame_generator(
    path: str,
    container: InputContainer,
    fps: Fraction,
    start: Fraction,
    end: Fraction | None,
) -> Iterator[np.ndarray]:
    try:
        with media_errors(path):
            stream = video_stream(container, path)
            stream.thread_type = "AUTO"
            zero = origin(container)
            width = stream.codec_context.width
            height = stream.codec_context.height
            last_frame: av.VideoFrame | None = None
            last_image: np.ndarray | None = None
            source = _timed_video(path, container, stream, zero, start)
            for frame in resample_by_time(source, fps, start, end):
                if frame is last_frame and last_image is not None:
                    yield last_image.copy()  # a repeated source frame; callers may edit arrays
                    continue
                if not width or not height:
                    width, height = frame.width, frame.height
                last_frame, last_image = frame, to_rgb(frame, width, height)
                yield last_image
    finally:
        container.close()


def iter_frames(
    path: str | os.PathLike[str],
    fps: float | Fraction = VIDEO_FPS,
    start: float = 0.0,
    end: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield RGB frames (H, W, 3) uint8 at ``fps``, one decoded frame in memory at a time.

    Output frame k is at ``start + k/fps`` seconds and shows the source frame displayed then (the
    last one whose timestamp is <= that time; the first frame for earlier times). Frames stop
    before ``end`` or at the end of the video. Opening errors raise here; decoding errors (a file cut
    short) raise from the iteration, all as :class:`MediaError`.
    """
    p = os.fspath(path)
    fps_q = _check_rate(fps, "fps")
    start_q, end_q = _check_window(start, end)
    container = open_input(p)
    try:
        video_stream(container, p)
    except MediaError:
        container.close()
        raise
    return _frame_generator(p, container, fps_q, start_q, end_q)


def _resampled(
    frames: Iterator[av.AudioFrame],
    stream: av.AudioStream,
    zero: Fraction,
    sample_rate: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """(clock index of the first sample, mono float32 samples) per resampled chunk.

    The first decoded frame's timestamp places the audio on the clock; later chunks follow it
    contiguously, so timestamp jitter in the container cannot open gaps in the waveform. Channels
    are averaged here rather than by FFmpeg, whose stereo-to-mono matrix adds L and R at -3 dB each:
    a mono recording stored as two identical channels would come out 3 dB louder and could clip.
    """
    resampler = av.AudioResampler(format="fltp", rate=sample_rate)
    position: int | None = None
    for frame in frames:
        if position is None:
            time = _frame_time(frame, stream, zero)
            position = round((time or 0) * sample_rate)
        for out in resampler.resample(frame):
            samples = out.to_ndarray().mean(axis=0, dtype=np.float32)
            yield position, samples
            position += len(samples)
    if position is not None:
        for out in resampler.resample(None):
            samples = out.to_ndarray().mean(axis=0, dtype=np.float32)
            yield position, samples
            position += len(samples)


def _sample_generator(
    path: str,
    container: InputContainer,
    sample_rate: int,
    first: int,
    stop: int | None,
) -> Iterator[np.ndarray]:
    """Mono float32 chunks covering clock samples [first, stop) (stop None: to the end).

    Audio that starts after the origin is preceded by zeros; samples before the origin (encoder
    priming reported with negative timestamps) are dropped. The output is capped at the header's
    end of the stream, which trims the padding AAC adds to its last frame.
    """
    try:
        with media_errors(path):
            stream = audio_stream(container, path)
            zero = origin(container)
            expected_end = declared_end(container, stream, zero)
            if expected_end is not None:
                cap = round(expected_end * sample_rate)
                stop = cap if stop is None else min(stop, cap)
            frames = _decoded_from(container, stream, zero, Fraction(first, sample_rate))
            cursor = first  # next clock sample to yield
            decoded_end: int | None = None
            for position, samples in _resampled(frames, stream, zero, sample_rate):
                if stop is not None and cursor >= stop:
                    return
                decoded_end = position + len(samples)
                if position > cursor:  # audio starts late (or after a seek gap): silence
                    gap_end = position if stop is None else min(position, stop)
                    yield np.zeros(gap_end - cursor, dtype=np.float32)
                    cursor = gap_end
                lo = max(cursor, position)
                hi = decoded_end if stop is None else min(decoded_end, stop)
                if hi > lo:
                    yield samples[lo - position : hi - position].astype(np.float32, copy=True)
                    cursor = hi
            if decoded_end is None:
                raise MediaError(path, "truncated or corrupt (no audio decoded)")
            check_complete(path, Fraction(decoded_end, sample_rate), expected_end)
    finally:
        container.close()


def _open_audio(path: str) -> InputContainer:
    container = open_input(path)
    try:
        audio_stream(container, path)
    except MediaError:
        container.close()
        raise
    return container


def iter_audio(
    path: str | os.PathLike[str],
    sample_rate: int = AUDIO_RATE,
    start: float = 0.0,
    end: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield mono float32 chunks of the audio between ``start`` and ``end`` seconds, resampled to
    ``sample_rate`` and downmixed; sample n of the concatenation is at ``start + n/sample_rate``."""
    p = os.fspath(path)
    rate = _check_sample_rate(sample_rate)
    start_q, end_q = _check_window(start, end)
    container = _open_audio(p)
    return _sample_generator(p, container, rate, round(start_q * rate), None if end_q is None else round(end_q * rate))


def _check_sample_rate(sample_rate: int) -> int:
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
    return int(sample_rate)


def read_audio(
    path: str | os.PathLike[str],
    sample_rate: int = AUDIO_RATE,
    start: float = 0.0,
    end: float | None = None,
) -> np.ndarray:
    """The audio of ``path`` (an audio file or a video's soundtrack) as mono float32 (S,)."""
    chunks = list(iter_audio(path, sample_rate, start, end))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def read_video(
    path: str | os.PathLike[str],
    fps: float | Fraction = VIDEO_FPS,
    sample_rate: int = AUDIO_RATE,
    with_audio: bool = True,
    start: float = 0.0,
    end: float | None = None,
) -> AVClip:
    """Frames at ``fps`` and (if ``with_audio``) the aligned audio of ``path``.

    The audio is cut or zero-padded to exactly ``round(T * sample_rate / fps)`` samples for T frames,
    the convention the rest of the toolkit relies on. A missing audio stream is an error when
    ``with_audio`` is true: pass ``with_audio=False`` for silent videos.
    """
    p = os.fspath(path)
    fps_q = _check_rate(fps, "fps")
    rate = _check_sample_rate(sample_rate)
    start_q, _ = _check_window(start, end)
    if with_audio:  # fail before decoding the video, not after
        _open_audio(p).close()
    frames = list(iter_frames(p, fps_q, start, end))
    if not frames:
        raise MediaError(p, f"no video frames between {float(start_q):g} s and the end")
    video = np.empty((len(frames), *frames[0].shape), dtype=np.uint8)
    for i in range(len(frames)):  # copy frame by frame so peak memory stays near one clip
        video[i] = frames[i]
        frames[i] = None  # type: ignore[call-overload]
    audio = None
    if with_audio:
        first = round(start_q * rate)
        count = round(len(video) * rate / fps_q)
        chunks = list(_sample_generator(p, _open_audio(p), rate, first, first + count))
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        if len(audio) < count:
            audio = np.concatenate([audio, np.zeros(count - len(audio), dtype=np.float32)])
    return AVClip(frames=video, audio=audio, fps=float(fps_q), sample_rate=rate)
