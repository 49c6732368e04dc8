"""What every avsr program prints to a person: one-line errors and a progress bar (the lowest
layer, so that any module with a command-line entry can use them)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class ItemsPerSecondColumn(ProgressColumn):
    def __init__(self, unit: str = "items") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:.2f} {self.unit}/s")


def fail(program: str, message: str, code: int = 2) -> NoReturn:
    """Print ``program: error: message`` on one line to stderr and exit."""
    print(f"{program}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool = True, unit: str = "items"
) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr (count, ``unit``/s, elapsed, eta); yields the function that
    advances it (by one, or by n)."""
    if not enabled or total == 0:
        yield lambda n=1: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        ItemsPerSecondColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


__all__ = ["fail", "progress_bar"]
