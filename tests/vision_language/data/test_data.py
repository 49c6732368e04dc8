"""vision_language data layer: pair readers, class folders, Karpathy JSON, templates, the synthetic world."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision_language.cli import synth as synth_cli
from vision_language.data import (
    DataError,
    DataWarning,
    ImageTextPair,
    expand_braces,
    load_image,
    read_class_folders,
    read_karpathy,
    read_pairs,
)
from vision_language.data import synthetic_world as world
from vision_language.templates import CLIP_TEMPLATES, SIMPLE_TEMPLATES, SYNTH_TEMPLATES, prompts

WORLD_ARGS = {"images": 120, "size": 32, "seed": 3, "held_out": 4}


def _png(colour=(200, 10, 10), size=(8, 8), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 128).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_shard(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _mentions(text: str, words) -> bool:
    return any(re.search(rf"\b{re.escape(word)}\b", text) for word in words)


def _parse(caption: str) -> tuple[str, str]:
    """The single (colour, shape) a caption names, through the world's synonym lists."""
    colours = [c for c in world.COLOURS if _mentions(caption, world.COLOUR_WORDS[c])]
    shapes = [s for s in world.SHAPES if _mentions(caption, world.SHAPE_WORDS[s])]
    assert len(colours) == 1 and len(shapes) == 1, (caption, colours, shapes)
    return colours[0], shapes[0]


# --- TSV / CSV ----------------------------------------------------------------------------------


