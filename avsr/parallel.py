"""Run per-item jobs in worker processes: the one pattern every batch command uses.

Workers are spawned (not forked: the parent may hold threads, e.g. from torch or a progress
bar) and each is limited to one BLAS/OpenMP thread, since N workers with N threads each would
fight over the cores. Per-process state (a landmarker, a synthesiser) is built once by the
initializer and kept in the worker module's own global.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")

SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_jobs(
    function: Callable[[Job], Result],
    jobs: Iterable[Job],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...] = (),
) -> Iterator[Result]:
    """Results of ``function`` over ``jobs`` in completion order; one worker runs in-process."""
    jobs = list(jobs)
    if not jobs:
        return
    if workers <= 1:
        initializer(*initargs)
        yield from map(function, jobs)
        return
    saved = {name: os.environ.get(name) for name in SINGLE_THREAD}
    os.environ.update(SINGLE_THREAD)  # inherited by the spawned workers
    try:
        pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer, initargs)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    with pool:
        yield from pool.imap_unordered(function, jobs, chunksize=1)
