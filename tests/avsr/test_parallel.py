"""avsr.parallel: worker processes die with their parent (kill -9) and clean up after themselves.

Linux only (the checks read /proc); each case runs the parent in a subprocess and kills it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

GONE_WITHIN = 2.0  # seconds after the parent's death


def _state(pid: int) -> str | None:
    """The process's state letter, or None when it no longer exists (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state = stat.rsplit(")", 1)[1].split()[0]
    return None if state in "ZX" else state


def _workers_of(parent: int) -> list[int]:
    """Pids of the multiprocessing workers whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _wait_for(condition, timeout: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_and_time(parent: subprocess.Popen, workers: list[int]) -> float:
    """SIGKILL the parent; seconds until every worker is gone (stops waiting after 30 s)."""
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    start = time.monotonic()
    while any(_state(pid) for pid in workers) and time.monotonic() - start < 30:
        time.sleep(0.02)
    for pid in workers:  # never leave a stray worker behind a failed test
        if _state(pid):
            os.kill(pid, signal.SIGKILL)
    return time.monotonic() - start


JOBS = textwrap.dedent(
    """
    import os, sys, time
    from avsr.parallel import run_jobs
    from avsr.media.atomic import atomic_path

    def job(folder):
        with atomic_path(os.path.join(folder, f"{os.getpid()}.out")) as temp:
            open(os.path.join(folder, f"{os.getpid()}.pid"), "w").close()
            time.sleep(60)

    def init():
        pass

    if __name__ == "__main__":
        for _ in run_jobs(job, [sys.argv[1]] * 2, 2, init):
            pass
    """
)


def test_workers_die_with_a_killed_parent_and_leave_no_temporary_files(tmp_path: Path):
    script = tmp_path / "jobs.py"
    script.write_text(JOBS)
    folder = tmp_path / "work"
    folder.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(folder)])
    try:
        _wait_for(lambda: len(list(folder.glob("*.pid"))) == 2, 60, "both workers to start their job")
        workers = [int(p.stem) for p in folder.glob("*.pid")]
    finally:
        seconds = _kill_and_time(parent, _workers_of(parent.pid) if parent.poll() is None else [])
    assert seconds < GONE_WITHIN, f"workers outlived their parent by {seconds:.1f} s"
    assert not any(_state(pid) for pid in workers)
    assert sorted(p.suffix for p in folder.iterdir()) == [".pid", ".pid"], "temporary files were removed"


WATCHED = textwrap.dedent(
    """
    import multiprocessing, os, signal, sys, time
    import avsr.parallel as parallel

    def child(parent, folder):
        parallel.sys.platform = "darwin"  # no prctl: the polling thread must do it
        signal.signal(signal.SIGTERM, parallel._exit_on_sigterm)
        parallel._die_with(parent)
        open(os.path.join(folder, f"{os.getpid()}.pid"), "w").close()
        time.sleep(60)

    if __name__ == "__main__":
        multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(), sys.argv[1])).start()
        time.sleep(60)
    """
)


def test_without_prctl_a_thread_watches_the_parent(tmp_path: Path):
    script = tmp_path / "watched.py"
    script.write_text(WATCHED)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    workers: list[int] = []
    try:
        workers = _wait_for(lambda: [int(p.stem) for p in tmp_path.glob("*.pid")], 60, "the child")
    finally:
        seconds = _kill_and_time(parent, workers)
    assert workers and seconds < GONE_WITHIN, f"the child outlived its parent by {seconds:.1f} s"


def test_killed_prepare_leaves_no_workers(lrs2_corpus: Path, tmp_path: Path):
    """``kill -9`` of avsr-prepare: its two workers are gone within 2 s, and leave no .tmp files."""
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "avsr.cli.prepare",
        "lrs2",
        str(lrs2_corpus),
        str(out),
        "--workers",
        "2",
        "--quiet",
        "--detect-every",
        "1",
    ]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        workers = _wait_for(lambda: len(_workers_of(parent.pid)) == 2 and _workers_of(parent.pid), 60, "two workers")
        log = out / ".records" / "shard-0-of-1.jsonl"
        _wait_for(lambda: log.is_file() and log.read_text().count("\n") >= 1, 120, "the first prepared item")
    finally:
        seconds = _kill_and_time(parent, workers)
    assert seconds < GONE_WITHIN, f"workers outlived avsr-prepare by {seconds:.1f} s"
    assert not [p for p in out.rglob("*") if ".tmp" in p.name], "no temporary files left"


def test_ahead_bounds_the_jobs_handed_out_and_keeps_their_order(tmp_path: Path):
    """``ahead=2``: while the caller holds result k, jobs beyond k + 2 have not started (a slow
    consumer does not let the workers read everything into memory), and results come in job order."""
    from avsr.parallel import run_jobs

    folders = [tmp_path / f"{n:02d}" for n in range(8)]
    taken = []
    for n, _ in enumerate(run_jobs(os.mkdir, map(str, folders), 2, os.getpid, ahead=2)):
        time.sleep(0.1)  # a slow consumer: unbounded workers would have made every folder by now
        started = sum(folder.is_dir() for folder in folders)
        assert started <= n + 1 + 2, f"{started} jobs started while the caller held result {n}"
        taken.append(n)
    assert taken == list(range(8)) and all(folder.is_dir() for folder in folders)
    assert list(run_jobs(str.upper, list("abcdef"), 2, os.getpid, ahead=3)) == list("ABCDEF")
    with pytest.raises(ValueError, match="ahead must be at least 1"):
        list(run_jobs(str.upper, ["a"], 2, os.getpid, ahead=0))
