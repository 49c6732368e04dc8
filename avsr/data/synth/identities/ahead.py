"""Measuring casting's candidates in worker processes, ahead of the decisions that use them.

Casting decides on one candidate at a time (far enough from the people chosen? lips readable?),
but what it measures on a candidate depends on the candidate's recipe alone, and one person's
candidates are drawn from that person's own seed. So while a decision waits, workers already
measure the next candidates' descriptors; a lip-sync screen (about three descriptors' cost) is
asked for only when the decision needs it. The decisions, and so the cast, are those of measuring
in order in one process; only the wall time changes (a few descriptors past the candidate kept
are measured for nothing). The speakers' own looks are screened side by side the same way.

Workers hand their numbers back (``measured.remember``), so nothing is measured twice even with
the cache off. This file schedules and measures nothing itself: it is a policy file, outside the
measurement cache's code digest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.pool import AsyncResult, Pool
from types import TracebackType

import numpy as np

from avsr.data.synth.identities.identity import Identity
from avsr.data.synth.identities.measured import (
    DESCRIPTOR,
    LIP_SYNC,
    appearance_key,
    appearance_lip_sync,
    identity_descriptor,
    identity_lip_sync,
    known,
    remember,
)

AHEAD = 3  # descriptors in flight per worker: enough to keep every worker busy while a screen runs


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _descriptor(identity: Identity) -> list[float] | None:
    found = identity_descriptor(identity)
    return None if found is None else [float(x) for x in found]


def _appearance(job: tuple[Identity, object, int]) -> float:
    return appearance_lip_sync(*job)


class Measurer:
    """The measurements casting asks for, in ``workers`` processes (one: in this process, lazily).

    Use as a context manager: the workers start when something is not measured yet (a plan made
    again from the cache, as a resume makes it, starts none) and finish their queued work on exit.
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._pool: Pool | None = None

    def __enter__(self) -> Measurer:
        return self

    def _workers(self, identity: Identity, what: str) -> Pool | None:
        """The pool, started now if needed, when ``what`` of ``identity`` is still to be measured;
        None when it is known or there are no workers."""
        if self.workers <= 1 or known(identity, what)[0]:
            return None
        if self._pool is None:
            from avsr.parallel import worker_pool

            self._pool = worker_pool(self.workers, _init_worker)
        return self._pool

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kind is None:
            pool.close()  # the few descriptors measured ahead of the last decision finish (and are cached)
        else:
            pool.terminate()
        pool.join()

    def descriptors(self, candidates: Iterable[Identity]) -> Iterator[tuple[Identity, np.ndarray | None]]:
        """(candidate, its dlib descriptor or None), in the order of ``candidates``; with workers,
        up to ``AHEAD`` per worker are measured before they are asked for."""
        if self.workers <= 1:
            for candidate in candidates:
                yield candidate, identity_descriptor(candidate)
            return
        pending: deque[tuple[Identity, AsyncResult | None]] = deque()
        source = iter(candidates)
        while True:
            while len(pending) < AHEAD * self.workers:
                candidate = next(source, None)
                if candidate is None:
                    break
                pool = self._workers(candidate, DESCRIPTOR)
                pending.append((candidate, None if pool is None else pool.apply_async(_descriptor, (candidate,))))
            if not pending:
                return
            candidate, result = pending.popleft()
            if result is not None:
                remember(candidate, DESCRIPTOR, result.get())
            yield candidate, identity_descriptor(candidate)

    def lip_sync(self, identity: Identity) -> float:
        """``measured.identity_lip_sync``, in a worker (the descriptors ahead go on meanwhile)."""
        pool = self._workers(identity, LIP_SYNC)
        if pool is not None:
            remember(identity, LIP_SYNC, pool.apply_async(identity_lip_sync, (identity,)).get())
        return identity_lip_sync(identity)

    def screen_appearances(self, jobs: list[tuple[Identity, object, int]]) -> None:
        """Measure ``measured.appearance_lip_sync(identity, appearance, size)`` for every job side
        by side, so that the calls that follow find them measured."""
        todo = [job for job in jobs if self._workers(job[0], appearance_key(job[1], job[2])) is not None]
        if todo and self._pool is not None:
            for (identity, appearance, size), value in zip(todo, self._pool.map(_appearance, todo, chunksize=1)):
                remember(identity, appearance_key(appearance, size), value)
