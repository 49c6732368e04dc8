"""Transcribing many files: the media, face and crop stages in worker processes while the model
decodes what they have finished.

Reading a file and finding its face take most of the time on a CPU (`benchmarks/decode.py`), and
they are independent per file, so N workers (`avsr.parallel.run_jobs` over
`avsr.decoding.reading.load_in_worker`, which imports no torch and so starts fast) prepare files
while the main process, which holds the model, decodes them in chunks of at least ``chunk_frames``
video frames (enough to fill the batched search). The workers run at most ``ahead`` files ahead
of the model (bounded memory) and hand them over in input order, so the chunks, and with them
every transcript and score, are those of one process reading the files one after the other.
The model's process uses the cores the workers leave (torch threads), since threads that fight
busy workers for a core wait more than they compute. Each file's outcome comes back as soon as
its chunk is decoded: a ``FileResult``, or the one-line reason it was skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from avsr.decoding.reading import LoadedInput, LoadSettings, load_in_worker, start_worker
from avsr.decoding.recognizer import DecodeOptions, Recognizer
from avsr.decoding.segment import SegmentConfig
from avsr.decoding.stages import StageTimes
from avsr.decoding.transcribe import FileResult, transcribe_files
from avsr.media.constants import VIDEO_FPS
from avsr.parallel import available_cores, run_jobs, torch_threads

#: decode once this many video frames (a minute) are loaded, or the inputs are all read: about the
#: 32 short utterances over which the batched search reaches its speed-up (`benchmarks/decode.py`)
CHUNK_FRAMES = 1500
#: files read ahead of the model per worker (bounded prefetch)
AHEAD_PER_WORKER = 2


@dataclass
class Outcome:
    index: int  # the input's position in the list given
    result: FileResult | None = None
    skipped: str | None = None  # one line
    seconds: float = 0.0  # of media decoded


def transcribe_many(
    recognizer: Recognizer,
    paths: Sequence[str | Path],
    settings: LoadSettings,
    options: DecodeOptions,
    segmenting: SegmentConfig,
    *,
    workers: int = 1,
    chunk_frames: int = CHUNK_FRAMES,
    ahead: int | None = None,
    times: StageTimes | None = None,
    labelled: bool = False,
) -> Iterator[Outcome]:
    """Outcomes of ``paths`` in input order (a skipped file as soon as it is read, a decoded one
    when its chunk is). ``ahead``: with workers, the files read and not yet taken by the model,
    at most (default ``AHEAD_PER_WORKER`` per worker); ``times`` collects every stage's seconds,
    the workers' included; ``labelled``: results name their speakers (`transcribe_files`)."""
    chunk: list[tuple[int, LoadedInput]] = []
    frames = 0

    # beside busy workers, the model gets the cores they leave
    cores = max(1, available_cores() - workers)

    def decode() -> Iterator[Outcome]:
        nonlocal chunk, frames
        with torch_threads(cores) if workers > 1 else nullcontext():
            results = transcribe_files(
                recognizer,
                [x for _, x in chunk],
                settings.modality,
                options,
                segmenting,
                times=times,
                labelled=labelled,
            )
        for (index, loaded), result in zip(chunk, results):
            yield Outcome(index, result=result, seconds=loaded.frames / VIDEO_FPS)
        chunk, frames = [], 0

    jobs = [(i, str(p)) for i, p in enumerate(paths)]
    if workers > 1:
        bound = ahead if ahead is not None else AHEAD_PER_WORKER * workers
        prepared = run_jobs(load_in_worker, jobs, workers, start_worker, (settings,), ahead=bound)
    else:  # in-process, without run_jobs' one-BLAS-thread limit: the model runs between the files
        start_worker(settings)
        prepared = map(load_in_worker, jobs)
    for index, loaded, spent in prepared:
        if times is not None and spent is not None:
            for name, seconds in spent.seconds.items():
                times.seconds[name] = times.seconds.get(name, 0.0) + seconds
        if isinstance(loaded, str):
            yield Outcome(index, skipped=loaded)
            continue
        chunk.append((index, loaded))
        frames += loaded.frames
        if frames >= chunk_frames:
            yield from decode()
    if chunk:
        yield from decode()


__all__ = ["AHEAD_PER_WORKER", "CHUNK_FRAMES", "LoadSettings", "Outcome", "transcribe_many"]
