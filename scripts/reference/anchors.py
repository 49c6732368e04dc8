"""Import an anchor's own code from a checkout the user gives: never installed, never copied.

Used by the scripts that make the reference files in ``tests/data`` and by the opt-in tests that
compare our models with the anchors at full size. One concern: put a checkout on ``sys.path``,
check that its modules really come from it, say which commit it is, and build the anchor's model
from our config.

auto_avsr: a checkout of github:mpc001/auto_avsr (tag v1.0.0 = 30951b5 has the VSR, ASR and
audio-visual models; later commits dropped the audio-visual one). Its ``espnet`` package needs
only torch and numpy, so it runs in our environment.

AV-HuBERT: a checkout of github:facebookresearch/av_hubert (258fb50) and of the fairseq it pins as a
submodule (github:facebookresearch/fairseq afc77bd, by default ``<av_hubert>/fairseq``). That
fairseq needs Python <= 3.10 (its configs are dataclass defaults that 3.11 refuses), numpy < 1.24,
omegaconf 2.0 and hydra-core 1.0, so AV-HuBERT runs in an environment of its own, for example::

    python3.10 -m venv /tmp/avh && /tmp/avh/bin/pip install "pip<24.1"
    /tmp/avh/bin/pip install torch==2.1.2 numpy==1.23.5 omegaconf==2.0.6 hydra-core==1.0.7 \
        regex sacrebleu tqdm cffi cython python_speech_features "scipy<1.12" opencv-python-headless==4.8.1.78

Nothing is installed from the checkouts: both go on ``sys.path``.
"""

from __future__ import annotations

import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from types import ModuleType


class AnchorError(Exception):
    """A checkout that is missing, incomplete, or shadowed by another copy (one-line message)."""


