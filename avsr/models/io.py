"""Saving and loading models: safetensors weights + a YAML config beside them; never unpickles.

``save_model(dir, model, extra)`` writes ``dir/model.safetensors`` and ``dir/model.yaml`` (each
atomically; the YAML, written last, records the weights' SHA-256 so a mismatched pair is caught).
``load_model(dir)`` rebuilds the ``AVSRModel`` from the YAML and loads the weights strictly (the
file model.yaml names must lie inside ``dir``). The whole folder, tokenizer included, is read with
``avsr.models.folder.load_model_folder``.
``load_frontend_weights`` brings foreign weights (MoCo v2, our LRW front-ends, ...) into one part
of a model through an explicit key-prefix map, strictly, and reports what was left out and why.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor, nn

from avsr.media.atomic import atomic_path
from avsr.media.paths import OutsideRootError, inside
from avsr.models.config import AVSRConfig, ConfigError
from avsr.models.weights import WeightsError, _read_safetensors, read_state_dict
from avsr.nn.state import state_problems

if TYPE_CHECKING:
    from avsr.models.avsr_model import AVSRModel

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.yaml"
FORMAT = "avsr-model"
FORMAT_VERSION = 1


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks (checkpoints can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- our model files
def save_model(out_dir: str | os.PathLike[str], model: AVSRModel, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` + ``model.yaml`` (config, ``extra`` metadata such as the
    tokenizer fingerprint) into ``out_dir``; returns the directory."""
    out = Path(out_dir)
    model = getattr(model, "module", model)  # unwrap DDP
    extra = dict(extra or {})
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "family": getattr(model, "family", DEFAULT_FAMILY),
        "config": model.config.to_dict(),
        "extra": extra,
    }
    try:
        yaml.safe_dump(meta)
    except yaml.YAMLError as exc:
        raise ValueError(f"save_model: extra metadata is not YAML-serialisable: {exc}") from None
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file(state, tmp, metadata={"format": FORMAT})
        digest = file_sha256(tmp)
    meta["weights"] = {"file": WEIGHTS_FILE, "sha256": digest}
    with atomic_path(out / CONFIG_FILE) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            yaml.safe_dump(meta, f, sort_keys=False)
    return out