def test_tsv_relative_paths_and_skipped_rows(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(_png(mode="L"))
    absolute = tmp_path / "b.png"
    absolute.write_bytes(_png())
    table = tmp_path / "pairs.tsv"
    table.write_text(
        "image\tcaption\n"
        'imgs/a.png\ta "quoted" red square\n'
        f"{absolute}\tanother one\n"
        "imgs/c.png\t   \n"
        "\tno image here\n"
        "\n",
        encoding="utf-8",
    )
    with pytest.warns(DataWarning, match=r"skipped 2 rows"):
        pairs = read_pairs(table)
    assert [p.key for p in pairs] == ["imgs/a.png", str(absolute)]
    assert pairs[0].caption == 'a "quoted" red square'
    assert pairs[0].image_path == tmp_path / "imgs" / "a.png"
    assert pairs[1].image_path == absolute
    image = load_image(pairs[0])
    assert image.mode == "RGB" and image.size == (8, 8)


def test_csv_with_id_column_and_quoted_commas(tmp_path):
    (tmp_path / "x.png").write_bytes(_png())
    table = tmp_path / "pairs.csv"
    table.write_text('ID,filepath,Text\nsample-1,x.png,"a red, small square"\n', encoding="utf-8")
    (pair,) = read_pairs(table)
    assert pair == ImageTextPair(key="sample-1", caption="a red, small square", image_path=tmp_path / "x.png")


def test_table_errors_name_the_file(tmp_path):
    missing = tmp_path / "nocap.tsv"
    missing.write_text("image\tlabel\na.png\tcat\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"nocap\.tsv: line 1: no caption column"):
        read_pairs(missing)
    several = tmp_path / "several.tsv"  # COCO-style: one row per caption of an image
    several.write_text("image\tcaption\na.png\tone\na.png\ttwo\n", encoding="utf-8")
    assert [(p.key, p.caption, p.image_path) for p in read_pairs(several)] == [
        ("a.png", "one", tmp_path / "a.png"),
        ("a.png#2", "two", tmp_path / "a.png"),
    ]
    duplicate = tmp_path / "dup.tsv"
    duplicate.write_text("id\timage\tcaption\nx\ta.png\tone\nx\tb.png\ttwo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dup\.tsv: line 3: duplicate key 'x'"):
        read_pairs(duplicate)
    empty = tmp_path / "empty.tsv"
    empty.write_text("image\tcaption\na.png\t\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.tsv: no usable"):
        read_pairs(empty)
    with pytest.raises(DataError, match=r"absent\.tsv: file not found"):
        read_pairs(tmp_path / "absent.tsv")
    with pytest.raises(DataError, match="unknown pair format"):
        (tmp_path / "pairs.parquet").write_bytes(b"")
        read_pairs(tmp_path / "pairs.parquet")


def test_load_image_errors(tmp_path):
    with pytest.raises(DataError, match=r"gone\.png: image file not found"):
        load_image(ImageTextPair(key="k", caption="c", image_path=tmp_path / "gone.png"))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.png: cannot read image"):
        load_image(ImageTextPair(key="k", caption="c", image_path=tmp_path / "bad.png"))
    with pytest.raises(DataError, match=r"member-7: cannot read image"):
        load_image(ImageTextPair(key="member-7", caption="c", image_bytes=b"\x89PNG broken"))


# --- WebDataset shards --------------------------------------------------------------------------


@pytest.fixture()
def shards(tmp_path) -> Path:
    folder = tmp_path / "shards"
    folder.mkdir()
    _write_shard(
        folder / "00000.tar",
        {
            "s0.jpg": _png((10, 200, 10)),
            "s0.txt": "a green square".encode(),
            "s1.png": _png(),
            "s1.txt": b"a red square",
            "sub/s2.webp": _png(),
            "sub/s2.txt": b"in a folder",
        },
    )
    _write_shard(
        folder / "00001.tar",
        {
            "s3.png": _png(),
            "s3.json": json.dumps({"caption": "from json", "width": 8}).encode(),
            "s4.jpeg": _png(),
            "s4.json": json.dumps({"text": "text field"}).encode(),
            "s5.png": _png(),  # no caption: skipped
            "s6.txt": b"caption without image",  # no image: skipped
        },
    )
    return folder


def test_webdataset_tar_folder_and_brace_pattern(shards):
    (first,) = [p for p in read_pairs(shards / "00000.tar") if p.key == "s0"]
    assert first.caption == "a green square" and first.image_path is None
    assert load_image(first).getpixel((0, 0)) == (10, 200, 10)
    with pytest.warns(DataWarning, match=r"skipped 2 samples"):
        from_folder = read_pairs(shards)
    with pytest.warns(DataWarning, match=r"skipped 2 samples"):
        from_pattern = read_pairs(f"{shards}/{{00000..00001}}.tar")
    assert from_folder == from_pattern
    assert {p.key: p.caption for p in from_folder} == {
        "s0": "a green square",
        "s1": "a red square",
        "sub/s2": "in a folder",
        "s3": "from json",
        "s4": "text field",
    }


def test_webdataset_errors(shards, tmp_path):
    with pytest.raises(DataError, match=r"00002\.tar: shard not found"):
        read_pairs(f"{shards}/{{00000..00002}}.tar")
    _write_shard(shards / "00002.tar", {"s1.png": _png(), "s1.txt": b"again"})
    with pytest.raises(DataError, match=r"00002\.tar: s1: duplicate sample key"):
        read_pairs(shards)
    broken = _write_shard(tmp_path / "broken.tar", {"a.png": _png(), "a.json": b"{not json"})
    with pytest.raises(DataError, match=r"broken\.tar: a\.json: invalid JSON"):
        read_pairs(broken)
    (tmp_path / "junk.tar").write_bytes(b"definitely not a tar archive" * 20)
    with pytest.raises(DataError, match=r"junk\.tar: unreadable tar shard"):
        read_pairs(tmp_path / "junk.tar")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match=r"none: folder holds no \.tar shards"):
        read_pairs(tmp_path / "none")


def test_expand_braces():
    assert expand_braces("s/{00008..00011}.tar") == [f"s/{n:05d}.tar" for n in range(8, 12)]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    with pytest.raises(DataError, match="runs backwards"):
        expand_braces("{5..1}.tar")
    with pytest.raises(DataError, match="unbalanced"):
        expand_braces("{0..1.tar")


# --- class folders and Karpathy JSON ------------------------------------------------------------


def test_class_folders(tmp_path):
    root = tmp_path / "classes"
    for relative in ("golden_retriever/a.png", "golden_retriever/nested/b.JPG", "cat/c.jpeg", "cat/notes.txt"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(_png())
    (root / "empty_class").mkdir()
    (root / "classes.txt").write_text("zebra_crossing\ncat\n", encoding="utf-8")
    found = read_class_folders(root)
    assert found.folder_names == ["cat", "empty_class", "golden_retriever", "zebra_crossing"]
    assert found.class_names == ["cat", "empty class", "golden retriever", "zebra crossing"]
    assert [(p.relative_to(root).as_posix(), label) for p, label in found.items] == [
        ("cat/c.jpeg", 0),
        ("golden_retriever/a.png", 2),
        ("golden_retriever/nested/b.JPG", 2),
    ]
    assert found.counts() == [1, 0, 2, 0] and len(found) == 3
    with pytest.raises(DataError, match=r"nowhere: class-folder root not found"):
        read_class_folders(tmp_path / "nowhere")
    (tmp_path / "bare" / "only_folder").mkdir(parents=True)
    with pytest.raises(DataError, match=r"bare: no images"):
        read_class_folders(tmp_path / "bare")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match=r"flat: no class folders"):
        read_class_folders(tmp_path / "flat")


def test_karpathy_json(tmp_path):
    def entry(name, split, *captions, folder=None):
        record = {"filename": name, "split": split, "sentences": [{"raw": c, "tokens": c.split()} for c in captions]}
        if folder:
            record["filepath"] = folder
        return record

    path = tmp_path / "dataset_coco.json"
    path.write_text(
        json.dumps(
            {
                "dataset": "coco",
                "images": [
                    entry("t1.jpg", "test", "one", "uno", folder="val2014"),
                    entry("r1.jpg", "restval", "rest", folder="val2014"),
                    entry("t2.jpg", "test", "two", "dos", "deux"),
                    entry("tr.jpg", "train", "train caption", folder="train2014"),
                ],
            }
        ),
        encoding="utf-8",
    )
    test = read_karpathy(path, tmp_path / "coco")
    assert test.image_paths == [tmp_path / "coco" / "val2014" / "t1.jpg", tmp_path / "coco" / "t2.jpg"]
    assert test.captions == ["one", "uno", "two", "dos", "deux"]
    assert test.caption_image == [0, 0, 1, 1, 1]
    assert test.image_captions() == [[0, 1], [2, 3, 4]]
    train = read_karpathy(path, tmp_path, split="train")
    assert [p.name for p in train.image_paths] == ["r1.jpg", "tr.jpg"]
    with pytest.raises(
        DataError, match=r"dataset_coco\.json: no images in split 'val' \(splits present: restval, test, train\)"
    ):
        read_karpathy(path, tmp_path, split="val")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json: invalid JSON"):
        read_karpathy(bad, tmp_path)


# --- templates ----------------------------------------------------------------------------------


def test_templates():
    assert len(CLIP_TEMPLATES) == 80 and len(set(CLIP_TEMPLATES)) == 80
    for template in (*CLIP_TEMPLATES, *SIMPLE_TEMPLATES, *SYNTH_TEMPLATES):
        assert template.count("{}") == 1 and template.count("{") == 1
    assert CLIP_TEMPLATES[0] == "a bad photo of a {}." and CLIP_TEMPLATES[-1] == "a tattoo of the {}."
    assert SIMPLE_TEMPLATES == ("a photo of a {}.",)
    assert 3 <= len(SYNTH_TEMPLATES) and "a picture of a {}." in SYNTH_TEMPLATES
    assert prompts("red circle") == ["a photo of a red circle."]
    filled = prompts("golden retriever", CLIP_TEMPLATES)
    assert len(filled) == 80 and all("golden retriever" in text for text in filled)
    with pytest.raises(ValueError, match="exactly one"):
        prompts("x", ["no slot here"])


# --- the synthetic world ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> tuple[Path, world.WorldSummary]:
    out = tmp_path_factory.mktemp("vl_world") / "world"
    return out, world.make_world(out, **WORLD_ARGS)


def test_render_scene_draws_colour_at_position():
    for colour in world.COLOURS:
        image = np.asarray(world.render_scene(colour, "circle", "large", "centre", np.random.default_rng(1), 48), float)
        centre = image[22:26, 22:26].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - world.COLOUR_RGB[colour]).max() < 25, colour
    for position, (fx, fy) in world.POSITION_CENTRE.items():
        image = np.asarray(
            world.render_scene("black", "square", "small", position, np.random.default_rng(2), 64), float
        )
        ys, xs = np.nonzero(image.mean(axis=2) < 60)
        assert abs(xs.mean() / 64 - fx) < 0.08 and abs(ys.mean() / 64 - fy) < 0.08, position
    ring = np.asarray(world.render_scene("black", "ring", "large", "centre", np.random.default_rng(0), 64), float)
    assert ring[32, 32].mean() > 100  # a ring's hole shows the background
    small = world.render_scene("red", "star", "small", "left", np.random.default_rng(0), 64)
    large = world.render_scene("red", "star", "large", "left", np.random.default_rng(0), 64)
    coverage = [int((np.asarray(im)[..., 1] < 90).sum()) for im in (small, large)]
    assert coverage[1] > 2 * coverage[0]
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        world.render_scene("red", "hexagon", "small", "left", np.random.default_rng(0), 32)