def _git(src: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def checkout_commit(src: Path) -> str:
    """'<tag> (<commit>)', '<commit>' or 'unknown commit' (a plain copy, not a git checkout)."""
    commit = _git(src, "rev-parse", "--short=7", "HEAD")
    tag = _git(src, "describe", "--tags", "--exact-match", "HEAD") if commit else ""
    return f"{tag} ({commit})" if tag else commit or "unknown commit"


def import_from_checkout(src: str | Path, module: str, marker: str) -> ModuleType:
    """Import ``module`` with ``src`` first on ``sys.path``; ``marker`` (a file relative to
    ``src``) must exist, and the imported module must come from ``src``, not another copy."""
    root = Path(src).expanduser().resolve()
    if not (root / marker).is_file():
        raise AnchorError(f"{root}: not a checkout with {marker}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    top = module.split(".")[0]
    loaded = sys.modules.get(top)
    if loaded is not None and not Path(
        getattr(loaded, "__file__", None) or next(iter(getattr(loaded, "__path__", [""])))
    ).resolve().is_relative_to(root):
        raise AnchorError(f"{root}: '{top}' is already imported from elsewhere ({loaded!r}); run in a fresh process")
    mod = __import__(module, fromlist=["_"])
    if not Path(mod.__file__).resolve().is_relative_to(root):
        raise AnchorError(f"{root}: '{module}' was imported from {mod.__file__}, not from the checkout")
    return mod


# ---------------------------------------------------------------------- auto_avsr
AUTO_AVSR_MARKER = "espnet/nets/pytorch_backend/e2e_asr_conformer.py"
AUTO_AVSR_AV_MARKER = "espnet/nets/pytorch_backend/e2e_asr_conformer_av.py"


def auto_avsr_source(src: str | Path) -> str:
    """'mpc001/auto_avsr <commit>' for the ``source`` field of a reference file."""
    return f"mpc001/auto_avsr {checkout_commit(Path(src))}"


def auto_avsr_args(config) -> Namespace:
    """auto_avsr's model options (configs/model/*_backbone/resnet_conformer.yaml) for an
    ``AutoAVSRConfig``; the audio-visual model's audio branch (``aux_*``) has the same sizes."""
    main = {
        "adim": config.model_dim,
        "aheads": config.heads,
        "eunits": config.ffn_dim,
        "elayers": config.encoder_layers,
        "transformer_input_layer": "conv1d" if config.modalities == ("audio",) else "conv3d",
        "dropout_rate": config.dropout,
        "transformer_attn_dropout_rate": config.dropout,
        "transformer_encoder_attn_layer_type": "rel_mha",
        "macaron_style": True,
        "use_cnn_module": True,
        "cnn_module_kernel": config.conv_kernel,
        "zero_triu": False,
        "a_upsample_ratio": 1,
        "relu_type": "swish",
        "ddim": config.model_dim,
        "dheads": config.decoder_heads,
        "dunits": config.decoder_ffn_dim,
        "dlayers": config.decoder_layers,
        "lsm_weight": 0.1,
        "transformer_length_normalized_loss": False,
        "mtlalpha": 0.1,
        "ctc_type": "builtin",
        "rel_pos_type": "latest",
    }
    aux = {f"aux_{k}": v for k, v in main.items() if k not in ("ddim", "dheads")}
    aux["aux_transformer_input_layer"] = "conv1d"
    return Namespace(**main, **aux, fusion_hdim=config.fusion_hidden_dim, fusion_norm=config.fusion_norm)


def build_auto_avsr(src: str | Path, config, state: dict | None = None):
    """auto_avsr's own ``E2E`` model (``E2E`` of e2e_asr_conformer_av for audio-visual configs)
    for an ``AutoAVSRConfig``, in eval mode, with ``state`` loaded strictly when given."""
    av = config.modalities == ("audio", "video")
    mod = import_from_checkout(
        src,
        "espnet.nets.pytorch_backend.e2e_asr_conformer" + ("_av" if av else ""),
        AUTO_AVSR_AV_MARKER if av else AUTO_AVSR_MARKER,
    )
    model = mod.E2E(config.vocab_size, auto_avsr_args(config))
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model.eval()


def auto_avsr_encode(model, video, audio):
    """auto_avsr's encoder output (1, T, D) for one utterance, as its lightning modules run it:
    ``video`` (T, 88, 88) normalised frames, ``audio`` (T * 640,) waveform; either may be None
    for a single-modality model. The waveform gets auto_avsr's per-utterance layer norm
    (datamodule/transforms.py, eps 1e-8)."""
    import torch

    if audio is not None:
        audio = torch.nn.functional.layer_norm(audio[:, None], (audio.numel(), 1), eps=1e-8)[None]
    if video is not None:
        video = video[None, :, None]
    if hasattr(model, "aux_encoder"):  # lightning_av.py's test_step
        video_feat, _ = model.encoder(video, None)
        audio_feat, _ = model.aux_encoder(audio, None)
        return model.fusion(torch.cat((video_feat, audio_feat), dim=-1))
    encoded, _ = model.encoder(video if video is not None else audio, None)
    return encoded


def auto_avsr_outputs(model, video, audio, tokens):
    """(encoder output (1, T, D), CTC log-probs (1, T, V), decoder logits (1, L, V)) of
    auto_avsr's own modules for one utterance and a token prefix ``tokens`` (1, L) that starts
    with <sos>: the decoder sees a causal mask and the whole encoder output."""
    from espnet.nets.pytorch_backend.transformer.mask import target_mask

    encoded = auto_avsr_encode(model, video, audio)
    log_probs = model.ctc.log_softmax(encoded)
    logits, _ = model.decoder(tokens, target_mask(tokens, -1), encoded, None)
    return encoded, log_probs, logits


def auto_avsr_beam_search(src: str | Path, model, *, beam: int, ctc_weight: float, length_bonus: float = 0.0):
    """auto_avsr's own ``BatchBeamSearch`` over ``model`` (an ``E2E`` from ``build_auto_avsr``),
    set up as its ``get_beam_search_decoder`` (lightning.py) does: the decoder weighted
    1 - ``ctc_weight``, ESPnet's CTC prefix scorer weighted ``ctc_weight``, a length bonus
    weighted ``length_bonus`` (auto_avsr's "penalty"), pre-beam on the decoder's scores unless
    the search is CTC-only. Call it on one encoder output (T, D), with ``maxlenratio=-L`` for at
    most L tokens (auto_avsr: 0, the encoder frames, with end detection)."""
    search = import_from_checkout(src, "espnet.nets.batch_beam_search", AUTO_AVSR_MARKER)
    ctc = import_from_checkout(src, "espnet.nets.scorers.ctc", AUTO_AVSR_MARKER)
    bonus = import_from_checkout(src, "espnet.nets.scorers.length_bonus", AUTO_AVSR_MARKER)
    vocab = model.odim
    return search.BatchBeamSearch(
        scorers={
            "decoder": model.decoder,
            "ctc": ctc.CTCPrefixScorer(model.ctc, model.eos),
            "length_bonus": bonus.LengthBonus(vocab),
            "lm": None,
        },
        weights={"decoder": 1.0 - ctc_weight, "ctc": ctc_weight, "length_bonus": length_bonus, "lm": 0.0},
        beam_size=beam,
        vocab_size=vocab,
        sos=model.sos,
        eos=model.eos,
        pre_beam_score_key=None if ctc_weight == 1.0 else "decoder",
    ).eval()


# ---------------------------------------------------------------------- AV-HuBERT
FAIRSEQ_MARKER = "fairseq/models/wav2vec/wav2vec2.py"
AV_HUBERT_MARKER = "avhubert/hubert_asr.py"


def av_hubert_source(av_hubert_src: str | Path, fairseq_src: str | Path | None = None) -> str:
    """'facebookresearch/av_hubert <commit>, fairseq <commit>' for a reference file."""
    fairseq = Path(fairseq_src) if fairseq_src else Path(av_hubert_src) / "fairseq"
    return f"facebookresearch/av_hubert {checkout_commit(Path(av_hubert_src))}, fairseq {checkout_commit(fairseq)}"


def use_av_hubert(av_hubert_src: str | Path, fairseq_src: str | Path | None = None) -> ModuleType:
    """Import fairseq (default: the checkout's submodule) and the ``avhubert`` package."""
    import_from_checkout(fairseq_src or Path(av_hubert_src) / "fairseq", "fairseq", FAIRSEQ_MARKER)
    argv = sys.argv
    sys.argv = [
        argv[0] if argv else "anchors",
        "--",
    ]  # with one argv entry its modules import their siblings as top-level modules
    try:
        return import_from_checkout(av_hubert_src, "avhubert", AV_HUBERT_MARKER)
    finally:
        sys.argv = argv


def build_av_hubert(sizes: dict, vocab_size: int):
    """AV-HuBERT's own fine-tuned seq2seq model (``AVHubertSeq2Seq``: ``HubertEncoderWrapper``
    around ``AVHubertModel`` with the pre-training heads removed, and its ``TransformerDecoder``)
    in eval mode, with the published architecture options and the widths in ``sizes`` (fairseq's
    option names: encoder_layers, encoder_embed_dim, ..., decoder_attention_heads). Its target
    dictionary has fairseq's four specials and ``vocab_size`` symbols in all. Call
    ``use_av_hubert`` first."""
    from avhubert.decoder import TransformerDecoder
    from avhubert.hubert import AVHubertConfig, AVHubertModel
    from avhubert.hubert_asr import AVHubertSeq2Seq, AVHubertSeq2SeqConfig, Embedding, HubertEncoderWrapper
    from avhubert.hubert_pretraining import AVHubertPretrainingConfig
    from fairseq.data.dictionary import Dictionary
    from omegaconf import OmegaConf

    task = OmegaConf.structured(AVHubertPretrainingConfig)
    task.data, task.label_rate, task.is_s2s, task.fine_tuning, task.normalize = "", -1, True, True, True
    task.stack_order_audio, task.modalities = 4, ["video", "audio"]
    encoder_keys = [k for k in sizes if k.startswith("encoder_") or k.startswith("conv_pos")]
    encoder = OmegaConf.merge(
        OmegaConf.structured(AVHubertConfig),
        {
            "layer_norm_first": True,
            "audio_feat_dim": 104,
            "modality_fuse": "concat",
            "final_dim": 256,
            "untie_final_proj": True,
            "resnet_relu_type": "prelu",
            "sub_encoder_layers": 0,
            "activation_fn": "gelu",
            "masking_type": "input",
            **{k: sizes[k] for k in encoder_keys},
        },
    )
    seq2seq = OmegaConf.merge(
        OmegaConf.structured(AVHubertSeq2SeqConfig),
        {
            "w2v_path": "",
            "share_decoder_input_output_embed": True,
            "decoder_normalize_before": True,
            "no_scale_embedding": True,
            "decoder_learned_pos": False,
            "max_target_positions": 2048,
            **{k: v for k, v in sizes.items() if k.startswith("decoder_")},
        },
    )
    root = OmegaConf.create({"task": task, "model": encoder, "seq2seq": seq2seq})
    dictionary = Dictionary()
    for i in range(vocab_size - len(dictionary)):
        dictionary.add_symbol(f"u{i}")
    w2v = AVHubertModel(root.model, root.task, [dictionary])
    w2v.remove_pretraining_modules()
    decoder = TransformerDecoder(
        root.seq2seq, dictionary, Embedding(vocab_size, sizes["decoder_embed_dim"], dictionary.pad())
    )
    return AVHubertSeq2Seq(HubertEncoderWrapper(w2v), decoder, dictionary, root.seq2seq).eval()
