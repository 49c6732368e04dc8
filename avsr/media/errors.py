"""One error type for every media problem.

Batch jobs (corpus preparation, benchmarks) catch :class:`MediaError`, report its one-line message
and go on with the next file; interactive users see ``clip.mp4: no audio stream`` rather than an
FFmpeg traceback. Everything PyAV or the OS can raise while reading or writing media is translated
here, in one place. FFmpeg's own log lines (``moov atom not found``) are silenced here too, since
our one line says the same: libraries such as torchvision turn them on when imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import av
import av.logging

# First bytes of container formats we can recognise without FFmpeg: a file that starts like a media
# file but cannot be opened is reported as truncated or corrupt rather than "not a media file".
_MAGIC_AT_0 = (
    b"\x1a\x45\xdf\xa3",  # Matroska / WebM (EBML)
    b"RIFF",  # wav, avi
    b"OggS",
    b"fLaC",
    b"ID3",  # mp3 with ID3 tag
    b"FLV",
    b"\x00\x00\x01\xba",  # MPEG program stream
    b"\x30\x26\xb2\x75",  # ASF / wmv
)
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


class MediaError(ValueError):
    """A media file cannot be read or written.

    ``str(err)`` is a single line ``<path>: <problem>``; ``err.path`` and ``err.problem`` hold the
    two parts for programs that want to tabulate failures.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        # FFmpeg messages may span lines; the contract is one line.
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self) -> tuple[type[MediaError], tuple[str, str]]:
        # Default exception pickling would call MediaError(message); worker pools need this.
        return (type(self), (self.path, self.problem))


def looks_like_media(path: str | os.PathLike[str]) -> bool:
    """True if the file's first bytes match a known container signature."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if head.startswith(_MAGIC_AT_0) or head[4:8] in _MP4_BOXES:
        return True
    # MPEG audio frame sync or AAC ADTS header.
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def _mp4_without_moov(path: str | os.PathLike[str]) -> bool:
    """True for an mp4/mov whose top-level boxes end without the 'moov' index (writer killed)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            offset = 0
            while offset + 8 <= size:
                f.seek(offset)
                header = f.read(16)
                box_size, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if offset == 0 and kind != b"ftyp":
                    return False
                if kind == b"moov":
                    return False
                if box_size == 1 and len(header) == 16:  # 64-bit size
                    box_size = int.from_bytes(header[8:16], "big")
                if box_size < 8:  # 0 = "to end of file", or garbage
                    break
                offset += box_size
    except OSError:
        return False
    return offset > 0


def reason_of(exc: BaseException) -> str:
    """The OS's or FFmpeg's words for ``exc``."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else (str(exc) or type(exc).__name__)


def translate(path: str | os.PathLike[str], exc: BaseException, *, writing: bool = False) -> MediaError:
    """Turn an exception raised by PyAV or the OS into a :class:`MediaError` for ``path``."""
    if isinstance(exc, MediaError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return MediaError(path, "directory not found" if writing else "file not found")
    if isinstance(exc, IsADirectoryError):
        return MediaError(path, "is a directory")
    if isinstance(exc, PermissionError):
        return MediaError(path, "permission denied")
    reason = reason_of(exc)
    if writing:
        return MediaError(path, f"cannot write ({reason})")
    if isinstance(exc, (av.error.InvalidDataError, av.error.EOFError, EOFError)):
        if _mp4_without_moov(path):
            return MediaError(path, "truncated or corrupt (mp4 index 'moov' missing: the file was not finished)")
        if looks_like_media(path):
            return MediaError(path, f"truncated or corrupt ({reason})")
        return MediaError(path, f"not a media file ({reason})")
    if isinstance(exc, av.error.FFmpegError):
        return MediaError(path, f"cannot decode ({reason})")
    return MediaError(path, f"cannot read ({reason})")


def quiet_ffmpeg() -> None:
    """Turn FFmpeg's logging off (again: importing torchvision sets it to ERROR)."""
    if av.logging.get_level() is not None:
        av.logging.set_level(None)


@contextmanager
def media_errors(path: str | os.PathLike[str], *, writing: bool = False) -> Iterator[None]:
    """Re-raise PyAV and OS errors inside the block as :class:`MediaError` naming ``path``
    (with FFmpeg's own logging off, so the one line is all a user sees)."""
    quiet_ffmpeg()
    try:
        yield
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, EOFError) as exc:
        raise translate(path, exc, writing=writing) from exc
