"""Shared pieces of the wav2vec 2.0 checkpoint converters.

- ``ConvertedWav2Vec2``: what every converter returns: a state dict with fairseq2 0.8.1
  ``Wav2Vec2Model`` key names (the encoder part only: ``encoder_frontend.*``, ``encoder.*`` and
  ``masker.temporal_mask_embed``), the architecture read from the checkpoint, and the keys that
  were dropped on purpose (pretraining-only heads).
- ``safe_torch_load``: ``torch.load(weights_only=True)`` that can also read fairseq1 files,
  whose pickles hold an ``argparse.Namespace`` (``args``) or an omegaconf ``DictConfig``
  (``cfg``), without ever importing or running code named by the pickle (see its docstring).
- ``rename_keys``: regex key mapping that reports what it could not map.
- encoder-config <-> JSON helpers, and our own converted format (safetensors + JSON metadata).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import operator
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fairseq2.models.transformer import TransformerNormOrder
from fairseq2.models.wav2vec2 import Wav2Vec2EncoderConfig
from torch import Tensor

from avsr.models.weights import weights_only_problem

#: ``format`` value in the safetensors metadata of our converted checkpoints.
AVSR_WAV2VEC2_FORMAT = "avsr.wav2vec2"

#: Prefix of the fairseq2 keys that belong to the masking embedding (only used when masking).
MASK_EMBED_KEY = "masker.temporal_mask_embed"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message is one line and names the file."""


@dataclass
class ConvertedWav2Vec2:
    """A wav2vec 2.0 checkpoint in fairseq2 0.8.1 ``Wav2Vec2Model`` naming (encoder part only)."""

    state_dict: dict[str, Tensor]
    #: The architecture stored in (or derived from) the checkpoint; ``None`` when unknown.
    encoder_config: Wav2Vec2EncoderConfig | None
    #: "avsr", "fairseq1", "fairseq2" or "huggingface".
    source_format: str
    #: Keys left out on purpose (quantizer, project_q, final_proj, CTC heads ...), original names.
    dropped_keys: list[str] = field(default_factory=list)
    #: Whether the model was trained on per-utterance normalised waveforms, if the checkpoint says.
    normalize_waveform: bool | None = None
    #: True when the architecture had to be guessed from tensor shapes (no config in the file).
    config_from_shapes: bool = False


