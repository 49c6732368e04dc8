"""auto_avsr's checkpoints: key layouts, sizes from shapes, strict mapping, conversion.

``avsr.models.pretrained.auto_avsr.convert_checkpoint`` (``avsr-convert auto_avsr``) calls
``convert`` here. Everything before the weights are loaded (``map_state_dict``) works on key
names and shapes only, so the published full-size key tables can be checked without weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from avsr.face.align import MouthCropConfig
from avsr.models.config import ConfigError
from avsr.models.pretrained.auto_avsr import (
    DECODING,
    MODALITIES,
    PREPROCESSING,
    SPM_MODEL,
    SPM_UNITS,
    AutoAVSRConfig,
    ConversionError,
    fusion_columns_swapped,
)
from avsr.models.weights import weights_only_problem
from avsr.nn.state import name_list, state_problems

# ---------------------------------------------------------------------- key mapping
#: ESPnet conformer ``EncoderLayer`` -> fairseq2 ``ConformerBlock`` (module paths, or parameters).
ENCODER_LAYER = {
    "feed_forward_macaron.w_1": "ffn1.inner_proj",
    "feed_forward_macaron.w_2": "ffn1.output_proj",
    "norm_ff_macaron": "ffn1_layer_norm",
    "norm_mha": "self_attn_layer_norm",
    "self_attn.linear_q": "self_attn.q_proj",
    "self_attn.linear_k": "self_attn.k_proj",
    "self_attn.linear_v": "self_attn.v_proj",
    "self_attn.linear_out": "self_attn.output_proj",
    "self_attn.linear_pos": "self_attn.sdpa.r_proj",
    "self_attn.pos_bias_u": "self_attn.sdpa.u_bias",
    "self_attn.pos_bias_v": "self_attn.sdpa.v_bias",
    "norm_conv": "conv_layer_norm",
    "conv_module.pointwise_cov1": "conv.pointwise_conv1",
    "conv_module.depthwise_conv": "conv.depthwise_conv",
    "conv_module.norm": "conv.batch_norm",
    "conv_module.pointwise_cov2": "conv.pointwise_conv2",
    "norm_ff": "ffn2_layer_norm",
    "feed_forward.w_1": "ffn2.inner_proj",
    "feed_forward.w_2": "ffn2.output_proj",
    "norm_final": "layer_norm",
}
#: ESPnet ``DecoderLayer`` -> fairseq2 ``StandardTransformerDecoderLayer``.
DECODER_LAYER = {
    "self_attn.linear_q": "self_attn.q_proj",
    "self_attn.linear_k": "self_attn.k_proj",
    "self_attn.linear_v": "self_attn.v_proj",
    "self_attn.linear_out": "self_attn.output_proj",
    "src_attn.linear_q": "encoder_decoder_attn.q_proj",
    "src_attn.linear_k": "encoder_decoder_attn.k_proj",
    "src_attn.linear_v": "encoder_decoder_attn.v_proj",
    "src_attn.linear_out": "encoder_decoder_attn.output_proj",
    "feed_forward.w_1": "ffn.inner_proj",
    "feed_forward.w_2": "ffn.output_proj",
    "norm1": "self_attn_layer_norm",
    "norm2": "encoder_decoder_attn_layer_norm",
    "norm3": "ffn_layer_norm",
}


def _map_sub(table: Mapping[str, str], rest: str) -> str | None:
    if rest in table:
        return table[rest]
    module, _, leaf = rest.rpartition(".")
    return f"{table[module]}.{leaf}" if module in table else None


@dataclass(frozen=True)
class Branch:
    """Where one modality's encoder lives in a checkpoint: its root (``encoders.N``,
    ``after_norm``), its front-end and its input projection."""

    modality: str
    root: str
    frontend: str
    proj: str


@dataclass
class KeyMap:
    """Checkpoint key -> model key for one checkpoint layout (``layout``: ``v1.0.0`` or ``head``)."""

    layout: str
    branches: tuple[Branch, ...]
    fusion_norm: str = "batchnorm"
    pairs: list[tuple[str, str]] = field(default_factory=list)
    aliases: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    _forward_pairs: list[tuple[str, str]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for b in self.branches:
            m = b.modality
            if m == "video":
                self.pairs += [
                    (b.frontend + "frontend3D.0.", "visual_frontend.stem.conv."),
                    (b.frontend + "frontend3D.1.", "visual_frontend.stem.norm."),
                    (b.frontend + "trunk.", "visual_frontend.trunk."),
                ]
            else:
                self.pairs.append((b.frontend + "trunk.", "audio_frontend.trunk."))
            self.pairs += [(b.proj, f"{m}_encoder.proj."), (b.root + "after_norm.", f"{m}_encoder.layers.layer_norm.")]
            # ESPnet's own load-time renames (older checkpoints) and its saved position table
            self.aliases += [(b.root + "norm.", f"{m}_encoder.layers.layer_norm.")]
            if b.proj == b.root + "embed.0.":
                self.aliases.append((b.root + "input_layer.0.", f"{m}_encoder.proj."))
            self.ignored.append((b.root + "embed.1.pe", "ESPnet's saved position table (recomputed)"))
        norm = "fusion.bn1." if self.fusion_norm == "batchnorm" else "fusion.norm1."
        self.pairs += [
            ("decoder.embed.0.", "decoder.frontend.embed."),
            ("decoder.after_norm.", "decoder.layers.layer_norm."),
            ("decoder.output_layer.", "decoder.final_proj."),
            ("ctc.ctc_lo.", "ctc_head."),
            ("fusion.fc1.", "fusion.fc1."),
            (norm, "fusion.norm."),
            ("fusion.fc2.", "fusion.fc2."),
        ]
        self.aliases.append(("decoder.output_norm.", "decoder.layers.layer_norm."))
        self.ignored.append(("decoder.embed.1.pe", "ESPnet's saved position table (recomputed)"))

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(sorted(b.modality for b in self.branches))

    def forward(self, key: str) -> str | None:
        """The model key of a checkpoint key (None: not mapped)."""
        if self._forward_pairs is None:
            self._forward_pairs = sorted(self.pairs + self.aliases, key=lambda p: -len(p[0]))
        for src, dst in self._forward_pairs:
            if key.startswith(src):
                return dst + key[len(src) :]
        for b in self.branches:
            hit = re.match(rf"{re.escape(b.root)}encoders\.(\d+)\.(.+)$", key)
            if hit and (sub := _map_sub(ENCODER_LAYER, hit.group(2))):
                return f"{b.modality}_encoder.layers.layers.{hit.group(1)}.{sub}"
        hit = re.match(r"decoder\.decoders\.(\d+)\.(.+)$", key)
        if hit and (sub := _map_sub(DECODER_LAYER, hit.group(2))):
            return f"decoder.layers.layers.{hit.group(1)}.{sub}"
        return None

    def backward(self, key: str) -> str:
        """The checkpoint key (in this layout) of a model key."""
        for src, dst in sorted(self.pairs, key=lambda p: -len(p[1])):
            if key.startswith(dst):
                return src + key[len(dst) :]
        inverse_enc = {v: k for k, v in ENCODER_LAYER.items()}
        inverse_dec = {v: k for k, v in DECODER_LAYER.items()}
        for b in self.branches:
            hit = re.match(rf"{b.modality}_encoder\.layers\.layers\.(\d+)\.(.+)$", key)
            if hit and (sub := _map_sub(inverse_enc, hit.group(2))):
                return f"{b.root}encoders.{hit.group(1)}.{sub}"
        hit = re.match(r"decoder\.layers\.layers\.(\d+)\.(.+)$", key)
        if hit and (sub := _map_sub(inverse_dec, hit.group(2))):
            return f"decoder.decoders.{hit.group(1)}.{sub}"
        return key

    def reason_ignored(self, key: str) -> str | None:
        return next((reason for name, reason in self.ignored if key == name), None)

    @classmethod
    def for_layout(cls, layout: str, modalities: tuple[str, ...], fusion_norm: str = "batchnorm") -> KeyMap:
        """The key map of a published layout (``v1.0.0`` or ``head``) and model kind."""
        modalities = tuple(sorted(modalities))
        if layout == "head":
            if len(modalities) != 1:
                raise ValueError("auto_avsr's head layout has no audio-visual model (only tag v1.0.0 has)")
            return cls(layout, (Branch(modalities[0], "encoder.", "frontend.", "proj_encoder."),))
        if layout != "v1.0.0":
            raise ValueError(f"unknown auto_avsr layout {layout!r} (v1.0.0 or head)")
        if len(modalities) == 1:
            return cls(layout, (Branch(modalities[0], "encoder.", "encoder.frontend.", "encoder.embed.0."),))
        return cls(
            layout,
            (
                Branch("video", "encoder.", "encoder.frontend.", "encoder.embed.0."),
                Branch("audio", "aux_encoder.", "aux_encoder.frontend.", "aux_encoder.embed.0."),
            ),
            fusion_norm,
        )


def _frontend_modality(keys: Iterable[str], prefix: str) -> str | None:
    keys = list(keys)
    if any(k.startswith(prefix + "frontend3D.") for k in keys):
        return "video"
    if any(k.startswith(prefix + "trunk.conv1.") for k in keys):
        return "audio"
    return None


def detect_layout(keys: Iterable[str], source: str) -> KeyMap:
    """The key map of a checkpoint, from its key names (which layout, which modalities)."""
    keys = list(keys)
    fusion_norm = "layernorm" if any(k.startswith("fusion.norm1.") for k in keys) else "batchnorm"
    if any(k.startswith(("frontend.", "proj_encoder.")) for k in keys):
        modality = _frontend_modality(keys, "frontend.")
        if modality is None:
            raise ConversionError(
                f"{source}: front-end weights (frontend.*) are neither auto_avsr's video stem (frontend3D) nor its audio ResNet (trunk.conv1)"
            )
        return KeyMap.for_layout("head", (modality,))
    branches = []
    for root in ("encoder.", "aux_encoder."):
        if any(k.startswith(root) for k in keys):
            modality = _frontend_modality(keys, root + "frontend.")
            if modality is None:
                raise ConversionError(
                    f"{source}: no front-end weights under {root}frontend. (neither frontend3D.* nor trunk.conv1.*)"
                )
            branches.append(modality)
    if not branches:
        first = ", ".join(sorted(keys)[:3])
        raise ConversionError(
            f"{source}: not an auto_avsr checkpoint (no encoder.* or frontend.* keys; first keys: {first})"
        )
    if len(branches) == 2 and branches != ["video", "audio"]:
        raise ConversionError(
            f"{source}: an audio-visual checkpoint must have the video encoder in encoder.* and the audio one in aux_encoder.* (found {branches[0]} and {branches[1]})"
        )
    return KeyMap.for_layout("v1.0.0", tuple(branches), fusion_norm)


# ---------------------------------------------------------------------- sizes from shapes
def infer_config(shapes: Mapping[str, tuple[int, ...]], modalities: tuple[str, ...], source: str) -> AutoAVSRConfig:
    """The config whose model has these (model-key) shapes. The decoder's head count cannot be
    seen in any shape: it is taken equal to the encoder's, as in every auto_avsr config."""
    first = "video" if "video" in modalities else "audio"
    enc = f"{first}_encoder.layers.layers."
    needed = {
        "ctc_head.weight": "ctc.ctc_lo.weight",
        f"{enc}0.self_attn.sdpa.u_bias": "encoders.0.self_attn.pos_bias_u",
        f"{enc}0.ffn1.inner_proj.weight": "encoders.0.feed_forward_macaron.w_1.weight",
        f"{enc}0.conv.depthwise_conv.weight": "encoders.0.conv_module.depthwise_conv.weight",
        "decoder.layers.layers.0.ffn.inner_proj.weight": "decoder.decoders.0.feed_forward.w_1.weight",
        "visual_frontend.stem.conv.weight"
        if first == "video"
        else "audio_frontend.trunk.conv1.weight": "the front-end's first convolution",
    }
    if len(modalities) == 2:
        needed["fusion.fc1.weight"] = "fusion.fc1.weight"
    missing = [name for key, name in needed.items() if key not in shapes]
    if missing:
        raise ConversionError(f"{source}: cannot tell the model's size: missing {', '.join(missing)}")

    def count(prefix: str) -> int:
        found = {int(m.group(1)) for k in shapes if (m := re.match(rf"{re.escape(prefix)}(\d+)\.", k))}
        return max(found) + 1

    vocab, dim = shapes["ctc_head.weight"]
    stem = shapes["visual_frontend.stem.conv.weight" if first == "video" else "audio_frontend.trunk.conv1.weight"][0]
    values: dict[str, Any] = {
        "modalities": modalities,
        "vocab_size": vocab,
        "model_dim": dim,
        "heads": shapes[f"{enc}0.self_attn.sdpa.u_bias"][0],
        "ffn_dim": shapes[f"{enc}0.ffn1.inner_proj.weight"][0],
        "encoder_layers": count(enc),
        "conv_kernel": shapes[f"{enc}0.conv.depthwise_conv.weight"][-1],
        "decoder_layers": count("decoder.layers.layers."),
        "decoder_ffn_dim": shapes["decoder.layers.layers.0.ffn.inner_proj.weight"][0],
        "frontend_width": stem / 64,
    }
    values["decoder_heads"] = values["heads"]
    if len(modalities) == 2:
        values["fusion_hidden_dim"] = shapes["fusion.fc1.weight"][0]
        values["fusion_norm"] = "batchnorm" if "fusion.norm.running_mean" in shapes else "layernorm"
    try:
        return AutoAVSRConfig(**values)
    except ConfigError as exc:
        raise ConversionError(f"{source}: unsupported sizes ({exc})") from None


