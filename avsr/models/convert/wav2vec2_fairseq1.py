"""fairseq1 wav2vec 2.0 checkpoints -> fairseq2 0.8.1 ``Wav2Vec2Model`` key names.

Reads pretraining checkpoints (``wav2vec_small.pt``, ``libri960_big.pt``, ``wav2vec_vox_new.pt`` =
wav2vec 2.0 Large LV-60, ...) and, as a bonus, the encoder of fine-tuned CTC checkpoints
(``w2v_encoder.w2v_model.*`` keys; the CTC projection ``w2v_encoder.proj`` is dropped).
fairseq2 0.8.1 converts neither pretraining checkpoints (its interop expects a ``mask_emb.weight``
key and a stacked ``pos_conv``) nor anything without ``restrict=False`` unpickling.

The file is read with ``safe_torch_load`` (``torch.load(weights_only=True)``; the ``args``
Namespace or omegaconf ``cfg`` it holds are read through inert stubs, never imported).

Dropped on purpose (pretraining-only, not needed for feature extraction or fine-tuning):
``quantizer.*`` (Gumbel codebook), ``project_q.*``, ``final_proj.*``, ``target_glu.*``.
Kept: ``mask_emb`` -> ``masker.temporal_mask_embed`` (used by fine-tuning time masking).

Architecture: from ``args`` (old files) or ``cfg["model"]`` (newer files): ``encoder_layers``,
``encoder_embed_dim``, ``encoder_ffn_embed_dim``, ``encoder_attention_heads``,
``conv_feature_layers``, ``extractor_mode`` ("default" = one GroupNorm in the first conv block,
"layer_norm" = LayerNorm in every block, as Large LV-60), ``layer_norm_first`` (pre-LN, as
Large LV-60), ``conv_bias``, ``conv_pos``, ``conv_pos_groups``; the task's ``normalize``
says whether waveforms are z-normalised. Without a config the architecture is derived from the
tensor shapes (heads assumed model_dim/64, pre-LN assumed iff the extractor uses LayerNorm,
strides assumed from the published stacks), and ``config_from_shapes`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fairseq2.models.transformer import TransformerNormOrder
from fairseq2.models.wav2vec2 import Wav2Vec2EncoderConfig
from torch import Tensor

from avsr.models.convert.common import (
    CheckpointError,
    ConvertedWav2Vec2,
    parse_conv_layers,
    rename_keys,
    safe_torch_load,
    standard_stride,
    to_plain,
    weight_norm_from_weight,
)
from avsr.nn.state import name_list

_FINETUNED_PREFIX = "w2v_encoder.w2v_model."

#: Keys of pretraining-only (or CTC-head) modules that are dropped.
_DROP_PATTERNS = [
    re.compile(p)
    for p in (r"^quantizer\.", r"^project_q\.", r"^final_proj\.", r"^target_glu\.", r"^w2v_encoder\.proj\.")
]

_LAYER_RULES = [
    (r"^encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.", r"encoder.layers.\1.self_attn.\2_proj."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"encoder.layers.\1.self_attn.output_proj."),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.layers\.(\d+)\.fc1\.", r"encoder.layers.\1.ffn.inner_proj."),
    (r"^encoder\.layers\.(\d+)\.fc2\.", r"encoder.layers.\1.ffn.output_proj."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.ffn_layer_norm."),
]
_FRONT_RULES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"encoder_frontend.feature_extractor.layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.", r"encoder_frontend.feature_extractor.layers.\1.layer_norm."),
    (r"^feature_extractor\.conv_layers\.0\.2\.", r"encoder_frontend.feature_extractor.layers.0.group_norm."),
    (r"^layer_norm\.", r"encoder_frontend.post_extract_layer_norm."),
    (r"^post_extract_proj\.", r"encoder_frontend.model_dim_proj."),
    (r"^encoder\.pos_conv\.0\.parametrizations\.weight\.original0$", r"encoder_frontend.pos_encoder.conv.weight_g"),
    (r"^encoder\.pos_conv\.0\.parametrizations\.weight\.original1$", r"encoder_frontend.pos_encoder.conv.weight_v"),
    (r"^encoder\.pos_conv\.0\.(weight_g|weight_v|bias|weight)$", r"encoder_frontend.pos_encoder.conv.\1"),
    (r"^mask_emb$", r"masker.temporal_mask_embed"),
]


def _model_section(ckpt: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool | None]:
    """(model config dict, task normalize flag) from ``args`` or ``cfg``; recurses into the
    ``w2v_args`` of fine-tuned checkpoints."""

    def from_container(container: Any) -> tuple[dict[str, Any] | None, bool | None]:
        plain = to_plain(container)
        if not isinstance(plain, dict):
            return None, None
        if isinstance(plain.get("model"), dict):  # omegaconf-style cfg: {"model": ..., "task": ...}
            model, task = plain["model"], plain.get("task") or {}
        else:  # argparse-style args: one flat namespace
            model, task = plain, plain
        normalize = task.get("normalize") if isinstance(task, dict) else None
        if "w2v_args" in model or "w2v_path" in model:  # fine-tuned: the encoder's config is nested
            inner, inner_norm = from_container(model.get("w2v_args")) if model.get("w2v_args") else (None, None)
            return inner, normalize if normalize is not None else inner_norm  # None: use the shapes
        return model, normalize

    for key in ("cfg", "args"):
        value = ckpt.get(key)
        if value is not None:
            model, normalize = from_container(value)
            return model or None, (bool(normalize) if normalize is not None else None)
    return None, None


def fairseq1_args_to_encoder_config(model: Mapping[str, Any]) -> Wav2Vec2EncoderConfig:
    """Map a fairseq1 ``Wav2Vec2Config`` (as a dict) onto fairseq2's encoder config."""

    def get(name: str, default: Any) -> Any:
        value = model.get(name)
        return default if value is None else value

    activation = get("activation_fn", "gelu")
    if activation != "gelu":
        raise ValueError(f"activation_fn={activation!r} (fairseq2's wav2vec 2.0 uses gelu)")
    layer_type = get("layer_type", "transformer")
    if layer_type != "transformer":
        raise ValueError(f"layer_type={layer_type!r} (only the transformer variant is supported)")
    if int(get("pos_conv_depth", 1)) != 1:
        raise ValueError(f"pos_conv_depth={model.get('pos_conv_depth')} (only 1 is supported)")
    if get("quantize_input", False):
        raise ValueError("quantize_input=True models are not supported")
    mode = get("extractor_mode", "default")
    if mode not in ("default", "layer_norm"):
        raise ValueError(f"extractor_mode={mode!r}")
    conv_text = model.get("conv_feature_layers")
    descs = (
        parse_conv_layers(conv_text)
        if isinstance(conv_text, str)
        else list(Wav2Vec2EncoderConfig().feature_extractor_layer_descs)
    )
    pre_ln = bool(get("layer_norm_first", False))
    return Wav2Vec2EncoderConfig(
        model_dim=int(get("encoder_embed_dim", 768)),
        feature_dim=descs[-1][0],
        layer_norm_features=not pre_ln,
        feature_extractor_layer_descs=descs,
        feature_extractor_bias=bool(get("conv_bias", False)),
        feature_extractor_layer_norm_convs=mode == "layer_norm",
        pos_conv_kernel_size=int(get("conv_pos", 128)),
        num_pos_conv_groups=int(get("conv_pos_groups", 16)),
        num_encoder_layers=int(get("encoder_layers", 12)),
        num_encoder_attn_heads=int(get("encoder_attention_heads", 12)),
        ffn_inner_dim=int(get("encoder_ffn_embed_dim", 3072)),
        dropout_p=float(get("dropout", 0.1)),
        attn_dropout_p=float(get("attention_dropout", 0.1)),
        ffn_inner_dropout_p=float(get("activation_dropout", 0.0)),
        layer_drop_p=float(get("encoder_layerdrop", 0.0)),
        first_pass_dropout_p=float(get("dropout_input", 0.0)),
        norm_order=TransformerNormOrder.PRE if pre_ln else TransformerNormOrder.POST,
    )