# --------------------------------------------------------------------------- safe unpickling
class _InertPickleStub:
    """Stands in for a class or function named in a pickle that we refuse to import.

    Calling it, instantiating it or setting its state only records the arguments: no code from
    the named module runs (the module is never imported)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _InertPickleStub:
        obj = object.__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # dict subclasses pickle their items
        self.__dict__.setdefault("items", {})[key] = value

    def __repr__(self) -> str:
        return f"<stub args={self.args!r} state={self.state!r}>"


#: Module prefixes whose globals may be replaced by inert stubs: configuration and bookkeeping
#: objects of fairseq1 checkpoints (omegaconf configs, fairseq meters, numpy scalars in
#: ``extra_state``, typing/enum markers inside omegaconf metadata, and the sentencepiece model
#: that AV-HuBERT's ``task_state`` pickles: its stub keeps the serialized model bytes as
#: ``state``). Anything else is refused.
_STUBBABLE_PREFIXES = (
    "omegaconf.",
    "fairseq.",
    "fairseq_cli.",
    "numpy.",
    "typing.",
    "enum.",
    "pathlib.",
    "sentencepiece.",
)
#: Harmless builtin types that omegaconf metadata refers to (replaced by stubs, never called).
_STUBBABLE_BUILTINS = {
    f"builtins.{n}" for n in ("dict", "list", "tuple", "int", "float", "str", "bool", "object", "NoneType", "frozenset")
} | {"collections.defaultdict"}  # omegaconf's ContainerMetadata.resolver_cache
#: Globals allowed as the real thing.
_REAL_GLOBALS: dict[str, Any] = {"argparse.Namespace": argparse.Namespace}

_UNSAFE_GLOBAL_RE = re.compile(r"GLOBAL (\S+) was not an allowed global")


def _safe_global_entry(name: str, path: Path) -> Any:
    if name in _REAL_GLOBALS:
        return (_REAL_GLOBALS[name], name)
    if name.startswith(_STUBBABLE_PREFIXES) or name in _STUBBABLE_BUILTINS:
        return (_InertPickleStub, name)
    raise CheckpointError(
        f"{path}: refusing to unpickle: it needs {name}, which is not a tensor or config type "
        "(only weights_only=True loading is allowed)"
    )


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` for checkpoints with config objects.

    torch's weights_only unpickler refuses every global it does not know. fairseq1 files also hold
    an ``argparse.Namespace`` (allowed as is: it only gets a ``__dict__``) or omegaconf/fairseq
    objects. For those (module prefixes in ``_STUBBABLE_PREFIXES``) an inert stub is allowlisted
    *under that name*, only for the duration of this call: the real module is never imported and
    nothing it names is ever called. Any other global (``os.system``, ``builtins.eval``,
    ``subprocess.Popen`` ...) makes the load fail with a one-line ``CheckpointError``.
    Use ``to_plain`` to turn the stubs of an omegaconf config back into dicts.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    extra: dict[str, Any] = {}
    is_zip = zipfile.is_zipfile(path)
    if is_zip:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as exc:  # noqa: BLE001 - report any reader failure on one line
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({_one_line(exc)})") from None
        for name in names:
            extra[name] = _safe_global_entry(name, path)
    # Legacy (non-zip) files cannot be scanned up front: learn the globals from the refusals.
    for _ in range(64):
        try:
            with torch.serialization.safe_globals(list(extra.values())):
                return torch.load(str(path), map_location="cpu", weights_only=True, mmap=is_zip)
        except pickle.UnpicklingError as exc:
            match = _UNSAFE_GLOBAL_RE.search(str(exc))
            if match is None:
                raise CheckpointError(f"{path}: refusing to unpickle ({weights_only_problem(exc)})") from None
            name = match.group(1)
            if "." not in name:  # torch prints builtins without their module
                name = f"builtins.{name}"
            if name in extra:
                raise CheckpointError(f"{path}: refusing to unpickle ({weights_only_problem(exc)})") from None
            extra[name] = _safe_global_entry(name, path)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({_one_line(exc)})") from None
    raise CheckpointError(f"{path}: refusing to unpickle: too many non-tensor globals")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def to_plain(obj: Any, _depth: int = 0) -> Any:
    """Turn what ``safe_torch_load`` returns for a config into plain dicts/lists/scalars.

    Handles ``argparse.Namespace``, plain containers, and the stubs of omegaconf ``DictConfig``/
    ``ListConfig``/value nodes (their pickled state keeps the content under ``_content`` or
    ``_val``). Anything else becomes ``None``."""
    if _depth > 50:
        return None
    if isinstance(obj, argparse.Namespace):
        return {k: to_plain(v, _depth + 1) for k, v in vars(obj).items()}
    if isinstance(obj, Mapping):
        return {k: to_plain(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, _depth + 1) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, _InertPickleStub):
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], Mapping):
            state = state[0]
        if isinstance(state, Mapping):
            if "_content" in state:
                return to_plain(state["_content"], _depth + 1)
            if "_val" in state:
                return to_plain(state["_val"], _depth + 1)
        return None
    return None


# --------------------------------------------------------------------------- key mapping
def rename_keys(
    state_dict: Mapping[str, Tensor], rules: Iterable[tuple[str, str]]
) -> tuple[dict[str, Tensor], list[str]]:
    """Apply the first matching ``(regex, replacement)`` rule to every key.

    Returns the renamed dict and the keys no rule matched (in their original names)."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out: dict[str, Tensor] = {}
    unmapped: list[str] = []
    for key, value in state_dict.items():
        for pattern, repl in compiled:
            if pattern.search(key):
                new = pattern.sub(repl, key, count=1)
                if new in out:
                    raise CheckpointError(f"two checkpoint keys map to {new}")
                out[new] = value
                break
        else:
            unmapped.append(key)
    return out, unmapped


def weight_norm_from_weight(weight: Tensor, dim: int = 2) -> tuple[Tensor, Tensor]:
    """(g, v) of ``torch.nn.utils.weight_norm(dim=dim)`` that reproduce ``weight`` exactly enough."""
    dims = [d for d in range(weight.dim()) if d != dim]
    g = torch.linalg.vector_norm(weight.float(), dim=dims, keepdim=True).to(weight.dtype)
    return g, weight.clone()


# --------------------------------------------------------------------------- conv layer strings
_BINOPS = {ast.Add: operator.add, ast.Mult: operator.mul}


def parse_conv_layers(text: str) -> list[tuple[int, int, int]]:
    """Parse fairseq1's ``conv_feature_layers`` string, e.g.
    ``"[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2"``, without ``eval``: only list/tuple
    literals of integers combined by ``+`` and ``*`` are accepted."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(ev(e) for e in node.elts)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"unsupported element {ast.dump(node)[:60]}")

    value = ev(ast.parse(text.strip(), mode="eval"))
    if not isinstance(value, list) or not value:
        raise ValueError("not a non-empty list")
    out = []
    for item in value:
        if not (isinstance(item, tuple) and len(item) == 3 and all(isinstance(x, int) for x in item)):
            raise ValueError(f"bad layer {item!r}")
        out.append((int(item[0]), int(item[1]), int(item[2])))
    return out


# --------------------------------------------------------------------------- encoder config <-> dict
#: Fields that decide the shapes and the computation of the network (dropouts etc. excluded).
STRUCTURAL_FIELDS = (
    "model_dim",
    "feature_dim",
    "use_fbank",
    "layer_norm_features",
    "feature_extractor_layer_descs",
    "feature_extractor_bias",
    "feature_extractor_layer_norm_convs",
    "pos_encoder_type",
    "pos_encoder_depth",
    "pos_conv_kernel_size",
    "num_pos_conv_groups",
    "use_conformer",
    "num_encoder_layers",
    "num_encoder_attn_heads",
    "ffn_inner_dim",
    "norm_order",
)


def norm_order_from_any(value: Any) -> TransformerNormOrder:
    if isinstance(value, TransformerNormOrder):
        return value
    if isinstance(value, str):
        key = value.strip().upper()
        if key in TransformerNormOrder.__members__:
            return TransformerNormOrder[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return TransformerNormOrder(value)
    raise ValueError(f"norm_order: expected one of {list(TransformerNormOrder.__members__)}, got {value!r}")


def encoder_config_to_dict(config: Wav2Vec2EncoderConfig) -> dict[str, Any]:
    """JSON/YAML-friendly dict (norm order as its name, layer descs as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, TransformerNormOrder):
            value = value.name.lower()
        elif f.name == "feature_extractor_layer_descs":
            value = [list(map(int, d)) for d in value]
        out[f.name] = value
    return out


