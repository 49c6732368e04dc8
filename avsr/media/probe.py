"""What a media file holds, from its header only (no decoding)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from avsr.media.errors import media_errors
from avsr.media.source import first_audio, first_video, open_input, stream_length


@dataclass(frozen=True)
class MediaInfo:
    """Header facts about one file.

    ``duration`` is the container's (the longest stream), in seconds, 0.0 if the header has none.
    ``fps`` is the video stream's average rate (a variable-rate file reports its mean).
    ``width``/``height`` are the coded size; the readers rotate frames upright when the file carries
    a display rotation, so a portrait phone video reads as height > width.
    """

    path: str
    duration: float
    has_video: bool
    has_audio: bool
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Read the header of ``path``; raise :class:`MediaError` if it is not readable media."""
    p = os.fspath(path)
    container = open_input(p)
    try:
        with media_errors(p):
            video = first_video(container)
            audio = first_audio(container)
            fields: dict[str, object] = {}
            if container.duration is not None and container.duration > 0:
                fields["duration"] = container.duration / 1_000_000
            else:
                lengths = [stream_length(s) for s in (video, audio) if s is not None]
                fields["duration"] = float(max((x for x in lengths if x is not None), default=0))
            if video is not None:
                rate = video.average_rate or video.guessed_rate or video.base_rate
                fields.update(
                    fps=float(rate) if rate else None,
                    width=video.codec_context.width or None,
                    height=video.codec_context.height or None,
                    video_codec=video.codec_context.name,
                )
            if audio is not None:
                fields.update(
                    sample_rate=audio.codec_context.sample_rate or None,
                    channels=audio.codec_context.channels or None,
                    audio_codec=audio.codec_context.name,
                )
            return MediaInfo(path=p, has_video=video is not None, has_audio=audio is not None, **fields)  # type: ignore[arg-type]
    finally:
        container.close()
