"""avsr-serve's fixtures: one server (in this process, on a free port) over the micro model, shared
by the module's tests, and the clip they upload."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from avsr.decoding.recognizer import DecodeOptions, Recognizer
from avsr.decoding.transcribe import segmenting_for
from avsr.serve.analysis import Analyser, AnalysisSettings
from avsr.serve.app import AvsrServer, ServeState

#: greedy CTC: the tests check what the server does with a decoding, not the search (fast on 2 cores)
OPTIONS = DecodeOptions(decoder="greedy")


@pytest.fixture(scope="session")
def serve_clip(lrs2_corpus: Path) -> Path:
    """A corpus clip (a synthetic talking face, about 2 s)."""
    return sorted(lrs2_corpus.glob("main/*/*.mp4"))[0]


@pytest.fixture(scope="session")
def analyser(micro_model_dir: Path) -> Analyser:
    recognizer = Recognizer.load(micro_model_dir)
    settings = AnalysisSettings(str(micro_model_dir), recognizer.resolve(OPTIONS), segmenting_for(recognizer))
    return Analyser(recognizer, settings)


@pytest.fixture(scope="session")
def server(analyser: Analyser, tmp_path_factory):
    """A running server on 127.0.0.1 and a free port: yields its base URL's ``(url, state)``."""
    state = ServeState(analyser, tmp_path_factory.mktemp("serve"), max_upload_bytes=2 * 2**20)
    httpd = AvsrServer(("127.0.0.1", 0), state)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()
