"""Hugging Face ``transformers`` wav2vec 2.0 checkpoints -> fairseq2 0.8.1 ``Wav2Vec2Model`` key names.

Input: a directory with ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``) or ``pytorch_model.bin`` (read with ``weights_only=True``), as
written by ``save_pretrained`` of ``Wav2Vec2Model``, ``Wav2Vec2ForPreTraining`` or
``Wav2Vec2ForCTC`` (their ``wav2vec2.`` prefix is stripped). Nothing is downloaded.

Dropped on purpose: ``quantizer.*``, ``project_hid.*``, ``project_q.*`` (pretraining heads) and
``lm_head.*`` (CTC head). ``masked_spec_embed`` becomes ``masker.temporal_mask_embed``.

Architecture from ``config.json``: ``hidden_size``, ``num_hidden_layers``,
``num_attention_heads``, ``intermediate_size``, ``conv_dim``/``conv_kernel``/``conv_stride``,
``conv_bias``, ``feat_extract_norm`` ("group": GroupNorm in the first conv block only;
"layer": LayerNorm in every block), ``do_stable_layer_norm`` (pre-LN transformer with a final
LayerNorm, as fairseq2's ``norm_order=PRE`` + ``layer_norm_features=False``),
``num_conv_pos_embeddings``/``num_conv_pos_embedding_groups``. The positional convolution's
weight norm is read from either ``parametrizations.weight.original0/1`` (current torch) or
``weight_g``/``weight_v`` (older files). ``preprocessor_config.json``'s ``do_normalize`` (if present)
gives ``normalize_waveform``.

Not supported (a one-line error): adapters (``add_adapter``), activations other than GELU,
``conv_dim[-1] == hidden_size`` (fairseq2 then has no feature projection while HF always has one),
``layer_norm_eps`` other than 1e-5, other model types (HuBERT, WavLM, conformer ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fairseq2.models.transformer import TransformerNormOrder
from fairseq2.models.wav2vec2 import Wav2Vec2EncoderConfig
from torch import Tensor

from avsr.media.paths import OutsideRootError, inside
from avsr.models.convert.common import (
    CheckpointError,
    ConvertedWav2Vec2,
    rename_keys,
    safe_torch_load,
    weight_norm_from_weight,
)
from avsr.nn.state import name_list

_DROP_PATTERNS = [re.compile(p) for p in (r"^quantizer\.", r"^project_hid\.", r"^project_q\.", r"^lm_head\.")]

_RULES_COMMON = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"encoder_frontend.feature_extractor.layers.\1.conv."),
    (r"^feature_projection\.layer_norm\.", r"encoder_frontend.post_extract_layer_norm."),
    (r"^feature_projection\.projection\.", r"encoder_frontend.model_dim_proj."),
    (
        r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0$",
        r"encoder_frontend.pos_encoder.conv.weight_g",
    ),
    (
        r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1$",
        r"encoder_frontend.pos_encoder.conv.weight_v",
    ),
    (r"^encoder\.pos_conv_embed\.conv\.(weight_g|weight_v|bias|weight)$", r"encoder_frontend.pos_encoder.conv.\1"),
    (r"^encoder\.layers\.(\d+)\.attention\.([qkv])_proj\.", r"encoder.layers.\1.self_attn.\2_proj."),
    (r"^encoder\.layers\.(\d+)\.attention\.out_proj\.", r"encoder.layers.\1.self_attn.output_proj."),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.ffn.inner_proj."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.ffn.output_proj."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.ffn_layer_norm."),
    (r"^masked_spec_embed$", r"masker.temporal_mask_embed"),
]


def hf_config_to_encoder_config(cfg: Mapping[str, Any]) -> Wav2Vec2EncoderConfig:
    """Map a ``transformers.Wav2Vec2Config`` (``config.json`` as a dict) onto fairseq2's encoder config."""

    def get(name: str, default: Any) -> Any:
        value = cfg.get(name)
        return default if value is None else value

    model_type = get("model_type", "wav2vec2")
    if model_type != "wav2vec2":
        raise ValueError(f"model_type={model_type!r} (only 'wav2vec2' is supported)")
    if get("add_adapter", False):
        raise ValueError("add_adapter=True is not supported")
    for name in ("hidden_act", "feat_extract_activation"):
        if get(name, "gelu") != "gelu":
            raise ValueError(f"{name}={cfg.get(name)!r} (fairseq2's wav2vec 2.0 uses gelu)")
    if abs(float(get("layer_norm_eps", 1e-5)) - 1e-5) > 1e-12:
        raise ValueError(f"layer_norm_eps={cfg.get('layer_norm_eps')} (fairseq2 uses 1e-5)")
    if not get("feat_proj_layer_norm", True):
        raise ValueError("feat_proj_layer_norm=False is not supported")
    norm = get("feat_extract_norm", "group")
    if norm not in ("group", "layer"):
        raise ValueError(f"feat_extract_norm={norm!r}")
    dims = list(get("conv_dim", (512,) * 7))
    kernels = list(get("conv_kernel", (10, 3, 3, 3, 3, 2, 2)))
    strides = list(get("conv_stride", (5, 2, 2, 2, 2, 2, 2)))
    if not (len(dims) == len(kernels) == len(strides)) or not dims:
        raise ValueError("conv_dim, conv_kernel and conv_stride differ in length")
    model_dim = int(get("hidden_size", 768))
    if int(dims[-1]) == model_dim:
        raise ValueError("conv_dim[-1] == hidden_size (fairseq2 has no feature projection then)")
    stable = bool(get("do_stable_layer_norm", False))
    return Wav2Vec2EncoderConfig(
        model_dim=model_dim,
        feature_dim=int(dims[-1]),
        layer_norm_features=not stable,
        feature_extractor_layer_descs=[(int(d), int(k), int(s)) for d, k, s in zip(dims, kernels, strides)],
        feature_extractor_bias=bool(get("conv_bias", False)),
        feature_extractor_layer_norm_convs=norm == "layer",
        pos_conv_kernel_size=int(get("num_conv_pos_embeddings", 128)),
        num_pos_conv_groups=int(get("num_conv_pos_embedding_groups", 16)),
        num_encoder_layers=int(get("num_hidden_layers", 12)),
        num_encoder_attn_heads=int(get("num_attention_heads", 12)),
        ffn_inner_dim=int(get("intermediate_size", 3072)),
        dropout_p=float(get("hidden_dropout", 0.1)),
        attn_dropout_p=float(get("attention_dropout", 0.1)),
        ffn_inner_dropout_p=float(get("activation_dropout", 0.1)),
        layer_drop_p=float(get("layerdrop", 0.1)),
        first_pass_dropout_p=float(get("feat_proj_dropout", 0.0)),
        norm_order=TransformerNormOrder.PRE if stable else TransformerNormOrder.POST,
    )