def read_model_yaml(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``model.yaml`` of a saved model (``config``, ``extra``, ``weights``)."""
    path = Path(model_dir) / CONFIG_FILE
    try:
        with open(path, encoding="utf-8") as f:
            meta = yaml.safe_load(f)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file (not a saved avsr model directory)") from None
    except yaml.YAMLError as exc:
        raise WeightsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise WeightsError(f"{path}: not an avsr model file (format is not {FORMAT!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise WeightsError(f"{path}: unsupported version {meta.get('version')!r} (expected {FORMAT_VERSION})")
    return meta


def path_in_folder(model_dir: str | os.PathLike[str], name: Any, key: str) -> Path:
    """The file model.yaml's ``key`` names, resolved (symlinks too) inside ``model_dir``; a name
    leading out of the folder (``..``, absolute, a symlink) is a one-line WeightsError."""
    config = Path(model_dir) / CONFIG_FILE
    if not isinstance(name, str) or not name:
        raise WeightsError(f"{config}: {key} must be a file name, not {name!r}")
    try:
        return inside(model_dir, name)
    except OutsideRootError as exc:
        raise WeightsError(f"{config}: {key} {name!r} is refused: {exc.problem}") from None


#: Model families a saved model may belong to: name -> "module:function" building the model
#: (weights not loaded) from the ``config`` mapping of model.yaml. ``avsr`` is ours; the others
#: are published architectures converted by avsr-convert (`avsr.models.pretrained`).
DEFAULT_FAMILY = "avsr"
MODEL_FAMILIES = {
    "avsr": "avsr.models.io:_build_avsr",
    "auto_avsr": "avsr.models.pretrained.auto_avsr:build_from_config",
    "avhubert": "avsr.models.pretrained.avhubert_config:build_from_config",
    "lm": "avsr.models.lm:build_from_config",  # a language model for the search, not a recogniser
}


def _build_avsr(config: dict[str, Any]) -> nn.Module:
    from avsr.models.avsr_model import AVSRModel

    return AVSRModel(AVSRConfig.from_stored(config), pretrained=False)


def build_saved_model(
    meta: dict[str, Any], source: str
) -> tuple[nn.Module, Callable[[dict[str, Tensor]], dict[str, Tensor]]]:
    """An untrained model of the family and config a model.yaml names, and what turns the saved
    weights' names into the model's (the family module's ``stored_state(state, config)``, for
    folders written before a family became a configuration of the one model; else unchanged)."""
    import importlib

    family = meta.get("family", DEFAULT_FAMILY)
    if family not in MODEL_FAMILIES:
        raise WeightsError(f"{source}: unknown model family {family!r} (known: {', '.join(MODEL_FAMILIES)})")
    module_name, function = MODEL_FAMILIES[family].split(":")
    module = importlib.import_module(module_name)
    try:
        model = getattr(module, function)(meta["config"])
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{source}: bad config: {exc}") from None
    stored_state = getattr(module, "stored_state", None)
    if stored_state is None:
        return model, lambda state: state
    return model, lambda state: stored_state(state, meta["config"])


def load_config(model_dir: str | os.PathLike[str]) -> AVSRConfig:
    meta = read_model_yaml(model_dir)
    try:
        return AVSRConfig.from_stored(meta["config"])
    except (ConfigError, KeyError) as exc:
        raise WeightsError(f"{Path(model_dir) / CONFIG_FILE}: bad config: {exc}") from None


def load_model(
    model_dir: str | os.PathLike[str], device: str | torch.device = "cpu", *, verify: bool = True
) -> AVSRModel:
    """Rebuild the model from ``model.yaml`` and load ``model.safetensors`` strictly; eval mode.

    The YAML's ``extra`` metadata is available as ``model.metadata``. Front-ends are built from
    the config only (no pretrained checkpoint is read: the weights come from the safetensors).
    """
    model_dir = Path(model_dir)
    meta = read_model_yaml(model_dir)
    weights = path_in_folder(model_dir, (meta.get("weights") or {}).get("file", WEIGHTS_FILE), "weights.file")
    if not weights.is_file():
        raise WeightsError(f"{weights}: no such file")
    expected = (meta.get("weights") or {}).get("sha256")
    if verify and expected and file_sha256(weights) != expected:
        raise WeightsError(f"{weights}: SHA-256 differs from {CONFIG_FILE} (files from different saves?)")
    model, migrate = build_saved_model(meta, str(model_dir / CONFIG_FILE))
    state = migrate(_read_safetensors(weights))
    _load_strict(model, state, str(weights))
    model.metadata = dict(meta.get("extra") or {})  # type: ignore[assignment]
    return model.to(device).eval()


def _load_strict(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    problems = state_problems(module.state_dict(), state)
    if problems:
        raise WeightsError(f"{source}: " + "; ".join(problems))
    module.load_state_dict(dict(state), strict=True)


def load_pretrained_frontends(
    model: AVSRModel,
    *,
    visual: str | os.PathLike[str] | None = None,
    visual_format: str = "moco_v2",
    audio: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Bring pretrained front-end weights into a fresh model; returns report lines.

    ``visual_format``: ``"moco_v2"`` (MoCo v2 ResNet-50 ``.pth.tar``: trunk only, as the seed) or
    ``"avsr"`` (one of our exported visual front-ends in safetensors, keys ``stem.*``/``trunk.*``
    or under ``visual_frontend.``). ``audio``: a wav2vec 2.0 checkpoint (fairseq1/fairseq2 ``.pt``,
    Hugging Face directory, converted safetensors), loaded strictly by
    ``avsr.models.audio.load_pretrained``. (Setting ``audio.pretrained`` of a wav2vec2 front-end in the config
    does the same when the model is built.)
    """
    from avsr.models.visual import load_moco_v2, load_visual_frontend

    lines: list[str] = []
    if visual is not None:
        if model.visual_frontend is None:
            raise ValueError("load_pretrained_frontends: the model has no visual branch")
        if visual_format == "moco_v2":
            lines.append(load_moco_v2(model.visual_frontend, visual).summary())
        elif visual_format == "avsr":
            state = read_state_dict(visual)
            prefix = "visual_frontend." if any(k.startswith("visual_frontend.") for k in state) else ""
            lines.append(load_visual_frontend(model.visual_frontend, visual, prefix=prefix).summary())
        else:
            raise ValueError(f"visual_format: {visual_format!r} is not one of moco_v2, avsr")
    if audio is not None:
        if model.audio_frontend is None:
            raise ValueError("load_pretrained_frontends: the model has no audio branch")
        try:
            from avsr.models import audio as audio_mod
        except ImportError as exc:
            raise WeightsError(f"{os.fspath(audio)}: wav2vec 2.0 converters unavailable ({exc})") from None
        if not isinstance(model.audio_frontend, audio_mod.Wav2Vec2FrontEnd):
            raise ValueError(f"{os.fspath(audio)}: the model's audio front-end is not wav2vec 2.0")
        audio_mod.load_pretrained(model.audio_frontend, audio)
        lines.append(
            f"{os.fspath(audio)}: wav2vec 2.0 weights loaded into the audio front-end "
            "(the 25 Hz downsampling conv keeps its initialisation)"
        )
    return lines


__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "load_config",
    "load_model",
    "load_pretrained_frontends",
    "path_in_folder",
    "read_model_yaml",
    "save_model",
]
