"""Video corruptions: each does what it says, keeps shapes, repeats from its seed; the training
loader applies them (the wrong face is another clip's video) and leaves everything else alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from avsr.training import augment
from repo_paths import REPO


def moving_video(frames: int = 40, size: int = 48, seed: int = 0) -> np.ndarray:
    """Frames that all differ: textured noise plus a bright bar moving down, frame by frame."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 120, size=(frames, size, size), dtype=np.uint8)
    for t in range(frames):
        video[t, t % size, :] = 255
    return video


def laplacian_energy(video: np.ndarray) -> float:
    x = video.astype(np.float64)
    lap = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return float(np.mean(lap**2))


@pytest.mark.parametrize("kind", ["blur", "occlusion", "frozen", "noise", "wrong_face"])
def test_corruptions_keep_the_shape_and_repeat_from_the_seed(kind):
    video = moving_video()
    donor = moving_video(25, seed=9)
    out = augment.corrupt_video(video, kind, np.random.default_rng(3), donor)
    assert out.shape == video.shape and out.dtype == np.uint8
    assert not np.array_equal(out, video)
    assert np.array_equal(out, augment.corrupt_video(video, kind, np.random.default_rng(3), donor))
    if kind != "wrong_face":
        others = [augment.corrupt_video(video, kind, np.random.default_rng(s)) for s in range(4, 8)]
        assert any(not np.array_equal(out, o) for o in others)
    assert augment.corrupt_video(video, "none", np.random.default_rng(3)) is video


def test_frozen_repeats_one_frame_over_at_least_half_the_clip():
    video = moving_video()
    for seed in range(10):
        out = augment.freeze_frames(video, np.random.default_rng(seed))
        changed = [t for t in range(len(video)) if not np.array_equal(out[t], video[t])]
        start = changed[0] - 1  # the span's first frame is itself
        span = changed[-1] - start + 1
        assert span >= len(video) // 2
        assert all(np.array_equal(out[t], video[start]) for t in range(start, start + span))
        assert all(np.array_equal(out[t], video[t]) for t in range(len(video)) if not start <= t < start + span)


def test_occlusion_hides_the_mouth_at_the_centre_and_nothing_else():
    video = moving_video(size=88)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        top, left, bottom, right = augment.occlusion_box(88, 88, np.random.default_rng(seed))
        out = augment.occlude_mouth(video, rng)
        assert top <= 44 < bottom and left <= 44 < right  # over the crop's centre: the mouth
        assert (bottom - top) * (right - left) >= 0.2 * 88 * 88
        patch = out[:, top:bottom, left:right]
        assert (patch == patch[0]).all(), "the patch is the same in every frame: the lips do not show through"
        outside = np.ones((88, 88), dtype=bool)
        outside[top:bottom, left:right] = False
        assert np.array_equal(out[:, outside], video[:, outside])


def test_wrong_face_is_the_donor_time_aligned():
    video = moving_video(40)
    short, long = moving_video(15, seed=7), moving_video(60, seed=8)
    assert np.array_equal(augment.wrong_face(video, long), long[:40])
    looped = augment.wrong_face(video, short)
    assert (
        np.array_equal(looped[:15], short)
        and np.array_equal(looped[15:30], short)
        and np.array_equal(looped[30:], short[:10])
    )
    resized = augment.wrong_face(video, moving_video(40, size=96, seed=7))
    assert resized.shape == video.shape
    with pytest.raises(ValueError, match="donor"):
        augment.corrupt_video(video, "wrong_face", np.random.default_rng(0))


def test_blur_removes_detail_and_noise_buries_it():
    video = moving_video()
    sharp = laplacian_energy(video)
    for seed in range(6):  # both the Gaussian and the motion kernel
        assert laplacian_energy(augment.blur_video(video, np.random.default_rng(seed))) < 0.2 * sharp
    noisy = augment.degrade_video(video, np.random.default_rng(0)).astype(np.float64)
    signal = video.astype(np.float64)
    # low contrast plus noise: little of the picture is left in the pixels
    assert np.corrcoef(noisy.ravel(), signal.ravel())[0, 1] < 0.6
    assert abs(noisy.mean() - signal.mean()) < 10


def test_unknown_corruption_is_an_error():
    with pytest.raises(ValueError, match="unknown video corruption 'rain'"):
        augment.corrupt_video(moving_video(), "rain", np.random.default_rng(0))


# ---------------------------------------------------------------------------------------- the loader


def _loader(train_data, **corruption):
    from avsr.data.tokenizers import load_tokenizer
    from avsr.training.data import (
        AVDataset,
        BatchLoader,
        DatasetConfig,
        PipelineState,
        VideoAugConfig,
        VideoCorruptionConfig,
    )

    config = DatasetConfig(
        path=train_data["path"],
        tokenizer=train_data["tokenizer"],
        train_splits=["train", "pretrain"],
        video=VideoAugConfig(corruption=VideoCorruptionConfig(**corruption)),
    )
    dataset = AVDataset(config, load_tokenizer(train_data["tokenizer"]), ("audio", "video"), seed=1)
    state = PipelineState()
    loader = BatchLoader(
        config, ("audio", "video"), train=True, seed=1, rank=0, state=state, donors=dataset.train.examples
    )
    return loader, dataset.train.examples, state


