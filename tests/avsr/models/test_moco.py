"""MoCo v2 for lip video: the momentum (EMA) key encoder, the FIFO key queue, InfoNCE, the views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avsr.models.config import ConfigError, VisualConfig
from avsr.models.moco import MoCo, MoCoConfig
from avsr.training.lip_views import LipViewConfig, lip_view, pad_views, two_views

VISUAL = VisualConfig(trunk="resnet18", norm="group", width=0.125, norm_groups=4)


def _moco(**overrides) -> MoCo:
    torch.manual_seed(0)
    return MoCo(VISUAL, MoCoConfig(**{"projection_dim": 16, "queue_size": 8, **overrides}))


def _clips(batch: int = 3, frames: int = 6, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(batch * 10 + frames)
    return torch.randn(batch, frames, size, size, generator=g), torch.full((batch,), frames, dtype=torch.int64)


def _state(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def test_the_key_encoder_is_an_exponential_average_of_the_query_encoder():
    moco = _moco(momentum=0.9)
    assert all(torch.equal(k, q) for k, q in zip(moco._key_parameters(), moco._query_parameters()))  # starts equal
    optimizer = torch.optim.SGD(moco._query_parameters(), lr=0.5)
    expected = _state(moco._key_parameters())
    video, lengths = _clips()
    for _ in range(3):
        loss, _ = moco(video, video.flip(-1), lengths)
        optimizer.zero_grad()
        loss.backward()
        # the key encoder gets no gradient; it moved (inside forward) from the query weights before this step
        assert all(p.grad is None for p in moco._key_parameters())
        query_before_step = _state(moco._query_parameters())
        optimizer.step()
        expected = [0.9 * k + 0.1 * q for k, q in zip(expected, query_before_step)]
        # forward's update used the query weights of the previous step: check after the next update
        moco.momentum_update()
        expected = [0.9 * k + 0.1 * q for k, q in zip(expected, _state(moco._query_parameters()))]
        for got, want in zip(moco._key_parameters(), expected):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(k, q) for k, q in zip(moco._key_parameters(), moco._query_parameters()))


def test_the_queue_is_first_in_first_out_with_the_configured_size():
    moco = _moco(queue_size=5, projection_dim=2)
    batches = [torch.full((3, 2), float(i)) for i in range(1, 5)]  # keys 1,1,1 then 2,2,2 ...
    moco.enqueue(batches[0])
    assert moco.queue[:3, 0].tolist() == [1.0, 1.0, 1.0] and int(moco.queue_next) == 3
    moco.enqueue(batches[1])  # wraps around: rows 3, 4, then 0
    assert moco.queue[:, 0].tolist() == [2.0, 1.0, 1.0, 2.0, 2.0] and int(moco.queue_next) == 1
    for keys in batches[2:]:
        moco.enqueue(keys)
    assert moco.queue.shape == (5, 2)
    # 12 keys went in: the queue holds the last 5 (keys 3,3,4,4,4), the oldest next in line
    assert sorted(moco.queue[:, 0].tolist()) == [3.0, 3.0, 4.0, 4.0, 4.0]
    oldest = int(moco.queue_next)
    assert moco.queue[oldest, 0] == 3.0 and moco.queue[(oldest - 1) % 5, 0] == 4.0
    moco.enqueue(torch.arange(14.0).view(7, 2))  # more keys than the queue holds: the newest 5 stay
    assert sorted(moco.queue[:, 0].tolist()) == [4.0, 6.0, 8.0, 10.0, 12.0]


def test_training_steps_queue_their_keys_and_evaluation_does_not():
    moco = _moco(queue_size=8)
    video, lengths = _clips(batch=3)
    before = moco.queue.clone()
    moco.eval()
    with torch.no_grad():
        moco(video, video, lengths)
    assert torch.equal(moco.queue, before) and int(moco.queue_next) == 0
    moco.train()
    moco(video, video, lengths)
    assert (
        int(moco.queue_next) == 3
        and not torch.equal(moco.queue[:3], before[:3])
        and torch.equal(moco.queue[3:], before[3:])
    )
    torch.testing.assert_close(moco.queue[:3].norm(dim=1), torch.ones(3))  # keys are unit vectors


def test_infonce_picks_the_own_key_among_the_queue():
    moco = _moco(momentum=0.0, temperature=0.1)  # key encoder = query encoder after the update
    moco.eval()  # no queue update, deterministic
    video, lengths = _clips(batch=4)
    with torch.no_grad():
        loss, accuracy = moco(video, video, lengths)
        queries = moco.embed_queries(video, lengths)
    positive = torch.ones(4, 1)  # identical views and encoders: q . k = 1
    logits = torch.cat([positive, queries @ moco.queue.t()], dim=1) / 0.1
    assert accuracy == 1.0
    assert loss.item() == pytest.approx(F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)).item(), rel=1e-5)


def test_views_are_random_crops_of_the_clip_and_repeatable_by_seed():
    video = np.random.default_rng(1).integers(0, 256, (20, 48, 48), dtype=np.uint8)
    config = LipViewConfig(crop_size=32)
    a = lip_view(video, np.random.default_rng(5), config)
    b = lip_view(video, np.random.default_rng(5), config)
    c = lip_view(video, np.random.default_rng(6), config)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape[1:] == (32, 32) and 16 <= a.shape[0] <= 20  # at least 80% of the frames
    batch, lengths = pad_views([a, c])
    assert batch.shape == (2, max(a.shape[0], c.shape[0]), 32, 32) and lengths.tolist() == [a.shape[0], c.shape[0]]
    with pytest.raises(ValueError, match="grey frames"):
        lip_view(video[..., None], np.random.default_rng(0), config)


def test_views_of_a_sentence_come_from_one_shared_segment():
    """With segment_frames, both views cover frames of one segment of that length: frame i of the
    clip is filled with the value i, so a view's values tell which frames it shows."""
    video = np.repeat(np.arange(200, dtype=np.uint8)[:, None, None], 16, axis=1).repeat(16, axis=2)
    config = LipViewConfig(
        crop_size=16,
        min_area=1.0,
        aspect=(1.0, 1.0),
        hflip_prob=0.0,
        brightness=0.0,
        contrast=0.0,
        blur_prob=0.0,
        mean=0.0,
        std=1.0,
        segment_frames=29,
    )
    rng = np.random.default_rng(3)
    for _ in range(20):
        q, k = two_views(video, rng, config)
        frames = [torch.round(v[:, 0, 0] * 255).long() for v in (q, k)]
        shown = torch.cat(frames)
        assert shown.max() - shown.min() < 29 and len(frames[0]) >= 23 and len(frames[1]) >= 23