def map_state_dict(
    shapes: Mapping[str, tuple[int, ...]], source: str, modality: str | None = None
) -> tuple[KeyMap, dict[str, str], AutoAVSRConfig]:
    """Check a checkpoint's key names and shapes against the model they describe, without
    loading any weight. Returns the key map, ``{checkpoint key: model key}`` and the config.
    Raises ``ConversionError`` naming the first offending keys."""
    keymap = detect_layout(shapes, source)
    if modality is not None:
        if modality not in MODALITIES:
            raise ConversionError(f"{source}: unknown modality {modality!r} (v, a or av)")
        if tuple(sorted(MODALITIES[modality])) != keymap.modalities:
            have = {("video",): "v", ("audio",): "a"}.get(keymap.modalities, "av")
            raise ConversionError(f"{source}: the checkpoint holds an auto_avsr {have!r} model, not {modality!r}")
    mapping: dict[str, str] = {}
    unmapped = []
    for key in shapes:
        target = keymap.forward(key)
        if target is not None:
            mapping[key] = target
        elif keymap.reason_ignored(key) is None:
            unmapped.append(key)
    if unmapped:
        raise ConversionError(
            f"{source}: {len(unmapped)} key(s) not mapped to the auto_avsr model: {name_list(unmapped)}"
        )
    targets: dict[str, str] = {}
    for key, target in mapping.items():
        if target in targets:
            raise ConversionError(f"{source}: {key} and {targets[target]} map to the same weight {target}")
        targets[target] = key
    config = infer_config({t: tuple(shapes[k]) for k, t in mapping.items()}, keymap.modalities, source)
    expected = expected_shapes(config)
    given = {target: shapes[key] for target, key in targets.items()}
    problems = state_problems(
        expected,
        given,
        missing="weight(s) of the model missing",
        unexpected="key(s) the model has no place for",
        display=lambda k: targets[k] if k in targets else keymap.backward(k),
    )
    if problems:
        raise ConversionError(f"{source}: " + "; ".join(problems))
    return keymap, mapping, config