def test_loader_wrong_face_takes_another_clip_of_the_batch(train_data):
    from avsr.training.data import collate

    clean, examples, _ = _loader(train_data)
    wrong, _, _ = _loader(train_data, prob=1.0, kinds=["wrong_face"])
    batch = {"examples": examples[:3], "index": 0}
    before, after = clean(batch), wrong(batch)
    for k, item in enumerate(after):
        assert item["video"].shape == before[k]["video"].shape
        assert item["video_corrupted"] and "video_corrupted" not in before[k]
        assert np.array_equal(item["audio"], before[k]["audio"]) and item["tokens"] == before[k]["tokens"]
        sources = [
            j
            for j in range(3)
            if j != k and np.array_equal(item["video"], augment.wrong_face(before[k]["video"], before[j]["video"]))
        ]
        assert sources, f"item {k}: its video is not another clip's"
    # the batch marks the corrupted clips (modality dropout keeps their audio)
    assert collate(after, ("audio", "video"), 0.4, 0.2).video_corrupted.tolist() == [True] * 3
    assert collate(before, ("audio", "video"), 0.4, 0.2).video_corrupted is None
    # a batch of one takes a random other training utterance
    alone = wrong({"examples": examples[:1], "index": 1})[0]
    assert alone["video"].shape == clean({"examples": examples[:1], "index": 1})[0]["video"].shape
    assert not np.array_equal(alone["video"], clean({"examples": examples[:1], "index": 1})[0]["video"])


def test_loader_corruption_is_seeded_scheduled_and_off_by_default(train_data):
    from avsr.training.data import VideoCorruptionConfig

    clean, examples, _ = _loader(train_data)
    batch = {"examples": examples[:4], "index": 2}
    frozen, _, state = _loader(train_data, prob=1.0, kinds=["frozen"], start_step=10, ramp_steps=10)
    # before start_step: exactly the clean items (the corruption draws from its own generator)
    for a, b in zip(clean(batch), frozen(batch)):
        assert np.array_equal(a["video"], b["video"]) and np.array_equal(a["audio"], b["audio"])
    state.steps = 25  # after the ramp: every clip has a frozen span
    first = frozen(batch)
    for item, ref in zip(first, clean(batch)):
        repeats = sum(np.array_equal(item["video"][t], item["video"][t - 1]) for t in range(1, len(item["video"])))
        assert repeats >= len(item["video"]) // 2 - 1 and not np.array_equal(item["video"], ref["video"])
    assert all(np.array_equal(a["video"], b["video"]) for a, b in zip(first, frozen(batch)))  # repeatable
    ramp = VideoCorruptionConfig(prob=0.8, start_step=10, ramp_steps=10)
    assert [ramp.prob_at(s) for s in (0, 9, 10, 15, 20, 100)] == pytest.approx([0, 0, 0, 0.4, 0.8, 0.8])
    assert dataclasses.asdict(VideoCorruptionConfig())["prob"] == 0.0


def test_recipe_config_accepts_the_corruption_section():
    from avsr.training.avsr_config import TrainConfigError, load_train_config

    config = load_train_config(
        None, ["dataset.video.corruption.prob=0.3", "dataset.video.corruption.kinds=[blur,frozen]"]
    )
    assert config.dataset.video.corruption.prob == 0.3 and config.dataset.video.corruption.kinds == ["blur", "frozen"]
    assert load_train_config(None, []).dataset.video.corruption.prob == 0.0
    with pytest.raises(TrainConfigError, match="kinds"):
        load_train_config(None, ["dataset.video.corruption.kinds=[rain]"])
    with pytest.raises(TrainConfigError, match="prob"):
        load_train_config(None, ["dataset.video.corruption.prob=2"])
    # the synthetic recipe trains with it, from its audio-visual stage on, and with gated fusion
    synth = load_train_config(REPO / "recipes" / "synth" / "conf.yaml")
    corruption = synth.dataset.video.corruption
    assert corruption.prob > 0 and corruption.start_step == synth.modality_schedule[0].until_step
    assert synth.model.config["fusion"] == {"kind": "gated"}


def test_a_corrupted_video_keeps_its_audio_under_modality_dropout():
    import torch

    from avsr.models.avsr_model import AVSRModel
    from avsr.models.config import AVSRConfig

    d = AVSRConfig.tiny(12).to_dict()
    for key in ("audio_encoder", "video_encoder", "encoder", "decoder"):
        d[key]["dropout"] = 0.0
    d["modality_dropout"] = {"p_audio_only": 0.0, "p_video_only": 1.0}  # every utterance loses its audio ...
    torch.manual_seed(0)
    model = AVSRModel(AVSRConfig.from_dict(d))
    g = torch.Generator().manual_seed(0)
    audio, video, lens = (
        torch.randn(2, 8 * 640, generator=g) * 0.1,
        torch.randn(2, 8, 32, 32, generator=g),
        torch.tensor([8, 8]),
    )
    with torch.no_grad():
        model.eval()
        both = model.encode(audio, lens * 640, video, lens)[0]
        video_only = model.encode(None, None, video, lens)[0]
        model.train()
        dropped = model.encode(audio, lens * 640, video, lens, video_corrupted=torch.tensor([True, False]))[0]
    torch.testing.assert_close(dropped[0], both[0])  # ... but the one whose video was corrupted
    torch.testing.assert_close(dropped[1], video_only[1])
