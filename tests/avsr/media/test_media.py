"""Tests for avsr.media: real PyAV, real files made here, no mocks.

Every source video carries its frame index as an 8-bit black/white stripe code, so a test can read
back which source frame the 25 fps resampler picked. Fixture media are made once per session.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avsr.media import (
    AUDIO_RATE,
    VIDEO_FPS,
    AVClip,
    MediaError,
    MediaInfo,
    iter_audio,
    iter_frames,
    probe,
    read_audio,
    read_video,
    write_mp4,
    write_wav,
)
from avsr.media.timing import as_fraction, resample_by_time
from repo_paths import REPO

W, H = 64, 48  # small frames keep encoding fast; 8 stripes of 8 px code the frame index


# --------------------------------------------------------------------------- helpers


def has_encoder(name: str) -> bool:
    try:
        return av.Codec(name, "w").is_encoder
    except (av.error.FFmpegError, ValueError):
        return False


def code_frame(index: int) -> np.ndarray:
    """RGB frame whose 8 vertical stripes spell ``index`` in binary (MSB left)."""
    image = np.zeros((H, W, 3), np.uint8)
    for bit in range(8):
        if (index >> (7 - bit)) & 1:
            image[:, bit * 8 : (bit + 1) * 8] = 255
    return image


def read_code(image: np.ndarray) -> int:
    """Inverse of code_frame, robust to compression (uses each stripe's centre)."""
    value = 0
    for bit in range(8):
        centre = image[8 : H - 8, bit * 8 + 2 : bit * 8 + 6]
        value = value * 2 + int(centre.mean() > 127)
    return value


def codes(frames) -> list[int]:
    return [read_code(f) for f in frames]


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def best_correlation(x: np.ndarray, y: np.ndarray, max_lag: int = 64) -> tuple[float, int]:
    """Highest Pearson correlation of x against y over lags in [-max_lag, max_lag]."""
    n = min(len(x), len(y)) - 2 * max_lag
    ref = y[max_lag : max_lag + n]
    scores = []
    for lag in range(-max_lag, max_lag + 1):
        seg = x[max_lag + lag : max_lag + lag + n]
        scores.append((float(np.corrcoef(seg, ref)[0, 1]), lag))
    return max(scores)


def encode(
    path: Path,
    *,
    pts: list[int] | None = None,
    n_frames: int = 0,
    rate: Fraction = Fraction(25),
    time_base: Fraction | None = None,
    vcodec: str | None = "libx264",
    fmt: str | None = None,
    vopts: dict[str, str] | None = None,
    gop: int | None = None,
    audio: np.ndarray | None = None,  # (channels, samples) float32
    audio_rate: int = 44100,
    acodec: str = "aac",
    audio_offset: int = 0,  # first audio pts, in samples
    last_duration: int | None = None,
    rotation: int | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Write a test file with PyAV directly: coded frames at given pts, optional audio."""
    time_base = time_base or 1 / rate
    pts = pts if pts is not None else list(range(n_frames))
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as out:
        video = None
        if vcodec is not None:
            video = out.add_stream(vcodec, rate=rate)
            video.width, video.height, video.pix_fmt = W, H, "yuv420p"
            video.codec_context.time_base = time_base
            if gop:
                video.codec_context.gop_size = gop
            if vopts:
                video.options = vopts
            if rotation is not None:
                video.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            layout = "stereo" if audio.shape[0] == 2 else "mono"
            sound = out.add_stream(acodec, rate=audio_rate, layout=layout)
        for i, p in enumerate(pts if video is not None else []):
            frame = av.VideoFrame.from_ndarray(code_frame(i), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = p, time_base
            if last_duration is not None and i == len(pts) - 1:
                frame.duration = last_duration
            out.mux(video.encode(frame))
        if video is not None:
            out.mux(video.encode(None))
        if sound is not None:
            assert audio is not None
            step = 1024
            fmt_name = sound.codec_context.format.name
            for s in range(0, audio.shape[1], step):
                chunk = np.ascontiguousarray(audio[:, s : s + step])
                if fmt_name == "s16":
                    data = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
                    frame = av.AudioFrame.from_ndarray(data, format="s16", layout=sound.layout.name)
                elif fmt_name == "s16p":
                    frame = av.AudioFrame.from_ndarray(
                        (chunk * 32767).astype(np.int16), format="s16p", layout=sound.layout.name
                    )
                else:
                    frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=sound.layout.name)
                frame.sample_rate = audio_rate
                frame.pts, frame.time_base = audio_offset + s, Fraction(1, audio_rate)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.stack([left, right]).astype(np.float32)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def cut_half(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    return write_bytes(dst, data[: len(data) // 2])


# --------------------------------------------------------------------------- fixtures

NTSC = Fraction(30000, 1001)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def roundtrip(media_dir):
    """A 2 s clip written by write_mp4: coded frames and a noise waveform."""
    frames = np.stack([code_frame(i) for i in range(50)])
    rng = np.random.default_rng(0)
    # Band-limited noise (moving average) so AAC keeps most of it; unambiguous lag, unlike a sine.
    noise = np.convolve(rng.standard_normal(50 * 640 + 7), np.ones(8) / 8, mode="valid")
    audio = (0.5 * noise / np.abs(noise).max()).astype(np.float32)
    path = media_dir / "roundtrip.mp4"
    write_mp4(path, frames, audio)
    return path, frames, audio


@pytest.fixture(scope="session")
def ntsc_mp4(media_dir):
    """60 frames at 30000/1001 fps (2.002 s) + 44.1 kHz stereo AAC: 440 Hz left, 440 Hz right."""
    seconds = 60 / NTSC
    audio = stereo(tone(440, seconds, 44100, 0.6), tone(440, seconds, 44100, 0.2))
    return encode(media_dir / "ntsc.mp4", n_frames=60, rate=NTSC, audio=audio)


@pytest.fixture(scope="session")
def long_mp4(media_dir):
    """4 s, 25 fps, a keyframe every 10 frames (so seeking lands mid-file), 16 kHz mono audio."""
    audio = tone(300, 4.0, 16000)[None] * np.linspace(0.2, 1, 64000, dtype=np.float32)
    return encode(media_dir / "long.mp4", n_frames=100, gop=10, audio=audio, audio_rate=16000)


@pytest.fixture(scope="session")
def video_only_mp4(media_dir):
    return encode(media_dir / "silent.mp4", n_frames=25)


@pytest.fixture(scope="session")
def wav_44k_stereo(media_dir):
    """1 s, 44.1 kHz stereo 16-bit wav (stdlib), 1 kHz in both channels."""
    path = media_dir / "stereo44k.wav"
    x = tone(1000, 1.0, 44100, 0.5)
    data = (np.stack([x, x], axis=1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(data.tobytes())
    return path


# --------------------------------------------------------------------------- round trip


def test_roundtrip_frames_fps_duration(roundtrip):
    path, frames, _ = roundtrip
    clip = read_video(path)
    assert isinstance(clip, AVClip)
    assert clip.frames.shape == (50, H, W, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == VIDEO_FPS and clip.sample_rate == AUDIO_RATE
    assert clip.duration == pytest.approx(2.0)
    assert codes(clip.frames) == list(range(50))
    assert np.abs(clip.frames.astype(int) - frames).mean() < 3


def test_roundtrip_audio(roundtrip):
    path, _, audio = roundtrip
    clip = read_video(path)
    assert clip.audio is not None and clip.audio.dtype == np.float32
    assert len(clip.audio) == round(len(clip.frames) * AUDIO_RATE / VIDEO_FPS) == len(audio)
    corr, lag = best_correlation(clip.audio, audio)
    assert corr > 0.9
    assert abs(lag) <= 2, "AAC priming must be compensated (edit list), not shift the audio"
    alone = read_audio(path)
    assert len(alone) == len(audio)  # capped at the stream duration: AAC's tail padding dropped
    np.testing.assert_allclose(alone, clip.audio, atol=1e-6)


def test_probe(roundtrip, ntsc_mp4, wav_44k_stereo):
    info = probe(roundtrip[0])
    assert isinstance(info, MediaInfo)
    assert (info.has_video, info.has_audio, info.width, info.height) == (True, True, W, H)
    assert info.fps == pytest.approx(25.0) and info.duration == pytest.approx(2.0, abs=0.05)
    assert (info.sample_rate, info.channels, info.video_codec, info.audio_codec) == (16000, 1, "h264", "aac")
    ntsc = probe(ntsc_mp4)
    assert ntsc.fps == pytest.approx(29.97, abs=0.01) and (ntsc.sample_rate, ntsc.channels) == (44100, 2)
    wav = probe(wav_44k_stereo)
    assert not wav.has_video and wav.fps is None and wav.duration == pytest.approx(1.0)


def test_iter_frames_streams_same_frames(roundtrip):
    path, _, _ = roundtrip
    it = iter_frames(path)
    first = next(it)
    assert first.shape == (H, W, 3) and read_code(first) == 0
    rest = list(it)
    assert codes([first, *rest]) == list(range(50))


def test_repeated_frames_are_independent_arrays(roundtrip):
    frames = list(iter_frames(roundtrip[0], fps=50, end=0.1))  # each source frame twice
    assert codes(frames) == [0, 0, 1, 1, 2]
    frames[0][:] = 255
    assert read_code(frames[1]) == 0


def test_iter_audio_chunks_concatenate_to_read_audio(roundtrip):
    path = roundtrip[0]
    chunks = list(iter_audio(path))
    assert len(chunks) > 1 and all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), read_audio(path))


# --------------------------------------------------------------------------- rate conversion


def test_ntsc_to_25fps_picks_displayed_frames(ntsc_mp4):
    clip = read_video(ntsc_mp4)
    duration = Fraction(60) / NTSC  # 2.002 s
    expected_count = sum(1 for k in range(100) if Fraction(k, 25) < duration)  # 51
    assert len(clip.frames) == expected_count == 51
    # Output frame k (t = k/25) shows the last source frame with i * 1001/30000 <= t.
    assert codes(clip.frames) == [k * 1200 // 1001 for k in range(51)]


def test_ntsc_audio_44k_stereo_to_16k_mono(ntsc_mp4):
    clip = read_video(ntsc_mp4)
    assert clip.audio is not None
    assert len(clip.audio) == 51 * 640
    assert dominant_frequency(clip.audio[:32000], 16000) == pytest.approx(440, abs=3)
    # Mono is the channel mean: (0.6 + 0.2) / 2 = 0.4 amplitude.
    expected = tone(440, 2.0, 16000, 0.4)
    corr, _ = best_correlation(clip.audio[:32000], expected, max_lag=16)
    assert corr > 0.95
    assert np.sqrt(np.mean(clip.audio[1000:31000] ** 2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.1)
    # Past the source audio (2.002 s) up to the last frame's end (2.04 s): zero padding.
    assert np.abs(clip.audio[32100:]).max() < 1e-3


@pytest.mark.parametrize(
    ("fps", "expected"),
    [(50, [k // 2 for k in range(100)]), (12.5, [2 * k for k in range(25)])],
)
def test_output_rate_other_than_25(roundtrip, fps, expected):
    frames = list(iter_frames(roundtrip[0], fps=fps))
    assert codes(frames) == expected


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_variable_frame_rate(media_dir, container):
    pts_ms = [0, 30, 50, 110, 120, 200, 270, 280, 400, 410, 520, 700]
    path = encode(
        media_dir / f"vfr.{container}",
        pts=pts_ms,
        rate=Fraction(25),
        time_base=Fraction(1, 1000),
        last_duration=60,  # ignored: mp4 reports decode-order durations, so the last gap (180 ms) is used
    )
    frames = list(iter_frames(path))
    # Output k at 40k ms shows the last frame with pts <= 40k ms, up to the last frame's end (880 ms).
    expected = [max(i for i, p in enumerate(pts_ms) if p <= 40 * k) for k in range(22)]
    assert codes(frames) == expected


def test_webm_vp9_opus(media_dir):
    if not (has_encoder("libvpx-vp9") and has_encoder("libopus")):
        pytest.skip("PyAV's FFmpeg lacks libvpx-vp9 or libopus")
    audio = stereo(tone(523, 1.2, 48000), tone(523, 1.2, 48000))
    path = encode(
        media_dir / "clip.webm",
        n_frames=30,
        rate=Fraction(30),
        vcodec="libvpx-vp9",
        vopts={"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"},
        audio=audio,
        audio_rate=48000,
        acodec="libopus",
    )
    clip = read_video(path)
    assert len(clip.frames) == 25  # 1.0 s of video
    assert codes(clip.frames) == [k * 30 // 25 for k in range(25)]
    assert clip.audio is not None and len(clip.audio) == 16000
    assert dominant_frequency(clip.audio, 16000) == pytest.approx(523, abs=3)


def test_avi_mpeg4(media_dir):
    if not has_encoder("mpeg4"):
        pytest.skip("PyAV's FFmpeg lacks the mpeg4 encoder")
    path = encode(media_dir / "clip.avi", n_frames=20, rate=Fraction(20), vcodec="mpeg4", vopts={"qscale": "2"})
    frames = list(iter_frames(path))
    assert codes(frames) == [k * 20 // 25 for k in range(25)]


def test_audio_starting_late_is_padded(media_dir):
    """Audio whose first sample is at 0.5 s: read_video's audio has 0.5 s of leading zeros."""
    audio = tone(440, 1.5, 16000)[None]
    path = encode(media_dir / "late.mkv", n_frames=50, audio=audio, audio_rate=16000, audio_offset=8000, acodec="flac")
    clip = read_video(path)
    assert len(clip.frames) == 50 and clip.audio is not None and len(clip.audio) == 32000
    assert np.abs(clip.audio[:8000]).max() == 0.0
    onset = int(np.argmax(np.abs(clip.audio) > 0.05))
    assert abs(onset - 8000) <= 4
    assert codes(clip.frames) == list(range(50))


def test_video_starting_late_repeats_first_frame(media_dir):
    """Video first frame at 0.2 s, audio at 0: frames before 0.2 s show the first frame."""
    audio = tone(440, 1.0, 16000)[None]
    path = encode(
        media_dir / "late_video.mkv",
        pts=[5 + i for i in range(20)],  # 25 fps time base: first frame at 0.2 s
        audio=audio,
        audio_rate=16000,
        acodec="flac",
    )
    frames = list(iter_frames(path))
    assert codes(frames) == [0] * 5 + list(range(20))


@pytest.mark.parametrize("kind", ["wav", "flac", "m4a", "mp3"])
def test_audio_only_files_44k_stereo(media_dir, wav_44k_stereo, kind):
    if kind == "wav":
        path = wav_44k_stereo
    else:
        codec, fmt = {"flac": ("flac", "flac"), "m4a": ("aac", "ipod"), "mp3": ("libmp3lame", "mp3")}[kind]
        if not has_encoder(codec):
            pytest.skip(f"PyAV's FFmpeg lacks the {codec} encoder")
        x = tone(1000, 1.0, 44100)
        path = encode(media_dir / f"tone.{kind}", vcodec=None, fmt=fmt, audio=stereo(x, x), acodec=codec)
    audio = read_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # AAC pads its last frame; the mp4 header's duration trims it. mp3 relies on the encoder's
    # LAME/Xing tag for that (exact with PyAV's FFmpeg; allow one frame without it).
    tolerance = 1152 if kind == "mp3" else 0
    assert abs(len(audio) - 16000) <= tolerance
    assert dominant_frequency(audio[:16000], 16000) == pytest.approx(1000, abs=3)
    corr, _ = best_correlation(audio[:15000], tone(1000, 1.0, 16000)[:15000], max_lag=20)
    assert corr > 0.9


@pytest.mark.parametrize(("fmt", "acodec"), [("flac", "flac"), ("mp3", "libmp3lame")])
def test_cover_art_is_not_video(media_dir, fmt, acodec):
    """Album art is stored as a one-picture video stream flagged attached_pic: not a video."""
    if not (has_encoder(acodec) and has_encoder("mjpeg")):
        pytest.skip(f"PyAV's FFmpeg lacks {acodec} or mjpeg")
    path = media_dir / f"cover.{fmt}"
    x = tone(800, 1.0, 16000)
    with av.open(str(path), "w", format=fmt) as out:
        sound = out.add_stream(acodec, rate=16000, layout="mono")
        art = out.add_stream("mjpeg")
        art.width, art.height, art.pix_fmt = 32, 32, "yuvj420p"
        art.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        picture = picture.reformat(format="yuvj420p")
        picture.pts, picture.time_base = 0, Fraction(1, 90000)
        out.mux(art.encode(picture) + art.encode(None))
        for s in range(0, len(x), 1152):
            frame = av.AudioFrame.from_ndarray(x[None, s : s + 1152], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, s, Fraction(1, 16000)
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    with av.open(str(path)) as check:
        assert len(check.streams.video) == 1  # the art is there, as a video stream
    info = probe(path)
    assert info.has_audio and not info.has_video and info.width is None
    assert dominant_frequency(read_audio(path)[:15000], 16000) == pytest.approx(800, abs=3)
    with pytest.raises(MediaError, match="no video stream"):
        read_video(path)


def test_wav_resampling_is_exact_in_length_and_amplitude(wav_44k_stereo):
    audio = read_audio(wav_44k_stereo)
    assert len(audio) == 16000
    assert np.sqrt(np.mean(audio[500:15500] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_read_audio_window(wav_44k_stereo):
    full = read_audio(wav_44k_stereo)
    part = read_audio(wav_44k_stereo, start=0.25, end=0.5)
    assert len(part) == 4000
    np.testing.assert_allclose(part, full[4000:8000], atol=1e-4)


# --------------------------------------------------------------------------- windows and seeking


def test_iter_frames_window_with_seek_matches_full_decode(long_mp4):
    full = list(iter_frames(long_mp4))
    assert len(full) == 100
    part = list(iter_frames(long_mp4, start=2.2, end=3.0))  # past the 1 s seek margin: seeks
    assert len(part) == 20
    assert codes(part) == list(range(55, 75))
    for a, b in zip(part, full[55:75]):
        np.testing.assert_array_equal(a, b)


def test_read_video_window_audio_aligned(long_mp4):
    full = read_video(long_mp4)
    part = read_video(long_mp4, start=2.2, end=3.0)
    assert len(part.frames) == 20 and part.audio is not None and len(part.audio) == 20 * 640
    assert codes(part.frames) == list(range(55, 75))
    reference = full.audio[35200 : 35200 + 20 * 640]  # 2.2 s * 16 kHz
    corr, lag = best_correlation(part.audio, reference, max_lag=8)
    assert corr > 0.99 and lag == 0


def test_window_beyond_end_is_empty(roundtrip):
    assert list(iter_frames(roundtrip[0], start=5.0)) == []
    with pytest.raises(MediaError, match="no video frames"):
        read_video(roundtrip[0], start=5.0)


def test_window_arguments_are_checked(roundtrip):
    with pytest.raises(ValueError, match="end must be greater"):
        iter_frames(roundtrip[0], start=1.0, end=0.5)
    with pytest.raises(ValueError, match="fps must be positive"):
        iter_frames(roundtrip[0], fps=0)


# --------------------------------------------------------------------------- resampling logic


def test_resample_by_time_rules():
    items = [
        (Fraction(t), None, name)
        for t, name in [(Fraction(1, 10), "a"), (Fraction(3, 10), "b"), (Fraction(4, 10), "c")]
    ]
    # t = 0.0 (before first) -> a; 0.1 -> a; 0.2 -> a; 0.3 -> b (exact equality picks b); 0.4 -> c
    # The last item lasts the last gap (0.1 s): output stops before 0.5.
    assert list(resample_by_time(items, Fraction(10))) == ["a", "a", "a", "b", "c"]
    assert list(resample_by_time(items, Fraction(10), start=Fraction(1, 5), end=Fraction(2, 5))) == ["a", "b"]
    # Out-of-order timestamps never move time backwards: c replaces b at 0.2 s.
    jumbled = [(Fraction(0), None, "a"), (Fraction(2, 10), None, "b"), (Fraction(1, 10), None, "c")]
    assert list(resample_by_time(jumbled, Fraction(10))) == ["a", "a", "c", "c"]
    # The last gap wins over a (often misreported) last duration; a lone item uses its duration.
    with_duration = [(Fraction(0), None, "a"), (Fraction(1, 10), Fraction(3, 10), "b")]
    assert list(resample_by_time(with_duration, Fraction(10))) == ["a", "b"]
    assert list(resample_by_time([(Fraction(0), Fraction(3, 10), "a")], Fraction(10))) == ["a"] * 3
    assert (
        list(resample_by_time([(Fraction(0), None, "a")], Fraction(10), default_duration=Fraction(1, 5))) == ["a"] * 2
    )
    assert list(resample_by_time([], Fraction(25))) == []
    # Millisecond timestamps (Matroska) of 30 frames at 30 fps: the last gap rounds to 34 ms, so
    # the video seems to end at 1.001 s; the 1 ms slack keeps it at 25 frames, not 26.
    ms = [(Fraction(round(i * 1000 / 30), 1000), None, i) for i in range(30)]
    assert list(resample_by_time(ms, Fraction(25))) == [k * 30 // 25 for k in range(25)]


def test_as_fraction_recovers_ntsc():
    assert as_fraction(30000 / 1001) == NTSC
    assert as_fraction(25.0) == 25 and as_fraction(np.float32(12.5)) == Fraction(25, 2)
    with pytest.raises(ValueError):
        as_fraction(float("nan"))


# --------------------------------------------------------------------------- writing


def test_write_grayscale_crf0_is_near_lossless(media_dir):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, size=(10, 32, 48), dtype=np.uint8)
    path = media_dir / "gray.mp4"
    write_mp4(path, gray, crf=0)
    frames = read_video(path, with_audio=False).frames
    assert frames.shape == (10, 32, 48, 3)
    # yuv420p's limited luma range (16-235) rounds some levels by one; nothing else is lost.
    assert np.abs(frames.astype(int) - gray[..., None]).max() <= 1
    assert np.array_equal(frames[..., 0], frames[..., 2])


def x264_settings(path) -> str:
    """The settings line x264 stores in the stream it writes ("... options: cabac=1 ref=3 ...")."""
    data = path.read_bytes()
    start = data.index(b"options: ")
    return data[start : data.index(b"\0", start)].decode("ascii")


def test_lossless_writing_is_fast_to_decode_with_the_same_pixels(media_dir):
    """crf 0 decodes to the same pixels whatever x264's options, so write_mp4 takes fast ones (no
    CABAC, one reference frame); lossy writing keeps "medium" (CABAC, 3 references)."""
    rng = np.random.default_rng(3)
    gray = np.clip(rng.normal(128, 40, size=(12, 48, 48)), 0, 255).astype(np.uint8)
    fast, lossy, medium = media_dir / "fast.mp4", media_dir / "lossy.mp4", media_dir / "medium.mp4"
    write_mp4(fast, gray, crf=0)
    write_mp4(lossy, gray, crf=18)
    write_mp4(medium, gray, crf=0, x264={"preset": "medium"})
    assert "cabac=0 ref=1 " in x264_settings(fast)
    assert "cabac=1 ref=3 " in x264_settings(lossy) and "cabac=1 ref=3 " in x264_settings(medium)
    assert np.array_equal(read_video(fast, with_audio=False).frames, read_video(medium, with_audio=False).frames)


def test_write_odd_size_is_padded_to_even(media_dir):
    frames = np.stack([np.full((33, 47, 3), 40 * i, np.uint8) for i in range(5)])
    frames[:, :, -1] = 250  # the last column is repeated into the padding
    path = media_dir / "odd.mp4"
    write_mp4(path, frames, crf=0)
    back = read_video(path, with_audio=False).frames
    assert back.shape == (5, 34, 48, 3)
    assert np.abs(back[:, :33, :46].astype(int) - frames[:, :, :46]).max() <= 3
    assert back[:, :, 47].mean() > 240


def test_write_streams_an_iterable_and_other_fps(media_dir):
    path = media_dir / "iterable.mp4"
    write_mp4(path, (code_frame(i) for i in range(30)), fps=NTSC, crf=10)
    info = probe(path)
    assert info.fps == pytest.approx(29.97, abs=0.01) and not info.has_audio
    assert codes(iter_frames(path, fps=NTSC)) == list(range(30))


def test_write_mp4_rejects_bad_frames(media_dir):
    path = media_dir / "bad_frames.mp4"
    with pytest.raises(MediaError, match="uint8"):
        write_mp4(path, np.zeros((3, 16, 16, 3), np.float32))
    with pytest.raises(MediaError, match="no frames"):
        write_mp4(path, np.zeros((0, 16, 16, 3), np.uint8))
    with pytest.raises(MediaError, match="shape"):
        write_mp4(path, np.zeros((3, 16, 16, 4), np.uint8))
    with pytest.raises(MediaError, match="NaN"):
        write_mp4(path, np.zeros((3, 16, 16), np.uint8), audio=np.full(100, np.nan, np.float32))
    assert not path.exists()
    assert not [p for p in media_dir.iterdir() if p.name.startswith(".bad_frames")]


def test_write_wav_roundtrip(media_dir):
    x = tone(440, 0.5, 16000, 0.8)
    path = media_dir / "out" / "sub" / "speech.wav"  # parent directories are created
    write_wav(path, x)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 8000)
    np.testing.assert_allclose(read_audio(path), x, atol=1.5 / 32768)
    assert probe(path).audio_codec == "pcm_s16le"
    # Clipping rather than wrap-around for out-of-range floats; int16 passes through.
    write_wav(path, np.array([2.0, -2.0, 0.0], np.float32))
    np.testing.assert_allclose(read_audio(path), [32767 / 32768, -32767 / 32768, 0.0], atol=1e-6)
    write_wav(path, np.array([1, -2, 300], np.int16), sample_rate=8000)
    np.testing.assert_allclose(read_audio(path, sample_rate=8000), np.array([1, -2, 300]) / 32768, atol=1e-7)


def test_failed_write_keeps_old_file_and_leaves_no_temp(media_dir):
    folder = media_dir / "atomic"
    folder.mkdir()
    path = folder / "clip.mp4"
    write_mp4(path, np.zeros((5, 16, 16), np.uint8))
    before = path.read_bytes()

    def frames_then_crash():
        for i in range(5):
            yield np.full((16, 16), 10 * i, np.uint8)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_mp4(path, frames_then_crash())
    assert path.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mp4"]


def test_killed_writer_never_leaves_the_final_name(media_dir):
    folder = media_dir / "killed"
    folder.mkdir()
    target = folder / "slow.mp4"
    script = (
        "import time, numpy as np\n"
        "from avsr.media import write_mp4\n"
        "def frames():\n"
        "    i = 0\n"
        "    while True:\n"
        "        i += 1\n"
        "        if i > 5: time.sleep(0.05)\n"
        "        yield np.full((16, 16), i % 256, np.uint8)\n"
        f"write_mp4({str(target)!r}, frames())\n"
    )
    repo = str(REPO)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 30
        while not any(p.name.startswith(".slow.mp4.") for p in folder.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "writer never started"
            time.sleep(0.05)
        time.sleep(0.3)  # mid-write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not target.exists()
    assert [p for p in folder.iterdir() if p.name.startswith(".slow.mp4.")]  # it was killed mid-write


def test_rotation_is_applied(media_dir):
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display rotation")
    path = encode(media_dir / "rotated.mp4", n_frames=3, rotation=90)
    frames = list(iter_frames(path))
    assert frames[0].shape == (W, H, 3)  # shown upright as a portrait frame
    # Rotating 90 degrees counter-clockwise (as players do) moves stripe columns to rows.
    np.testing.assert_array_equal(np.rot90(frames[2], -1).shape, (H, W, 3))
    assert read_code(np.rot90(frames[2], -1)) == 2


# --------------------------------------------------------------------------- bad input


def assert_one_line(err: pytest.ExceptionInfo[MediaError], path: Path, problem: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(path) + ": "), message
    assert problem in message, message
    assert path.name in message
    assert isinstance(err.value, ValueError)


@pytest.fixture(scope="session")
def bad_files(media_dir, roundtrip, long_mp4):
    folder = media_dir / "bad"
    folder.mkdir()
    faststart = folder / "faststart_source.mp4"
    audio = tone(440, 4.0, 16000)[None]
    encode(faststart, n_frames=100, audio=audio, audio_rate=16000, container_options={"movflags": "faststart"})
    webm = None
    if has_encoder("libvpx-vp9"):
        webm = encode(
            folder / "webm_source.webm",
            n_frames=100,
            vcodec="libvpx-vp9",
            vopts={"deadline": "realtime", "cpu-used": "8"},
        )
    return {
        "missing": folder / "missing.mp4",
        "empty": write_bytes(folder / "empty.mp4", b""),
        "text": write_bytes(folder / "notes.txt", b"hello\nthis is a transcript\n"),
        "binary": write_bytes(folder / "notes.dat", b"not media at all " * 20),
        "cut": cut_half(long_mp4, folder / "cut.mp4"),
        "cut_faststart": cut_half(faststart, folder / "cut_faststart.mp4"),
        "cut_webm": None if webm is None else cut_half(webm, folder / "cut.webm"),
        "folder": folder,
    }


def test_missing_file(bad_files):
    path = bad_files["missing"]
    for call in (probe, read_video, read_audio, iter_frames, iter_audio):
        with pytest.raises(MediaError) as err:
            call(path)  # iterators check at call time, before the first next()
        assert_one_line(err, path, "file not found")


def test_empty_file(bad_files):
    with pytest.raises(MediaError) as err:
        read_video(bad_files["empty"])
    assert_one_line(err, bad_files["empty"], "empty file")


@pytest.mark.parametrize("name", ["text", "binary"])
def test_not_media(bad_files, name):
    path = bad_files[name]
    for call in (probe, read_video, read_audio):
        with pytest.raises(MediaError) as err:
            call(path)
        assert_one_line(err, path, "not a media file")


def test_directory(bad_files):
    with pytest.raises(MediaError) as err:
        read_audio(bad_files["folder"])
    assert_one_line(err, bad_files["folder"], "is a directory")


def test_truncated_mp4_without_moov(bad_files):
    path = bad_files["cut"]
    for call in (probe, read_video, read_audio):
        with pytest.raises(MediaError) as err:
            call(path)
        assert_one_line(err, path, "truncated or corrupt (mp4 index 'moov' missing")


def test_truncated_faststart_mp4_is_caught_after_decoding(bad_files):
    """moov first: the header opens, the data stops half way; the reader compares with the header."""
    path = bad_files["cut_faststart"]
    probe(path)  # the header alone is intact
    for call in (read_video, read_audio, lambda p: list(iter_frames(p))):
        with pytest.raises(MediaError) as err:
            call(path)
        assert_one_line(err, path, "truncated or corrupt")


def test_truncated_webm(bad_files):
    path = bad_files["cut_webm"]
    if path is None:
        pytest.skip("PyAV's FFmpeg lacks libvpx-vp9")
    with pytest.raises(MediaError) as err:
        read_video(path, with_audio=False)
    assert_one_line(err, path, "truncated or corrupt")


def test_no_audio_stream(video_only_mp4):
    for call in (read_audio, read_video, iter_audio):
        with pytest.raises(MediaError) as err:
            call(video_only_mp4)
        assert_one_line(err, video_only_mp4, "no audio stream")
    clip = read_video(video_only_mp4, with_audio=False)
    assert clip.audio is None and len(clip.frames) == 25


def test_no_video_stream(wav_44k_stereo):
    for call in (read_video, iter_frames):
        with pytest.raises(MediaError) as err:
            call(wav_44k_stereo)
        assert_one_line(err, wav_44k_stereo, "no video stream")


def test_media_error_pickles_for_worker_pools():
    err = MediaError("clip.mp4", "no audio\nstream")
    assert str(err) == "clip.mp4: no audio stream"
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.path, back.problem) == (
        MediaError,
        str(err),
        "clip.mp4",
        "no audio stream",
    )


def test_write_into_unwritable_place(media_dir, roundtrip):
    blocker = media_dir / "a_file"
    blocker.write_bytes(b"x")
    path = blocker / "clip.wav"  # parent is a regular file
    with pytest.raises(MediaError) as err:
        write_wav(path, np.zeros(10, np.float32))
    assert_one_line(err, path, "cannot write")
    assert os.path.isfile(blocker)


# --------------------------------------------------------------------------- paths stay inside roots


@pytest.mark.parametrize("many", [False, True])
def test_inside_refuses_paths_that_leave_the_root(tmp_path, many):
    """``inside`` and ``Confined`` (which caches each folder's real path) agree."""
    from avsr.media.paths import Confined, OutsideRootError
    from avsr.media.paths import inside as one

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (root / "link").symlink_to(tmp_path / "secret")
    (root / "inner").symlink_to(root / "sub")
    (root / "out").symlink_to(tmp_path)
    (root / "sub" / "file").write_text("y")
    (root / "sub" / "away").symlink_to(tmp_path / "secret")
    confined = Confined(root)

    def inside(base, relative, follow_links=True):
        return confined.inside(relative) if many and follow_links else one(base, relative, follow_links=follow_links)

    assert inside(root, "sub/file") == (root / "sub" / "file").resolve()
    for hostile in ["out/secret", "sub/away", "inner/away"]:  # the folder's cached, the file's not
        with pytest.raises(OutsideRootError):
            inside(root, hostile)
    assert inside(root, "sub/a.mp4") == (root / "sub" / "a.mp4").resolve()
    assert inside(root, "inner/../sub/b") == (root / "sub" / "b").resolve()
    assert inside(root, root / "sub") == (root / "sub").resolve()
    for hostile in ["../secret", "sub/../../secret", "/etc/passwd", "link", "a\x00b"]:
        with pytest.raises(OutsideRootError) as info:
            inside(root, hostile)
        assert "\n" not in str(info.value) and ("outside" in str(info.value) or "NUL" in str(info.value))
    assert pickle.loads(pickle.dumps(info.value)).problem == info.value.problem
    # Text-only mode: the same refusals of the text, links followed by nobody.
    assert inside(root, "link", follow_links=False) == Path(os.path.abspath(root / "link"))
    for hostile in ["../secret", "sub/../../secret", "/etc/passwd"]:
        with pytest.raises(OutsideRootError):
            inside(root, hostile, follow_links=False)


# --------------------------------------------------------------------------- FFmpeg stays quiet


@pytest.fixture(scope="session")
def broken_media(media_dir, roundtrip) -> dict[str, Path]:
    """A garbage .mkv (Matroska's magic, then noise: FFmpeg's demuxer logs about it) and an mp4
    cut in half (its 'moov' index lost: FFmpeg logs 'moov atom not found')."""
    folder = media_dir / "broken"
    folder.mkdir()
    noise = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    return {
        "garbage.mkv": write_bytes(folder / "garbage.mkv", b"\x1a\x45\xdf\xa3" + noise),
        "truncated.mp4": cut_half(roundtrip[0], folder / "truncated.mp4"),
    }


@pytest.mark.parametrize("name", ["garbage.mkv", "truncated.mp4"])
def test_decode_prints_our_one_line_and_nothing_from_ffmpeg(broken_media, micro_model_dir, name):
    """Run as a user does (a subprocess, so FFmpeg's C-level stderr is captured too): importing
    torchvision turns FFmpeg's logging on, and its lines must not join ours."""
    path = broken_media[name]
    done = subprocess.run(
        [sys.executable, "-m", "avsr.cli.decode", str(path), "--model", str(micro_model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0] and ("truncated or corrupt" in lines[0] or "not a media file" in lines[0]), lines[0]
