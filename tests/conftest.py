"""Session-wide fixtures: the synthetic corpora are generated once per test run and shared."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avsr.cli import prepare as prepare_cli
from avsr.cli import synth as synth_cli
from micro_models import export_micro_model

LRS2_ARGS = [
    "--layout",
    "lrs2",
    "--utterances",
    "12",
    "--speakers",
    "4",
    "--seed",
    "3",
    "--pretrain-fraction",
    "0.5",
    "--workers",
    "2",
    "--quiet",
]
LRW_ARGS = [
    "--layout",
    "lrw",
    "--utterances",
    "10",
    "--words",
    "3",
    "--speakers",
    "3",
    "--seed",
    "5",
    "--workers",
    "2",
    "--quiet",
]

SCENES_ARGS = [
    "--layout",
    "scenes",
    "--utterances",
    "2",
    "--speakers",
    "3",
    "--seed",
    "4",
    "--workers",
    "2",
    "--quiet",
]


@pytest.fixture(scope="session", autouse=True)
def identity_cache(tmp_path_factory) -> Path:
    """Casting's measurement cache (``AVSR_CACHE_DIR``) starts empty in every run, shared by the
    run's tests and the commands they start."""
    root = tmp_path_factory.mktemp("avsr_cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("AVSR_CACHE_DIR", str(root))
    yield root
    patch.undo()


@pytest.fixture(scope="session")
def lrs2_corpus(tmp_path_factory) -> Path:
    """A 12-clip lrs2-layout corpus made through the avsr-synth command line."""
    root = tmp_path_factory.mktemp("synth") / "lrs2"
    assert synth_cli.main([str(root), *LRS2_ARGS]) == 0
    return root


@pytest.fixture(scope="session")
def lrw_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "lrw"
    assert synth_cli.main([str(root), *LRW_ARGS]) == 0
    return root


@pytest.fixture(scope="session")
def scenes_corpus(tmp_path_factory) -> Path:
    """Two conversations of two people side by side (listeners still, then mumbling), with the truth."""
    root = tmp_path_factory.mktemp("synth") / "scenes"
    assert synth_cli.main([str(root), *SCENES_ARGS]) == 0
    return root


@pytest.fixture(scope="session")
def train_data(lrs2_corpus: Path, tmp_path_factory) -> dict[str, Path]:
    """The 12-clip corpus prepared once (96 px crops, manifests) plus a char tokenizer."""
    root = tmp_path_factory.mktemp("train_data")
    prepared, tokenizer = root / "prepared", root / "tokenizer"
    assert prepare_cli.main(["lrs2", str(lrs2_corpus), str(prepared), "--workers", "2", "--quiet"]) == 0
    assert (
        prepare_cli.main(
            ["tokenizer", str(prepared / "train.tsv"), str(prepared / "pretrain.tsv"), str(tokenizer), "--kind", "char"]
        )
        == 0
    )
    return {"path": prepared, "tokenizer": tokenizer}


@pytest.fixture(scope="session")
def lrw_prepared(lrw_corpus: Path, tmp_path_factory) -> Path:
    """The 9-clip lrw corpus prepared once (29-frame, 96 px mouth crops; manifests per split)."""
    prepared = tmp_path_factory.mktemp("lrw_prepared") / "prepared"
    assert prepare_cli.main(["lrw", str(lrw_corpus), str(prepared), "--workers", "2", "--quiet"]) == 0
    return prepared


@pytest.fixture(scope="session")
def micro_model_dir(train_data, tmp_path_factory) -> Path:
    """An exported model folder: the micro architecture at random initialisation (for testing
    what the decoding commands do with a model, not how good it is)."""
    return export_micro_model(tmp_path_factory.mktemp("micro_model") / "model", train_data["tokenizer"])


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: one thread is fastest, and extra threads only fight
    other work for the cores. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def long_video(lrs2_corpus: Path, tmp_path_factory) -> Path:
    """Three corpus clips back to back (about 7 s, pauses between the sentences): long enough to
    be segmented at 3 s, and a live source of several segments."""
    import numpy as np

    from avsr.media import read_video, write_mp4

    frames, audio = [], []
    for clip in sorted(lrs2_corpus.glob("main/*/*.mp4"))[:3]:
        av = read_video(clip)
        frames.append(av.frames)
        audio.append(av.audio)
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_mp4(path, np.concatenate(frames), np.concatenate(audio))
    return path


@pytest.fixture(scope="session")
def face_video(tmp_path_factory) -> Path:
    """1.6 s of a real face (scikit-image's astronaut, still) with a modulated tone: dlib finds the
    face, so avsr-decode runs its whole chain on it."""
    import cv2
    import numpy as np
    import skimage.data

    from avsr.media import write_mp4

    face = cv2.resize(skimage.data.astronaut()[40:240, 125:325], (160, 160), interpolation=cv2.INTER_AREA)
    frames = np.stack([np.roll(face, i % 3, axis=1) for i in range(40)])
    t = np.arange(40 * 640) / 16000
    audio = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    path = tmp_path_factory.mktemp("face") / "face.mp4"
    write_mp4(path, frames, audio)
    return path
