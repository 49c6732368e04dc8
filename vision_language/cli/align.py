"""vl-align: rank candidate (image encoder, text encoder) pairs before training any projector.

    vl-align recipes/vl/align_synth.yaml [KEY=VALUE ...] [--no-probe] [--out DIR] [--json]

The YAML names the paired data (``pairs``, ``limit``), the candidates (``image_encoders`` and
``text_encoders``: name -> encoder config, as in vl-train) and the settings (``k``, ``probe``).
For every pair it reports linear CKA (Freeze-Align's criterion), mutual k-NN overlap (the platonic-
representation metric) and SAIL's alignment probe (a linear layer per side, retrieval R@10 on
held-out pairs), each with its chance level, ranked by the probe (or CKA with --no-probe).
Features are cached like vl-train's, so a chosen pair trains without encoding again.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from avsr.console import fail

PROGRAM = "vl-align"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Rank image/text encoder pairs by CKA, mutual k-NN and SAIL's alignment probe."
    )
    parser.add_argument(
        "config", type=Path, help="YAML: pairs, limit, image_encoders, text_encoders, k, probe, cache_dir"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)")
    parser.add_argument("--no-probe", action="store_true", help="only CKA and mutual k-NN (no training at all)")
    parser.add_argument("--out", type=Path, default=None, help="write results.json and results.md here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _encoders(tree: dict[str, Any], key: str, kls: type) -> dict[str, Any]:
    from vision_language.model_paths import with_resolved_path

    section = tree.get(key)
    if not isinstance(section, dict) or not section:
        raise ValueError(f"{key}: give at least one encoder (name: config)")
    out = {}
    for name, options in section.items():
        try:
            out[str(name)] = kls(**with_resolved_path(dict(options or {})))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key}.{name}: {exc}") from None
    return out


def _last_layer(features: Any) -> Any:
    """Per-layer features are scored on their last layer."""
    return features[:, -1] if features.dim() == 3 else features


def rank_pairs(tree: dict[str, Any], *, probe: bool, show_progress: bool) -> list[dict[str, Any]]:
    from vision_language.alignment import alignment_probe, assess_pair
    from vision_language.data import load_image, read_pairs
    from vision_language.encoders import ImageEncoderConfig, TextEncoderConfig
    from vision_language.features import EncodeOptions, cached_features

    known = {"pairs", "limit", "image_encoders", "text_encoders", "k", "probe", "cache_dir", "seed"}
    unknown = sorted(set(tree) - known)
    if unknown:
        raise ValueError(f"unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if "pairs" not in tree:
        raise ValueError("pairs: the image-caption file to measure on is missing")
    images_by_name = _encoders(tree, "image_encoders", ImageEncoderConfig)
    texts_by_name = _encoders(tree, "text_encoders", TextEncoderConfig)
    pairs = read_pairs(tree["pairs"])
    limit = int(tree.get("limit", 2000))
    if len(pairs) > limit:  # a seeded subset, the same for every candidate
        keep = np.sort(np.random.default_rng(int(tree.get("seed", 0))).choice(len(pairs), limit, replace=False))
        pairs = [pairs[i] for i in keep]
    source = f"{Path(tree['pairs']).resolve()}#subset:{len(pairs)}:{int(tree.get('seed', 0))}"
    options = EncodeOptions(Path(tree.get("cache_dir", "runs/vl/cache")), show_progress=show_progress)
    k = int(tree.get("k", 10))
    probe_options = dict(tree.get("probe") or {})
    allowed = [n for n, p in inspect.signature(alignment_probe).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(probe_options) - set(allowed))
    if unknown:  # before any encoder runs
        raise ValueError(f"probe: unknown key(s) {', '.join(unknown)} (known: {', '.join(allowed)})")
    image_feats = {
        n: _last_layer(cached_features(pairs, [p.key for p in pairs], c, source, options, loader=load_image).all())
        for n, c in images_by_name.items()
    }
    text_feats = {
        n: _last_layer(cached_features([p.caption for p in pairs], [p.key for p in pairs], c, source, options).all())
        for n, c in texts_by_name.items()
    }
    rows = []
    for image_name, x in image_feats.items():
        for text_name, y in text_feats.items():
            row: dict[str, Any] = {"image_encoder": image_name, "text_encoder": text_name}
            try:
                report = assess_pair(x, y, k=k, probe=probe, **probe_options)
                row.update({key: v for key, v in report.as_dict().items() if key != "probe"})
            except ValueError as exc:  # e.g. an encoder whose features are constant: not comparable
                row["error"] = str(exc)
            rows.append(row)
    key = "probe_r_at_10" if probe else "cka"
    return sorted(rows, key=lambda r: -(r.get(key) or -1.0))


def markdown(rows: list[dict[str, Any]]) -> str:
    probe = any(r.get("probe_r_at_10") is not None for r in rows)
    head = "| rank | image encoder | text encoder | linear CKA | mutual k-NN (chance) |" + (
        " probe R@10 % (chance) | probe R@1 % |" if probe else ""
    )
    lines = [head, "|---" * (5 + (2 if probe else 0)) + "|"]
    for i, r in enumerate(rows, 1):
        if "error" in r:
            lines.append(f"| {i} | {r['image_encoder']} | {r['text_encoder']} | not comparable: {r['error']} |")
            continue
        line = f"| {i} | {r['image_encoder']} | {r['text_encoder']} | {r['cka']:.3f} | {r['mutual_knn']:.3f} ({r['mutual_knn_chance']:.3f}) |"
        if probe:
            line += f" {r['probe_r_at_10']:.1f} ({r['probe_chance_r_at_10']:.1f}) | {r['probe_r_at_1']:.1f} |"
        lines.append(line)
    scored = [r for r in rows if "error" not in r]
    return "\n".join(lines) + (f"\n\n{scored[0]['n']} pairs, k = {scored[0]['k']}\n" if scored else "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from avsr.training.config_loading import TrainConfigError, read_user_tree
    from vision_language.cache import CacheError
    from vision_language.data import DataError

    if not args.config.is_file():
        fail(PROGRAM, f"{args.config}: config file not found")
    try:
        tree = read_user_tree(args.config, args.overrides)
        rows = rank_pairs(tree, probe=not args.no_probe, show_progress=not args.quiet)
    except (TrainConfigError, DataError, CacheError, ValueError) as exc:
        fail(PROGRAM, str(exc))
    table = markdown(rows)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
        (args.out / "results.md").write_text(table, encoding="utf-8")
    sys.stdout.write(json.dumps(rows, indent=1) + "\n" if args.json else table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
