"""A micro AVSR model for tests of what commands do with a model (not how good it is): its
config, an exported folder of it at random initialisation, and an avsr-train recipe for it."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from avsr.data.tokenizers import load_tokenizer
from avsr.models.avsr_model import AVSRModel
from avsr.models.config import AVSRConfig
from avsr.training.export import write_export

MICRO = {
    "audio": {"kind": "fbank", "dim": 32},
    "visual": {"width": 0.125, "norm_groups": 4, "downsample": 2},
    "audio_encoder": {"model_dim": 64, "heads": 2, "ffn_dim": 128, "layers": 1},
    "video_encoder": {"model_dim": 64, "heads": 2, "ffn_dim": 128, "layers": 1},
    "encoder": {"model_dim": 64, "heads": 2, "ffn_dim": 128, "layers": 1},
    "decoder": {"layers": 1, "heads": 2, "ffn_dim": 128},
}


#: A training recipe's model small enough for a few CPU steps in seconds: tiny with narrower layers.
MICRO_TRAIN_MODEL = {
    "audio": {"channels": [16, 32, 32, 64, 64]},
    "visual": {"width": 0.125, "norm_groups": 4},
    "audio_encoder": {"model_dim": 64, "heads": 2, "ffn_dim": 128, "layers": 1},
    "video_encoder": {"model_dim": 64, "heads": 2, "ffn_dim": 128, "layers": 1},
    "encoder": {"model_dim": 64, "heads": 2, "ffn_dim": 128, "layers": 1},
    "decoder": {"layers": 1, "heads": 2, "ffn_dim": 128},
}


def write_micro_recipe(path: Path, train_data: dict[str, Path], **sections: dict) -> Path:
    """An avsr-train recipe for MICRO_TRAIN_MODEL on the test corpus; each of ``sections``
    (dataset, regime, ...) updates that section's keys."""
    tree: dict[str, dict] = {
        "dataset": {
            "path": str(train_data["path"]),
            "tokenizer": str(train_data["tokenizer"]),
            "train_splits": ["train", "pretrain"],
            "valid_split": "val",
            "max_frames_per_batch": 240,
            "max_batch_size": 4,
            "num_prefetch": 2,
        },
        "model": {"arch": "tiny", "config": MICRO_TRAIN_MODEL},
        "common": {"metric_recorders": {"tensorboard": {"enabled": False}}},
    }
    for name, values in sections.items():
        tree[name] = {**tree.get(name, {}), **values}
    path.write_text(yaml.safe_dump(tree))
    return path


def export_micro_model(tmp: Path, tokenizer_dir: Path, *, drop: str | None = None) -> Path:
    tokenizer = load_tokenizer(tokenizer_dir)
    config = AVSRConfig.tiny(tokenizer.vocab_size).to_dict()
    for key, value in MICRO.items():
        config[key] = value if key == "audio" else {**config[key], **value}  # audio: another kind, its own fields
    if drop:
        config[drop] = None
    torch.manual_seed(0)
    model = AVSRModel(AVSRConfig.from_dict(config)).eval()
    train_config = {"dataset": {"video": {"crop_size": 88, "mean": 0.42, "std": 0.17}}}
    return write_export(tmp, model, tokenizer_dir=tokenizer_dir, train_config=train_config, extra={"step": 0})
