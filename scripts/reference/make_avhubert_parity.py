"""Make tests/data/avhubert_parity.json with AV-HuBERT's own code (or a full-size reference).

    /tmp/avh/bin/python scripts/reference/make_avhubert_parity.py --av-hubert-src /path/to/av_hubert \
        [--fairseq-src /path/to/fairseq] [--size tiny|base|large] [--out FILE]

Needs: a checkout of github:facebookresearch/av_hubert (258fb50) and of github:facebookresearch/fairseq
at the commit it pins as a submodule (afc77bd; default ``<av_hubert>/fairseq``), and a Python that
can import that fairseq: Python 3.10 or older with torch, numpy < 1.24, omegaconf 2.0, hydra-core
1.0, python_speech_features, scipy and opencv (the exact commands are in
``scripts/reference/anchors.py``). It does not import avsr, and installs nothing: both checkouts
go on ``sys.path``.

It builds AV-HuBERT's fine-tuned seq2seq model (``AVHubertSeq2Seq``) at the widths of ``--size``
(``SIZES`` in ``tests/avhubert_helpers.py``; tiny by default, the parity file's), fills it with
``reference_state`` of its own state's names and shapes, and runs it in float32 on
``reference_inputs``: int16 waveforms and uint8 96x96 crops written to a temporary folder (wav,
lossless FFV1 video) and read back through AV-HuBERT's own ``AVHubertDataset`` (logfbank,
stacking, per-frame layer norm, centre crop, normalisation, padding). It writes the stacked audio
features, the encoder output (valid frames) and the decoder logits (fairseq ids) for audio-visual
('av'), audio-only ('a') and video-only ('v') input; ``tests/avsr/models/pretrained/test_avhubert.py`` compares ours.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "scripts" / "reference"), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import anchors  # noqa: E402
from avhubert_helpers import LENGTHS, PARITY_FILE, PREV_TOKENS, SEED, SIZES, VOCAB, reference_inputs, reference_state  # noqa: E402

MODALITY_INPUTS = {"av": ("audio", "video"), "a": ("audio",), "v": ("video",)}


def rounded(t: torch.Tensor) -> list:
    return np.round(t.double().numpy(), 6).tolist()


def dataset_batch(folder: Path, dictionary, lengths: list[int]) -> dict:
    """AV-HuBERT's collated batch of ``reference_inputs`` (written to ``folder`` and read back
    by its own dataset class, as at inference: no augmentation, audio normalised)."""
    import cv2
    from avhubert.hubert_dataset import AVHubertDataset
    from avhubert.hubert_pretraining import LabelEncoder
    from scipy.io import wavfile

    waves, videos = reference_inputs(lengths)
    rows = [str(folder)]
    for i, (wave, video) in enumerate(zip(waves, videos)):
        wavfile.write(str(folder / f"{i}.wav"), 16000, wave)
        writer = cv2.VideoWriter(str(folder / f"{i}.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 25, (96, 96), True)
        for frame in video:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        writer.release()
        rows.append(f"utt{i}\t{folder / f'{i}.avi'}\t{folder / f'{i}.wav'}\t{len(video)}\t{len(wave)}")
    (folder / "test.tsv").write_text("\n".join(rows) + "\n")
    (folder / "test.wrd").write_text("u1 u2\n" * len(lengths))
    dataset = AVHubertDataset(
        str(folder / "test.tsv"),
        sample_rate=25,
        label_paths=[str(folder / "test.wrd")],
        label_rates=[-1],
        pad_list=[dictionary.pad()],
        eos_list=[dictionary.eos()],
        label_processors=[LabelEncoder(dictionary)],
        pad_audio=True,
        normalize=True,
        store_labels=True,
        single_target=True,
        stack_order_audio=4,
        skip_verify=True,
        image_mean=0.421,
        image_std=0.165,
        image_crop_size=88,
        image_aug=False,
        modalities=["video", "audio"],
        shuffle=False,
    )
    return dataset.collater([dataset[i] for i in range(len(lengths))])


@torch.no_grad()
def reference(model, lengths: list[int]) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        batch = dataset_batch(Path(tmp), model.decoder.dictionary, lengths)
    source, padding_mask = batch["net_input"]["source"], batch["net_input"]["padding_mask"]
    out["audio_features"] = [rounded(source["audio"][i, :, :n].T) for i, n in enumerate(lengths)]
    prev = torch.tensor(PREV_TOKENS)
    for name, keep in MODALITY_INPUTS.items():
        encoded = model.encoder(
            source={k: v if k in keep else None for k, v in source.items()}, padding_mask=padding_mask
        )
        frames = encoded["encoder_out"].transpose(0, 1)  # T x B x C -> B x T x C
        out[f"encoder_{name}"] = [rounded(frames[i, :n]) for i, n in enumerate(lengths)]
        logits, _ = model.decoder(prev_output_tokens=prev, encoder_out=encoded)
        out[f"logits_{name}"] = rounded(logits)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--av-hubert-src", type=Path, required=True, help="a checkout of facebookresearch/av_hubert (258fb50)"
    )
    parser.add_argument(
        "--fairseq-src", type=Path, help="a checkout of facebookresearch/fairseq afc77bd (default: <av_hubert>/fairseq)"
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--out", type=Path, default=PARITY_FILE)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        anchors.use_av_hubert(args.av_hubert_src, args.fairseq_src)
    except anchors.AnchorError as exc:
        parser.error(str(exc))
    model = anchors.build_av_hubert(SIZES[args.size], VOCAB[args.size])
    model.load_state_dict(reference_state({k: tuple(v.shape) for k, v in model.state_dict().items()}), strict=True)
    about = (
        f"AV-HuBERT's own modules ({anchors.av_hubert_source(args.av_hubert_src, args.fairseq_src)}) at size {args.size!r} "
        f"on reference_state (seed {SEED}) and reference_inputs of tests/avhubert_helpers.py, read through its AVHubertDataset; "
        "encoder outputs (valid frames) and decoder logits (fairseq ids); made by scripts/reference/make_avhubert_parity.py"
    )
    out = {
        "about": about,
        "size": args.size,
        "sizes": SIZES[args.size],
        "vocab_size": VOCAB[args.size],
        "lengths": LENGTHS,
        "prev_tokens": PREV_TOKENS,
        **reference(model, LENGTHS),
    }
    args.out.write_text(json.dumps(out) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
