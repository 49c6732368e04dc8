"""Media I/O: any container, frame rate or sample rate in; 25 fps RGB frames and 16 kHz mono out.

Reading: :func:`probe` (header facts), :func:`read_video` (frames + aligned audio),
:func:`read_audio`, and the streaming :func:`iter_frames` / :func:`iter_audio` for long files.
Writing: :func:`write_mp4` (H.264 + AAC) and :func:`write_wav` (16-bit PCM), both atomic.
Every problem with a file is a :class:`MediaError` whose message is one line naming the file.
Paths read from lists, manifests and configs go through :func:`inside` (or :class:`Confined`, for many) and :class:`OutsideRootError`.
"""

from avsr.media.constants import AUDIO_RATE, VIDEO_FPS
from avsr.media.errors import MediaError
from avsr.media.paths import Confined, OutsideRootError, inside
from avsr.media.probe import MediaInfo, probe
from avsr.media.reader import AVClip, iter_audio, iter_frames, read_audio, read_video
from avsr.media.writer import write_mp4, write_wav

__all__ = [
    "AUDIO_RATE",
    "VIDEO_FPS",
    "AVClip",
    "Confined",
    "MediaError",
    "MediaInfo",
    "OutsideRootError",
    "inside",
    "iter_audio",
    "iter_frames",
    "probe",
    "read_audio",
    "read_video",
    "write_mp4",
    "write_wav",
]
