"""avsr.decoding.batch: worker processes reading files ahead of the model give what one process
reading them one after the other gives, a broken file included, in input order."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsr.decoding.batch import LoadSettings, transcribe_many
from avsr.decoding.recognizer import DecodeOptions, Recognizer
from avsr.decoding.transcribe import segmenting_for


@pytest.fixture
def folder(lrs2_corpus: Path, tmp_path: Path) -> list[Path]:
    """Four clips with a broken file in the middle."""
    clips = sorted(lrs2_corpus.glob("main/*/*.mp4"))[:4]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    return [*clips[:2], broken, *clips[2:]]


def test_workers_reading_ahead_give_the_outcomes_of_one_process(micro_model_dir, folder):
    recognizer = Recognizer.load(micro_model_dir)
    settings = LoadSettings("av", tuple(recognizer.modalities))
    options = DecodeOptions(decoder="beam", beam=3, max_length=8)
    segmenting = segmenting_for(recognizer)
    runs = {}
    for workers, ahead in ((1, None), (2, 1)):
        # chunks of about two clips: the model decodes while the workers read the next ones
        outcomes = transcribe_many(
            recognizer, folder, settings, options, segmenting, workers=workers, chunk_frames=80, ahead=ahead
        )
        runs[workers] = [(o.index, o.skipped, o.result.to_dict() if o.result else None) for o in outcomes]
    assert [index for index, _, _ in runs[1]] == [0, 1, 2, 3, 4]  # in input order, the broken one when read
    index, skipped, result = runs[1][2]
    assert result is None and skipped.startswith(str(folder[2]))
    assert sum(result is not None for _, _, result in runs[1]) == 4
    assert runs[2] == runs[1]  # the same transcripts, scores and word times
