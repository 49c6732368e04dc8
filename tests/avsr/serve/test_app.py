"""avsr-serve's HTTP API on a real server (this process, a free port) with the micro model at random
initialisation: what it answers, refuses and serves, not what a good model would say."""

from __future__ import annotations

import json
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import quote, urlsplit

import cv2
import numpy as np
import pytest

from avsr.cli import decode as decode_cli
from serve_http import http, http_json

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def transcribed(server, serve_clip: Path) -> dict:
    """``POST /transcribe?wait=1`` of the clip: the finished job."""
    url, _ = server
    status, job = http_json(f"{url}/transcribe?name={quote('my clip.mp4')}&wait=1", serve_clip.read_bytes())
    assert status == 200, job
    return job


def test_transcribe_answers_avsr_decodes_json_and_every_modality(transcribed, micro_model_dir, serve_clip, capsys):
    job = transcribed
    assert job["state"] == "done" and job["error"] is None and job["progress"] == 1.0
    result = job["result"]
    assert result["name"] == "my clip.mp4" and result["main"] == "av"
    assert set(result["modalities"]) == {"a", "v", "av"}
    assert {m: r["modality"] for m, r in result["modalities"].items()} == {"a": "a", "v": "v", "av": "av"}
    # the API's document is avsr-decode's (the same options: greedy, --speakers all), but for the path
    assert decode_cli.main(["--model", str(micro_model_dir), "--quiet", "--decoder", "greedy", "--speakers", "all", "--json", str(serve_clip)]) == 0  # fmt: skip
    cli = json.loads(capsys.readouterr().out)
    cli["files"][0]["path"] = "my clip.mp4"
    assert result["decode"] == cli
    assert result["modalities"]["av"] == cli["files"][0]
    words = [w for s in result["decode"]["files"][0]["segments"] for w in s["words"]]
    assert words and all(0 <= w["start"] < w["end"] for w in words)
    # one box per video frame for the overlay, and the crops' tile times within the clip
    (face,) = result["faces"]
    frames = round(25 * max(s["end"] for s in result["modalities"]["av"]["segments"]))
    assert face["label"] == "S1" and len(face["boxes"]) == frames
    left, top, right, bottom = next(b for b in face["boxes"] if b)
    assert 0 <= left < right and 0 <= top < bottom
    times = result["strips"]["S1"]["times"]
    assert times == sorted(times) and 0 == times[0] < times[-1] <= frames / 25


def test_the_upload_is_deleted_after_its_job(transcribed, server):
    _, state = server
    assert state.uploads.is_dir() and list(state.uploads.iterdir()) == []


def test_mouth_strip_is_a_png_of_the_crops(transcribed, server):
    url, _ = server
    status, headers, body = http(f"{url}/jobs/{transcribed['id']}/strip/S1.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    strip = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    tiles = len(transcribed["result"]["strips"]["S1"]["times"])
    assert strip.shape == (96, 96 * tiles)  # 96 px grey crops, side by side
    assert strip.std() > 10  # a face's mouth, not a blank
    assert http(f"{url}/jobs/{transcribed['id']}/strip/S9.png")[0] == 404


def test_downloads_srt_vtt_and_the_json(transcribed, server):
    url, _ = server
    base = f"{url}/jobs/{transcribed['id']}/download"
    status, headers, srt = http(f"{base}.srt")
    assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="my clip.srt"'
    cues = srt.decode().strip().split("\n\n")
    words = [w["word"] for w in transcribed["result"]["modalities"]["av"]["segments"][0]["words"]]
    assert cues[0].startswith("1\n00:00:0") and " --> " in cues[0]
    assert " ".join(c.split("\n", 2)[2] for c in cues).replace("[S1] ", "").split() == words
    assert http(f"{base}.vtt")[2].decode().startswith("WEBVTT\n\n")
    assert json.loads(http(f"{base}.json")[2]) == transcribed["result"]["decode"]
    assert http(f"{base}.exe")[0] == 404


def test_noise_redecodes_the_heard_modalities(transcribed, server):
    url, _ = server
    status, job = http_json(f"{url}/jobs/{transcribed['id']}/noise?kind=white&snr=-10&wait=1", b"")
    assert status == 200, job
    noisy, clean = job["result"]["modalities"], transcribed["result"]["modalities"]
    assert job["result"]["kind"] == "white" and job["result"]["snr_db"] == -10
    assert noisy["v"]["text"] == clean["v"]["text"] and noisy["v"]["changed"] == 0  # the lips hear nothing
    for heard in ("a", "av"):  # the random model may say the same words, but not with the same score
        assert noisy[heard]["result"]["segments"][0]["score"] != clean[heard]["segments"][0]["score"]
        assert (noisy[heard]["changed"] > 0) == (noisy[heard]["text"] != clean[heard]["text"])
    status, job = http_json(f"{url}/jobs/{transcribed['id']}/noise?kind=pink&snr=0", b"")
    assert status == 400 and job["error"] == "noise kind must be one of babble, white, got 'pink'"
    status, job = http_json(f"{url}/jobs/{transcribed['id']}/noise?kind=babble&snr=-40", b"")
    assert status == 400 and "SNR must be between -10 and 30 dB" in job["error"]


def test_a_broken_file_fails_its_job_with_one_line(server, serve_clip):
    url, state = server
    data = serve_clip.read_bytes()[:3000]  # the start of an mp4, cut off
    status, job = http_json(f"{url}/transcribe?name=cut.mp4&wait=1", data)
    assert status == 422 and job["state"] == "failed"
    assert job["error"].startswith("cut.mp4: truncated or corrupt") and "\n" not in job["error"]
    assert str(state.work_dir) not in job["error"]  # the upload's own name, not the server's file
    assert list(state.uploads.iterdir()) == []


def test_an_upload_over_the_limit_gets_413(server):
    url, state = server
    status, job = http_json(f"{url}/transcribe?name=big.mp4", b"\0" * (state.max_upload_bytes + 1))
    assert status == 413
    assert job["error"] == "big.mp4: 2.0 MB is over the upload limit of 2 MB (avsr-serve --max-upload-mb)"
    status, job = http_json(f"{url}/transcribe?name=empty.mp4", b"")
    assert status == 400 and job["error"] == "empty.mp4: the upload is empty"


def _raw_get(url: str, path: str) -> int:
    """The status of GET ``path`` sent as it is (urllib would not send ``..`` unresolved)."""
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", path)
    status = connection.getresponse().status
    connection.close()
    return status


@pytest.mark.parametrize(
    "path",
    ["/assets/../app.py", "/assets/%2e%2e/app.py", "/assets/..%2fapp.py", "/assets//etc/passwd", "/assets/nope.js"],
)
def test_nothing_is_served_from_outside_the_assets(server, path):
    url, _ = server
    assert _raw_get(url, path) == 404


def test_the_page_its_assets_and_config(server, micro_model_dir):
    url, _ = server
    status, headers, page = http(url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="/assets/app.js"' in page
    assert http(url + "/assets/app.js")[1]["Content-Type"].startswith("text/javascript")
    status, config = http_json(url + "/config")
    assert config["model"] == str(micro_model_dir) and config["modalities"] == ["a", "v", "av"]
    assert http(url + "/jobs/999")[0] == 404
