"""The README's picture of avsr-serve's page: start the command, open a clip in Debian's chromium
(playwright, no browser download), let it play to the middle, try babble at 0 dB, and save the page.

    python scripts/serve_screenshot.py --model runs/demo/train/model CLIP.mp4 docs/images/serve.png

The same steps, on the tests' micro model, are checked by tests/avsr/cli/test_serve.py.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

LISTENING = re.compile(r"on (http://127\.0\.0\.1:\d+)/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("clip", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--at", type=float, default=0.5, help="where to stop the video, a share of its length")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    command = [sys.executable, "-m", "avsr.cli.serve", "--model", str(args.model), "--port", "0"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in server.stderr:
            sys.stderr.write(line)
            if match := LISTENING.search(line):
                url = match.group(1)
                break
        if url is None:
            return 1
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 820}, device_scale_factor=1)
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready='1']")
            page.set_input_files("#file", str(args.clip))
            page.wait_for_selector("#transcript .word", timeout=600_000)
            page.wait_for_function("() => document.getElementById('player').readyState >= 2")
            page.eval_on_selector("#snr", "s => { s.value = 0; s.dispatchEvent(new Event('change')); }")
            page.wait_for_selector("#degradation tbody tr", timeout=600_000)
            page.evaluate(
                """at => new Promise(done => { const v = document.getElementById('player');
                   v.addEventListener('seeked', () => setTimeout(done, 300), {once: true});
                   v.currentTime = at * v.duration; })""",
                args.at,
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
        print(f"wrote {args.out}", file=sys.stderr)
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
