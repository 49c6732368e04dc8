"""Fast readers for prepared data: grayscale mouth-crop mp4s and 16 kHz PCM wavs.

`avsr-prepare` writes the crops as grayscale frames encoded to H.264 yuv420p (lossless by
default); their luma plane *is* the picture. :func:`read_mouth_video` takes it directly from the
decoded frames and undoes the limited-range mapping with a table, which gives exactly what PyAV's
``to_ndarray(format="gray")`` gives, about four times faster than converting every frame through
RGB (the RGB path of :func:`avsr.media.read_video` differs from it by at most one grey level).
Training, validation and decoding should read crops with this function so they see the same pixels.

:func:`read_wav` reads the 16-bit PCM mono wavs `avsr-prepare` writes with the standard library
(no FFmpeg), and falls back to :func:`avsr.media.read_audio` for anything else.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import av
import numpy as np

from avsr.media import AUDIO_RATE, MediaError, read_audio
from avsr.media.errors import media_errors
from avsr.media.source import open_input, video_stream

# Limited ("TV") range luma 16..235 -> full range 0..255, rounded; values outside are clipped.
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)
_YUV_FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray", "nv12")
_FULL_RANGE_FORMATS = ("yuvj420p", "yuvj422p", "yuvj444p", "gray")


def _luma(frame: av.VideoFrame) -> np.ndarray:
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
    return rows[:, : frame.width]


def read_mouth_video(path: str | os.PathLike[str]) -> np.ndarray:
    """All frames of a prepared mouth-crop video as (T, H, W) uint8 grayscale.

    Prepared crops have one frame per 1/25 s, so frames are returned as decoded (no resampling).
    Any problem raises :class:`avsr.media.MediaError` with a one-line message naming the file.
    """
    p = os.fspath(path)
    container = open_input(p)
    try:
        with media_errors(p):
            stream = video_stream(container, p)
            # One decoding thread: FFmpeg's frame threads cost 1.44x the CPU per frame on 96 px
            # crops and were slower in wall time too (docs/benchmarks.md, the data pipeline).
            stream.codec_context.thread_count = 1
            frames: list[np.ndarray] = []
            for frame in container.decode(stream):
                fmt = frame.format.name
                if fmt in _YUV_FORMATS:
                    luma = _luma(frame)
                    full = fmt in _FULL_RANGE_FORMATS or int(getattr(frame, "color_range", 0) or 0) == 2
                    frames.append(luma.copy() if full else _LIMITED_TO_FULL[luma])
                else:
                    frames.append(frame.to_ndarray(format="gray"))
    finally:
        container.close()
    if not frames:
        raise MediaError(p, "no video frames")
    return np.stack(frames)


def read_wav(path: str | os.PathLike[str]) -> np.ndarray:
    """Mono 16 kHz float32 audio of a prepared wav (int16 / 32768, as PyAV decodes it)."""
    p = os.fspath(path)
    try:
        with wave.open(p, "rb") as w:
            if (
                w.getframerate() == AUDIO_RATE
                and w.getnchannels() == 1
                and w.getsampwidth() == 2
                and w.getcomptype() == "NONE"
            ):
                data = w.readframes(w.getnframes())
                return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    except (wave.Error, EOFError):
        pass  # not plain PCM wav: let FFmpeg try
    except OSError as exc:
        raise MediaError(p, exc.strerror or str(exc)) from None
    return read_audio(p, sample_rate=AUDIO_RATE)


def cached_video_path(cache_dir: Path, video: str | os.PathLike[str]) -> Path:
    import hashlib

    key = hashlib.sha1(os.fspath(video).encode()).hexdigest()
    return cache_dir / key[:2] / f"{key}.npy"


def read_mouth_video_cached(path: str | os.PathLike[str], cache_dir: Path | None) -> np.ndarray:
    """:func:`read_mouth_video`, keeping a uint8 ``.npy`` copy under ``cache_dir`` (if given).

    The cache key is the absolute path of the video; a cache entry is written atomically and is
    only used while it is newer than the video.
    """
    if cache_dir is None:
        return read_mouth_video(path)
    target = cached_video_path(cache_dir, path)
    try:
        if target.stat().st_mtime >= os.stat(path).st_mtime:
            return np.load(target)
    except (OSError, ValueError):
        pass
    video = read_mouth_video(path)
    save_cache(target, video)
    return video


def save_cache(target: Path, array: np.ndarray) -> None:
    """Write a cache ``.npy`` atomically; a cache that cannot be written is not an error."""
    from avsr.media.atomic import atomic_path

    try:
        with atomic_path(target) as temp, open(temp, "wb") as handle:
            np.save(handle, array)
    except OSError:
        pass
