"""AV-HuBERT's published fine-tuned checkpoints -> our model folder (``avsr-convert avhubert``).

AV-HuBERT (facebookresearch/av_hubert) fine-tuned models are fairseq1 ``av_hubert_seq2seq``
checkpoints: ``{"model": state dict, "cfg": {"model": ..., "task": ...}, "task_state": ...}``.
They are read with ``torch.load(weights_only=True)`` through
:func:`avsr.models.convert.common.safe_torch_load` (fairseq/omegaconf/sentencepiece objects become
inert stubs; no fairseq code is imported or run). The architecture comes from ``cfg.model``
(decoder) and ``cfg.model.w2v_args.model`` (encoder; the pre-training config the fine-tuning
recorded), the ResNet widths and the vocabulary size from the tensors; every key is mapped and
every shape checked (:func:`map_state_dict`), and nothing is left at random.

The tokenizer: the sentencepiece model (``--tokenizer FILE``, or the one the checkpoint's
``task_state`` carries when present) and fairseq's dictionary order (``<s>`` 0, ``<pad>`` 1,
``</s>`` 2, ``<unk>`` 3, then the pieces of ``dict.wrd.txt``; the checkpoint's own dictionary
when it has one, else the model's pieces in id order, as AV-HuBERT's ``gen_subword.py`` writes
``dict.wrd.txt``). Our id layout differs (blank first, sos/eos last), so the embedding rows are
permuted (:func:`fairseq_order`) and the tokenizer's units list the same pieces in the same
order: each id names the same piece in the tokenizer and in the model. Text is lower-cased, as
AV-HuBERT's labels are.

Licence: AV-HuBERT's code and weights are under the AV-HuBERT licence (non-commercial research use
only, Meta Platforms); the converted folder records it in ``model.yaml`` (``extra.licence``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from avsr.data.video import CROP_SIZE, PIXEL_MEAN, PIXEL_STD
from avsr.face.align import MouthCropConfig
from avsr.models.convert.common import CheckpointError, _InertPickleStub, safe_torch_load, to_plain
from avsr.models.pretrained.avhubert_config import AVHubertConfig, build_from_config, resnet_width, stored_state
from avsr.nn.state import name_list, state_problems

LICENCE = (
    "AV-HuBERT weights are under the AV-HuBERT licence (Meta Platforms, Inc.): non-commercial research use only; "
    "see https://github.com/facebookresearch/av_hubert/blob/main/LICENSE"
)
#: AV-HuBERT's own decoding (avhubert/conf/s2s_decode.yaml); avsr-decode and avsr-bench use its
#: length normalisation and beam unless told otherwise (max_length is a note: fairseq's
#: max_len_a/b, which our default, the encoder frames, matches).
DECODING = {"length_normalisation": 1.0, "beam": 50, "max_length": "1.0 x input frames"}
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
ENCODER = "encoder.w2v_model."

#: fairseq1 keys left out on purpose: pre-training heads and bookkeeping buffers.
DROPPED = {
    r"^encoder\.w2v_model\.mask_emb$": "masking embedding (pre-training input masking only)",
    r"^encoder\.w2v_model\.label_embs_concat$": "cluster label embeddings (pre-training targets only)",
    r"^encoder\.w2v_model\.final_proj\.": "pre-training projection head",
    r"^encoder\.w2v_model\.target_glu\.": "pre-training target GLU",
    r"^decoder\.embed_positions\._float_tensor$": "fairseq's dtype marker buffer (sinusoidal positions are computed)",
}

_RULES = [
    (r"^encoder\.w2v_model\.feature_extractor_audio\.proj\.", "audio_encoder.proj."),
    (r"^encoder\.w2v_model\.feature_extractor_video\.proj\.", "video_encoder.proj."),
    (r"^encoder\.w2v_model\.feature_extractor_video\.resnet\.frontend3D\.0\.", "visual_frontend.stem.conv."),
    (r"^encoder\.w2v_model\.feature_extractor_video\.resnet\.frontend3D\.1\.", "visual_frontend.stem.norm."),
    (r"^encoder\.w2v_model\.feature_extractor_video\.resnet\.frontend3D\.2\.", "visual_frontend.stem.act."),
    (
        r"^encoder\.w2v_model\.feature_extractor_video\.resnet\.trunk\.(layer[1-4]\.[01]\.(?:conv[12]|bn[12]|relu[12]|downsample\.[01])\.)",
        r"visual_frontend.trunk.\1",
    ),
    (r"^encoder\.w2v_model\.layer_norm\.", "encoder.input_norm."),
    (r"^encoder\.w2v_model\.post_extract_proj\.", "encoder.proj."),
    (
        r"^encoder\.w2v_model\.encoder\.pos_conv\.0\.parametrizations\.weight\.original0$",
        "encoder.pos_encoder.conv.weight_g",
    ),
    (
        r"^encoder\.w2v_model\.encoder\.pos_conv\.0\.parametrizations\.weight\.original1$",
        "encoder.pos_encoder.conv.weight_v",
    ),
    (r"^encoder\.w2v_model\.encoder\.pos_conv\.0\.(weight_g|weight_v|bias)$", r"encoder.pos_encoder.conv.\1"),
    (
        r"^encoder\.w2v_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.",
        r"encoder.layers.layers.\1.self_attn.\2_proj.",
    ),
    (
        r"^encoder\.w2v_model\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.",
        r"encoder.layers.layers.\1.self_attn.output_proj.",
    ),
    (
        r"^encoder\.w2v_model\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.",
        r"encoder.layers.layers.\1.self_attn_layer_norm.",
    ),
    (r"^encoder\.w2v_model\.encoder\.layers\.(\d+)\.fc1\.", r"encoder.layers.layers.\1.ffn.inner_proj."),
    (r"^encoder\.w2v_model\.encoder\.layers\.(\d+)\.fc2\.", r"encoder.layers.layers.\1.ffn.output_proj."),
    (r"^encoder\.w2v_model\.encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.layers.\1.ffn_layer_norm."),
    (r"^decoder\.embed_tokens\.weight$", "decoder.frontend.embed.weight"),
    (r"^decoder\.embed_out$", "decoder.final_proj.weight"),
    (r"^decoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.", r"decoder.layers.layers.\1.self_attn.\2_proj."),
    (r"^decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"decoder.layers.layers.\1.self_attn.output_proj."),
    (r"^decoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"decoder.layers.layers.\1.self_attn_layer_norm."),
    (
        r"^decoder\.layers\.(\d+)\.encoder_attn\.([qkv])_proj\.",
        r"decoder.layers.layers.\1.encoder_decoder_attn.\2_proj.",
    ),
    (
        r"^decoder\.layers\.(\d+)\.encoder_attn\.out_proj\.",
        r"decoder.layers.layers.\1.encoder_decoder_attn.output_proj.",
    ),
    (
        r"^decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.",
        r"decoder.layers.layers.\1.encoder_decoder_attn_layer_norm.",
    ),
    (r"^decoder\.layers\.(\d+)\.fc1\.", r"decoder.layers.layers.\1.ffn.inner_proj."),
    (r"^decoder\.layers\.(\d+)\.fc2\.", r"decoder.layers.layers.\1.ffn.output_proj."),
    (r"^decoder\.layers\.(\d+)\.final_layer_norm\.", r"decoder.layers.layers.\1.ffn_layer_norm."),
    (r"^decoder\.layer_norm\.", "decoder.layers.layer_norm."),
]
_COMPILED = [(re.compile(p), r) for p, r in _RULES]
_DROPPED = [(re.compile(p), reason) for p, reason in DROPPED.items()]
_VOCAB_KEYS = ("decoder.frontend.embed.weight", "decoder.final_proj.weight")


# ---------------------------------------------------------------------- ids
def fairseq_order(vocab_size: int) -> list[int]:
    """``order[i]``: the fairseq dictionary id of our id ``i``. Ours: 0 <- ``<pad>`` (1, never
    emitted), 1 <- ``<s>`` (0), 2 <- ``<unk>`` (3), 3..V-2 <- the pieces 4..V-1, V-1 <- ``</s>`` (2)."""
    if vocab_size < 5:
        raise CheckpointError(
            f"a vocabulary of {vocab_size} entries cannot hold fairseq's 4 special symbols and a piece"
        )
    return [1, 0, 3, *range(4, vocab_size), 2]


def our_key(key: str, *, encoder_norm_first: bool = True) -> str | None:
    """Our parameter name for a fairseq1 AV-HuBERT key; None for a key dropped on purpose
    (:data:`DROPPED`); KeyError for a key we do not know. ``encoder.layer_norm`` is the final
    norm of a pre-LN encoder (``layer_norm_first``), else the norm after the positions."""
    for pattern, _ in _DROPPED:
        if pattern.search(key):
            return None
    if key.startswith(ENCODER + "encoder.layer_norm."):
        where = "encoder.layers.layer_norm." if encoder_norm_first else "encoder.pos_norm."
        return where + key[len(ENCODER + "encoder.layer_norm.") :]
    for pattern, replacement in _COMPILED:
        if pattern.search(key):
            return pattern.sub(replacement, key, count=1)
    raise KeyError(key)


def map_state_dict(
    state: Mapping[str, Tensor], model_state: Mapping[str, Tensor], source: str, *, encoder_norm_first: bool = True
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """fairseq1 tensors renamed (and the vocabulary rows reordered) onto ``model_state``'s keys,
    strictly: one-line ``CheckpointError`` naming ``source`` for an unknown key, a model key left
    without a tensor, or a shape that differs. Returns (our state dict, dropped key -> reason)."""
    mapped: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    dropped: dict[str, str] = {}
    unknown = []
    for key, tensor in state.items():
        try:
            name = our_key(key, encoder_norm_first=encoder_norm_first)
        except KeyError:
            unknown.append(key)
            continue
        if name is None:
            dropped[key] = next(reason for pattern, reason in _DROPPED if pattern.search(key))
            continue
        if name in mapped:
            raise CheckpointError(f"{source}: {origin[name]} and {key} both map to {name}")
        mapped[name], origin[name] = tensor, key
    problems = [f"{len(unknown)} key(s) not known to the AV-HuBERT converter: {name_list(unknown)}"] if unknown else []
    problems += state_problems(
        model_state,
        mapped,
        missing="weight(s) of the model not in the checkpoint",
        unexpected="key(s) the configured model has no place for",
        display=lambda k: origin.get(k, k),
    )
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    for name in _VOCAB_KEYS:
        if name in mapped:
            mapped[name] = mapped[name][torch.tensor(fairseq_order(mapped[name].size(0)))]
    return mapped, dropped


# ---------------------------------------------------------------------- the checkpoint
def read_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Any]]:
    """(state dict, plain cfg {"model", "task"}, task_state with stubs) of a fairseq1 file."""
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: not a fairseq1 checkpoint (no 'model' state dict)")
    state = {k: v for k, v in ckpt["model"].items() if isinstance(v, Tensor)}
    if not state:
        raise CheckpointError(f"{path}: the 'model' entry holds no tensors")
    cfg = to_plain(ckpt.get("cfg")) if ckpt.get("cfg") is not None else None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        args = to_plain(ckpt.get("args"))
        cfg = {"model": args, "task": args} if isinstance(args, dict) else None
    if cfg is None:
        raise CheckpointError(f"{path}: no model configuration ('cfg' or 'args'): cannot tell the architecture")
    task_state = ckpt.get("task_state") if isinstance(ckpt.get("task_state"), dict) else {}
    return state, cfg, task_state


def config_from_checkpoint(cfg: Mapping[str, Any], state: Mapping[str, Tensor], source: str) -> AVHubertConfig:
    """The architecture: encoder options from ``cfg.model.w2v_args.model``, decoder options from
    ``cfg.model`` (defaults: AV-HuBERT's dataclass defaults), the fine-tuning task's modalities,
    ResNet widths and vocabulary size from the tensors."""
    model = cfg.get("model") or {}
    name = model.get("_name") or model.get("arch")
    if name not in (None, "av_hubert_seq2seq"):
        hint = (
            " (a CTC fine-tuned model)"
            if name == "av_hubert_ctc"
            else " (a pre-trained model: convert a fine-tuned one)"
            if name == "av_hubert"
            else ""
        )
        raise CheckpointError(
            f"{source}: model {name!r}{hint}; only AV-HuBERT seq2seq fine-tuned checkpoints (av_hubert_seq2seq) are supported"
        )
    w2v = model.get("w2v_args") or {}
    encoder = w2v.get("model") if isinstance(w2v.get("model"), dict) else w2v
    if not encoder:
        raise CheckpointError(f"{source}: no encoder configuration (cfg.model.w2v_args) in the checkpoint")
    task = cfg.get("task") or {}

    def get(section: Mapping[str, Any], key: str, default: Any) -> Any:
        value = section.get(key)
        return default if value is None else value

    def refuse(what: str) -> None:
        raise CheckpointError(f"{source}: {what} is not supported (no published AV-HuBERT model uses it)")

    if int(get(encoder, "sub_encoder_layers", 0)) != 0:
        refuse(f"sub_encoder_layers={encoder['sub_encoder_layers']} (per-modality transformers)")
    if get(encoder, "activation_fn", "gelu") != "gelu":
        refuse(f"activation_fn={encoder['activation_fn']!r}")
    if get(model, "decoder_learned_pos", False):
        refuse("decoder_learned_pos=true")
    if get(model, "no_token_positional_embeddings", False):
        refuse("no_token_positional_embeddings=true")
    dim = int(get(encoder, "encoder_embed_dim", 768))
    if int(get(model, "decoder_embed_dim", 768)) != dim:
        raise CheckpointError(
            f"{source}: decoder_embed_dim {model.get('decoder_embed_dim')} differs from encoder_embed_dim {dim} "
            "(AV-HuBERT's seq2seq model attends to the encoder without a projection)"
        )
    audio_dim = int(get(encoder, "audio_feat_dim", 104))
    stack = int(get(task, "stack_order_audio", 0) or 0) or max(1, audio_dim // 26)
    if audio_dim % stack:
        raise CheckpointError(f"{source}: audio_feat_dim {audio_dim} is not a multiple of stack_order_audio {stack}")
    modalities = get(task, "modalities", ["audio", "video"])
    if isinstance(modalities, str):
        modalities = [modalities]
    order = [m for m in ("audio", "video") if m in modalities] or ["audio", "video"]

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError(f"{source}: missing {key}")
        return tuple(state[key].shape)

    trunk = ENCODER + "feature_extractor_video.resnet."
    channels = (
        shape(trunk + "frontend3D.0.weight")[0],
        *(shape(f"{trunk}trunk.layer{i}.0.conv1.weight")[0] for i in range(1, 5)),
    )
    width = resnet_width(channels)
    if width is None:
        raise CheckpointError(
            f"{source}: ResNet channels {list(channels)} are not AV-HuBERT's ResNet-18 (64, 64, 128, 256, 512) at some width"
        )
    prelu = trunk + "frontend3D.2.weight" in state
    if get(encoder, "resnet_relu_type", "prelu") != ("prelu" if prelu else "relu"):
        raise CheckpointError(
            f"{source}: resnet_relu_type {encoder.get('resnet_relu_type')!r} does not match the weights"
        )
    vocab = shape("decoder.embed_tokens.weight")[0]
    try:
        return AVHubertConfig(
            vocab_size=vocab,
            modalities=tuple(order),
            audio_filters=audio_dim // stack,
            audio_stack=stack,
            normalize_audio=bool(get(task, "normalize", True)),
            resnet_width=width,
            resnet_relu="prelu" if prelu else "relu",
            modality_fuse=get(encoder, "modality_fuse", "concat"),
            encoder_dim=dim,
            encoder_layers=int(get(encoder, "encoder_layers", 12)),
            encoder_heads=int(get(encoder, "encoder_attention_heads", 12)),
            encoder_ffn_dim=int(get(encoder, "encoder_ffn_embed_dim", 3072)),
            encoder_norm_first=bool(get(encoder, "layer_norm_first", False)),
            conv_pos=int(get(encoder, "conv_pos", 128)),
            conv_pos_groups=int(get(encoder, "conv_pos_groups", 16)),
            dropout=float(get(model, "dropout", 0.0)),
            decoder_dropout=float(get(model, "decoder_dropout", 0.0)),
            decoder_layers=int(get(model, "decoder_layers", 6)),
            decoder_heads=int(get(model, "decoder_attention_heads", 4)),
            decoder_ffn_dim=int(get(model, "decoder_ffn_embed_dim", 3072)),
            decoder_norm_first=bool(get(model, "decoder_normalize_before", False)),
            share_embeddings=bool(get(model, "share_decoder_input_output_embed", False)),
            scale_embedding=not bool(get(model, "no_scale_embedding", True)),
            max_target_positions=int(get(model, "max_target_positions", 2048)),
        )
    except ValueError as exc:
        raise CheckpointError(f"{source}: unusable architecture ({exc})") from None


# ---------------------------------------------------------------------- tokenizer
def _stub_state(obj: Any) -> Any:
    return obj.state if isinstance(obj, _InertPickleStub) else None


def checkpoint_dictionary(task_state: Mapping[str, Any]) -> list[str] | None:
    """The fine-tuning target dictionary's symbols (fairseq ``Dictionary``), if pickled in."""
    state = _stub_state(task_state.get("target_dictionary"))
    symbols = state.get("symbols") if isinstance(state, dict) else None
    return [str(s) for s in symbols] if isinstance(symbols, list) else None


def checkpoint_sentencepiece(task_state: Mapping[str, Any]) -> bytes | None:
    """The serialized sentencepiece model of the checkpoint's ``s2s_tokenizer``, if pickled in."""
    bpe = _stub_state(task_state.get("s2s_tokenizer"))
    processor = bpe.get("sp") if isinstance(bpe, dict) else None
    data = _stub_state(processor)
    if isinstance(data, dict):  # sentencepiece >= 0.2 pickles its options and the model under "model_proto"
        data = data.get("model_proto")
    return bytes(data) if isinstance(data, (bytes, bytearray)) else None


def build_tokenizer(model_bytes: bytes, dictionary: list[str] | None, vocab_size: int, source: str):
    """Our sentencepiece tokenizer whose ids follow :func:`fairseq_order` of ``dictionary`` (the
    checkpoint's, or the model's pieces in id order after fairseq's four specials)."""
    from avsr.data.text import TextNormalizer
    from avsr.data.tokenizers.spm import SentencePieceTokenizer, load_processor

    processor = load_processor(model_bytes, source)
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    if dictionary is None:
        dictionary = [*FAIRSEQ_SPECIALS, *(p for p in pieces if p not in FAIRSEQ_SPECIALS)]
    if tuple(dictionary[:4]) != FAIRSEQ_SPECIALS:
        raise CheckpointError(f"{source}: the dictionary does not start with fairseq's {' '.join(FAIRSEQ_SPECIALS)}")
    if len(dictionary) != vocab_size:
        raise CheckpointError(
            f"{source}: the tokenizer gives {len(dictionary)} symbols (4 specials + pieces) but the model has "
            f"{vocab_size} outputs: not the tokenizer this model was fine-tuned with"
        )
    known = set(pieces)
    foreign = [p for p in dictionary[4:] if p not in known]
    if foreign:
        raise CheckpointError(
            f"{source}: {len(foreign)} dictionary piece(s) are not in the sentencepiece model "
            f"({' '.join(foreign[:5])}): not the tokenizer this model was fine-tuned with"
        )
    units = [dictionary[i] for i in fairseq_order(vocab_size)[1:-1]]
    return SentencePieceTokenizer(model_bytes, units, TextNormalizer(case="lower"), source=source)


def read_fairseq_dictionary(path: Path) -> list[str]:
    """fairseq's ``Dictionary.load``: the four specials, then the first field of each line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the dictionary ({exc})") from None
    symbols = list(FAIRSEQ_SPECIALS)
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        word, _, count = line.rpartition(" ")
        if count == "#fairseq:overwrite":
            word, _, count = word.rpartition(" ")
        if not word or not count.lstrip("-").isdigit():
            raise CheckpointError(f"{path}:{number}: expected 'piece count', got {line[:60]!r}")
        symbols.append(word)
    return symbols


def _tokenizer_files(path: Path) -> tuple[Path, Path | None]:
    """A sentencepiece ``.model`` file, or a folder holding one (and maybe ``dict.wrd.txt``)."""
    if path.is_dir():
        models = sorted(path.glob("*.model"))
        if len(models) != 1:
            raise CheckpointError(f"{path}: expected one sentencepiece .model file in the folder, found {len(models)}")
        dictionary = path / "dict.wrd.txt"
        return models[0], dictionary if dictionary.is_file() else None
    if not path.is_file():
        raise CheckpointError(f"{path}: no such tokenizer file or folder")
    return path, None


# ---------------------------------------------------------------------- conversion
def convert_checkpoint(checkpoint: Path, out_dir: Path, *, tokenizer: Path | None = None) -> Path:
    """Convert a fine-tuned AV-HuBERT seq2seq checkpoint into the model folder ``out_dir``
    (``model.safetensors``, ``model.yaml`` with AV-HuBERT's ``AVSRModel`` configuration, ``tokenizer/``), loadable with
    ``avsr.models.io.load_model`` and ``avsr-decode --model out_dir``. ``tokenizer``: the
    sentencepiece model it was fine-tuned with (``spm_unigram1000.model``, or a folder holding it
    and maybe ``dict.wrd.txt``); needed unless the checkpoint carries it.
    Raises ``CheckpointError`` (one line) when anything does not fit. Returns ``out_dir``."""
    from avsr.data.tokenizers.base import TokenizerError
    from avsr.models.folder import save_model_folder
    from avsr.models.io import file_sha256

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    source = str(checkpoint)
    state, cfg, task_state = read_checkpoint(checkpoint)
    config = config_from_checkpoint(cfg, state, source)
    dictionary = checkpoint_dictionary(task_state)
    if tokenizer is not None:
        model_path, dict_path = _tokenizer_files(Path(tokenizer))
        try:
            model_bytes = model_path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"{model_path}: cannot read the tokenizer ({exc.strerror or exc})") from None
        token_source = str(model_path)
        if dict_path is not None:
            dictionary = read_fairseq_dictionary(dict_path)
    else:
        model_bytes = checkpoint_sentencepiece(task_state)
        token_source = f"{source} (task_state.s2s_tokenizer)"
        if model_bytes is None:
            raise CheckpointError(
                f"{source}: the checkpoint carries no sentencepiece model: pass --tokenizer FILE "
                "(the spm_unigram1000.model it was fine-tuned with)"
            )
    try:
        spm_tokenizer = build_tokenizer(model_bytes, dictionary, config.vocab_size, token_source)
    except TokenizerError as exc:
        raise CheckpointError(str(exc)) from None

    from avsr.models.avsr_model import AVSRModel

    model = AVSRModel(config.avsr_config(), pretrained=False)
    mapped, dropped = map_state_dict(state, model.state_dict(), source, encoder_norm_first=config.encoder_norm_first)
    model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in mapped.items()}, strict=True)

    task = cfg.get("task") or {}
    preprocessing = {
        "crop_size": int(task.get("image_crop_size") or CROP_SIZE),
        "video_mean": float(task.get("image_mean") or PIXEL_MEAN),
        "video_std": float(task.get("image_std") or PIXEL_STD),
    }
    extra = {
        "preprocessing": preprocessing,
        "mouth_crop": {"style": "avhubert", **MouthCropConfig.for_style("avhubert").to_dict()},
        "licence": LICENCE,
        "source": {
            "format": "fairseq1 av_hubert_seq2seq (facebookresearch/av_hubert)",
            "checkpoint": checkpoint.name,  # no path of the machine it was converted on
            "sha256": file_sha256(checkpoint),
            "fine_tuned_modalities": list(config.modalities),
            "dropped_keys": sorted(dropped),
            "token_ids": "ours 0 = fairseq <pad> (never emitted), 1 = <s>, 2 = <unk>, 3..V-2 = fairseq ids 4..V-1, "
            "V-1 = </s> (sos/eos)",
        },
        "decoding": DECODING,
    }
    save_model_folder(out_dir, model, spm_tokenizer, extra)
    print(f"avsr-convert: {LICENCE}", file=sys.stderr)
    return out_dir


__all__ = [
    "AVHubertConfig",
    "LICENCE",
    "build_from_config",
    "build_tokenizer",
    "config_from_checkpoint",
    "convert_checkpoint",
    "fairseq_order",
    "map_state_dict",
    "our_key",
    "read_checkpoint",
    "stored_state",
]
