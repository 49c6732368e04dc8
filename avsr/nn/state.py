"""State-dict mismatches in one line: which names are missing, unexpected or of another shape.

Every strict load (exported models, pretrained front-ends, converted checkpoints, image
backbones) reports a mismatch the same way, e.g.
``1 missing key(s): a.weight; 1 shape mismatch(es): b.bias (5,) vs (32,)`` (given vs expected),
with each caller's own words for what "missing" and "unexpected" mean to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

SHOWN_NAMES = 8  # names listed before "... (+N more)"
SHOWN_SHAPES = 4  # shape mismatches listed


def name_list(names: Iterable[str], limit: int = SHOWN_NAMES) -> str:
    """``a, b, c ... (+4 more)``: the first ``limit`` names in sorted order."""
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" ... (+{len(names) - limit} more)" if len(names) > limit else "")


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(getattr(value, "shape", value))


def state_problems(
    expected: Mapping[str, Any],
    given: Mapping[str, Any],
    *,
    missing: str = "missing key(s)",
    unexpected: str = "unexpected key(s)",
    display: Callable[[str], str] = str,
) -> list[str]:
    """One phrase per kind of mismatch between two ``{name: tensor or shape}`` maps (empty: they fit).

    Args:
        expected: what the model holds; given: what the file provides (same key space).
        missing, unexpected: the caller's words for keys only in ``expected`` / only in ``given``.
        display: the name a user recognises for a key (e.g. the checkpoint's own key).
    """
    problems = []
    absent = [display(k) for k in expected if k not in given]
    extra = [display(k) for k in given if k not in expected]
    shapes = sorted(
        (display(k), _shape(given[k]), _shape(expected[k]))
        for k in expected
        if k in given and _shape(given[k]) != _shape(expected[k])
    )
    if absent:
        problems.append(f"{len(absent)} {missing}: {name_list(absent)}")
    if extra:
        problems.append(f"{len(extra)} {unexpected}: {name_list(extra)}")
    if shapes:
        shown = ", ".join(f"{name} {got} vs {want}" for name, got, want in shapes[:SHOWN_SHAPES])
        problems.append(f"{len(shapes)} shape mismatch(es): {shown}")
    return problems


__all__ = ["name_list", "state_problems"]
