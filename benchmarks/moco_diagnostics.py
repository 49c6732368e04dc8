"""Has a MoCo run collapsed? Cosine between clips and retrieval of a clip's other view. JSON out.

A collapsed MoCo model gives every clip nearly the same embedding (cosine near 1 between
different clips) and cannot tell a clip's second view from other clips' views. For a run of
``avsr-train recipes/lrw/moco.yaml`` (its output folder: ``model/`` and ``config.yaml``, whose
``views`` are used), on ``--clips`` clips of the training split and of a held-out split (unseen
speakers in the synthetic LRW corpus), each clip gets two augmented views; it reports

- the mean cosine between the query embeddings (projection head, normalised) of different clips,
  and the same for the front-end's pooled features;
- retrieval: how often a clip's query view has its own key view (key encoder) as the nearest of
  the ``--clips`` key views, in percent, against chance (100 / clips).

    python benchmarks/moco_diagnostics.py runs/lrw/moco --prepared runs/lrw/prepared
    python benchmarks/moco_diagnostics.py RUN --prepared DIR --clips 32 --held-out test --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

from avsr.data.manifest import read_manifest
from avsr.models.moco import MoCo, clip_embedding
from avsr.training.lip_views import LipViewConfig, pad_views, two_views
from avsr.training.media import read_mouth_video
from avsr.training.moco_task import MoCoModelConfig


def load_run(run: Path) -> tuple[MoCo, LipViewConfig]:
    """The exported MoCo model of a run (eval mode) and the views it was trained on."""
    meta = yaml.safe_load((run / "model" / "model.yaml").read_text())  # written by avsr-train
    if not isinstance(meta, dict) or meta.get("format") != "avsr-moco":
        raise SystemExit(f"moco diagnostics: {run / 'model' / 'model.yaml'}: not a MoCo model (format avsr-moco)")
    config = MoCoModelConfig.from_dict(meta["config"])
    model = MoCo(config.visual, config.moco)
    model.load_state_dict(load_file(run / "model" / "model.safetensors"), strict=True)
    views = (
        (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("views", {})
        if (run / "config.yaml").is_file()
        else {}
    )
    return model.eval(), LipViewConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in views.items()})


def off_diagonal_cosine(x: torch.Tensor) -> float | None:
    """Mean cosine between different rows of ``x`` (N, D); None for one row."""
    if x.size(0) < 2:
        return None
    x = F.normalize(x, dim=1)
    sims = x @ x.t()
    n = x.size(0)
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


@torch.no_grad()
def diagnose(model: MoCo, views: LipViewConfig, videos: list[np.ndarray], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pairs = [two_views(v, rng, views) for v in videos]
    query_views, query_lens = pad_views([q for q, _ in pairs])
    key_views, key_lens = pad_views([k for _, k in pairs])
    queries = model.embed_queries(query_views, query_lens)
    keys = model.embed_keys(key_views, key_lens)
    pooled = clip_embedding(model.query_frontend, query_views, query_lens)
    nearest = (queries @ keys.t()).argmax(dim=1)
    return {
        "clips": len(videos),
        "cosine_between_clips": _rounded(off_diagonal_cosine(queries)),
        "cosine_between_clips_frontend": _rounded(off_diagonal_cosine(pooled)),
        "own_view_retrieved_percent": round(100.0 * float((nearest == torch.arange(len(videos))).float().mean()), 1),
        "chance_percent": round(100.0 / len(videos), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the output folder of a MoCo run (model/, config.yaml)")
    parser.add_argument(
        "--prepared", type=Path, required=True, help="the prepared LRW corpus (train.tsv, val.tsv, test.tsv)"
    )
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--held-out", default="test", help="the split of unseen speakers (default: test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.run / "model" / "model.yaml").is_file():
        print(
            f"moco diagnostics: no model at {args.run / 'model'}: train one with avsr-train recipes/lrw/moco.yaml",
            file=sys.stderr,
        )
        return 2
    torch.manual_seed(args.seed)
    model, views = load_run(args.run)
    report = {"run": str(args.run), "views": {"crop_size": views.crop_size}}
    for split in ("train", args.held_out):
        rows = read_manifest(args.prepared / f"{split}.tsv")
        chosen = np.random.default_rng(args.seed).permutation(len(rows))[: args.clips]
        videos = [read_mouth_video(args.prepared / rows[i].video) for i in sorted(chosen)]
        report[split] = diagnose(model, views, videos, args.seed)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
