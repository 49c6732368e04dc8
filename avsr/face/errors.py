"""The errors of face and mouth processing: each one is a ValueError with a one-line message.

Batch jobs catch them per video, report ``<video>: <message>`` and go on with the next one.
"""

from __future__ import annotations


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


class NoFaceError(ValueError):
    """No frame of a video has a face (so there is nothing to interpolate from)."""

    def __init__(self, message: str = "no face found in any frame") -> None:
        super().__init__(_one_line(message))


class LandmarksFileError(ValueError):
    """A landmarks file is missing, unreadable, unsafe or not in a layout we know."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = _one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self) -> tuple[type[LandmarksFileError], tuple[str, str]]:
        return (type(self), (self.path, self.problem))


class FaceAlignmentError(ValueError):
    """Landmarks cannot be aligned to the mean face (degenerate points, or the mouth lands far off)."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))
