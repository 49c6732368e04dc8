"""Wall-clock time per stage of the transcription chain (media, face, crop, model, search, align).

``avsr-decode --timings`` and ``benchmarks/decode.py`` pass one :class:`StageTimes` down the chain;
code that is not timed passes nothing and pays nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: The order stages are reported in.
STAGES = ("media", "face", "crop", "model", "search", "align")


@dataclass
class StageTimes:
    seconds: dict[str, float] = field(default_factory=dict)
    #: Called before a stage's clock stops, e.g. ``torch.cuda.synchronize`` so GPU work is counted.
    sync: Callable[[], None] | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.sync is not None:
                self.sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def report(self, media_seconds: float) -> dict[str, dict[str, float]]:
        """Seconds and real-time factor (seconds per second of media) per stage, plus the total."""
        names = [s for s in STAGES if s in self.seconds] + sorted(set(self.seconds) - set(STAGES))
        rows = {name: self.seconds[name] for name in names}
        rows["total"] = self.total
        return {
            name: {"seconds": round(s, 4), "rtf": round(s / media_seconds, 5) if media_seconds > 0 else float("nan")}
            for name, s in rows.items()
        }


@contextmanager
def timed(times: StageTimes | None, name: str) -> Iterator[None]:
    """``times.stage(name)``, or nothing when ``times`` is None."""
    if times is None:
        yield
    else:
        with times.stage(name):
            yield


__all__ = ["STAGES", "StageTimes", "timed"]
