"""avsr-serve end to end: the command started as a process on a free port, spoken to over HTTP, and
its page driven in a real browser (Debian's chromium through playwright; skipped, saying why,
where either is missing). The model is the micro architecture at random initialisation: the
checks are on what the page does with a transcript, not on its words.

``AVSR_SCREENSHOT=1`` also saves the page as docs/images/serve.png (scripts/serve_screenshot.py
makes the README's from a trained model with the same steps)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from repo_paths import REPO
from serve_http import http_json

pytestmark = pytest.mark.usefixtures("one_thread")
LISTENING = re.compile(r"on (http://127\.0\.0\.1:\d+)/")


@pytest.fixture(scope="module")
def served(micro_model_dir: Path, tmp_path_factory):
    """``python -m avsr.cli.serve --port 0``: yields (url, process, work dir, stderr lines)."""
    work = tmp_path_factory.mktemp("serve_cli")
    command = [sys.executable, "-m", "avsr.cli.serve", "--model", str(micro_model_dir), "--port", "0"]
    command += ["--decoder", "greedy", "--max-upload-mb", "5", "--work-dir", str(work)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
    deadline = time.monotonic() + 120
    while not any(LISTENING.search(line) for line in lines):
        assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.1)
    url = next(LISTENING.search(line).group(1) for line in lines if LISTENING.search(line))
    yield url, process, work, lines
    if process.poll() is None:
        process.kill()


def test_the_command_serves_the_api(served, lrs2_corpus):
    url, _, work, _ = served
    clip = sorted(lrs2_corpus.glob("main/*/*.mp4"))[0]
    status, job = http_json(f"{url}/transcribe?name=talk.mp4&wait=1", clip.read_bytes())
    assert status == 200 and job["state"] == "done"
    files = job["result"]["decode"]["files"]
    assert files[0]["path"] == "talk.mp4" and files[0]["segments"][0]["words"]
    assert list((work / "uploads").iterdir()) == []


@pytest.fixture(scope="module")
def page(served):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium: apt-get install chromium (scripts/setup.sh does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no playwright: pip install playwright (the test extra of pyproject.toml)")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.goto(served[0] + "/")
        page.wait_for_selector("body[data-ready='1']")
        yield page
        browser.close()


def _active(page) -> int:
    return page.evaluate(
        "() => { const a = document.querySelector('.word.active'); return a ? +a.dataset.index : -1; }"
    )


def _seek(page, seconds: float) -> None:
    page.evaluate(
        """t => new Promise(done => { const v = document.getElementById('player');
           v.addEventListener('seeked', () => requestAnimationFrame(done), {once: true}); v.currentTime = t; })""",
        seconds,
    )


def test_the_page_transcribes_an_upload_and_lights_each_word(page, lrs2_corpus, tmp_path):
    clip = sorted(lrs2_corpus.glob("main/*/*.mp4"))[0]
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#transcript .word", timeout=60_000)
    page.wait_for_function("() => document.getElementById('player').readyState >= 2")
    assert page.inner_text("#status").endswith("done") and page.is_hidden("#error")
    words = page.eval_on_selector_all(".word", "els => els.map(e => [e.textContent, +e.dataset.start, +e.dataset.end])")
    assert len(words) >= 2 and all(0 <= start < end for _, start, end in words)
    # the highlight follows the playhead: each word lit at its own time, none before the first
    for index in (0, len(words) - 1):
        _seek(page, (words[index][1] + words[index][2]) / 2)
        assert _active(page) == index
    # ... and moves on while the video plays
    _seek(page, 0.0)
    page.evaluate("() => { const v = document.getElementById('player'); v.muted = true; return v.play(); }")
    page.wait_for_function(f"() => +(document.querySelector('.word.active') || {{dataset: {{}}}}).dataset.index === {len(words) - 1}", timeout=15_000)  # fmt: skip
    page.evaluate("() => document.getElementById('player').pause()")
    # clicking a word seeks to it
    page.click(f".word[data-index='{len(words) - 1}']")
    assert page.evaluate("() => document.getElementById('player').currentTime") == pytest.approx(words[-1][1], abs=0.01)
    # the face box over the video, the mouth crops, the three modalities side by side
    # (one evaluation, once the seek is done: every redraw replaces the boxes, and a box read
    # after the 'seeked' event's redraw detached it has no size)
    page.wait_for_function("() => !document.getElementById('player').seeking")
    box = page.evaluate(
        "() => { const b = document.querySelector('#overlay .box'); return [b.dataset.label, b.offsetWidth, b.offsetHeight]; }"
    )
    assert box[0] == "S1" and box[1] > 10 and box[2] > 10
    assert page.eval_on_selector("#strips img", "i => i.complete && i.naturalWidth") == 96 * 12
    for modality in ("a", "v", "av"):
        assert page.inner_text(f"#col-{modality} .text").strip()
    # the noise slider re-decodes and the table says how much each modality changed
    page.eval_on_selector("#snr", "s => { s.value = 0; s.dispatchEvent(new Event('change')); }")
    page.wait_for_selector("#degradation tbody tr", timeout=30_000)
    row = page.inner_text("#degradation tbody tr")
    assert row.startswith("babble 0 dB") and row.count("% changed") == 3
    if os.environ.get("AVSR_SCREENSHOT"):
        page.screenshot(path=str(REPO / "docs" / "images" / "serve.png"), full_page=True)
    # the SRT downloads and holds the words shown
    with page.expect_download() as download:
        page.click("#dl-srt")
    assert download.value.suggested_filename == f"{clip.stem}.srt"
    srt = Path(download.value.path()).read_text()
    lines = [line for cue in srt.strip().split("\n\n") for line in cue.split("\n")[2:]]
    assert " ".join(lines).replace("[S1] ", "").split() == [w for w, _, _ in words]


def test_the_page_shows_a_broken_files_error_on_one_line(page):
    page.set_input_files("#file", files=[{"name": "broken.mp4", "mimeType": "video/mp4", "buffer": b"not a video"}])
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    error = page.inner_text("#error")
    assert error.startswith("broken.mp4: not a media file") and "\n" not in error
    assert page.is_visible("#record")  # the camera's button is there (recording itself needs a camera)


def test_sigterm_stops_the_command_and_removes_the_uploads(served):
    _, process, work, lines = served
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, "".join(lines)
    assert not (work / "uploads").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-upload-mb", "0"], "--max-upload-mb must be positive, got 0"),
        (["--segment", "-1"], "--segment must be a positive number of seconds, got -1"),
        (["--port", "70000"], "--port must be 0-65535, got 70000"),
    ],
)
def test_bad_flags_get_one_line_and_status_2(flags, message, capsys):
    from avsr.cli import serve as serve_cli

    with pytest.raises(SystemExit) as exc:
        serve_cli.main(flags)
    assert exc.value.code == 2 and capsys.readouterr().err == f"avsr-serve: error: {message}\n"
