"""Pieces shared by the AVSR models and ``vision_language``: frozen pretrained backbones and the
projectors that map their features into a space another part of the model works in."""

from avsr.nn.frozen import FreezeSchedule, FrozenBackbone, set_trainable
from avsr.nn.layer_manager import LayerManager, LayerManagerConfig
from avsr.nn.projectors import PROJECTOR_KINDS, ProjectorConfig, build_projector

__all__ = [
    "PROJECTOR_KINDS",
    "FreezeSchedule",
    "FrozenBackbone",
    "LayerManager",
    "LayerManagerConfig",
    "ProjectorConfig",
    "build_projector",
    "set_trainable",
]