def test_bad_moco_settings_are_config_errors():
    for bad in ({"momentum": 1.0}, {"temperature": 0.0}, {"queue_size": 0}):
        with pytest.raises(ConfigError):
            MoCoConfig(**bad)


def test_moco_learns_to_tell_distinct_clips_apart_without_collapsing():
    """Blocky random patterns, two mild views each: InfoNCE must fall well below chance (ln K) and
    different clips must keep different embeddings. (Measured: with MoCo v2's plain head this small
    GroupNorm front-end maps every clip to one vector within 25 steps, between-clip cosine 1.0.)"""
    torch.manual_seed(0)
    moco = MoCo(
        VisualConfig(trunk="resnet18", norm="group", width=0.125, norm_groups=8, downsample=2),
        MoCoConfig(queue_size=64, momentum=0.9, hidden_dim=256),
    )
    optimizer = torch.optim.AdamW(moco._query_parameters(), lr=5e-4)
    rng = np.random.default_rng(0)
    clips = [
        np.repeat(np.kron(rng.integers(0, 256, (1, 12, 12)), np.ones((1, 8, 8))), 10, axis=0).astype(np.uint8)
        for _ in range(128)
    ]
    config = LipViewConfig(hflip_prob=0.0, min_area=0.8, blur_prob=0.0)
    losses = []
    for _ in range(75):
        chosen = rng.choice(len(clips), 16, replace=False)
        views = [two_views(clips[i], rng, config) for i in chosen]
        q, q_lens = pad_views([v[0] for v in views])
        k, k_lens = pad_views([v[1] for v in views])
        loss, _ = moco(q, k, q_lens, k_lens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.8 * np.log(65)
    moco.eval()
    with torch.no_grad():
        embeddings = moco.embed_queries(q, q_lens)
    between = (embeddings @ embeddings.t())[~torch.eye(len(embeddings), dtype=torch.bool)]
    assert between.mean() < 0.9


# -- two processes (gloo, CPU) ------------------------------------------------------------------


def _queue_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        moco = _moco(queue_size=8).train()
        video, lengths = _clips(batch=3 - rank)  # rank 0: 3 clips, rank 1: 2 (a last, short batch)
        moco(video, video, lengths)
        own_keys = moco.embed_keys(video, lengths)  # the key encoder after this step's update
        torch.save(
            {"queue": moco.queue.clone(), "next": int(moco.queue_next), "keys": own_keys}, f"{out}/rank{rank}.pt"
        )
    finally:
        dist.destroy_process_group()


def test_under_ddp_every_rank_queues_the_keys_of_all_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_queue_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(ranks[0]["queue"], ranks[1]["queue"]) and ranks[0]["next"] == ranks[1]["next"] == 5
    queued = ranks[0]["queue"][:5]
    # rank 0's three keys, then rank 1's two, in rank order (the clips differ by batch size)
    assert torch.allclose(queued[:3], ranks[0]["keys"], atol=1e-5) and torch.allclose(
        queued[3:], ranks[1]["keys"], atol=1e-5
    )
