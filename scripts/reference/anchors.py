"""Import an anchor's own code from a checkout the user gives: never installed, never copied.

Used by the scripts that make the reference files in ``tests/data`` and by the opt-in tests that
compare our models with the anchors at full size. One concern: put a checkout on ``sys.path``,
check that its modules really come from it, say which commit it is, and build the anchor's model
from our config.

auto_avsr: a checkout of github:mpc001/auto_avsr (tag v1.0.0 = 30951b5 has the VSR, ASR and
audio-visual models; later commits dropped the audio-visual one). Its ``espnet`` package needs
only torch and numpy, so it runs in our environment.
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
    if loaded is not None and not Path(getattr(loaded, "__file__", None) or next(iter(getattr(loaded, "__path__", [""])))).resolve().is_relative_to(root):
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
        "adim": config.model_dim, "aheads": config.heads, "eunits": config.ffn_dim, "elayers": config.encoder_layers,
        "transformer_input_layer": "conv1d" if config.modalities == ("audio",) else "conv3d",
        "dropout_rate": config.dropout, "transformer_attn_dropout_rate": config.dropout,
        "transformer_encoder_attn_layer_type": "rel_mha", "macaron_style": True, "use_cnn_module": True,
        "cnn_module_kernel": config.conv_kernel, "zero_triu": False, "a_upsample_ratio": 1, "relu_type": "swish",
        "ddim": config.model_dim, "dheads": config.decoder_heads, "dunits": config.decoder_ffn_dim,
        "dlayers": config.decoder_layers, "lsm_weight": 0.1, "transformer_length_normalized_loss": False,
        "mtlalpha": 0.1, "ctc_type": "builtin", "rel_pos_type": "latest",
    }
    aux = {f"aux_{k}": v for k, v in main.items() if k not in ("ddim", "dheads")}
    aux["aux_transformer_input_layer"] = "conv1d"
    return Namespace(**main, **aux, fusion_hdim=config.fusion_hidden_dim, fusion_norm=config.fusion_norm)


def build_auto_avsr(src: str | Path, config, state: dict | None = None):
    """auto_avsr's own ``E2E`` model (``E2E`` of e2e_asr_conformer_av for audio-visual configs)
    for an ``AutoAVSRConfig``, in eval mode, with ``state`` loaded strictly when given."""
    av = config.modalities == ("audio", "video")
    mod = import_from_checkout(src, "espnet.nets.pytorch_backend.e2e_asr_conformer" + ("_av" if av else ""),
                               AUTO_AVSR_AV_MARKER if av else AUTO_AVSR_MARKER)
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
