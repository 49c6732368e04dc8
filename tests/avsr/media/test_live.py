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


def test_a_stream_url_is_read_as_it_is_served(face_video: Path):
    """An http:// source (here a server on the loopback) goes through FFmpeg's network input."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(face_video.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{face_video.name}"
        assert source_kind(url) == "stream"
        frames = [c.data for c in open_live(url) if c.kind == "video"]
    finally:
        server.shutdown()
    assert np.array_equal(np.stack(frames), read_video(face_video, with_audio=False).frames)


def test_a_stream_that_does_not_answer_is_one_line():
    import socket

    with socket.socket() as probe_socket:  # a port nobody listens on
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    with pytest.raises(MediaError) as info:
        open_live(f"http://127.0.0.1:{port}/talk.mp4")
    assert "\n" not in str(info.value) and f"{port}/talk.mp4: cannot open the stream (" in str(info.value)
