"""Decoding jobs: one worker thread, a first-come queue, progress the page polls.

The model decodes one clip at a time (a second clip at once would only halve the speed of both and
double the memory), so every upload and every noise re-decoding is a job: the worker runs them in
the order they came, and a job waiting sees its place in the queue. Finished jobs keep their
result in memory (the last ``keep`` of them) for the page and for downloads.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from avsr.serve.errors import ServeError

#: ``work(progress)`` -> the job's result (JSON-able); ``progress(done 0-1, stage)``
Work = Callable[[Callable[[float, str], None]], dict]


@dataclass
class Job:
    id: str
    name: str  # the file's name, as the page shows it
    work: Work
    cleanup: Callable[[], None] | None = None  # run once the job ends, however it ends (deletes the upload)
    state: str = "queued"  # queued -> running -> done | failed
    progress: float = 0.0
    stage: str = "waiting for the jobs before it"
    error: str | None = None  # one line, when failed
    result: dict | None = None
    started: float | None = None
    finished: float | None = None
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def over(self) -> bool:
        return self.state in ("done", "failed")


class JobQueue:
    """``submit`` work; one daemon thread runs it; ``status`` is what ``GET /jobs/ID`` answers."""

    def __init__(self, keep: int = 100) -> None:
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._waiting: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread = threading.Thread(target=self._run, name="avsr-serve-worker", daemon=True)
        self._thread.start()

    def submit(self, name: str, work: Work, cleanup: Callable[[], None] | None = None) -> Job:
        with self._lock:
            job = Job(f"{next(self._ids)}", name, work, cleanup)
            self._jobs[job.id] = job
            self._forget_old()
        self._waiting.put(job)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ServeError(f"no job {job_id!r} (finished jobs are kept for the last {self.keep})", 404)
        return job

    def position(self, job: Job) -> int:
        """How many jobs run or wait before ``job`` (0: it runs now, or is over)."""
        if job.state != "queued":
            return 0
        with self._lock:
            ahead = itertools.takewhile(lambda other: other is not job, self._jobs.values())
            return sum(1 for other in ahead if not other.over)

    def status(self, job: Job) -> dict:
        """``GET /jobs/ID``: id, name, state, progress (0-1), stage, position, error, result."""
        return {
            "id": job.id,
            "name": job.name,
            "state": job.state,
            "progress": round(job.progress, 3),
            "stage": job.stage,
            "position": self.position(job),
            "error": job.error,
            "seconds": round((job.finished or time.monotonic()) - job.started, 2) if job.started else 0.0,
            "result": job.result,
        }

    def close(self) -> None:
        self._waiting.put(None)
        self._thread.join(timeout=5)

    def _forget_old(self) -> None:
        over = [job_id for job_id, job in self._jobs.items() if job.over]
        for job_id in over[: max(0, len(over) - self.keep)]:
            del self._jobs[job_id]

    def _run(self) -> None:
        while (job := self._waiting.get()) is not None:
            job.state, job.started, job.stage = "running", time.monotonic(), "starting"

            def progress(done: float, stage: str, job: Job = job) -> None:
                job.progress, job.stage = min(max(done, 0.0), 1.0), stage

            try:
                job.result = job.work(progress)
                job.state, job.progress, job.stage = "done", 1.0, "done"
            except ServeError as exc:
                job.state, job.error, job.stage = "failed", str(exc), "failed"
            except Exception as exc:  # a bug must not stop the worker: the page gets one line, the log the trace
                traceback.print_exc(file=sys.stderr)
                message = " ".join(f"{job.name}: internal error ({type(exc).__name__}: {exc})".split())
                job.state, job.error, job.stage = "failed", message, "failed"
            finally:
                job.finished = time.monotonic()
                if job.cleanup is not None:
                    job.cleanup()
                job.ended.set()


__all__ = ["Job", "JobQueue", "Work"]
