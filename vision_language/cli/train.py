"""vl-train: align a frozen image encoder and a frozen text encoder by training projectors.

    vl-train recipes/vl/synth.yaml [KEY=VALUE ...] [--output-dir DIR]
    torchrun --nproc_per_node 2 -m vision_language.cli.train CONFIG ...   # DDP (vl-embed first)

Same conventions as avsr-train (the same CLI, config loader and trainer): dotted overrides, rerun to
resume, OUTPUT_DIR/{checkpoints,metrics,tb,logs,model}. The encoders' features are cached first.
"""

from __future__ import annotations

import sys

from avsr.cli.train import TrainProgram
from avsr.cli.train import main as train_main

VL_TRAIN = TrainProgram(
    "vl-train",
    "Align frozen image and text encoders with projectors (InfoNCE or sigmoid loss) on cached features, "
    "from a YAML config (fairseq2 trainer: checkpoints, resume, DDP with negatives gathered across ranks, "
    "JSONL/TensorBoard metrics). Missing feature caches are built first. Rerun the same command to resume.",
    "Overrides use dotted keys of the config, e.g. regime.num_steps=200 data.batch_size=512 "
    "model.config.loss.kind=sigmoid model.config.image_projector.kind=gated_mlp. Values are YAML.",
    "recipes/vl/synth.yaml",
    "vision_language.training.tasks",
)


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, VL_TRAIN)


if __name__ == "__main__":
    sys.exit(main())
