"""Fake published AV-HuBERT checkpoints for the tests (tests/avsr/models/pretrained/test_avhubert.py, tests/avsr/training/test_finetune.py).

Random tensors under the published names (``tests/data/avhubert_{base,large}_keys.tsv``, listed
from AV-HuBERT's own modules), in fairseq1's file layout: ``cfg`` with the fine-tuning and
(``w2v_args``) pre-training options, and a ``task_state`` that pickles fairseq's ``Dictionary``,
its ``SentencepieceBPE`` and a real ``sentencepiece.SentencePieceProcessor``.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import torch

from avsr.models.avsr_model import AVSRModel
from avsr.models.pretrained.avhubert import our_key
from avsr.models.pretrained.avhubert_config import AVHubertConfig

DATA = Path(__file__).parent / "data"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def read_table(size: str) -> dict[str, tuple[int, ...]]:
    table = {}
    for line in (DATA / f"avhubert_{size}_keys.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            table[key] = tuple(int(x) for x in shape.split(",") if x)
    return table


def published_cfg(config: AVHubertConfig, modalities=("video", "audio")) -> dict:
    """``cfg`` as a fine-tuning run records it (conf/finetune/*.yaml, conf/pretrain/*_iter5.yaml)."""
    encoder = {
        "_name": "av_hubert",
        "encoder_layers": config.encoder_layers,
        "encoder_embed_dim": config.encoder_dim,
        "encoder_ffn_embed_dim": config.encoder_ffn_dim,
        "encoder_attention_heads": config.encoder_heads,
        "layer_norm_first": True,
        "audio_feat_dim": 104,
        "modality_fuse": "concat",
        "final_dim": 256,
        "untie_final_proj": True,
        "conv_pos": config.conv_pos,
        "conv_pos_groups": config.conv_pos_groups,
        "resnet_relu_type": "prelu",
        "sub_encoder_layers": 0,
        "activation_fn": "gelu",
        "masking_type": "input",
    }
    model = {
        "_name": "av_hubert_seq2seq",
        "decoder_layers": config.decoder_layers,
        "decoder_embed_dim": config.encoder_dim,
        "decoder_ffn_embed_dim": config.decoder_ffn_dim,
        "decoder_attention_heads": config.decoder_heads,
        "share_decoder_input_output_embed": True,
        "decoder_normalize_before": True,
        "no_scale_embedding": True,
        "decoder_learned_pos": False,
        "max_target_positions": config.max_target_positions,
        "w2v_args": {"model": encoder, "task": {"_name": "av_hubert_pretraining", "normalize": True}},
    }
    task = {
        "_name": "av_hubert_pretraining",
        "is_s2s": True,
        "normalize": True,
        "stack_order_audio": 4,
        "fine_tuning": True,
        "modalities": list(modalities),
        "image_crop_size": 88,
        "image_mean": 0.421,
        "image_std": 0.165,
        "tokenizer_bpe_name": "sentencepiece",
    }
    return {"model": model, "task": task}


TINY = AVHubertConfig.tiny(vocab_size=24)


def _fake_fairseq() -> dict[str, types.ModuleType]:
    """Stand-ins for fairseq's Dictionary and SentencepieceBPE with their module paths (fairseq is
    not installed): pickled like the real ones (their ``__dict__``)."""
    mods = {
        name: types.ModuleType(name)
        for name in (
            "fairseq",
            "fairseq.data",
            "fairseq.data.dictionary",
            "fairseq.data.encoders",
            "fairseq.data.encoders.sentencepiece_bpe",
        )
    }

    class Dictionary:
        def __init__(self, symbols):
            self.bos_word, self.unk_word, self.pad_word, self.eos_word = "<s>", "<unk>", "<pad>", "</s>"
            self.symbols, self.count = list(symbols), [1] * len(symbols)
            self.indices = {s: i for i, s in enumerate(symbols)}
            self.bos_index, self.pad_index, self.eos_index, self.unk_index, self.nspecial = 0, 1, 2, 3, 4

    class SentencepieceBPE:
        def __init__(self, sp):
            self.sp = sp

    for cls, mod in (
        (Dictionary, "fairseq.data.dictionary"),
        (SentencepieceBPE, "fairseq.data.encoders.sentencepiece_bpe"),
    ):
        cls.__module__, cls.__qualname__ = mod, cls.__name__
        setattr(mods[mod], cls.__name__, cls)
    return mods


def train_spm(root: Path) -> Path:
    """A unigram sentencepiece model of TINY's size in ``root``, laid out as AV-HuBERT's gen_subword.py makes them."""
    import sentencepiece

    words = "the cat sat on a mat and then ran far away".split()
    rng = np.random.default_rng(1)
    (root / "text.txt").write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(200)))
    sentencepiece.SentencePieceTrainer.Train(
        f"--input={root / 'text.txt'} --model_prefix={root / 'spm'} --model_type=unigram --vocab_size={TINY.vocab_size} "
        "--character_coverage=1.0 --bos_id=0 --pad_id=1 --eos_id=2 --unk_id=3 --minloglevel=2"
    )
    return root / "spm.model"


def tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the published names (the Base table, trimmed to TINY's layers), with
    TINY's shapes; BatchNorm statistics random too."""
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        ours = AVSRModel(TINY.avsr_config(), pretrained=False).state_dict()
    state = {}
    for key in read_table("base"):
        layer = re.search(r"\blayers\.(\d+)\.", key)
        if layer and int(layer.group(1)) >= 2:
            continue
        name = our_key(key)
        shape = (
            (104,) if key.endswith("mask_emb") else (1,) if key.endswith("_float_tensor") else tuple(ours[name].shape)
        )
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * (0.5 if "embed_tokens" in key else 0.1) + (
                1.0 if key.endswith("norm.weight") or ".bn" in key and key.endswith("weight") else 0.0
            )
    return state


def save_checkpoint(path: Path, state, cfg, spm: Path | None) -> Path:
    import sentencepiece

    ckpt = {"args": None, "cfg": cfg, "model": state, "optimizer_history": [{"num_updates": 3}], "extra_state": {}}
    mods = _fake_fairseq()
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        if spm is not None:
            processor = sentencepiece.SentencePieceProcessor()
            processor.Load(str(spm))
            pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
            dictionary = mods["fairseq.data.dictionary"].Dictionary(SPECIALS + [p for p in pieces if p not in SPECIALS])
            bpe = mods["fairseq.data.encoders.sentencepiece_bpe"].SentencepieceBPE(processor)
            ckpt["task_state"] = {"target_dictionary": dictionary, "s2s_tokenizer": bpe}
        torch.save(ckpt, path)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return path