def expected_shapes(config: AutoAVSRConfig) -> dict[str, tuple[int, ...]]:
    """Every model key and shape for ``config``, from a model built on the meta device."""
    from avsr.models.avsr_model import AVSRModel

    with torch.device("meta"):
        model = AVSRModel(config.avsr_config(), pretrained=False)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def expected_checkpoint_keys(config: AutoAVSRConfig, layout: str) -> dict[str, tuple[int, ...]]:
    """The key names and shapes an auto_avsr checkpoint of ``config`` has in ``layout``."""
    keymap = KeyMap.for_layout(layout, config.modalities, config.fusion_norm)
    return {keymap.backward(k): s for k, s in expected_shapes(config).items()}


# ---------------------------------------------------------------------- weights both ways
def model_state(state: Mapping[str, Tensor], mapping: Mapping[str, str]) -> dict[str, Tensor]:
    """A checkpoint's tensors under the model's names (``mapping`` from ``map_state_dict``);
    the fusion's input halves are swapped to the model's (audio, video) order."""
    out = {}
    for key, target in mapping.items():
        value = state[key]
        out[target] = fusion_columns_swapped(value) if target == "fusion.fc1.weight" else value
    return out


def checkpoint_state(state: Mapping[str, Tensor], keymap: KeyMap) -> dict[str, Tensor]:
    """The inverse of ``model_state``: the model's tensors under the checkpoint's names."""
    return {keymap.backward(k): fusion_columns_swapped(v) if k == "fusion.fc1.weight" else v for k, v in state.items()}


