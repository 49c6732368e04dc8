"""The LRW word classifier: one score per word, padding-invariant, and a front-end the AVSR model loads."""

from __future__ import annotations

import pytest
import torch

from avsr.models.avsr_model import AVSRModel
from avsr.models.config import AVSRConfig, ConfigError, EncoderConfig, VisualConfig
from avsr.models.word_classifier import WordClassifier, WordClassifierConfig

VISUAL = VisualConfig(trunk="resnet18", norm="group", width=0.125, norm_groups=4)
BACKEND = EncoderConfig(kind="conformer", layers=1, model_dim=32, heads=2, ffn_dim=64, conv_kernel=5, dropout=0.0)


def _classifier(classes: int = 7) -> WordClassifier:
    torch.manual_seed(0)
    return WordClassifier(WordClassifierConfig(num_classes=classes, visual=VISUAL, backend=BACKEND)).eval()


def test_one_score_per_word_and_padding_changes_nothing():
    model = _classifier()
    clip = torch.randn(1, 12, 32, 32)
    with torch.no_grad():
        alone = model(clip, torch.tensor([12]))
        padded = model(
            torch.cat([clip, torch.zeros(1, 5, 32, 32)], dim=1).expand(2, -1, -1, -1).contiguous(),
            torch.tensor([12, 17]),
        )
    assert alone.shape == (1, 7) and padded.shape == (2, 7)
    torch.testing.assert_close(padded[0], alone[0], rtol=1e-4, atol=1e-5)


def test_the_front_end_loads_strictly_into_the_avsr_model():
    classifier = _classifier()
    avsr = AVSRModel(AVSRConfig.tiny(10, visual=VISUAL))
    avsr.visual_frontend.load_state_dict(classifier.frontend.state_dict(), strict=True)
    for name, tensor in classifier.frontend.state_dict().items():
        assert torch.equal(avsr.visual_frontend.state_dict()[name], tensor)


def test_config_round_trips_and_rejects_bad_values():
    config = WordClassifierConfig(num_classes=500, visual=VISUAL, backend=BACKEND)
    assert WordClassifierConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError):
        WordClassifierConfig(num_classes=1)
    with pytest.raises(ConfigError):
        WordClassifierConfig.from_dict({**config.to_dict(), "backend": {**config.to_dict()["backend"], "kind": "lstm"}})
