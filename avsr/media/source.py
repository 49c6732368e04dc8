"""Opening input files and reading their stream timing, shared by probe and the readers."""

from __future__ import annotations

import os
import stat
from fractions import Fraction

import av
from av.container import InputContainer

from avsr.media.errors import MediaError, media_errors, translate

# FFmpeg's tty demuxer claims *.txt and renders text as video; a transcript is never media.
_REJECTED_FORMATS = frozenset({"tty"})
_ATTACHED_PIC = 0x0400  # AV_DISPOSITION_ATTACHED_PIC: album art, not video
# Demuxers whose durations FFmpeg estimates from the bit rate (no index or length in a header).
_ESTIMATED_DURATION_FORMATS = frozenset(
    {"mp3", "aac", "ac3", "eac3", "dts", "h264", "hevc", "m4v", "mpegvideo", "mjpeg", "rawvideo"}
)


def open_input(path: str | os.PathLike[str]) -> InputContainer:
    """Open ``path`` for reading, or raise :class:`MediaError` saying why it cannot be media."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise translate(p, exc) from exc
    if stat.S_ISDIR(st.st_mode):
        raise MediaError(p, "is a directory")
    if st.st_size == 0:
        raise MediaError(p, "empty file")
    with media_errors(p):
        container = av.open(p, mode="r")
    if container.format.name in _REJECTED_FORMATS or not (first_video(container) or first_audio(container)):
        container.close()
        raise MediaError(p, "not a media file (no audio or video stream)")
    return container


def _is_cover_art(stream: av.stream.Stream) -> bool:
    try:
        return bool(int(stream.disposition) & _ATTACHED_PIC)
    except (TypeError, ValueError, AttributeError):
        return False


def first_video(container: InputContainer) -> av.VideoStream | None:
    """The first real video stream; album art in mp3/m4a/flac files is a one-picture "video"
    stream flagged attached_pic, and is skipped."""
    return next((s for s in container.streams.video if not _is_cover_art(s)), None)


def first_audio(container: InputContainer) -> av.AudioStream | None:
    return container.streams.audio[0] if container.streams.audio else None


def video_stream(container: InputContainer, path: str) -> av.VideoStream:
    stream = first_video(container)
    if stream is None:
        raise MediaError(path, "no video stream")
    return stream


def audio_stream(container: InputContainer, path: str) -> av.AudioStream:
    stream = first_audio(container)
    if stream is None:
        raise MediaError(path, "no audio stream")
    return stream


def time_base(stream: av.stream.Stream) -> Fraction:
    """Seconds per timestamp tick; demuxers always set it (FFmpeg's microseconds if not)."""
    return stream.time_base if stream.time_base is not None else Fraction(1, av.time_base)


def stream_start(stream: av.stream.Stream) -> Fraction | None:
    if stream.start_time is None:
        return None
    return Fraction(stream.start_time) * time_base(stream)


def origin(container: InputContainer) -> Fraction:
    """Time zero for both streams: the earlier start of the first video and first audio stream.

    Reading video and audio from the same origin keeps them aligned when one starts later (e.g. an
    audio track that begins 0.3 s in gets 0.3 s of leading silence).
    """
    starts = [
        start
        for stream in (first_video(container), first_audio(container))
        if stream is not None and (start := stream_start(stream)) is not None
    ]
    return min(starts) if starts else Fraction(0)


def _parse_clock(text: str) -> Fraction | None:
    """'00:00:02.002000000' (Matroska DURATION tag) -> seconds."""
    try:
        h, m, s = text.strip().split(":")
        return Fraction(int(h) * 3600 + int(m) * 60) + Fraction(s)
    except ValueError:
        return None


def stream_length(stream: av.stream.Stream) -> Fraction | None:
    """Declared duration of a stream in seconds, from the container header, if any."""
    if stream.duration is not None and stream.duration > 0:
        return Fraction(stream.duration) * time_base(stream)
    for key in ("DURATION", "duration"):
        value = stream.metadata.get(key)
        if value:
            return _parse_clock(value)
    return None


def declared_end(container: InputContainer, stream: av.stream.Stream, zero: Fraction) -> Fraction | None:
    """Where the header says ``stream`` ends, measured from ``zero``, or None if it does not say.

    Formats without a real header (raw mp3/AAC/H.264 streams) only have durations estimated from
    the bit rate, and a container duration is the longest stream's, so it stands for ``stream``
    only when that is the file's one audio/video stream.
    """
    if container.format.name in _ESTIMATED_DURATION_FORMATS:
        return None
    length = stream_length(stream)
    if length is not None:
        start = stream_start(stream)
        return (start if start is not None else zero) + length - zero
    real_streams = [s for s in (*container.streams.video, *container.streams.audio) if not _is_cover_art(s)]
    if len(real_streams) != 1:
        return None
    if container.duration is not None and container.duration > 0:
        start = Fraction(container.start_time or 0, av.time_base)
        return start + Fraction(container.duration, av.time_base) - zero
    return None


def check_complete(path: str, decoded_end: Fraction, expected_end: Fraction | None) -> None:
    """Raise if decoding stopped well before the header's end: the file was cut short.

    The tolerance (0.5 s or 10 %) absorbs headers that round durations or count a final frame's
    length differently; a file cut anywhere in its first 90 % is still caught.
    """
    if expected_end is None or expected_end <= 0:
        return
    tolerance = max(Fraction(1, 2), expected_end / 10)
    if decoded_end + tolerance < expected_end:
        raise MediaError(
            path,
            f"truncated or corrupt (decoded {float(decoded_end):.2f} s of {float(expected_end):.2f} s)",
        )