# ---------------------------------------------------------------------- converter
def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """A flat state dict from an auto_avsr ``.pth`` (bare, or Lightning's ``state_dict`` with
    the ``model.`` prefix), read with ``torch.load(weights_only=True)``."""
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is "cannot read"
        text = str(exc).strip()
        blocked = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if blocked:  # e.g. a Lightning .ckpt with its OmegaConf hyper-parameters
            raise ConversionError(
                f"{path}: holds pickled Python objects ({blocked.group(1)}) that a weights-only load refuses to run; "
                "save the state dict alone in a trusted environment (as auto_avsr's avg_ckpts.py writes *.pth) and convert that"
            ) from None
        raise ConversionError(
            f"{path}: cannot be read as a weights-only PyTorch checkpoint ({weights_only_problem(exc)})"
        ) from None
    for key in ("state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{path}: not a state dict (holds {type(obj).__name__})")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ConversionError(f"{path}: not a state dict of tensors (entries {name_list(bad)})")
    for prefix in ("model.", "module."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def auto_avsr_tokenizer(path: Path | None = None):  # -> Tokenizer
    """auto_avsr's unigram5000 (shipped), or ``path``: a model folder (its tokenizer, checked
    against its model.yaml), a tokenizer folder (tokenizer.json) or a sentencepiece ``.model``
    with its units file beside it (``<name>_units.txt``, as auto_avsr's)."""
    from avsr.data.tokenizers import Tokenizer, TokenizerError, load_tokenizer
    from avsr.models.folder import load_folder_tokenizer
    from avsr.models.io import CONFIG_FILE

    if path is None:
        return Tokenizer.from_sentencepiece(SPM_MODEL, SPM_UNITS)
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return load_folder_tokenizer(path)
    if path.is_dir() or path.name == "tokenizer.json":
        return load_tokenizer(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: no such file")
    units = path.with_name(f"{path.stem}_units.txt")
    if not units.is_file():
        raise TokenizerError(f"{path}: its units file {units.name} is not beside it (auto_avsr's layout)")
    return Tokenizer.from_sentencepiece(path, units)


def convert(checkpoint: Path, out_dir: Path, *, tokenizer: Path | None = None, modality: str | None = None) -> Path:
    """Convert an auto_avsr checkpoint into our model folder; returns ``out_dir``.

    ``modality`` (``v``, ``a``, ``av``), if given, must be what the checkpoint holds.
    ``tokenizer``: see ``auto_avsr_tokenizer`` (default: auto_avsr's unigram5000, shipped).
    """
    from avsr.data.tokenizers import TokenizerError
    from avsr.data.video import Preprocessing
    from avsr.models.folder import save_model_folder
    from avsr.models.io import file_sha256
    from avsr.models.weights import WeightsError

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    source = str(checkpoint)
    state = read_checkpoint(checkpoint)
    keymap, mapping, config = map_state_dict({k: tuple(v.shape) for k, v in state.items()}, source, modality)
    try:
        tok = auto_avsr_tokenizer(tokenizer)
    except (TokenizerError, WeightsError) as exc:
        raise ConversionError(str(exc)) from None
    if tok.vocab_size != config.vocab_size:
        raise ConversionError(
            f"{tokenizer or SPM_MODEL}: the tokenizer has {tok.vocab_size} classes, the checkpoint {config.vocab_size}"
        )
    from avsr.models.avsr_model import AVSRModel

    model = AVSRModel(config.avsr_config(), pretrained=False)
    own = model.state_dict()
    with torch.no_grad():
        for target, value in model_state(state, mapping).items():
            if value.is_floating_point() != own[target].is_floating_point():
                raise ConversionError(
                    f"{source}: {keymap.backward(target)} has dtype {value.dtype}, expected {own[target].dtype}"
                )
            own[target].copy_(value.to(own[target].dtype))
    model.eval()
    extra = {
        "source": {
            "format": "auto_avsr",
            "layout": keymap.layout,
            "kind": config.kind,
            "checkpoint": checkpoint.name,
            "sha256": file_sha256(checkpoint),
        },
        "preprocessing": Preprocessing.from_mapping(PREPROCESSING).to_dict(),
        "mouth_crop": {"style": "auto_avsr", **MouthCropConfig.for_style("auto_avsr").to_dict()},
        "decoding": dict(DECODING),
    }
    return save_model_folder(out_dir, model, tok, extra)


# ---------------------------------------------------------------------- back to auto_avsr
#: config entries that say how a model trains, not what it computes: a fine-tuned model may
#: change them and still be an auto_avsr model.
#: config fields no checkpoint tensor fixes: training settings and length limits
_NOT_IN_CHECKPOINT = ("loss", "modality_dropout", "freeze", "dropout", "max_len")


def _architecture(data: Any) -> Any:
    """What of a model config (a plain dict) the checkpoint's tensors fix: neither training
    settings nor length limits, nor the settings of a branch the model does not have (a model
    trained from scratch from another base config may carry any there)."""
    if not isinstance(data, dict):
        return data
    out = {k: _architecture(v) for k, v in data.items() if k not in _NOT_IN_CHECKPOINT}
    if "audio" in data and "visual" in data:  # the whole model's config
        for branch, encoder in (("audio", "audio_encoder"), ("visual", "video_encoder")):
            if data[branch] is None:
                out.pop(encoder, None)
        if (data["audio"] is None) != (data["visual"] is None):  # one stream: nothing to stand in for or to cut
            out.pop("absent_modality", None)
            out.pop("trim_streams", None)
    return out


def export_checkpoint(model_dir: Path, out: Path, *, layout: str | None = None) -> Path:
    """Write a model folder of auto_avsr's architecture (converted, or fine-tuned from one) as an
    auto_avsr checkpoint: a bare state dict in ``layout`` (``v1.0.0`` or ``head``; default: the
    layout it was converted from, else v1.0.0), which auto_avsr's ``E2E`` loads strictly.
    ``ConversionError`` (one line) for a model that is not auto_avsr's architecture."""
    from avsr.media.atomic import atomic_path
    from avsr.models.io import load_model
    from avsr.models.weights import WeightsError

    model_dir, out = Path(model_dir), Path(out)
    try:
        model = load_model(model_dir)
    except (WeightsError, OSError) as exc:
        raise ConversionError(str(exc)) from None
    if layout is None:  # a converted folder records its source; a fine-tuned one names its run instead
        source = (getattr(model, "metadata", None) or {}).get("source")
        layout = str(source.get("layout") or "v1.0.0") if isinstance(source, dict) else "v1.0.0"
    config = model.config
    encoders = [
        c for c, m in ((config.audio_encoder, config.audio), (config.video_encoder, config.visual)) if m is not None
    ]
    if config.encoder is not None or any(c.kind != "espnet_conformer" for c in encoders):
        raise ConversionError(
            f"{model_dir}: not auto_avsr's architecture (it has ESPnet conformer encoders and no joint encoder)"
        )
    fusion_norm = "layernorm" if config.fusion.hidden_norm == "layer" else "batchnorm"
    try:
        keymap = KeyMap.for_layout(layout, config.modalities, fusion_norm)
    except ValueError as exc:
        raise ConversionError(f"{model_dir}: {exc}") from None
    state = checkpoint_state(model.state_dict(), keymap)
    _, _, sizes = map_state_dict(
        {k: tuple(v.shape) for k, v in state.items()}, f"{model_dir} (as auto_avsr's {layout} layout)"
    )
    if _architecture(sizes.avsr_config().to_dict()) != _architecture(config.to_dict()):
        raise ConversionError(
            f"{model_dir}: not auto_avsr's architecture (its config differs from the one its sizes give)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, tmp)
    return out


__all__ = [
    "export_checkpoint",
    "Branch",
    "KeyMap",
    "checkpoint_state",
    "model_state",
    "auto_avsr_tokenizer",
    "convert",
    "detect_layout",
    "expected_checkpoint_keys",
    "expected_shapes",
    "infer_config",
    "map_state_dict",
    "read_checkpoint",
]
