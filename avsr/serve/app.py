"""The HTTP side: routes, uploads, static files (the standard library's ``ThreadingHTTPServer``).

Uploads come as the raw request body (``fetch(url, {method: "POST", body: file})``, the name in
the ``name`` query parameter), so nothing parses multipart forms. Each is written to
``WORK_DIR/uploads/`` under a name the server makes (only the suffix is the client's, checked),
decoded by the job worker, and deleted when its job ends. Static files come only from this
package's ``assets/`` folder: every path is resolved and must stay inside it (404 otherwise).

Routes (`ROUTES`; the JSON API is documented in docs/serve.md):

    GET  /                         the page
    GET  /assets/NAME              its script and style
    GET  /config                   model, modalities, upload limit, noise kinds and SNR range
    POST /transcribe?name=N[&wait=1]  a file as the body -> a job (202), or its result (wait=1)
    GET  /jobs/ID                  state, progress, queue position, error, result
    POST /jobs/ID/noise?kind=K&snr=S  re-decode job ID's clip with noise -> a job (202)
    GET  /jobs/ID/strip/LABEL.png  the mouth crops face LABEL showed the model
    GET  /jobs/ID/download.EXT     srt, vtt or json (the json is avsr-decode --json's)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from avsr.decoding.subtitles import result_subtitles
from avsr.media.paths import OutsideRootError, inside
from avsr.serve.analysis import Analyser, Analysis
from avsr.serve.errors import ServeError
from avsr.serve.jobs import JobQueue
from avsr.serve.noise import NOISE_KINDS, SNR_RANGE, NoiseSetting

ASSETS = Path(__file__).parent / "assets"
#: read uploads in pieces of this size (a large file never sits in memory whole)
CHUNK = 1 << 20
#: clips whose read input stays in memory for the noise slider (the oldest beyond are dropped)
KEEP_INPUTS = 4
#: an oversized upload's body is read and dropped up to this size (so the client sees the 413), beyond it the connection closes
DRAIN_LIMIT = 64 << 20

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
    ".srt": "application/x-subrip; charset=utf-8",
    ".vtt": "text/vtt; charset=utf-8",
}


@dataclass
class ServeState:
    """What every request handler shares: the analyser, the jobs, the limits and the work folder."""

    analyser: Analyser
    work_dir: Path
    max_upload_bytes: int
    verbose: bool = False
    jobs: JobQueue = field(default_factory=JobQueue)
    analyses: OrderedDict[str, Analysis] = field(default_factory=OrderedDict)

    @property
    def uploads(self) -> Path:
        return self.work_dir / "uploads"

    def keep(self, job_id: str, analysis: Analysis) -> None:
        """Keep ``analysis`` for downloads and the noise slider; the read inputs of all but the
        last `KEEP_INPUTS` clips are dropped (their crops and audio are the bulk of the memory)."""
        self.analyses[job_id] = analysis
        for old in list(self.analyses.values())[:-KEEP_INPUTS]:
            old.loaded = None
        while len(self.analyses) > self.jobs.keep:
            self.analyses.popitem(last=False)

    def analysis(self, job_id: str) -> Analysis:
        job = self.jobs.get(job_id)
        if job_id not in self.analyses:
            raise ServeError(f"job {job_id} ({job.name}) has no transcript: it is {job.state}", 409)
        return self.analyses[job_id]


class Handler(BaseHTTPRequestHandler):
    server_version = "avsr-serve"
    server: AvsrServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args) -> None:
        if self.server.state.verbose:
            super().log_message(format, *args)

    # ------------------------------------------------------------------ plumbing
    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = unquote(url.path)
        try:
            for route_method, pattern, action in ROUTES:
                match = pattern.fullmatch(path)
                if match and route_method == method:
                    action(self, *match.groups())
                    return
            raise ServeError(f"no such page: {method} {path}", 404)
        except ServeError as exc:
            self.send_json({"error": str(exc)}, exc.status)

    def send_body(self, body: bytes, content_type: str, status: int = 200, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, data: dict, status: int = 200) -> None:
        self.send_body(json.dumps(data).encode(), CONTENT_TYPES[".json"], status)

    @property
    def state(self) -> ServeState:
        return self.server.state

    # ------------------------------------------------------------------ routes
    def page(self) -> None:
        self.asset("index.html")

    def asset(self, name: str) -> None:
        """A file of the package's asset folder; any path leaving it (``../``) is not found."""
        try:
            path = inside(ASSETS, name)
        except OutsideRootError:
            path = None
        if path is None or not path.is_file():
            raise ServeError(f"no such page: /assets/{name}", 404)
        self.send_body(path.read_bytes(), CONTENT_TYPES.get(path.suffix, "application/octet-stream"))

    def config(self) -> None:
        analyser = self.state.analyser
        self.send_json(
            {
                "model": analyser.settings.model,
                "modalities": list(analyser.recognizer.modalities),
                "max_upload_bytes": self.state.max_upload_bytes,
                "noise_kinds": list(NOISE_KINDS),
                "snr_range": list(SNR_RANGE),
            }
        )

    def transcribe(self) -> None:
        name = _clip_name(self.query.get("name", "upload"))
        upload = self._receive(name)
        state = self.state

        def work(progress) -> dict:
            job_id = job.id
            analysis = state.analyser.analyse(upload, name, progress)
            state.keep(job_id, analysis)
            return analysis.to_dict(state.analyser.settings.model)

        job = state.jobs.submit(name, work, cleanup=lambda: upload.unlink(missing_ok=True))
        self._answer_job(job)

    def noise(self, job_id: str) -> None:
        analysis = self.state.analysis(job_id)
        try:
            setting = NoiseSetting(self.query.get("kind", "babble"), float(self.query.get("snr", "0")))
        except ValueError as exc:
            raise ServeError(
                str(exc) if isinstance(exc, ServeError) else f"snr must be a number of dB: {exc}"
            ) from None
        analyser = self.state.analyser
        job = self.state.jobs.submit(analysis.name, lambda progress: analyser.with_noise(analysis, setting, progress))
        self._answer_job(job)

    def job(self, job_id: str) -> None:
        jobs = self.state.jobs
        self.send_json(jobs.status(jobs.get(job_id)))

    def strip(self, job_id: str, label: str) -> None:
        analysis = self.state.analysis(job_id)
        if label not in analysis.strips:
            raise ServeError(f"job {job_id}: no mouth crops of face {label!r}", 404)
        self.send_body(analysis.strips[label].png, CONTENT_TYPES[".png"])

    def download(self, job_id: str, kind: str) -> None:
        analysis = self.state.analysis(job_id)
        result = analysis.results[analysis.main]
        render: dict[str, Callable[[], str]] = {
            "srt": lambda: result_subtitles(result, "srt"),
            "vtt": lambda: result_subtitles(result, "vtt"),
            "json": lambda: json.dumps(analysis.to_dict(self.state.analyser.settings.model)["decode"], indent=2),
        }
        filename = f"{Path(analysis.name).stem or 'transcript'}.{kind}"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        self.send_body(render[kind]().encode(), CONTENT_TYPES[f".{kind}"], headers=headers)

    # ------------------------------------------------------------------ helpers
    def _answer_job(self, job) -> None:
        """202 and where to poll; with ``wait=1`` (scripts), the finished job (422 if it failed)."""
        jobs = self.state.jobs
        if self.query.get("wait") in ("1", "true", "yes"):
            job.ended.wait()
            status = jobs.status(job)
            self.send_json(status, 200 if job.state == "done" else 422)
            return
        self.send_json({**jobs.status(job), "url": f"/jobs/{job.id}"}, HTTPStatus.ACCEPTED)

    def _receive(self, name: str) -> Path:
        """The request body written to a new file under the uploads folder (413 if over the limit)."""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ServeError(f"{name}: send the file as the request body, with its Content-Length", 411)
        size, limit = int(length), self.state.max_upload_bytes
        if size == 0:
            raise ServeError(f"{name}: the upload is empty")
        if size > limit:
            self._drain(size)
            raise ServeError(
                f"{name}: {size / 2**20:.1f} MB is over the upload limit of {limit / 2**20:g} MB (avsr-serve --max-upload-mb)",
                413,
            )
        suffix = Path(name).suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ".bin"
        self.state.uploads.mkdir(parents=True, exist_ok=True)
        path = inside(self.state.uploads, f"{secrets.token_hex(8)}{suffix}")
        left = size
        with open(path, "wb") as out:
            while left > 0:
                piece = self.rfile.read(min(CHUNK, left))
                if not piece:
                    break
                out.write(piece)
                left -= len(piece)
        if left:
            path.unlink(missing_ok=True)
            raise ServeError(f"{name}: the upload stopped after {size - left} of {size} bytes")
        return path

    def _drain(self, size: int) -> None:
        if size > DRAIN_LIMIT:
            self.close_connection = True
            return
        while size > 0 and (piece := self.rfile.read(min(CHUNK, size))):
            size -= len(piece)


