"""Frozen encoders of vision_language: the real MiniLM against sentence-transformers, and tiny
random Hugging Face / torchvision models saved to tmp dirs (nothing is downloaded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from vision_language.encoders import (  # noqa: E402
    ImageEncoderConfig,
    TextEncoderConfig,
    build_image_encoder,
    build_text_encoder,
    minilm_path,
)

SIZE = 32
TINY_VIT = {"patch_size": 8, "num_layers": 3, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32}
TEXTS = ["a cat sat on the mat", "a dog", "the quick brown fox jumped over the lazy dog near a river bank"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(" ".join(TEXTS).split()))


def _images() -> list[Image.Image]:
    """Different sizes and modes: preprocessing must resize, crop and convert all of them."""
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (64, 33), dtype=np.uint8), mode="L"),
        Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8), mode="RGBA"),
    ]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def minilm_vectors() -> tuple[torch.Tensor, torch.Tensor]:
    from sentence_transformers import SentenceTransformer

    path = minilm_path()
    reference = SentenceTransformer(str(path), device="cpu").encode(TEXTS, convert_to_tensor=True)
    encoder = build_text_encoder(TextEncoderConfig(path=str(path)))
    with torch.no_grad():
        ours = encoder(encoder.preprocess(TEXTS))
    return ours, reference.cpu()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32
    )
    BertModel(config).save_pretrained(folder)
    return folder


def _save_hf_vision(folder: Path, model_cls, config) -> Path:
    torch.manual_seed(0)
    model_cls(config).save_pretrained(folder)
    preprocessor = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "resample": 3}
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder


@pytest.fixture(scope="session")
def hf_vision_folders(tmp_path_factory) -> dict[str, Path]:
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
        ViTConfig,
        ViTModel,
    )

    tiny = {"hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": SIZE, "patch_size": 8}
    return {
        "dinov2": _save_hf_vision(tmp_path_factory.mktemp("dinov2"), Dinov2Model, Dinov2Config(mlp_ratio=2, **tiny)),
        "vit": _save_hf_vision(tmp_path_factory.mktemp("vit"), ViTModel, ViTConfig(intermediate_size=32, **tiny)),
        "dinov2_reg": _save_hf_vision(
            tmp_path_factory.mktemp("dinov2_reg"),
            Dinov2WithRegistersModel,
            Dinov2WithRegistersConfig(mlp_ratio=2, num_register_tokens=4, **tiny),
        ),
    }


@pytest.fixture(scope="session")
def mobilenet_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mobilenet") / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    return path


# ------------------------------------------------------------------------------------- text


def test_minilm_matches_sentence_transformers(minilm_vectors) -> None:
    ours, reference = minilm_vectors
    assert ours.shape == (len(TEXTS), 384)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(len(TEXTS)))  # modules.json has Normalize


def test_minilm_describe_reads_the_folder() -> None:
    encoder = build_text_encoder(TextEncoderConfig(path=str(minilm_path()), normalize=False, max_length=16))
    info = encoder.describe()
    assert (info["pooling"], info["normalize"], info["output_dim"], info["num_layers"]) == ("mean", False, 384, 1)
    assert encoder.preprocess(["word " * 50])["input_ids"].shape == (1, 16)  # truncated to max_length


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "last", "auto"])
def test_text_pooling_ignores_padding(tiny_bert: Path, pooling: str) -> None:
    encoder = build_text_encoder(TextEncoderConfig(path=str(tiny_bert), pooling=pooling))
    assert encoder.output_dim == 16 and not encoder.normalize  # a plain HF folder: no Normalize module
    with torch.no_grad():
        batched = encoder(encoder.preprocess(TEXTS))
        alone = encoder(encoder.preprocess(TEXTS[1:2]))  # "a dog": no padding when alone
    assert batched.shape == (3, 16)
    torch.testing.assert_close(batched[1:2], alone, atol=1e-5, rtol=0)
    if pooling in ("mean", "auto"):
        assert encoder.pooling == "mean"


def test_text_layers_and_normalize(tiny_bert: Path) -> None:
    encoder = build_text_encoder(
        TextEncoderConfig(path=str(tiny_bert), features="layers", layers=[-1, 1], normalize=True)
    )
    with torch.no_grad():
        out = encoder(encoder.preprocess(TEXTS))
    assert out.shape == (3, 2, 16) and encoder.num_layers == 2 and encoder.describe()["layers"] == [3, 1]
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3, 2))
    pooled = build_text_encoder(TextEncoderConfig(path=str(tiny_bert), normalize=True))
    with torch.no_grad():
        torch.testing.assert_close(out[:, 0], pooled(pooled.preprocess(TEXTS)))  # layer -1 = last_hidden_state
    default = build_text_encoder(TextEncoderConfig(path=str(tiny_bert), features="layers"))
    assert default.layer_indices == [1, 2, 3]  # "last 6" capped at the 3 blocks


def test_text_pooling_config_from_folder(tiny_bert: Path, tmp_path: Path) -> None:
    for name in os.listdir(tiny_bert):
        (tmp_path / name).write_bytes((tiny_bert / name).read_bytes())
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert build_text_encoder(TextEncoderConfig(path=str(tmp_path))).pooling == "cls"
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "lasttoken"}))
    assert build_text_encoder(TextEncoderConfig(path=str(tmp_path))).pooling == "last"
    (tmp_path / "modules.json").write_text(
        json.dumps([{"path": "2_Dense", "type": "sentence_transformers.models.Dense"}])
    )
    with pytest.raises(ValueError, match="Dense"):
        build_text_encoder(TextEncoderConfig(path=str(tmp_path)))


# ------------------------------------------------------------------------ Hugging Face images


@pytest.mark.parametrize("kind", ["dinov2", "vit", "dinov2_reg"])
def test_hf_image_features(hf_vision_folders: dict[str, Path], kind: str) -> None:
    folder = str(hf_vision_folders[kind])
    encoders = {
        features: build_image_encoder(
            ImageEncoderConfig(source="huggingface", path=folder, features=features, image_size=SIZE)
        )
        for features in ("cls", "mean", "concat", "layers")
    }
    batch = encoders["cls"].preprocess(_images())
    assert batch.shape == (3, 3, SIZE, SIZE)
    with torch.no_grad():
        out = {features: encoder(batch) for features, encoder in encoders.items()}
        reference = encoders["cls"].model(pixel_values=batch).last_hidden_state
    assert out["cls"].shape == out["mean"].shape == (3, 16)
    assert out["concat"].shape == (3, 32) and encoders["concat"].output_dim == 32
    assert out["layers"].shape == (3, 3, 16) and encoders["layers"].num_layers == 3
    torch.testing.assert_close(out["concat"], torch.cat([out["cls"], out["mean"]], dim=-1))
    registers = 4 if kind == "dinov2_reg" else 0
    assert reference.shape[1] == 1 + registers + (SIZE // 8) ** 2
    torch.testing.assert_close(out["cls"], reference[:, 0])
    torch.testing.assert_close(out["mean"], reference[:, 1 + registers :].mean(dim=1))  # patches only
    assert encoders["layers"].describe()["name"] == ("dinov2_with_registers" if registers else kind)


def test_hf_image_preprocessor_and_options(hf_vision_folders: dict[str, Path]) -> None:
    folder = str(hf_vision_folders["vit"])
    encoder = build_image_encoder(ImageEncoderConfig(source="huggingface", path=folder, image_size=SIZE))
    assert encoder.mean == (0.5, 0.5, 0.5) and encoder.std == (0.25, 0.25, 0.25)  # from preprocessor_config.json
    white = encoder.preprocess([Image.new("RGB", (50, 70), "white")])
    torch.testing.assert_close(white, torch.full((1, 3, SIZE, SIZE), 2.0))
    layered = build_image_encoder(
        ImageEncoderConfig(
            source="huggingface", path=folder, features="layers", layers=[0, -1], layer_pooling="mean", image_size=48
        )
    )
    with torch.no_grad():  # 48 px on a ViT made for 32 px: position embeddings interpolated
        assert layered(layered.preprocess(_images())).shape == (3, 2, 16)
    with pytest.raises(ValueError, match="out of range"):
        build_image_encoder(ImageEncoderConfig(source="huggingface", path=folder, features="layers", layers=[7]))


# -------------------------------------------------------------------------------- torchvision


def test_mobilenet_from_state_dict(mobilenet_file: Path) -> None:
    encoder = build_image_encoder(ImageEncoderConfig(path=str(mobilenet_file), image_size=64))
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(mobilenet_file, weights_only=True))
    reference.eval()
    batch = encoder.preprocess(_images())
    with torch.no_grad():
        features = encoder(batch)
        expected = torch.nn.functional.adaptive_avg_pool2d(reference.features(batch), 1).flatten(1)
    assert features.shape == (3, 1280) and encoder.output_dim == 1280
    torch.testing.assert_close(features, expected)
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training  # frozen: BatchNorm statistics never move
    info = encoder.describe()
    assert (info["source"], info["name"], info["output_dim"], info["mean"]) == (
        "torchvision",
        "mobilenet_v2",
        1280,
        [0.485, 0.456, 0.406],
    )


def test_mobilenet_layers(mobilenet_file: Path) -> None:
    default = build_image_encoder(ImageEncoderConfig(path=str(mobilenet_file), features="layers", image_size=64))
    assert default.layer_indices == [18] and default.output_dim == 1280  # the only 1280-wide block
    blocks = build_image_encoder(
        ImageEncoderConfig(path=str(mobilenet_file), features="layers", layers=[14, 15, 16], image_size=64)
    )
    with torch.no_grad():
        assert blocks(blocks.preprocess(_images())).shape == (3, 3, 160)
    with pytest.raises(ValueError, match="share a width"):
        build_image_encoder(ImageEncoderConfig(path=str(mobilenet_file), features="layers", layers=[-2, -1]))
    with pytest.raises(ValueError, match="class token"):
        build_image_encoder(ImageEncoderConfig(path=str(mobilenet_file), features="concat"))


def test_state_dict_errors_are_one_line(mobilenet_file: Path, tmp_path: Path) -> None:
    state = torch.load(mobilenet_file, weights_only=True)
    del state["features.0.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(ValueError) as error:
        build_image_encoder(ImageEncoderConfig(path=str(broken)))
    message = str(error.value)
    assert "\n" not in message and str(broken) in message
    assert "1 missing key(s): features.0.0.weight" in message and "1 unexpected key(s): extra.weight" in message
    headless = tmp_path / "headless.safetensors"  # classifier keys are not needed: the head is dropped
    from safetensors.torch import save_file

    save_file(
        {k: v for k, v in torch.load(mobilenet_file, weights_only=True).items() if not k.startswith("classifier.")},
        headless,
    )
    assert build_image_encoder(ImageEncoderConfig(path=str(headless), image_size=64)).output_dim == 1280


def test_torchvision_vit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=SIZE, **TINY_VIT)
    path = tmp_path / "vit.pth"
    torch.save(model.state_dict(), path)
    model.eval()
    common = {"name": "VisionTransformer", "path": str(path), "image_size": SIZE, "model_kwargs": TINY_VIT}
    encoders = {
        f: build_image_encoder(ImageEncoderConfig(features=f, **common)) for f in ("cls", "mean", "concat", "layers")
    }
    batch = encoders["cls"].preprocess(_images())
    with torch.no_grad():
        out = {f: e(batch) for f, e in encoders.items()}
        x = model._process_input(batch)
        tokens = model.encoder(torch.cat([model.class_token.expand(3, -1, -1), x], dim=1))
    torch.testing.assert_close(out["cls"], tokens[:, 0])
    torch.testing.assert_close(out["mean"], tokens[:, 1:].mean(dim=1))
    torch.testing.assert_close(out["concat"], torch.cat([out["cls"], out["mean"]], dim=-1))
    assert out["layers"].shape == (3, 3, 16) and encoders["layers"].layer_indices == [1, 2, 3]
    with pytest.warns(UserWarning, match="random"):
        build_image_encoder(ImageEncoderConfig(name="VisionTransformer", image_size=SIZE, model_kwargs=TINY_VIT))


# ------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize(
    "make",
    [
        lambda: ImageEncoderConfig(source="timm"),
        lambda: ImageEncoderConfig(name="fasterrcnn_resnet50_fpn"),
        lambda: ImageEncoderConfig(name="not_a_model"),
        lambda: ImageEncoderConfig(features="pooler"),
        lambda: ImageEncoderConfig(features="layers", layer_pooling="max"),
        lambda: ImageEncoderConfig(layers=[-1]),  # layers without features="layers"
        lambda: ImageEncoderConfig(features="layers", layers=[]),
        lambda: ImageEncoderConfig(image_size=0),
        lambda: ImageEncoderConfig(mean=(0.5, 0.5)),
        lambda: ImageEncoderConfig(std=(0.5, 0.0, 0.5)),
        lambda: ImageEncoderConfig(source="huggingface"),  # no path
        lambda: TextEncoderConfig(path=""),
        lambda: TextEncoderConfig(path="x", pooling="attention"),
        lambda: TextEncoderConfig(path="x", max_length=0),
        lambda: TextEncoderConfig(path="x", features="tokens"),
        lambda: TextEncoderConfig(path="x", features="layers", layers=[1, 1]),
    ],
)
def test_bad_config_values(make) -> None:
    with pytest.raises(ValueError) as error:
        make()
    assert "\n" not in str(error.value)


def test_yaml_style_values_are_normalised() -> None:
    config = ImageEncoderConfig(mean=[0.5, 0.5, 0.5], std=[1, 1, 1], features="layers", layers=[-2, -1])
    assert config.mean == (0.5, 0.5, 0.5) and config.std == (1.0, 1.0, 1.0)
    from dataclasses import asdict

    assert ImageEncoderConfig(**json.loads(json.dumps(asdict(config)))) == config  # saved-model round trip
    text = TextEncoderConfig(path=Path("/x"), features="layers", layers=[-1])
    assert text.path == "/x" and TextEncoderConfig(**json.loads(json.dumps(asdict(text)))) == text