def encoder_config_from_dict(
    data: Mapping[str, Any], base: Wav2Vec2EncoderConfig | None = None
) -> Wav2Vec2EncoderConfig:
    """Apply ``data`` onto ``base`` (default: fairseq2's base architecture); unknown keys raise."""
    config = dataclasses.replace(base) if base is not None else Wav2Vec2EncoderConfig()
    if base is not None:  # do not share the mutable list with the base
        config.feature_extractor_layer_descs = list(base.feature_extractor_layer_descs)
    known = {f.name for f in dataclasses.fields(Wav2Vec2EncoderConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown wav2vec 2.0 encoder option(s): {', '.join(unknown)}")
    for key, value in data.items():
        if key == "norm_order":
            value = norm_order_from_any(value)
        elif key == "feature_extractor_layer_descs":
            value = [tuple(int(x) for x in d) for d in value]
            if any(len(d) != 3 for d in value):
                raise ValueError("feature_extractor_layer_descs: each layer is (dim, kernel, stride)")
        setattr(config, key, value)
    return config


#: Structural fields that tensor shapes cannot tell: guessed when a checkpoint has no config.
GUESSED_FIELDS = ("num_encoder_attn_heads", "norm_order", "layer_norm_features")


def structural_differences(
    a: Wav2Vec2EncoderConfig, b: Wav2Vec2EncoderConfig, *, ignore: Iterable[str] = ()
) -> list[str]:
    """``field: model a != checkpoint b`` for every structural field that differs."""
    diffs = []
    skip = set(ignore)
    for name in STRUCTURAL_FIELDS:
        if name in skip:
            continue
        va, vb = getattr(a, name), getattr(b, name)
        if name == "feature_extractor_layer_descs":
            va, vb = [tuple(d) for d in va], [tuple(d) for d in vb]
        if va != vb:
            if isinstance(va, TransformerNormOrder):
                va, vb = va.name.lower(), vb.name.lower()
            diffs.append(f"{name}: model {va} != checkpoint {vb}")
    return diffs


# --------------------------------------------------------------------------- our converted format
def save_converted(converted: ConvertedWav2Vec2, path: str | Path) -> Path:
    """Write ``converted`` as safetensors; the architecture goes in the file's JSON metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {
        "format": AVSR_WAV2VEC2_FORMAT,
        "source_format": converted.source_format,
        "encoder_config": json.dumps(
            encoder_config_to_dict(converted.encoder_config) if converted.encoder_config is not None else None
        ),
        "normalize_waveform": json.dumps(converted.normalize_waveform),
        "config_from_shapes": json.dumps(converted.config_from_shapes),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in converted.state_dict.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable safetensors file ({_one_line(exc)})") from None


def load_converted(path: str | Path) -> ConvertedWav2Vec2:
    """Read a file written by ``save_converted``."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_safetensors_metadata(path)
    if meta.get("format") != AVSR_WAV2VEC2_FORMAT:
        raise CheckpointError(
            f"{path}: not an avsr wav2vec 2.0 safetensors file (metadata format={meta.get('format')!r})"
        )
    try:
        raw = json.loads(meta.get("encoder_config", "null"))
        encoder_config = encoder_config_from_dict(raw) if raw is not None else None
        normalize = json.loads(meta.get("normalize_waveform", "null"))
        from_shapes = bool(json.loads(meta.get("config_from_shapes", "false")))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad metadata ({_one_line(exc)})") from None
    return ConvertedWav2Vec2(
        state_dict=load_file(str(path)),
        encoder_config=encoder_config,
        source_format="avsr",
        normalize_waveform=normalize,
        config_from_shapes=from_shapes,
    )


def standard_stride(kernel: int) -> int | None:
    """Stride of a wav2vec 2.0 conv layer with this kernel in the published stacks."""
    return {10: 5, 3: 2, 2: 2}.get(kernel)


__all__ = [
    "AVSR_WAV2VEC2_FORMAT",
    "CheckpointError",
    "ConvertedWav2Vec2",
    "MASK_EMBED_KEY",
    "GUESSED_FIELDS",
    "STRUCTURAL_FIELDS",
    "encoder_config_from_dict",
    "encoder_config_to_dict",
    "load_converted",
    "parse_conv_layers",
    "rename_keys",
    "safe_torch_load",
    "save_converted",
    "structural_differences",
    "to_plain",
    "weight_norm_from_weight",
]