def test_captions_name_colour_and_shape():
    rng = np.random.default_rng(0)
    captions = set()
    for colour in world.COLOURS:
        for shape in world.SHAPES:
            for size in world.SIZES:
                for position in world.POSITIONS:
                    caption = world.caption_for(world.SceneAttrs(colour, shape, size, position), rng)
                    assert _parse(caption) == (colour, shape)
                    assert "\t" not in caption and "\n" not in caption and "  " not in caption
                    captions.add(caption)
    assert len(captions) > 500  # paraphrases, not one fixed sentence per combination
    assert len(world.SHAPES) >= 6 and len(world.COLOURS) == 8


def test_world_splits_and_held_out_pairs(small_world):
    out, summary = small_world
    info = json.loads((out / "world.json").read_text())
    held = {tuple(pair) for pair in info["held_out"]}
    assert len(held) == 4 and held == set(summary.held_out)
    assert info["counts"] == summary.counts == {"train": 96, "val": 12, "test": 12}
    for split in ("train", "val"):
        pairs = read_pairs(out / f"{split}.tsv")
        assert len(pairs) == summary.counts[split]
        assert not {_parse(p.caption) for p in pairs} & held
    train_combos = {_parse(p.caption) for p in read_pairs(out / "train.tsv")}
    assert len(train_combos) == 56 - 4  # every seen combination is covered
    test_pairs = read_pairs(out / "test.tsv")
    assert {_parse(p.caption) for p in test_pairs} == held
    assert sorted(info["combination_counts"]["test"].values()) == [3, 3, 3, 3]  # spread evenly
    assert load_image(test_pairs[0]).size == (32, 32)