def convert_hf_state_dict(
    sd: Mapping[str, Tensor], cfg: Mapping[str, Any]
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Rename an HF wav2vec 2.0 state dict. Returns (fairseq2 state dict, dropped, unmapped)."""
    dropped: list[str] = []
    kept: dict[str, Tensor] = {}
    for key, value in sd.items():
        bare = key[len("wav2vec2.") :] if key.startswith("wav2vec2.") else key
        if any(p.search(bare) for p in _DROP_PATTERNS):
            dropped.append(key)
            continue
        kept[bare] = value
    group = cfg.get("feat_extract_norm", "group") == "group"
    stable = bool(cfg.get("do_stable_layer_norm", False))
    conv_norm = (
        [
            (
                r"^feature_extractor\.conv_layers\.0\.layer_norm\.",
                r"encoder_frontend.feature_extractor.layers.0.group_norm.",
            )
        ]
        if group
        else [
            (
                r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.",
                r"encoder_frontend.feature_extractor.layers.\1.layer_norm.",
            )
        ]
    )
    final_ln = "encoder.layer_norm." if stable else "encoder_frontend.layer_norm."
    rules = [*conv_norm, *_RULES_COMMON, (r"^encoder\.layer_norm\.", final_ln)]
    out, unmapped = rename_keys(kept, rules)
    plain = out.pop("encoder_frontend.pos_encoder.conv.weight", None)
    if plain is not None:
        out["encoder_frontend.pos_encoder.conv.weight_g"], out["encoder_frontend.pos_encoder.conv.weight_v"] = (
            weight_norm_from_weight(plain, dim=2)
        )
    return out, dropped, unmapped


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _load_weights(directory: Path, weights: Path | None) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    candidates = (
        [weights]
        if weights is not None
        else [
            directory / "model.safetensors",
            directory / "model.safetensors.index.json",
            directory / "pytorch_model.bin",
        ]
    )
    for path in candidates:
        if path is None or not path.is_file():
            continue
        if path.name.endswith(".index.json"):
            index = _read_json(path)
            shards = sorted(set(index.get("weight_map", {}).values()))
            if not shards:
                raise CheckpointError(f"{path}: empty weight_map")
            sd: dict[str, Tensor] = {}
            for shard in shards:
                sd.update(_load_weights(directory, _shard_path(path, shard)))
            return sd
        if path.suffix == ".safetensors":
            try:
                return load_file(str(path))
            except Exception as exc:  # noqa: BLE001
                raise CheckpointError(f"{path}: unreadable safetensors ({' '.join(str(exc).split())[:200]})") from None
        obj = safe_torch_load(path)
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{path}: expected a state dict")
        return dict(obj)
    raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin")


def _shard_path(index: Path, shard: object) -> Path:
    """A shard the index names, in the index's folder. Checked as text: a Hugging Face cache's
    snapshot folder holds symlinks into its blobs folder, which are the owner's, not the file's."""
    if not isinstance(shard, str):
        raise CheckpointError(f"{index}: weight_map names {shard!r}, not a file name")
    try:
        return inside(index.parent, shard, follow_links=False)
    except OutsideRootError as exc:
        raise CheckpointError(f"{index}: shard {shard!r} is refused ({exc.problem})") from None


def convert_hf_checkpoint(path: str | Path) -> ConvertedWav2Vec2:
    """``path``: the model directory, its ``config.json``, or its weights file."""
    path = Path(path)
    if path.is_dir():
        directory, weights = path, None
    elif path.name == "config.json":
        directory, weights = path.parent, None
    else:
        directory, weights = path.parent, path
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{path}: not a Hugging Face model (no config.json beside it)")
    cfg = _read_json(config_path)
    try:
        config = hf_config_to_encoder_config(cfg)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{config_path}: unsupported wav2vec 2.0 config: {exc}") from None
    sd = _load_weights(directory, weights)
    out, dropped, unmapped = convert_hf_state_dict(sd, cfg)
    if unmapped:
        raise CheckpointError(f"{path}: Hugging Face keys with no fairseq2 counterpart: {name_list(unmapped)}")
    normalize = None
    pre = directory / "preprocessor_config.json"
    if pre.is_file():
        value = _read_json(pre).get("do_normalize")
        normalize = bool(value) if value is not None else None
    return ConvertedWav2Vec2(
        state_dict=out,
        encoder_config=config,
        source_format="huggingface",
        dropped_keys=sorted(dropped),
        normalize_waveform=normalize,
    )


__all__ = ["convert_hf_checkpoint", "convert_hf_state_dict", "hf_config_to_encoder_config"]
