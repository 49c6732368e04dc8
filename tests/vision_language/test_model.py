"""The aligner: projectors from avsr.nn, a layer manager for per-layer features, the configured
loss; and the frozen encoders in front of it (EncodedAligner) get no gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vision_language.model import Aligner, AlignerConfig, EncodedAligner

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("loss", ["infonce", "sigmoid"])
@pytest.mark.parametrize("kind", ["linear", "mlp", "gated_mlp", "token"])
def test_every_projector_and_loss_trains_to_align_paired_features(kind: str, loss: str):
    """Text features are a fixed random linear map of the image features: after a few hundred
    steps each image must pick its own text among 64."""
    torch.manual_seed(0)
    image = torch.randn(64, 12)
    text = image @ torch.randn(12, 20)
    aligner = Aligner(
        AlignerConfig(
            image_dim=12,
            text_dim=20,
            embed_dim=16,
            image_projector={"kind": kind},
            text_projector={"kind": kind},
            loss={"kind": loss},
        )
    )
    optimizer = torch.optim.Adam(aligner.parameters(), lr=3e-3)
    for _ in range(200):
        value, _, _ = aligner(image, text)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    with torch.no_grad():
        picked = (aligner.embed_images(image) @ aligner.embed_texts(text).t()).argmax(1)
    assert (picked == torch.arange(64)).float().mean() > 0.9


def test_per_layer_features_go_through_a_layer_manager():
    config = AlignerConfig(image_dim=8, text_dim=6, image_layers=3, embed_dim=4, image_manager={"kind": "adaptive"})
    aligner = Aligner(config)
    assert aligner.image_manager is not None and aligner.text_manager is None
    emb = aligner.embed_images(torch.randn(5, 3, 8))
    assert emb.shape == (5, 4) and torch.allclose(emb.norm(dim=-1), torch.ones(5))
    assert AlignerConfig.from_dict(config.to_dict()) == config


def test_bad_aligner_settings_are_errors():
    with pytest.raises(ValueError, match="loss kind"):
        AlignerConfig(image_dim=2, text_dim=2, loss={"kind": "triplet"})
    with pytest.raises(ValueError, match="unknown aligner option"):
        AlignerConfig.from_dict({"image_dim": 2, "text_dim": 2, "colour": 1})
    with pytest.raises(ValueError, match="image_dim and text_dim"):
        Aligner(AlignerConfig())


class _Encoder(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, dim), nn.Dropout(0.5))
        self.output_dim = dim

    def preprocess(self, items: list[list[float]]) -> torch.Tensor:
        return torch.tensor(items)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_frozen_encoders_in_front_get_no_gradient_and_no_dropout():
    torch.manual_seed(0)
    aligner = Aligner(AlignerConfig(image_dim=6, text_dim=5, embed_dim=4))
    model = EncodedAligner(_Encoder(6), _Encoder(5), aligner).train()
    items = [[1.0, 2.0, 3.0], [0.0, 1.0, 0.0], [2.0, 0.0, 1.0]]
    loss, image_emb, _ = model(items, items)
    loss.backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert all(p.grad is None for p in model.text_encoder.parameters())
    assert all(p.grad is not None for p in aligner.image_proj.parameters())
    assert torch.equal(model.image_features(items), model.image_features(items))  # eval mode: no dropout
