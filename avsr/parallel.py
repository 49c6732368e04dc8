"""Run per-item jobs in worker processes: the one pattern every batch command uses.

Workers are spawned (not forked: the parent may hold threads, e.g. from torch or a progress
bar) and each is limited to one BLAS/OpenMP thread, since N workers with N threads each would
fight over the cores (one job in-process runs on one BLAS thread too: `one_blas_thread`). Per-process state (a landmarker, a synthesiser) is built once by the
initializer and kept in the worker module's own global.

Workers never outlive their parent: a ``kill -9`` of the command would otherwise leave them
running their current item for seconds. On Linux the kernel sends each worker SIGTERM when the
parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread in each worker polls the parent's
pid. On SIGTERM (this, or the pool's own ``terminate()`` after a failed job) a worker removes
the temporary files of its writes in progress and exits at once (``os._exit``: unwinding through
whatever code the signal interrupted, or running atexit hooks, can itself fail and print).

A consumer that is slower than the workers (a model decoding what they read) bounds how far they
run ahead with ``ahead``: at most that many jobs are handed out and not yet taken, so memory holds
``ahead`` results whatever the number of jobs, and results come in job order, so what the consumer
does with them does not depend on which worker finished first.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")

SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_SECONDS = 0.2


def available_cores() -> int:
    """The cores this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def one_blas_thread() -> Any:
    """A context in which numpy's BLAS uses one thread, as a worker does. The small systems of
    per-frame work (a 119 x 119 spline solve) take 0.2 ms on one OpenBLAS thread and 120 ms on
    two when the cores are busy (its threads spin waiting for each other); one thread also
    gives the same pixels in-process as in a worker."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    from avsr.media.atomic import remove_unfinished

    remove_unfinished()
    os._exit(128 + signum)


def _die_with(parent: int) -> None:
    """Make this process get SIGTERM when ``parent`` dies: the kernel's death signal on Linux,
    else a daemon thread that polls ``os.getppid()`` (an orphan is re-parented)."""
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
        if armed:
            if os.getppid() != parent:  # died before the signal was armed
                os.kill(os.getpid(), signal.SIGTERM)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _start_worker(parent: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _die_with(parent)
    initializer(*initargs)


def worker_pool(
    workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...] = ()
) -> multiprocessing.pool.Pool:
    """A pool of ``workers`` spawned processes on one BLAS thread each, dying with this process,
    each set up by ``initializer(*initargs)``: for callers that submit work as they go
    (``apply_async``) rather than a list of jobs. Close and join it when done."""
    saved = {name: os.environ.get(name) for name in SINGLE_THREAD}
    os.environ.update(SINGLE_THREAD)  # inherited by the spawned workers
    try:
        return multiprocessing.get_context("spawn").Pool(workers, _start_worker, (os.getpid(), initializer, initargs))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_jobs(
    function: Callable[[Job], Result],
    jobs: Iterable[Job],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...] = (),
    *,
    ahead: int | None = None,
) -> Iterator[Result]:
    """Results of ``function`` over ``jobs`` in completion order; one worker runs in-process.
    ``ahead``: at most this many jobs in the workers or waiting to be taken (bounded prefetch),
    and results in job order."""
    if ahead is not None and ahead < 1:
        raise ValueError(f"ahead must be at least 1, got {ahead}")
    jobs = list(jobs)
    if not jobs:
        return
    if workers <= 1:
        with one_blas_thread():
            initializer(*initargs)
            yield from map(function, jobs)
        return
    pool = worker_pool(min(workers, len(jobs)), initializer, initargs)
    try:
        if ahead is None:
            yield from pool.imap_unordered(function, jobs, chunksize=1)
        else:
            yield from _bounded(pool, function, jobs, ahead)
    except BaseException:  # a failed job, Ctrl-C, or the caller stopped reading: stop the workers now
        pool.terminate()
        pool.join()
        raise
    # All done: the workers leave on the pool's own end-of-work message. (terminate() here, as
    # ``with pool`` does, can hang: the pool holds its task queue's lock while it signals the
    # workers, and a worker that misses the signal waits for that lock forever.)
    pool.close()
    pool.join()


def _bounded(pool: Any, function: Callable[[Job], Result], jobs: list[Job], ahead: int) -> Iterator[Result]:
    """``function`` over ``jobs`` in ``pool``, in job order, with at most ``ahead`` jobs handed
    out and not yet taken by the caller: the next job goes out when the caller takes a result."""
    pending: deque = deque()
    todo = iter(jobs)
    for job in todo:
        pending.append(pool.apply_async(function, (job,)))
        if len(pending) == ahead:
            break
    while pending:
        result = pending.popleft().get()
        for job in todo:  # refill before handing the result over: the workers keep going meanwhile
            pending.append(pool.apply_async(function, (job,)))
            break
        yield result


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """A context in which torch runs its operations on ``count`` intra-op threads (then as
    before). The model's process beside N busy workers, and the search's small per-step
    operations anywhere, lose to threads that wait for each other: on 2 busy cores 8 utterances'
    beam searches took 8-19 s on two threads and 1.4 s on one (docs/benchmarks.md)."""
    import torch

    before = torch.get_num_threads()
    if count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
