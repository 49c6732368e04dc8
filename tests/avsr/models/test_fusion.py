"""Fusion kinds: the gated fusion learns which stream to trust, frame by frame; concat is unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from avsr.models.avsr_model import AVSRModel
from avsr.models.config import AVSRConfig, FusionConfig
from avsr.models.fusion import FUSIONS, ConcatFusion, GatedFusion
from avsr.models.io import load_model, save_model

pytestmark = pytest.mark.usefixtures("one_thread")

V = 12


def tiny(kind: str) -> AVSRConfig:
    d = AVSRConfig.tiny(V).to_dict()
    for key in ("audio_encoder", "video_encoder", "encoder", "decoder"):
        d[key]["dropout"] = 0.0
    d["fusion"]["kind"] = kind
    return AVSRConfig.from_dict(d)


def batch(lengths=(10, 7), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    frames = torch.tensor(lengths)
    targets = torch.randint(1, V - 1, (b, 3), generator=g)
    return (
        torch.randn(b, t * 640, generator=g) * 0.1,
        frames * 640,
        torch.randn(b, t, 32, 32, generator=g),
        frames,
        targets,
        torch.tensor([3] * b),
    )


def test_gated_is_registered_and_trains_end_to_end(tmp_path):
    assert {"concat", "sum", "gated"} <= set(FUSIONS)
    torch.manual_seed(0)
    model = AVSRModel(tiny("gated")).train()
    assert isinstance(model.fusion, GatedFusion)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):
        opt.zero_grad()
        model(*batch()).loss.backward()
        no_grad = [n for n, p in model.named_parameters() if p.grad is None]
        assert not no_grad, no_grad
        # the gate's last layer starts at zero (equal weights) and gets a gradient at once; the
        # layer before it from the second step on: the gate learns
        learning = ["2.weight", "2.bias"] + (["0.weight", "0.bias"] if step else [])
        grads = {n: p.grad for n, p in model.fusion.gate.named_parameters()}
        assert all(torch.count_nonzero(grads[n]) > 0 for n in learning), step
        opt.step()
    # saved and loaded like any model, same outputs
    model.eval()
    loaded = load_model(save_model(tmp_path / "m", model))
    assert loaded.config.fusion.kind == "gated"
    audio, alens, video, vlens, *_ = batch()
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode(audio, alens, video, vlens)[0], loaded.encode(audio, alens, video, vlens)[0], rtol=0, atol=0
        )


def test_gated_weights_start_equal_and_sum_to_one():
    torch.manual_seed(0)
    fusion = GatedFusion(FusionConfig(kind="gated"), [8, 6], 16)
    streams = [torch.randn(3, 5, 8), torch.randn(3, 5, 6)]
    w = fusion.weights(streams)
    assert w.shape == (3, 5, 2)
    torch.testing.assert_close(w, torch.full_like(w, 0.5))
    with torch.no_grad():
        fusion.gate[-1].bias.copy_(torch.tensor([3.0, -3.0]))  # trust the first stream
        w = fusion.weights(streams)
        normed = [n(s) for n, s in zip(fusion.norms, streams)]
        expected = w[..., :1] * fusion.projs[0](normed[0]) + w[..., 1:] * fusion.projs[1](normed[1])
        torch.testing.assert_close(fusion(streams), expected)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 5))
    assert bool((w[..., 0] > 0.99).all())


def test_gate_learns_to_trust_the_informative_stream_frame_by_frame():
    """Two streams; on each frame one carries the frame's class (a prototype vector plus a little
    noise) and the other is pure noise. Trained only to classify the fused frames, the gate must
    learn to turn the noise down frame by frame, starting from equal weights."""
    gen = torch.Generator().manual_seed(0)
    classes, dim, frames = 4, 16, 64
    proto_a = 3 * torch.randn(classes, dim, generator=gen)
    proto_v = 3 * torch.randn(classes, dim, generator=gen)

    def data(n: int):
        labels = torch.randint(0, classes, (n, frames), generator=gen)
        audio_good = torch.rand(n, frames, 1, generator=gen) < 0.5
        noise = lambda: torch.randn(n, frames, dim, generator=gen)  # noqa: E731
        a = torch.where(audio_good, proto_a[labels] + 0.3 * noise(), 2 * noise())
        v = torch.where(audio_good, 2 * noise(), proto_v[labels] + 0.3 * noise())
        return a, v, labels, audio_good[..., 0]

    torch.manual_seed(0)
    fusion = GatedFusion(FusionConfig(kind="gated"), [dim, dim], 32)
    head = torch.nn.Linear(32, classes)
    opt = torch.optim.Adam([*fusion.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(300):
        a, v, labels, _ = data(8)
        loss = F.cross_entropy(head(fusion([a, v])).reshape(-1, classes), labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    a, v, labels, audio_good = data(16)
    with torch.no_grad():
        w_video = fusion.weights([a, v])[..., 1]
        accuracy = (head(fusion([a, v])).argmax(-1) == labels).float().mean()
    assert accuracy > 0.95
    assert w_video[audio_good].mean() < 0.15, "video is noise on these frames: the gate should turn it down"
    assert w_video[~audio_good].mean() > 0.85, "audio is noise on these frames: the gate should trust the video"


def test_concat_is_unchanged():
    """Existing (concat) models keep their config, parameter names and arithmetic: the fusion is
    LayerNorm per stream, concatenation and one Linear. A fusion section written before the mlp
    fusion's options existed reads as the same config."""
    config = tiny("concat")
    old_section = {"kind": "concat", "dropout": 0.0, "projector": "linear"}
    assert AVSRConfig.from_dict(config.to_dict() | {"fusion": old_section}) == config
    assert (
        config.to_dict()["fusion"]
        == AVSRConfig.from_dict(tiny("gated").to_dict() | {"fusion": {"kind": "concat"}}).to_dict()["fusion"]
    )
    torch.manual_seed(0)
    model = AVSRModel(config).eval()
    assert isinstance(model.fusion, ConcatFusion)
    names = {n for n, _ in model.named_parameters() if n.startswith("fusion.")}
    assert names == {
        "fusion.norms.0.weight",
        "fusion.norms.0.bias",
        "fusion.norms.1.weight",
        "fusion.norms.1.bias",
        "fusion.proj.weight",
        "fusion.proj.bias",
    }
    a, v = torch.randn(2, 5, 128), torch.randn(2, 5, 128)
    p = dict(model.fusion.named_parameters())
    expected = F.linear(
        torch.cat(
            [
                F.layer_norm(a, (128,), p["norms.0.weight"], p["norms.0.bias"]),
                F.layer_norm(v, (128,), p["norms.1.weight"], p["norms.1.bias"]),
            ],
            -1,
        ),
        p["proj.weight"],
        p["proj.bias"],
    )
    with torch.no_grad():
        torch.testing.assert_close(model.fusion([a, v]), expected)


def test_gated_single_modality_model_weighs_its_one_stream_fully():
    d = tiny("gated").to_dict()
    d["visual"] = None
    torch.manual_seed(0)
    model = AVSRModel(AVSRConfig.from_dict(d)).eval()
    audio, alens, *_ = batch()
    with torch.no_grad():
        enc, lens = model.encode(audio, alens, None, None)
        assert enc.shape == (2, 10, 128) and lens.tolist() == [10, 7]
        stream = torch.randn(2, 10, 128)
        assert torch.equal(model.fusion.weights([stream]), torch.ones(2, 10, 1))
    copy.deepcopy(model).train()(*batch()[:2], None, None, *batch()[4:]).loss.backward()
