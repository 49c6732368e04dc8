"""``task: moco``: MoCo v2 pretraining of the visual front-end on the mouth crops of any manifests
(transcripts unused; `avsr.models.moco`, views from `avsr.training.lip_views`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor
from torch.nn import Module

from avsr.models.config import VisualConfig, from_plain, to_plain
from avsr.models.moco import MoCo, MoCoConfig
from avsr.training.clips import ClipBatch, ClipDataset
from avsr.training.frontend_recipe import (
    FrontendModelSection,
    FrontendTrainConfig,
    MeanLossObjective,
    VisualTask,
    resolve_visual_model,
)
from avsr.training.lip_views import LipViewConfig

MOCO_FAMILY = "avsr_moco"


@dataclass
class MoCoModelConfig:
    """The ``avsr_moco`` model family: a visual front-end and MoCo's settings."""

    visual: VisualConfig = field(default_factory=VisualConfig)
    moco: MoCoConfig = field(default_factory=MoCoConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoCoModelConfig:
        return from_plain(cls, data, "")


@dataclass(kw_only=True)
class MoCoTrainConfig(FrontendTrainConfig):
    """``task: moco``: MoCo v2 pretraining on the clips of any manifests (transcripts unused)."""

    task: Literal["moco"] = "moco"
    model: FrontendModelSection = field(default_factory=lambda: FrontendModelSection(family=MOCO_FAMILY))
    views: LipViewConfig = field(default_factory=LipViewConfig)


def moco_model_config(arch: str, overrides: dict[str, object]) -> MoCoModelConfig:
    return resolve_visual_model(MoCoModelConfig, arch, {"moco": to_plain(MoCoConfig())}, overrides)


class InfoNCEObjective(MeanLossObjective):
    """MoCo's InfoNCE loss of two views of each clip, and how often the own key wins over the queue."""

    def loss_and_accuracy(self, model: Module, batch: ClipBatch) -> tuple[Tensor, Tensor]:
        return model(batch.inputs, batch.key_inputs, batch.lengths, batch.key_lengths)


class MoCoTask(VisualTask):
    name = "moco"
    family = MOCO_FAMILY
    model_kls = MoCo
    config_kls = MoCoModelConfig
    train_config_kls = MoCoTrainConfig
    clip_mode = "views"

    def build(self, model_config: Any) -> Module:
        return MoCo(model_config.visual, model_config.moco)

    def model_config(self, config: FrontendTrainConfig, dataset: ClipDataset) -> MoCoModelConfig:
        return moco_model_config(config.model.arch or "tiny", config.model.config)

    def objective(self, config: FrontendTrainConfig) -> InfoNCEObjective:
        return InfoNCEObjective()

    def views(self, config: FrontendTrainConfig) -> LipViewConfig:
        assert isinstance(config, MoCoTrainConfig)
        return config.views

    def min_batch_size(self, model_config: Any) -> int:
        return model_config.moco.min_batch_size

    def frontend_of(self, model: Module) -> Module:
        """The query encoder's front-end (the one exported)."""
        return getattr(model, "module", model).query_frontend

    def setup_model(self, model: Module, section: FrontendModelSection, newly_initialized: bool) -> None:
        assert isinstance(model, MoCo)
        for p in model._key_parameters():  # fairseq2 makes every parameter trainable: the key encoder is not
            p.requires_grad_(False)
        super().setup_model(model, section, newly_initialized)
        if newly_initialized and section.init_frontend is not None:  # both encoders start from it
            model.key_frontend.load_state_dict(model.query_frontend.state_dict())


TASK = MoCoTask()

__all__ = ["MOCO_FAMILY", "MoCoModelConfig", "MoCoTask", "MoCoTrainConfig", "TASK", "moco_model_config"]
