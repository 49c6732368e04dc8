"""The model folder: everything needed to use a trained or converted model, checked on load.

    model.yaml          family, config, extra (tokenizer_fingerprint, preprocessing, mouth_crop,
                        decoding defaults, ...) and weights: {file, sha256}
    model.safetensors   the weights (`avsr.models.io`)
    tokenizer/          tokenizer.json and the files it lists (`avsr.data.tokenizers`)
    train_config.yaml   the training configuration (avsr-train's exports only)

avsr-train exports it and avsr-convert writes it (:func:`save_model_folder`); avsr-decode,
avsr-bench, avsr-convert (``--tokenizer MODEL_DIR``) and avsr-train (``model.init_from``) read it
with :func:`load_model_folder`, which checks that the weights are the ones model.yaml records
(SHA-256) and that the tokenizer is the one the model was trained with (its fingerprint): a
swapped file is a one-line error, never a model that decodes garbage. Every path model.yaml names
stays inside the folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from torch import nn

from avsr.data.tokenizers import Tokenizer, load_tokenizer
from avsr.data.video import Preprocessing
from avsr.models.io import CONFIG_FILE, load_model, path_in_folder, read_model_yaml, save_model
from avsr.models.weights import WeightsError

if TYPE_CHECKING:
    from avsr.face import MouthCropConfig

TOKENIZER_DIR = "tokenizer"
TRAIN_CONFIG_FILE = "train_config.yaml"
#: Where model.yaml's ``extra`` records the fingerprint of the tokenizer the model was trained with.
FINGERPRINT_KEY = "tokenizer_fingerprint"
#: Parts of a model whose weights stand for token ids: they only fit the tokenizer they were trained with.
TOKEN_MODULES = ("ctc_head", "decoder")
#: what a model fine-tuned from a folder keeps of that folder's ``extra``: how it is decoded, how
#: its mouth crops are made, and its licence (a converted published model's terms still apply).
INHERITED_EXTRA = ("decoding", "mouth_crop", "licence")


@dataclass
class ModelFolder:
    """A loaded model folder: the model (eval mode, ``model.metadata`` = model.yaml's ``extra``)
    and the tokenizer it was trained with."""

    path: Path
    model: nn.Module
    tokenizer: Tokenizer
    preprocessing: Preprocessing

    @property
    def metadata(self) -> dict[str, Any]:
        return self.model.metadata  # type: ignore[return-value]


def load_folder_tokenizer(model_dir: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> Tokenizer:
    """The folder's tokenizer, refused unless its fingerprint is the one model.yaml records."""
    model_dir = Path(model_dir)
    meta = read_model_yaml(model_dir) if meta is None else meta
    recorded = (meta.get("extra") or {}).get(FINGERPRINT_KEY)
    if not isinstance(recorded, str) or not recorded:
        raise WeightsError(
            f"{model_dir / CONFIG_FILE}: records no tokenizer fingerprint (extra.{FINGERPRINT_KEY}), so its tokenizer "
            "cannot be checked: export or convert the model again"
        )
    return load_tokenizer(model_dir / TOKENIZER_DIR, expected_fingerprint=recorded, recorded_in=model_dir / CONFIG_FILE)


def load_model_folder(model_dir: str | os.PathLike[str], device: str = "cpu") -> ModelFolder:
    """Model + tokenizer + preprocessing of a model folder, every checksum and the tokenizer's
    fingerprint checked (`WeightsError` / `TokenizerError`, one line naming the file)."""
    model_dir = Path(model_dir)
    meta = read_model_yaml(model_dir)
    tokenizer = load_folder_tokenizer(model_dir, meta)
    model = load_model(model_dir, device)
    return ModelFolder(model_dir, model, tokenizer, _preprocessing(model_dir, model.metadata))


def _preprocessing(model_dir: Path, metadata: Mapping[str, Any]) -> Preprocessing:
    recorded = metadata.get("preprocessing")
    if recorded:
        return Preprocessing.from_mapping(recorded)
    train_config = None  # models exported before the preprocessing was recorded
    if (model_dir / TRAIN_CONFIG_FILE).is_file():
        train_config = yaml.safe_load((model_dir / TRAIN_CONFIG_FILE).read_text(encoding="utf-8"))
    return Preprocessing.from_train_config(train_config)


def mouth_crop_config(recorded: Mapping[str, Any], model_dir: Path | None) -> MouthCropConfig:
    """The mouth-crop settings model.yaml records (``extra.mouth_crop``). A mean face other than
    the shipped one must be a file inside ``model_dir`` (None: the model was not read from a
    folder, so only the shipped one is accepted). ValueError / WeightsError: one line."""
    from avsr.face import MouthCropConfig
    from avsr.face.align import MEAN_FACE_FILE

    settings = dict(recorded)
    mean_face = settings.get("mean_face", MEAN_FACE_FILE)
    if mean_face != MEAN_FACE_FILE:
        if model_dir is None:
            raise WeightsError(f"mouth_crop.mean_face {mean_face!r} can only be read from inside a model folder")
        settings["mean_face"] = str(path_in_folder(model_dir, mean_face, "extra.mouth_crop.mean_face"))
    return MouthCropConfig.from_mapping(settings)


def check_token_modules(folder: ModelFolder, modules: Iterable[str], tokenizer: Tokenizer) -> None:
    """Refuse to carry ``modules`` of ``folder`` into a model trained with ``tokenizer`` when some
    of them (CTC head, decoder) were trained with another tokenizer: their outputs name other units."""
    tied = [m for m in modules if m in TOKEN_MODULES]
    if tied and folder.tokenizer.fingerprint != tokenizer.fingerprint:
        raise WeightsError(
            f"{folder.path}: its {' and '.join(tied)} were trained with another tokenizer (fingerprint "
            f"{folder.tokenizer.fingerprint[:12]}..., this run's is {tokenizer.fingerprint[:12]}...): leave them out "
            f"of the modules taken from it, or train with its tokenizer ({folder.path / TOKENIZER_DIR})"
        )


def save_model_folder(
    out_dir: str | os.PathLike[str], model: nn.Module, tokenizer: Tokenizer, extra: Mapping[str, Any]
) -> Path:
    """Write a model folder: the tokenizer, then the weights and model.yaml (written last, so a
    folder with a model.yaml is complete) recording the tokenizer's fingerprint. An ``extra`` that
    already records another fingerprint (the run was trained with another tokenizer) is refused."""
    out = Path(out_dir)
    recorded = extra.get(FINGERPRINT_KEY)
    if recorded is not None and recorded != tokenizer.fingerprint:
        raise WeightsError(
            f"{out}: the model was trained with tokenizer {str(recorded)[:12]}..., not the one given ({tokenizer.fingerprint[:12]}...)"
        )
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(out / TOKENIZER_DIR)
    return save_model(out, model, extra={**extra, FINGERPRINT_KEY: tokenizer.fingerprint})  # type: ignore[arg-type]


__all__ = [
    "FINGERPRINT_KEY",
    "ModelFolder",
    "Preprocessing",
    "TOKENIZER_DIR",
    "TOKEN_MODULES",
    "TRAIN_CONFIG_FILE",
    "check_token_modules",
    "load_folder_tokenizer",
    "load_model_folder",
    "mouth_crop_config",
    "save_model_folder",
]
