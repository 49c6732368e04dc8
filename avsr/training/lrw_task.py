"""``task: lrw``: word classification on clips whose transcript is one word (LRW), training the
visual front-end (`avsr.models.word_classifier`), from scratch or from a MoCo or LRW front-end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module

from avsr.models.config import EncoderConfig, to_plain
from avsr.models.word_classifier import WordClassifier, WordClassifierConfig
from avsr.training.clips import ClipBatch, ClipDataset
from avsr.training.config_loading import TrainConfigError
from avsr.training.frontend_recipe import (
    FrontendModelSection,
    FrontendTrainConfig,
    MeanLossObjective,
    VisualTask,
    resolve_visual_model,
)

WORD_FAMILY = "avsr_word"


@dataclass(kw_only=True)
class LRWTrainConfig(FrontendTrainConfig):
    """``task: lrw``: word classification on clips whose transcript is one word."""

    task: Literal["lrw"] = "lrw"
    model: FrontendModelSection = field(default_factory=lambda: FrontendModelSection(family=WORD_FAMILY))


def word_model_config(arch: str, overrides: dict[str, object], num_classes: int) -> WordClassifierConfig:
    """The classifier over the arch's visual front-end: a 2-layer (tiny) or 4-layer (seed_paper) conformer back-end."""
    backend = EncoderConfig(
        kind="conformer", layers=2, model_dim=128, heads=4, ffn_dim=256, conv_kernel=15, dropout=0.1
    )
    if arch == "seed_paper":
        backend = EncoderConfig(
            kind="conformer", layers=4, model_dim=512, heads=8, ffn_dim=2048, conv_kernel=15, dropout=0.1
        )
    base = {"num_classes": num_classes, "backend": to_plain(backend), "dropout": 0.1}
    if "num_classes" in overrides and overrides["num_classes"] != num_classes:
        raise TrainConfigError(
            f"model.config.num_classes={overrides['num_classes']!r} contradicts the data ({num_classes} words)"
        )
    return resolve_visual_model(WordClassifierConfig, arch, base, overrides)


class WordObjective(MeanLossObjective):
    """Cross-entropy over the words, and top-1 accuracy."""

    def loss_and_accuracy(self, model: Module, batch: ClipBatch) -> tuple[Tensor, Tensor]:
        assert batch.labels is not None
        logits = model(batch.inputs, batch.lengths)
        return F.cross_entropy(logits.float(), batch.labels), (logits.argmax(-1) == batch.labels).float().mean()


class LRWTask(VisualTask):
    name = "lrw"
    family = WORD_FAMILY
    model_kls = WordClassifier
    config_kls = WordClassifierConfig
    train_config_kls = LRWTrainConfig
    clip_mode = "classify"

    def build(self, model_config: Any) -> Module:
        return WordClassifier(model_config)

    def model_config(self, config: FrontendTrainConfig, dataset: ClipDataset) -> WordClassifierConfig:
        assert dataset.classes is not None
        return word_model_config(config.model.arch or "tiny", config.model.config, len(dataset.classes))

    def objective(self, config: FrontendTrainConfig) -> WordObjective:
        return WordObjective()


TASK = LRWTask()

__all__ = ["LRWTask", "LRWTrainConfig", "TASK", "WORD_FAMILY", "word_model_config"]
