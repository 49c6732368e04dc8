"""Write mp4 (H.264 yuv420p + AAC) and 16-bit PCM wav files, atomically.

H.264 in yuv420p with AAC is what every player and every FFmpeg-based reader (OpenCV, torchvision,
this package) decodes. yuv420p subsamples chroma 2x2, so odd frame sizes are padded by one row or
column (a copy of the last one) to the next even size; read-back frames are then one pixel larger.
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import cast

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from avsr.media.atomic import atomic_path
from avsr.media.constants import AUDIO_RATE, VIDEO_FPS
from avsr.media.errors import MediaError, media_errors
from avsr.media.timing import as_fraction

# Encoders to try, best first: libx264 honours crf (crf 0 is lossless); the others only a bit rate.
_H264_ENCODERS = ("libx264", "h264", "libopenh264")
_AAC_BIT_RATE = 64_000  # ample for 16 kHz mono speech


def x264_options(crf: int) -> dict[str, str]:
    """libx264's options besides the crf itself. Lossless output (crf 0) decodes to the same pixels
    whatever the options, so they trade only bytes for speed: "superfast" without CABAC writes 96 px
    mouth crops 3.4x and reads them 1.8x faster than "medium", for 22% more bytes; the reading is
    what a training reader pays every epoch (docs/benchmarks.md). Lossy output keeps "medium", the
    quality per byte."""
    if crf == 0:
        return {"preset": "superfast", "x264-params": "cabac=0"}
    return {"preset": "medium"}


def h264_encoder(path: str = "<output>") -> str:
    """Name of the best H.264 encoder in PyAV's FFmpeg build (``path`` names the file in errors)."""
    for name in _H264_ENCODERS:
        try:
            codec = av.Codec(name, "w")
        except (av.error.FFmpegError, ValueError):
            continue
        if codec.is_encoder:
            return codec.name
    raise MediaError(path, "cannot write (no H.264 encoder in PyAV's FFmpeg build)")


