"""Models: front-ends (conv/wav2vec 2.0 audio, 3-D stem + ResNet video), fusion, encoders,
hybrid CTC/attention decoder, and their (safetensors + YAML) storage.

The public names below import lazily so that ``import avsr.models`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AVSRConfig": "avsr.models.config",
    "AudioConfig": "avsr.models.config",
    "VisualConfig": "avsr.models.config",
    "EncoderConfig": "avsr.models.config",
    "FusionConfig": "avsr.models.config",
    "DecoderConfig": "avsr.models.config",
    "LossConfig": "avsr.models.config",
    "ModalityDropoutConfig": "avsr.models.config",
    "ConfigError": "avsr.models.config",
    "AVSRModel": "avsr.models.avsr_model",
    "ModelOutput": "avsr.models.avsr_model",
    "register_fusion": "avsr.models.avsr_model",
    "VisualFrontEnd": "avsr.models.visual",
    "load_moco_v2": "avsr.models.visual",
    "load_visual_frontend": "avsr.models.visual",
    "ConvAudioFrontEnd": "avsr.models.frontends",
    "build_audio_frontend": "avsr.models.frontends",
    "build_visual_frontend": "avsr.models.frontends",
    "register_audio_frontend": "avsr.models.frontends",
    "save_model": "avsr.models.io",
    "load_model": "avsr.models.io",
    "load_config": "avsr.models.io",
    "read_model_yaml": "avsr.models.io",
    "load_frontend_weights": "avsr.models.weights",
    "load_pretrained_frontends": "avsr.models.io",
    "LoadReport": "avsr.models.weights",
    "WeightsError": "avsr.models.weights",
    "read_state_dict": "avsr.models.weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'avsr.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
