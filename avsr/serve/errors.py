"""One error type for everything the server refuses, with the HTTP status that goes with it.

The page shows ``str(err)``: one line naming the file and the problem, as avsr-decode prints it.
"""

from __future__ import annotations

from http import HTTPStatus


class ServeError(ValueError):
    """A request the server cannot do: ``str(err)`` is one line, ``err.status`` its HTTP status."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        self.status = int(status)
        super().__init__(" ".join(str(message).split()))


__all__ = ["ServeError"]
