"""Transcribing a live source: segments closed by pauses as the sound arrives, each decoded at once.

A reader thread takes chunks from the source (`avsr.media.live`) and queues them with the moment
they arrived; the main thread keeps the frames and audio since the last cut, and cuts when a pause
of ``min_pause_seconds`` follows speech (in the middle of the pause so far), when the piece reaches
``max_seconds``, or, without audio, every ``target_seconds``. Each piece is decoded as a file is
(every face tracked, the speaker's lips read, `avsr.decoding.transcribe`) and its segments are
handed over with their latency: from the arrival of the chunk that closed the piece to its text.
The reader never waits for the model, so a source that is faster to decode than real time keeps a
short queue; ``LiveReport.real_time_factor`` says whether it did.

Pauses are found as `avsr.decoding.segment` finds them in a file, against the loudness of the
speech heard so far (its 95th percentile) instead of the whole recording's.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from avsr.decoding.reading import LoadedInput, TranscribeError
from avsr.decoding.segment import SegmentConfig, frame_energy_db
from avsr.decoding.stages import StageTimes
from avsr.decoding.transcribe import SegmentResult, transcribe_files
from avsr.media.constants import SAMPLES_PER_FRAME, VIDEO_FPS
from avsr.media.errors import MediaError
from avsr.media.live import LiveChunk, LiveStream

#: a piece needs this many frames above the silence threshold (0.2 s) to be cut and decoded: a click is no speech
MIN_SPEECH_FRAMES = 5
#: the loudness of speech is judged over this many frames heard (200 s)
LOUDNESS_HISTORY = 5000


@dataclass
class LiveSegment:
    result: SegmentResult  # times in seconds on the source's clock
    latency: float  # seconds from the arrival of the piece's last chunk to its text


@dataclass
class LiveReport:
    segments: list[SegmentResult] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    media_seconds: float = 0.0
    busy_seconds: float = 0.0  # decoding (faces, model, search) in the main thread
    interrupted: bool = False
    error: str | None = None  # the one line why the source broke off

    @property
    def real_time_factor(self) -> float:
        return self.busy_seconds / self.media_seconds if self.media_seconds else 0.0

    def latency(self, quantile: float) -> float:
        return float(np.quantile(self.latencies, quantile)) if self.latencies else float("nan")


#: (frames, audio) of one piece -> the input to decode (faces tracked, crops made, or TranscribeError)
PieceLoader = Callable[[np.ndarray | None, np.ndarray | None], LoadedInput]


class LiveTranscriber:
    """Cut a live source into pieces at pauses and decode each as it closes.

    ``load(frames, audio)`` makes the decodable input of a piece ((T, H, W, 3) frames or None,
    (T * 640,) audio or None) and ``decode(inputs)`` the segments of each (`transcribe_files`
    with the recogniser and options of the command). Pieces that close while the source's chunks
    are still waiting in the queue (the decoder fell behind) are decoded together, in one batch:
    the decoder catches up instead of falling further behind.
    """

    def __init__(
        self,
        load: PieceLoader,
        decode: Callable[[list[LoadedInput]], list[list[SegmentResult]]],
        segmenting: SegmentConfig,
    ) -> None:
        self.load = load
        self.decode = decode
        self.config = segmenting
        self._faces_before = -1

    def run(
        self,
        stream: LiveStream,
        on_segment: Callable[[LiveSegment], None],
        on_note: Callable[[str], None] = lambda note: None,
    ) -> LiveReport:
        """Read ``stream`` to its end (or Ctrl-C: the piece so far is still decoded); each segment
        and each note (a fall-back, a lost face, who is in view) is handed over as it comes."""
        report = LiveReport()
        self._note = lambda line: (report.notes.append(line), on_note(line))
        chunks: queue.Queue[tuple[LiveChunk, float] | BaseException | None] = queue.Queue()
        reader = threading.Thread(target=_read, args=(stream, chunks), daemon=True)
        reader.start()
        piece = _Piece(stream.has_video, stream.has_audio, self.config)
        closed: list[tuple[_Taken, float]] = []  # pieces cut, not yet decoded
        try:
            while True:
                item = chunks.get()
                if item is None:
                    break
                if isinstance(item, BaseException):  # the source broke off: what came is still decoded
                    if not isinstance(item, MediaError):
                        raise item
                    report.error = str(item)
                    break
                chunk, arrived = item
                piece.add(chunk)
                cut = piece.cut_point()
                if cut is not None:
                    closed.append((piece.take(cut), arrived))
                if closed and chunks.empty():  # caught up with the source: decode what closed
                    self._decode(closed, report, on_segment)
                    closed = []  # (a Ctrl-C in the middle of decoding leaves them to the last batch)
        except KeyboardInterrupt:
            report.interrupted = True
            stream.stop()
        closed.append((piece.take(piece.ready_frames()), time.monotonic()))
        self._decode(closed, report, on_segment)
        reader.join(timeout=10)  # the source closed before the interpreter may exit
        report.media_seconds = piece.origin / VIDEO_FPS
        return report

    def _decode(self, closed: list[tuple[_Taken, float]], report: LiveReport, on_segment) -> None:
        """Decode the pieces in one batch; hand over their segments in order."""
        started = time.perf_counter()
        ready: list[tuple[_Taken, float, LoadedInput]] = []
        for taken, arrived in closed:
            if not taken.frames or not taken.heard:  # nothing but silence: no text to wait for
                continue
            try:
                ready.append((taken, arrived, self.load(taken.video, taken.audio)))
            except TranscribeError as exc:
                self._note(f"{taken.start / VIDEO_FPS:.2f} s: {exc}")
        results = self.decode([loaded for _, _, loaded in ready]) if ready else []
        report.busy_seconds += time.perf_counter() - started
        for (taken, arrived, loaded), segments in zip(ready, results):
            faces = len(loaded.faces)
            for note in loaded.notes:  # who is in view is said again only when it changes
                if not (note.startswith(f"{faces} faces (") and faces == self._faces_before):
                    self._note(f"{taken.start / VIDEO_FPS:.2f} s: {note}")
            self._faces_before = faces
            for result in segments:
                if not result.text:
                    continue
                shifted = _shifted(result, taken.start / VIDEO_FPS)
                latency = time.monotonic() - arrived
                report.segments.append(shifted)
                report.latencies.append(latency)
                on_segment(LiveSegment(shifted, latency))


def _read(stream: LiveStream, chunks: queue.Queue) -> None:
    """The reader thread: every chunk with its arrival time, then None (or the error)."""
    try:
        for chunk in stream:
            chunks.put((chunk, time.monotonic()))
    except BaseException as exc:  # a MediaError mid-stream reaches the main thread
        chunks.put(exc)
        return
    chunks.put(None)


@dataclass
class _Taken:
    start: int  # first frame on the source's clock
    frames: int
    video: np.ndarray | None
    audio: np.ndarray | None
    heard: bool  # any frame above the silence threshold (or no audio to tell)


class _Piece:
    """The frames and audio since the last cut, and where the next cut goes.

    Quiet is judged at each decision against the loudness of everything heard so far (its last
    ``LOUDNESS_HISTORY`` frames), so a recording that starts in silence is not taken for speech:
    one percentile and one comparison of the piece's energies per chunk, whatever its length.
    """

    def __init__(self, has_video: bool, has_audio: bool, config: SegmentConfig) -> None:
        self.has_video, self.has_audio = has_video, has_audio
        self.config = config
        self.origin = 0  # frames handed over so far
        self.video: list[np.ndarray] = []
        self.samples: list[np.ndarray] = []
        self.energy: list[float] = []  # per complete 640-sample frame of the piece
        self.history: deque[float] = deque(maxlen=LOUDNESS_HISTORY)  # energies heard, this piece's too
        self.pending: np.ndarray = np.zeros(0, np.float32)

    def add(self, chunk: LiveChunk) -> None:
        if chunk.kind == "video":
            self.video.append(chunk.data)
            return
        self.samples.append(chunk.data)
        self.pending = np.concatenate([self.pending, chunk.data])
        whole = len(self.pending) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
        if whole:
            energies = frame_energy_db(self.pending[:whole]).tolist()
            self.energy += energies
            self.history.extend(energies)
            self.pending = self.pending[whole:]

    def quiet(self) -> np.ndarray:
        """(frames of the piece,) bool: each frame quiet against the loudness heard so far."""
        if not self.history:
            return np.zeros(0, bool)
        threshold = np.percentile(np.fromiter(self.history, float), 95) + self.config.silence_db
        return np.asarray(self.energy, dtype=np.float64) < threshold

    def ready_frames(self) -> int:
        """Frames of the piece that have both their video (if any) and their audio (if any)."""
        counts = []
        if self.has_video:
            counts.append(len(self.video))
        if self.has_audio:
            counts.append(len(self.energy))
        return min(counts) if counts else 0

    def cut_point(self) -> int | None:
        """Where to cut now (frames into the piece), or None to wait for more."""
        ready = self.ready_frames()
        longest = int(self.config.max_seconds * VIDEO_FPS)
        if not self.has_audio:
            target = int(self.config.target_seconds * VIDEO_FPS)
            return target if ready >= target else None
        quiet = self.quiet()
        loud = np.flatnonzero(~quiet)
        quiet_run = len(quiet) - 1 - int(loud[-1]) if len(loud) else len(quiet)  # the pause so far
        cut = len(quiet) - quiet_run // 2
        min_pause = max(1, int(round(self.config.min_pause_seconds * VIDEO_FPS)))
        if quiet_run >= min_pause and len(loud) >= MIN_SPEECH_FRAMES and ready >= cut:
            return cut
        return longest if ready >= longest else None

    def take(self, cut: int) -> _Taken:
        """Hand over the first ``cut`` frames (and their audio) and keep the rest."""
        video = np.stack(self.video[:cut]) if self.video[:cut] else None
        self.video = self.video[cut:]
        audio = None
        if self.has_audio:
            samples = np.concatenate(self.samples) if self.samples else np.zeros(0, np.float32)
            audio = samples[: cut * SAMPLES_PER_FRAME]
            self.samples = [samples[cut * SAMPLES_PER_FRAME :]]
        heard = not self.has_audio or int((~self.quiet()[:cut]).sum()) >= MIN_SPEECH_FRAMES
        self.energy = self.energy[cut:]
        taken = _Taken(self.origin, cut, video, audio, heard)
        self.origin += cut
        return taken


def _shifted(result: SegmentResult, offset: float) -> SegmentResult:
    """``result`` with its times (and its words') moved ``offset`` seconds on: a piece's times on the source's clock."""
    words = [replace(w, start=w.start + offset, end=w.end + offset) for w in result.words]
    return replace(result, start=result.start + offset, end=result.end + offset, words=words)


def transcribe_piece(
    recognizer, modality: str, options, segmenting: SegmentConfig, labelled: bool, times: StageTimes | None = None
):
    """``decode(inputs)`` for :class:`LiveTranscriber`: each piece's segments, as a file's, in one
    batch (``times`` collects the model, search and align seconds)."""

    def decode(inputs: list[LoadedInput]) -> list[list[SegmentResult]]:
        results = transcribe_files(recognizer, inputs, modality, options, segmenting, labelled=labelled, times=times)
        return [result.segments for result in results]

    return decode


__all__ = ["LiveReport", "LiveSegment", "LiveTranscriber", "transcribe_piece"]