def _frames_of(path: str, frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Validated frames: (H, W, 3) or (H, W) uint8, all of one shape."""
    if isinstance(frames, np.ndarray) and frames.ndim not in (3, 4):
        raise MediaError(path, f"frames must be (T, H, W, 3) RGB or (T, H, W) gray, got shape {frames.shape}")
    shape: tuple[int, ...] | None = None
    for frame in frames:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            raise MediaError(path, f"frames must be uint8, got {frame.dtype}")
        if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)) or 0 in frame.shape:
            raise MediaError(path, f"each frame must be (H, W, 3) RGB or (H, W) gray, got shape {frame.shape}")
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise MediaError(path, f"frame shape changed from {shape} to {frame.shape}")
        yield frame


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad to even height and width by repeating the last row/column (yuv420p needs even sizes)."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if not (pad_h or pad_w):
        return frame
    widths = ((0, pad_h), (0, pad_w)) + (((0, 0),) if frame.ndim == 3 else ())
    return np.pad(frame, widths, mode="edge")


def _mono_float(path: str, audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise MediaError(path, f"audio must be mono (S,), got shape {audio.shape}")
    if audio.dtype == np.int16:
        return (audio.astype(np.float32) / 32768.0).astype(np.float32)
    if not np.issubdtype(audio.dtype, np.floating):
        raise MediaError(path, f"audio must be float in [-1, 1] or int16, got {audio.dtype}")
    if not np.all(np.isfinite(audio)):
        raise MediaError(path, "audio contains NaN or infinite values")
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def write_mp4(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    audio: np.ndarray | None = None,
    fps: float | Fraction = VIDEO_FPS,
    sample_rate: int = AUDIO_RATE,
    crf: int = 18,
    x264: dict[str, str] | None = None,
) -> None:
    """Write an H.264 (yuv420p) mp4, with AAC audio if ``audio`` (mono float32) is given.

    ``frames`` is (T, H, W, 3) uint8 RGB or (T, H, W) uint8 gray, or any iterable of such frames
    (streamed: nothing is held beyond one frame). ``crf`` trades size for quality (0 lossless, 18
    visually lossless, 23 x264's default); ``x264``, libx264's options other than crf, replaces
    :func:`x264_options` (a benchmark's baseline). The file appears under ``path`` only when complete.
    """
    p = os.fspath(path)
    rate = as_fraction(fps, "fps")
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be in 0..51, got {crf}")
    sound = None if audio is None else _mono_float(p, audio)
    encoder = h264_encoder(p)
    source = _frames_of(p, frames)
    first = next(source, None)
    if first is None:
        raise MediaError(p, "no frames to write")
    height, width = _even(first).shape[:2]

    with (
        media_errors(p, writing=True),
        atomic_path(p) as temp,
        av.open(temp, mode="w", format="mp4") as container,
    ):
        video = cast(av.VideoStream, container.add_stream(encoder, rate=rate))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if encoder == "libx264":
            video.options = {"crf": str(int(crf)), **(x264_options(crf) if x264 is None else x264)}
        else:
            video.bit_rate = 8_000_000
        time_base = Fraction(1) / rate
        voice = None
        if sound is not None:
            voice = cast(av.AudioStream, container.add_stream("aac", rate=int(sample_rate), layout="mono"))
            voice.bit_rate = _AAC_BIT_RATE
        written = 0  # audio samples written so far
        # One conversion context for every frame: each frame's own reformat() built one anew, which
        # cost 4 times the conversion (the same pixels come out).
        to_yuv = VideoReformatter()
        for index, image in enumerate(_chain(first, source)):
            image = _even(image)
            frame = av.VideoFrame.from_ndarray(image, format="gray" if image.ndim == 2 else "rgb24")
            frame = to_yuv.reformat(frame, format="yuv420p")
            frame.pts, frame.time_base = index, time_base
            container.mux(video.encode(frame))
            if voice is not None and sound is not None:
                # Interleave: audio up to the end of this frame, so the muxer buffers little.
                until = min(len(sound), round((index + 1) * int(sample_rate) / rate))
                written = _put_audio(container, voice, sound, written, until, int(sample_rate))
        container.mux(video.encode(None))
        if voice is not None and sound is not None:
            _put_audio(container, voice, sound, written, len(sound), int(sample_rate))
            container.mux(voice.encode(None))


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _put_audio(
    container: av.container.OutputContainer,
    stream: av.AudioStream,
    sound: np.ndarray,
    begin: int,
    end: int,
    sample_rate: int,
) -> int:
    if end > begin:
        frame = av.AudioFrame.from_ndarray(sound[None, begin:end], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts, frame.time_base = begin, Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
    return max(begin, end)


def write_wav(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int = AUDIO_RATE) -> None:
    """Write 16-bit PCM wav from float audio in [-1, 1] (clipped) or int16; (S,) mono or (S, C).

    Uses the standard library's ``wave`` so every tool (and ``read_audio``) reads it back exactly.
    """
    p = os.fspath(path)
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
    data = np.asarray(audio)
    if data.ndim not in (1, 2) or (data.ndim == 2 and data.shape[1] == 0):
        raise MediaError(p, f"audio must be (S,) or (S, channels), got shape {data.shape}")
    if data.dtype != np.int16:
        if not np.issubdtype(data.dtype, np.floating):
            raise MediaError(p, f"audio must be float in [-1, 1] or int16, got {data.dtype}")
        if not np.all(np.isfinite(data)):
            raise MediaError(p, "audio contains NaN or infinite values")
        data = np.round(np.clip(data, -1.0, 1.0) * 32767.0).astype(np.int16)
    channels = 1 if data.ndim == 1 else data.shape[1]
    with media_errors(p, writing=True), atomic_path(p) as temp, wave.open(temp, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(np.ascontiguousarray(data, dtype="<i2").tobytes())
