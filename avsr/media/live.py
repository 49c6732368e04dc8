"""Live input: a camera, a network stream or a file played at real-time pace, read as it arrives.

:func:`open_live` opens the source once and :class:`LiveStream` yields :class:`LiveChunk` s in
arrival order: 25 fps RGB frames (chosen by timestamp, as the file readers choose them) and 16 kHz
mono audio, both on one clock that starts at the source's first packet. A camera is a video4linux
device (``/dev/video0``, read through FFmpeg's v4l2 input); a stream is any URL FFmpeg reads
(``rtsp://``, ``http(s)://``, ``udp://``, ``rtmp://``, ``srt://``); anything else is a file, which
``realtime`` plays at the pace of its timestamps (what tests and demos use: a live source without
a camera). Problems opening or reading are :class:`MediaError` s, one line each.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from avsr.media.constants import AUDIO_RATE, VIDEO_FPS
from avsr.media.errors import MediaError, media_errors, quiet_ffmpeg, reason_of
from avsr.media.reader import to_rgb
from avsr.media.source import first_audio, first_video, open_input

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
#: FFmpeg's options per kind of source: wait at most 10 s for a stream, RTSP over TCP (no lost packets)
STREAM_OPTIONS = {"rw_timeout": "10000000", "timeout": "10000000"}
RTSP_OPTIONS = {"rtsp_transport": "tcp"}


@dataclass
class LiveChunk:
    kind: str  # "video" or "audio"
    time: float  # seconds on the source's clock where ``data`` starts
    data: np.ndarray  # video: (H, W, 3) uint8 RGB, one 25 fps frame; audio: (n,) float32 16 kHz mono


def source_kind(source: str) -> str:
    """``camera``, ``stream`` or ``file``."""
    if source.startswith("/dev/video"):
        return "camera"
    if source.lower().startswith(STREAM_SCHEMES):
        return "stream"
    return "file"


class LiveStream:
    """The chunks of one live source, in arrival order (iterate once). ``stop()`` (from any
    thread) ends the iteration after the chunk being read; the container is closed at the end."""

    def __init__(self, source: str, container: av.container.InputContainer, realtime: bool) -> None:
        self.source = source
        self._container = container
        self._realtime = realtime
        self._stopped = threading.Event()
        video, audio = first_video(container), first_audio(container)
        self.has_video, self.has_audio = video is not None, audio is not None
        self._streams = [s for s in (video, audio) if s is not None]

    def stop(self) -> None:
        self._stopped.set()

    def _paced(self, chunks: Iterator[LiveChunk], started: float) -> Iterator[LiveChunk]:
        """``chunks``, each no earlier than its time on the clock started at ``started`` (realtime)."""
        for chunk in chunks:
            if self._realtime:
                _sleep_until(started + chunk.time)
            yield chunk

    def __iter__(self) -> Iterator[LiveChunk]:
        started = time.monotonic()
        video = _VideoClock() if self.has_video else None
        audio = _AudioClock() if self.has_audio else None
        zero: Fraction | None = None
        try:
            with media_errors(self.source):
                for packet in self._container.demux(self._streams):
                    if self._stopped.is_set():
                        break
                    for frame in packet.decode():
                        if frame.pts is None:
                            continue
                        at = Fraction(frame.pts) * packet.stream.time_base
                        zero = at if zero is None else zero
                        clock = video if packet.stream.type == "video" else audio
                        yield from self._paced(clock.push(frame, float(at - zero)), started)
                for clock in (video, audio):
                    if clock is not None:
                        yield from self._paced(clock.flush(), started)
        finally:
            self._container.close()


def open_live(source: str, *, realtime: bool = False) -> LiveStream:
    """Open a camera, stream URL or file (see the module doc); MediaError (one line) if it cannot be."""
    kind = source_kind(source)
    if kind == "file":
        if not os.path.exists(source):
            raise MediaError(source, "no such file, camera (/dev/videoN) or stream URL")
        container = open_input(source)
    else:
        options = {"camera": {}, "stream": dict(STREAM_OPTIONS)}[kind]
        if source.lower().startswith(("rtsp://", "rtsps://")):
            options.update(RTSP_OPTIONS)
        quiet_ffmpeg()
        try:
            container = av.open(source, mode="r", format="v4l2" if kind == "camera" else None, options=options)
        except (av.error.FFmpegError, OSError) as exc:  # no such camera, refused, timed out, not found
            raise MediaError(source, f"cannot open the {kind} ({reason_of(exc)})") from exc
        if first_video(container) is None and first_audio(container) is None:
            container.close()
            raise MediaError(source, "no audio or video stream")
    return LiveStream(source, container, realtime)


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class _VideoClock:
    """Decoded frames (any rate, any timing) in, 25 fps frames out: output frame k, at k/25 s,
    shows the last frame displayed by then (the first one before it)."""

    def __init__(self) -> None:
        self.next_index = 0
        self.previous: tuple[float, np.ndarray] | None = None

    def push(self, frame: av.VideoFrame, at: float) -> Iterator[LiveChunk]:
        image = to_rgb(frame, frame.width, frame.height)  # as the file reader: upright per the display matrix
        if self.previous is not None:
            yield from self._until(at, self.previous[1])
        elif at > 0:
            yield from self._until(at, image)  # before the first frame: the first frame
        self.previous = (at, image)

    def flush(self) -> Iterator[LiveChunk]:
        if self.previous is not None:
            yield from self._until(self.previous[0] + 1 / VIDEO_FPS, self.previous[1])

    def _until(self, end: float, image: np.ndarray) -> Iterator[LiveChunk]:
        while self.next_index / VIDEO_FPS < end - 1e-9:
            yield LiveChunk("video", self.next_index / VIDEO_FPS, image.copy())
            self.next_index += 1


class _AudioClock:
    """Decoded audio (any rate and layout) in, contiguous 16 kHz mono float32 out; a late start is
    preceded by silence, as the file readers do."""

    def __init__(self) -> None:
        self.resampler = av.AudioResampler(format="fltp", rate=AUDIO_RATE)
        self.position: int | None = None

    def push(self, frame: av.AudioFrame, at: float) -> Iterator[LiveChunk]:
        if self.position is None:
            start = max(round(at * AUDIO_RATE), 0)
            self.position = 0
            if start:
                yield self._chunk(np.zeros(start, np.float32))
        for out in self.resampler.resample(frame):
            yield self._chunk(out.to_ndarray().mean(axis=0, dtype=np.float32))

    def flush(self) -> Iterator[LiveChunk]:
        if self.position is not None:
            for out in self.resampler.resample(None):
                yield self._chunk(out.to_ndarray().mean(axis=0, dtype=np.float32))

    def _chunk(self, samples: np.ndarray) -> LiveChunk:
        chunk = LiveChunk("audio", self.position / AUDIO_RATE, samples)
        self.position += len(samples)
        return chunk


__all__ = ["LiveChunk", "LiveStream", "open_live", "source_kind"]
