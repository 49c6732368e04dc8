"""Live sources: a file read as it arrives gives the frames and audio the file readers give, on one clock."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from avsr.media import MediaError, read_audio, read_video
from avsr.media.live import open_live, source_kind


def test_a_file_read_live_is_the_file(face_video: Path):
    chunks = list(open_live(str(face_video)))
    video = [c for c in chunks if c.kind == "video"]
    audio = [c for c in chunks if c.kind == "audio"]
    frames = read_video(face_video, with_audio=False).frames
    assert [c.time for c in video] == pytest.approx([k / 25 for k in range(len(frames))])
    assert np.array_equal(np.stack([c.data for c in video]), frames)
    samples = np.concatenate([c.data for c in audio])
    expected = read_audio(face_video)
    assert len(samples) >= len(expected) and np.allclose(samples[: len(expected)], expected, atol=1e-5)
    assert [c.time for c in audio] == pytest.approx(np.cumsum([0] + [len(c.data) for c in audio[:-1]]) / 16000)


def test_realtime_plays_the_file_at_its_pace(face_video: Path):
    started = time.monotonic()
    last = None
    for chunk in open_live(str(face_video), realtime=True):
        assert time.monotonic() - started >= chunk.time - 0.01  # never ahead of the clock
        last = chunk
    assert time.monotonic() - started >= 1.5 and last is not None  # 1.6 s of video


def test_stop_ends_the_iteration(face_video: Path):
    stream = open_live(str(face_video))
    seen = 0
    for _ in stream:
        seen += 1
        stream.stop()
    assert 1 <= seen < 20


@pytest.mark.parametrize(
    ("source", "kind"),
    [("/dev/video0", "camera"), ("rtsp://cam/1", "stream"), ("HTTP://x/a.m3u8", "stream"), ("talk.mp4", "file")],
)
def test_source_kinds(source, kind):
    assert source_kind(source) == kind


def test_a_missing_source_is_one_line(tmp_path: Path):
    with pytest.raises(MediaError) as info:
        open_live(str(tmp_path / "none.mp4"))
    assert "no such file, camera (/dev/videoN) or stream URL" in str(info.value) and "\n" not in str(info.value)
