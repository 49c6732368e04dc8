"""vl-eval: zero-shot classification and image-text retrieval with a trained aligner.

    vl-eval --model runs/vl/synth/model --zero-shot runs/vl/world/zero_shot --templates synth
    vl-eval --model DIR --retrieval karpathy.json --image-root IMAGES [--split test]
    vl-eval --model DIR --pairs test.tsv        # retrieval over an image-caption file
    vl-eval ... --untrained                     # the same projectors at initialisation: the unaligned baseline

Features come from the encoders the model was trained with, through the same caches as vl-train
(``--cache-dir``). Writes OUT/results.json and OUT/results.md; prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from avsr.console import fail

PROGRAM = "vl-eval"
TEMPLATE_SETS = ("clip", "simple", "synth")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Zero-shot classification and retrieval (R@1/5/10 both ways) with a vl-train model."
    )
    parser.add_argument("--model", type=Path, required=True, help="vl-train OUTPUT_DIR/model")
    parser.add_argument(
        "--zero-shot", type=Path, nargs="*", default=[], help="class folders (one sub-folder of images per class)"
    )
    parser.add_argument(
        "--classes",
        type=Path,
        default=None,
        help="file with one class name per line: the candidates (default: the folder's classes); folders not listed are errors",
    )
    parser.add_argument(
        "--templates",
        default="clip",
        help=f"prompt templates: {', '.join(TEMPLATE_SETS)} or a text file with one '{{}}' template per line",
    )
    parser.add_argument("--retrieval", type=Path, nargs="*", default=[], help="Karpathy-split JSON (COCO/Flickr30k)")
    parser.add_argument(
        "--image-root", type=Path, default=None, help="images of the Karpathy JSON (default: its folder)"
    )
    parser.add_argument("--split", default="test", help="Karpathy split (default test)")
    parser.add_argument(
        "--pairs", type=Path, nargs="*", default=[], help="image-caption files (TSV/CSV/WebDataset) for retrieval"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path("runs/vl/cache"), help="feature caches (default runs/vl/cache)"
    )
    parser.add_argument(
        "--untrained", action="store_true", help="use the model's projectors at initialisation (baseline)"
    )
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed for --untrained")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default MODEL/../eval[_untrained])")
    parser.add_argument("--json", action="store_true", help="print results.json instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _templates(spec: str) -> tuple[str, ...]:
    from vision_language import templates

    sets = {"clip": templates.CLIP_TEMPLATES, "simple": templates.SIMPLE_TEMPLATES, "synth": templates.SYNTH_TEMPLATES}
    if spec in sets:
        return tuple(sets[spec])
    path = Path(spec)
    if not path.is_file():
        fail(PROGRAM, f"--templates: {spec!r} is not one of {', '.join(TEMPLATE_SETS)} nor a file")
    lines = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    bad = [line for line in lines if line.count("{}") != 1]
    if not lines or bad:
        fail(
            PROGRAM,
            f"{path}: every line must be a template with one '{{}}' slot" + (f" (not: {bad[0]!r})" if bad else ""),
        )
    return lines


def _open_rgb(path: Path) -> Any:
    from vision_language.data import ImageTextPair, load_image

    return load_image(ImageTextPair(key=str(path), caption="", image_path=path))


def zero_shot(
    saved: Any, folder: Path, templates: tuple[str, ...], options: Any, class_file: Path | None
) -> dict[str, Any]:
    from vision_language.data import read_class_folders
    from vision_language.evaluation import class_text_embeddings, zero_shot_accuracy
    from vision_language.features import cached_features
    from vision_language.templates import prompts

    data = read_class_folders(folder)
    names = list(data.class_names)
    if class_file is not None:
        try:
            text = class_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{class_file}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
        candidates = [line.strip() for line in text.splitlines() if line.strip()]
        missing = [n for n in names if n not in candidates]
        if missing:
            raise ValueError(f"{class_file}: does not list the class(es) {', '.join(missing[:3])} of {folder}")
        remap = [candidates.index(n) for n in names]
        names = candidates
    else:
        remap = list(range(len(names)))
    paths = [p for p, _ in data.items]
    labels = torch.tensor([remap[label] for _, label in data.items])
    source = str(folder.resolve())
    image_feats = cached_features(
        paths, [str(p) for p in paths], saved.image_encoder, source, options, loader=_open_rgb
    ).all()
    texts = [t for name in names for t in prompts(name, templates)]
    text_source = f"{source}#prompts:" + hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    text_feats = cached_features(
        texts, [str(i) for i in range(len(texts))], saved.text_encoder, text_source, options
    ).all()
    aligner = saved.aligner
    with torch.no_grad():
        image_emb = aligner.embed_images(image_feats)
        prompt_emb = aligner.embed_texts(text_feats).view(len(names), len(templates), -1)
        class_emb = class_text_embeddings(list(prompt_emb))
    result = zero_shot_accuracy(image_emb, class_emb, labels, topk=(1, 5))
    return {
        "kind": "zero-shot",
        "data": str(folder),
        "images": len(paths),
        "classes": len(names),
        "templates": len(templates),
        "chance_top1": 100.0 / len(names),
        **result,
    }


def retrieval(
    saved: Any,
    name: str,
    image_paths: list[Any],
    image_keys: list[str],
    captions: list[str],
    caption_image: list[int],
    options: Any,
    loader: Any,
) -> dict[str, Any]:
    from vision_language.evaluation import retrieval_recall
    from vision_language.features import cached_features

    image_feats = cached_features(image_paths, image_keys, saved.image_encoder, name, options, loader=loader).all()
    text_feats = cached_features(
        captions, [str(i) for i in range(len(captions))], saved.text_encoder, name, options
    ).all()
    with torch.no_grad():
        result = retrieval_recall(
            saved.aligner.embed_images(image_feats), saved.aligner.embed_texts(text_feats), caption_image
        )
    return {"kind": "retrieval", "data": name, "images": len(image_paths), "captions": len(captions), **result}


def markdown(results: list[dict[str, Any]], model: str) -> str:
    lines = [f"Model: {model}", ""]
    zs = [r for r in results if r["kind"] == "zero-shot"]
    if zs:
        lines += [
            "| zero-shot data | images | classes | templates | top-1 % | top-5 % | chance top-1 % |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['data']} | {r['images']} | {r['classes']} | {r['templates']} | {r['top1']:.1f} | {r['top5']:.1f} | {r['chance_top1']:.1f} |"
            for r in zs
        ]
        lines.append("")
    rt = [r for r in results if r["kind"] == "retrieval"]
    if rt:
        lines += [
            "| retrieval data | images | captions | I->T R@1 | R@5 | R@10 | T->I R@1 | R@5 | R@10 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['data']} | {r['images']} | {r['captions']} | "
            + " | ".join(f"{r[f'{d}_R@{k}']:.1f}" for d in ("i2t", "t2i") for k in (1, 5, 10))
            + " |"
            for r in rt
        ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.zero_shot or args.retrieval or args.pairs):
        fail(PROGRAM, "nothing to evaluate: give --zero-shot, --retrieval or --pairs")
    from vision_language.cache import CacheError
    from vision_language.data import DataError, load_image, read_karpathy, read_pairs
    from vision_language.features import EncodeOptions, distinct_images, source_name
    from vision_language.saved_model import ModelError, load_model

    templates = _templates(args.templates)
    results: list[dict[str, Any]] = []
    try:
        saved = load_model(args.model, untrained=args.untrained, seed=args.seed)
        options = EncodeOptions(args.cache_dir, show_progress=not args.quiet)
        for folder in args.zero_shot:
            results.append(zero_shot(saved, folder, templates, options, args.classes))
        for file in args.retrieval:
            data = read_karpathy(file, args.image_root or file.parent, split=args.split)
            paths = list(data.image_paths)
            results.append(
                retrieval(
                    saved,
                    f"{file.resolve()}#{args.split}",
                    paths,
                    [str(p) for p in paths],
                    list(data.captions),
                    list(data.caption_image),
                    options,
                    _open_rgb,
                )
            )
        for file in args.pairs:
            pairs = read_pairs(file)
            images, image_keys, caption_image = distinct_images(pairs)
            captions = [p.caption for p in pairs]
            results.append(
                retrieval(saved, source_name(file), images, image_keys, captions, caption_image, options, load_image)
            )
    except (ModelError, DataError, CacheError, ValueError) as exc:
        fail(PROGRAM, str(exc))
    out = args.out or args.model.parent / ("eval_untrained" if args.untrained else "eval")
    out.mkdir(parents=True, exist_ok=True)
    report = {"model": str(args.model), "untrained": args.untrained, "results": results}
    (out / "results.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    table = markdown(results, str(args.model) + (" (untrained projectors)" if args.untrained else ""))
    (out / "results.md").write_text(table, encoding="utf-8")
    sys.stdout.write(json.dumps(report, indent=1) + "\n" if args.json else table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
