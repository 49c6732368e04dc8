"""avsr-decode --live: a file played at real-time pace is printed segment by segment, with latency."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avsr.cli import decode as decode_cli

SUMMARY = re.compile(
    r"live (ended|stopped \(Ctrl-C\)): (\d+) segments in ([\d.]+) s of media; latency from a segment's end to its "
    r"text: median ([\d.]+) s, 95th percentile ([\d.]+) s; real-time factor ([\d.]+)"
)
LINE = re.compile(r"^\[(\d\d):(\d\d\.\d\d)-(\d\d):(\d\d\.\d\d)\] \S")


def _seconds(minutes: str, seconds: str) -> float:
    return 60 * int(minutes) + float(seconds)


def test_segments_come_in_order_with_their_latency(micro_model_dir, long_video, capsys):
    started = time.monotonic()
    assert decode_cli.main(["--model", str(micro_model_dir), "--live", str(long_video), "--realtime"]) == 0
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) >= 2 and all(LINE.match(line) for line in lines), out
    times = [(_seconds(*m.groups()[:2]), _seconds(*m.groups()[2:])) for m in map(LINE.match, lines)]
    assert all(a < b for a, b in times) and all(b1 <= a2 for (_, b1), (a2, _) in zip(times, times[1:]))
    summary = SUMMARY.search(err)
    assert summary, err
    assert summary.group(1) == "ended" and int(summary.group(2)) == len(lines)
    media = float(summary.group(3))
    assert 6 < media < 9 and elapsed >= media - 0.5  # played at its own pace
    assert 0 <= float(summary.group(4)) <= float(summary.group(5)) < 30


def test_json_lines_and_subtitles(micro_model_dir, long_video, tmp_path, capsys):
    srt = tmp_path / "live.srt"
    args = ["--model", str(micro_model_dir), "--live", str(long_video), "--json", "--srt", str(srt)]
    assert decode_cli.main(args) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records and all(r["latency"] >= 0 and r["start"] < r["end"] and r["text"] for r in records)
    assert srt.read_text().startswith("1\n00:00:")


@pytest.fixture(scope="module")
def longer_video(long_video, tmp_path_factory) -> Path:
    """The long video four times over (about 29 s): a Ctrl-C after the first segment comes long
    before its end, however slow the machine."""
    import numpy as np

    from avsr.media import read_video, write_mp4

    clip = read_video(long_video)
    path = tmp_path_factory.mktemp("longer") / "longer.mp4"
    write_mp4(path, np.concatenate([clip.frames] * 4), np.concatenate([clip.audio] * 4))
    return path


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_ends_it_cleanly(micro_model_dir, longer_video, stop):
    """Also when started with SIGINT ignored, as a script's background job is."""
    process = subprocess.Popen(
        [sys.executable, "-m", "avsr.cli.decode", "--model", str(micro_model_dir), "--live", str(longer_video)]
        + ["--realtime"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    first = process.stdout.readline()  # a segment printed: the model is loaded and the source playing
    assert LINE.match(first), first
    process.send_signal(stop)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    summary = SUMMARY.search(err)
    assert summary and summary.group(1) == "stopped (Ctrl-C)", err
    assert int(summary.group(2)) == 1 + len(out.splitlines()) and float(summary.group(3)) < 25
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--live", "x.mp4", "--workers", "2"], "--live reads one source: drop --workers"),
        (["--live", "x.mp4", "y.mp4", "--out-dir", "o"], "--live reads one source: drop files or folders, --out-dir"),
        (["x.mp4", "--realtime"], "--realtime plays a file at its pace: give it with --live FILE"),
        (
            ["--live", "rtsp://camera/1", "--realtime"],
            "--realtime plays a file at its pace; rtsp://camera/1 is a stream, live already",
        ),
    ],
)
def test_bad_live_invocations_are_one_line(micro_model_dir, args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        decode_cli.main(["--model", str(micro_model_dir), *args])
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip() == f"avsr-decode: error: {message}"


def test_a_source_that_cannot_be_opened_is_one_line(micro_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        decode_cli.main(["--model", str(micro_model_dir), "--live", str(tmp_path / "gone.mp4")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and "\n" not in err and "no such file, camera (/dev/videoN) or stream URL" in err