def _config_from_shapes(sd: Mapping[str, Tensor]) -> Wav2Vec2EncoderConfig:
    conv_idx = sorted(
        {int(m.group(1)) for k in sd if (m := re.match(r"^feature_extractor\.conv_layers\.(\d+)\.0\.weight$", k))}
    )
    layer_idx = {int(m.group(1)) for k in sd if (m := re.match(r"^encoder\.layers\.(\d+)\.", k))}
    if not conv_idx or not layer_idx or "encoder.layers.0.fc1.weight" not in sd:
        raise ValueError("cannot derive the architecture from the tensor names")
    descs = []
    for i in conv_idx:
        out_dim, _, kernel = sd[f"feature_extractor.conv_layers.{i}.0.weight"].shape
        stride = standard_stride(int(kernel))
        if stride is None:
            raise ValueError(f"conv layer {i} has kernel {kernel}: stride unknown without a config")
        descs.append((int(out_dim), int(kernel), stride))
    ffn, model_dim = sd["encoder.layers.0.fc1.weight"].shape
    layer_norm_convs = "feature_extractor.conv_layers.0.2.1.weight" in sd
    pos_v = sd.get("encoder.pos_conv.0.weight_v")
    if pos_v is None:
        pos_v = sd.get("encoder.pos_conv.0.parametrizations.weight.original1", sd.get("encoder.pos_conv.0.weight"))
    if pos_v is None:
        raise ValueError("no positional convolution weights")
    return Wav2Vec2EncoderConfig(
        model_dim=int(model_dim),
        feature_dim=descs[-1][0],
        layer_norm_features=not layer_norm_convs,
        feature_extractor_layer_descs=descs,
        feature_extractor_bias="feature_extractor.conv_layers.0.0.bias" in sd,
        feature_extractor_layer_norm_convs=layer_norm_convs,
        pos_conv_kernel_size=int(pos_v.shape[2]),
        num_pos_conv_groups=int(model_dim) // int(pos_v.shape[1]),
        num_encoder_layers=max(layer_idx) + 1,
        num_encoder_attn_heads=max(1, int(model_dim) // 64),
        ffn_inner_dim=int(ffn),
        norm_order=TransformerNormOrder.PRE if layer_norm_convs else TransformerNormOrder.POST,
    )


def is_fairseq1_state_dict(sd: Mapping[str, Any]) -> bool:
    return any(
        k.startswith(("feature_extractor.conv_layers.", _FINETUNED_PREFIX + "feature_extractor.conv_layers."))
        for k in sd
    )


def convert_fairseq1_state_dict(
    sd: Mapping[str, Tensor], config: Wav2Vec2EncoderConfig
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Rename a fairseq1 wav2vec 2.0 state dict. Returns (fairseq2 state dict, dropped keys,
    unmapped keys). ``config.norm_order`` decides where ``encoder.layer_norm`` goes: after the
    positional convolution (post-LN, fairseq2 ``encoder_frontend.layer_norm``) or after the last
    layer (pre-LN, fairseq2 ``encoder.layer_norm``)."""
    dropped: list[str] = []
    kept: dict[str, Tensor] = {}
    for key, value in sd.items():
        if any(p.search(key) for p in _DROP_PATTERNS):
            dropped.append(key)
            continue
        if key.startswith(_FINETUNED_PREFIX):
            key = key[len(_FINETUNED_PREFIX) :]
        kept[key] = value
    final_ln = (
        "encoder.layer_norm." if config.norm_order == TransformerNormOrder.PRE else "encoder_frontend.layer_norm."
    )
    rules = [*_FRONT_RULES, *_LAYER_RULES, (r"^encoder\.layer_norm\.", final_ln)]
    out, unmapped = rename_keys(kept, rules)
    plain = out.pop("encoder_frontend.pos_encoder.conv.weight", None)
    if plain is not None:  # weight norm already folded into the weight: split it again
        out["encoder_frontend.pos_encoder.conv.weight_g"], out["encoder_frontend.pos_encoder.conv.weight_v"] = (
            weight_norm_from_weight(plain, dim=2)
        )
    return out, dropped, unmapped


def convert_fairseq1_checkpoint(path: str | Path, ckpt: Mapping[str, Any] | None = None) -> ConvertedWav2Vec2:
    """Read and convert a fairseq1 wav2vec 2.0 checkpoint (``{"args"|"cfg": ..., "model": sd}``)."""
    path = Path(path)
    if ckpt is None:
        ckpt = safe_torch_load(path)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        raise CheckpointError(f"{path}: not a fairseq1 checkpoint (no 'model' state dict)")
    sd = {k: v for k, v in ckpt["model"].items()}
    if not is_fairseq1_state_dict(sd):
        raise CheckpointError(f"{path}: no fairseq1 wav2vec 2.0 keys (feature_extractor.conv_layers.*)")
    model_cfg, normalize = _model_section(ckpt)
    from_shapes = model_cfg is None
    bare = {k[len(_FINETUNED_PREFIX) :] if k.startswith(_FINETUNED_PREFIX) else k: v for k, v in sd.items()}
    try:
        config = _config_from_shapes(bare) if from_shapes else fairseq1_args_to_encoder_config(model_cfg)
    except (ValueError, TypeError, SyntaxError) as exc:
        raise CheckpointError(f"{path}: unsupported fairseq1 wav2vec 2.0 architecture: {exc}") from None
    out, dropped, unmapped = convert_fairseq1_state_dict(sd, config)
    if unmapped:
        raise CheckpointError(f"{path}: fairseq1 keys with no fairseq2 counterpart: {name_list(unmapped)}")
    return ConvertedWav2Vec2(
        state_dict=out,
        encoder_config=config,
        source_format="fairseq1",
        dropped_keys=sorted(dropped),
        normalize_waveform=normalize,
        config_from_shapes=from_shapes,
    )


__all__ = [
    "convert_fairseq1_checkpoint",
    "convert_fairseq1_state_dict",
    "fairseq1_args_to_encoder_config",
    "is_fairseq1_state_dict",
]