def _clip_name(name: str) -> str:
    """The upload's name as shown and written in the JSON: its last part, printable, at most 120 characters."""
    base = os.path.basename(name.replace("\\", "/")).strip()
    base = "".join(c for c in base if c.isprintable())[:120]
    return base or "upload"


#: (method, path pattern, handler): the one place a URL is matched
ROUTES: list[tuple[str, re.Pattern[str], Callable[..., None]]] = [
    ("GET", re.compile(r"/"), Handler.page),
    ("GET", re.compile(r"/assets/(.+)"), Handler.asset),
    ("GET", re.compile(r"/config"), Handler.config),
    ("POST", re.compile(r"/transcribe"), Handler.transcribe),
    ("GET", re.compile(r"/jobs/(\d+)"), Handler.job),
    ("POST", re.compile(r"/jobs/(\d+)/noise"), Handler.noise),
    ("GET", re.compile(r"/jobs/(\d+)/strip/(S\d+)\.png"), Handler.strip),
    ("GET", re.compile(r"/jobs/(\d+)/download\.(srt|vtt|json)"), Handler.download),
]


class AvsrServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that carries the `ServeState` its handlers share."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: ServeState) -> None:
        self.state = state
        super().__init__(address, Handler)

    def server_close(self) -> None:
        super().server_close()
        self.state.jobs.close()


def log(message: str) -> None:
    print(f"avsr-serve: {message}", file=sys.stderr, flush=True)


__all__ = ["ASSETS", "AvsrServer", "Handler", "ROUTES", "ServeState"]
