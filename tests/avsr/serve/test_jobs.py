"""The job queue: one job at a time in arrival order, places in the queue, one-line failures, and
the upload's clean-up however a job ends."""

from __future__ import annotations

import threading

import pytest

from avsr.serve.errors import ServeError
from avsr.serve.jobs import JobQueue


def test_jobs_run_one_at_a_time_and_a_waiting_job_knows_its_place():
    jobs, release, order = JobQueue(), threading.Event(), []

    def work(name):
        def run(progress):
            progress(0.5, f"{name} half way")
            order.append(name)
            release.wait(10)
            return {"name": name}

        return run

    first, second, third = (jobs.submit(n, work(n)) for n in ("first", "second", "third"))
    while jobs.status(first)["stage"] != "first half way":
        first.ended.wait(0.01)
    assert jobs.status(first)["state"] == "running" and jobs.status(first)["progress"] == 0.5
    assert [jobs.status(j)["position"] for j in (first, second, third)] == [0, 1, 2]
    assert jobs.status(second)["state"] == "queued"
    release.set()
    assert third.ended.wait(10)
    assert order == ["first", "second", "third"]
    assert jobs.status(third) | {"seconds": 0} == {
        "id": third.id, "name": "third", "state": "done", "progress": 1.0, "stage": "done",
        "position": 0, "error": None, "seconds": 0, "result": {"name": "third"},
    }  # fmt: skip
    jobs.close()


def test_a_failing_job_says_why_in_one_line_and_still_cleans_up():
    jobs, cleaned = JobQueue(), []

    def refused(progress):
        raise ServeError("clip.mp4: no video stream", 422)

    def broken(progress):
        raise RuntimeError("a bug\nover two lines")

    a = jobs.submit("clip.mp4", refused, cleanup=lambda: cleaned.append("a"))
    b = jobs.submit("other.mp4", broken, cleanup=lambda: cleaned.append("b"))
    ok = jobs.submit("fine.mp4", lambda progress: {"ok": True})
    assert ok.ended.wait(10)
    assert (a.state, a.error) == ("failed", "clip.mp4: no video stream")
    assert (b.state, b.error) == ("failed", "other.mp4: internal error (RuntimeError: a bug over two lines)")
    assert ok.result == {"ok": True} and cleaned == ["a", "b"]  # the worker went on after both
    jobs.close()


def test_old_finished_jobs_are_forgotten():
    jobs = JobQueue(keep=2)
    done = [jobs.submit(f"{i}", lambda progress: {}) for i in range(3)]
    assert done[-1].ended.wait(10)
    jobs.submit("last", lambda progress: {}).ended.wait(10)
    with pytest.raises(ServeError) as exc:
        jobs.get(done[0].id)
    assert exc.value.status == 404
    assert jobs.get(done[-1].id) is done[-1]
    jobs.close()