def test_world_zero_shot_and_karpathy(small_world):
    out, summary = small_world
    zero_shot = read_class_folders(out / "zero_shot")
    assert len(zero_shot.class_names) == 56 and "red circle" in zero_shot.class_names
    assert len(zero_shot.items) == 12
    held_names = {f"{colour} {shape}" for colour, shape in summary.held_out}
    assert {zero_shot.class_names[label] for _, label in zero_shot.items} == held_names
    assert sorted(p.name for p in (out / "zero_shot").iterdir() if p.is_dir()) == sorted(
        n.replace(" ", "_") for n in held_names
    )
    test = read_karpathy(out / "karpathy.json", out, split="test")
    assert len(test.image_paths) == 12 and len(test.captions) == 60
    assert all(path.is_file() for path in test.image_paths)
    labels = {path.name: zero_shot.class_names[label] for path, label in zero_shot.items}
    for caption, image_index in zip(test.captions, test.caption_image):
        assert " ".join(_parse(caption)) == labels[test.image_paths[image_index].name]
    for group in test.image_captions():
        assert len({test.captions[i] for i in group}) == 5  # five different captions per test image
    assert len(read_karpathy(out / "karpathy.json", out, split="train").captions) == 96
    assert not list(out.rglob("*.tmp"))


def test_world_is_deterministic(tmp_path):
    def snapshot(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    args = {"images": 24, "size": 16, "held_out": 2}
    world.make_world(tmp_path / "a", seed=9, **args)
    world.make_world(tmp_path / "b", seed=9, **args)
    world.make_world(tmp_path / "c", seed=10, **args)
    first = snapshot(tmp_path / "a")
    assert first == snapshot(tmp_path / "b")
    assert first["train.tsv"] != snapshot(tmp_path / "c")["train.tsv"]
    assert world.choose_held_out(9, 2) == world.choose_held_out(9, 2)
    # A rerun into the same folder replaces the old world; a folder with other files is refused.
    world.make_world(tmp_path / "a", seed=9, images=20, size=16, held_out=2)
    assert len(list((tmp_path / "a" / "images" / "train").iterdir())) == 16
    (tmp_path / "c" / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="did not write"):
        world.make_world(tmp_path / "c", seed=1, **args)


def test_vl_synth_cli(tmp_path, capsys):
    out = tmp_path / "cli_world"
    assert synth_cli.main([str(out), "--images", "30", "--size", "16", "--seed", "2", "--held-out", "3"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("vl-synth: 30 images")
    assert len(json.loads((out / "world.json").read_text())["held_out"]) == 3
    for argv, message in (
        ([str(out), "--images", "5"], "--images must be at least"),
        ([str(out), "--size", "big"], "argument --size: invalid int value"),
        ([str(out), "--held-out", "0"], "--held-out must be between"),
        ([], "the following arguments are required: out"),
        ([str(out), "--bogus"], "unrecognized arguments: --bogus"),
    ):
        assert synth_cli.main(argv) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("vl-synth: error: ") and message in error[0], error
    (out / "stranger.bin").write_bytes(b"x")
    assert synth_cli.main([str(out), "--images", "30", "--size", "16"]) == 2
    assert "did not write" in capsys.readouterr().err
