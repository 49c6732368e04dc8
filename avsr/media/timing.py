"""Timestamp arithmetic shared by the readers.

Rates and times are kept as exact fractions: 29.97 fps is 30000/1001, and a 25 fps output frame at
k/25 s must select the source frame whose timestamp equals it exactly, which floats get wrong at
frame boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import TypeVar

T = TypeVar("T")

# Enough to represent NTSC rates (x/1001) exactly while snapping float noise (29.97002997...).
_MAX_DENOMINATOR = 1_000_000


def as_fraction(value: float | Fraction, name: str = "value") -> Fraction:
    """Exact fraction for a user-given rate or time; 30000/1001 is recovered from 29.97002997."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    try:
        # The closest fraction with a denominator <= 10^6 to float(30000/1001) is 30000/1001 itself.
        return Fraction(float(value)).limit_denominator(_MAX_DENOMINATOR)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{name} must be a finite number, got {value!r}") from exc


def resample_by_time(
    items: Iterable[tuple[Fraction, Fraction | None, T]],
    fps: Fraction,
    start: Fraction = Fraction(0),
    end: Fraction | None = None,
    default_duration: Fraction | None = None,
    slack: Fraction = Fraction(1, 1000),
) -> Iterator[T]:
    """Pick source items for output times ``start + k/fps``, k = 0, 1, ...

    ``items`` are ``(time, duration_or_None, payload)`` in decoding order. Output time t takes the
    last item with ``time <= t`` (the one displayed at t); times before the first item take the first
    item. Output stops before ``end`` or before the end of the last item: its time plus the last gap
    between items (a lone item: its own duration, else ``default_duration``, else one output step).
    The gap is preferred to the item's duration because containers often misreport the last frame's
    duration (mp4 with B-frames attaches decode-order packet durations to frames); with the gap, N
    frames at 25 fps always give N output frames. An output time less than ``slack`` before that end
    is dropped: Matroska/WebM store millisecond timestamps, so a 30 fps file's last gap can be 1 ms
    long and would otherwise add a frame shown for 1 ms. Items are consumed lazily, so a window near
    the start of a long stream stops decoding early.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    step = 1 / fps
    k = 0
    have_prev = False
    prev_time = Fraction(0)
    prev_duration: Fraction | None = None
    prev_payload: T | None = None
    last_gap: Fraction | None = None
    for time, duration, payload in items:
        if have_prev:
            time = max(time, prev_time)  # out-of-order timestamp: a replacement frame
            while True:
                t = start + k * step
                if end is not None and t >= end:
                    return
                if t >= time:
                    break
                yield prev_payload  # type: ignore[misc]
                k += 1
            if time > prev_time:
                last_gap = time - prev_time
        have_prev = True
        prev_time, prev_duration, prev_payload = time, duration, payload
    if not have_prev:
        return
    length = last_gap or prev_duration or default_duration or step
    stop = prev_time + length - min(slack, length / 2)
    if end is not None:
        stop = min(stop, end)
    while start + k * step < stop:
        yield prev_payload  # type: ignore[misc]
        k += 1
