"""Decoding speed: batched beam search, the search at auto_avsr's scale, and avsr-decode end to end.

Three measurements, all in one invocation so that ratios mean something on a shared machine:

1. ``batched``: 32 test utterances decoded with the hybrid CTC/attention beam search (beam 10,
   audio-visual) as one batch versus one at a time (the baseline). The hypotheses must be the
   same (tokens identical, scores within 1e-3); reports seconds, utterances per second and the
   speed-up, for the whole recognizer (encoder + search) and the search alone.
2. ``auto_avsr_scale``: the search alone at auto_avsr's size and settings: a 6-layer transformer
   decoder of width 768 (12 heads, FFN 3072), 5,049 output units, beam 40, CTC weight 0.1, one
   10-second clip (250 encoder frames) whose CTC posteriors spell a 42-token transcript. The
   decoder weights are random (no trained model of that size exists here), so the search is capped
   at 42 output tokens: it runs the steps a real 42-token transcript takes. Reference: auto_avsr's ESPnet-derived
   search takes 39 s on 2 CPU cores for such a clip (../shared/notes). Also batched: 8 clips.
3. ``avsr_decode``: the real-time factor of avsr-decode's chain on a 60-second video made by
   joining one held-out speaker's clips, end to end and per stage (media, face, crop, model,
   search, align), with the beam search and with greedy CTC; WER against the joined transcripts.

Needs a trained model and its corpus (``bash scripts/demo.sh`` makes both):

    python benchmarks/decode.py                       # runs/demo/{train/model,prepared,corpus}
    python benchmarks/decode.py --model DIR --manifest TEST.tsv --corpus CORPUS_ROOT
    python benchmarks/decode.py --quick               # 8 utterances, 20 s video, smaller search

Prints JSON (also written to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsr.decoding.beam_search import BeamSearchConfig, beam_search
from avsr.decoding.model_decoder import ModelStepDecoder
from avsr.decoding.recognizer import DecodeOptions, Recognizer
from avsr.decoding.stages import StageTimes
from avsr.decoding.transcribe import FaceChain, load_input, segmenting_for, transcribe_files
from avsr.eval.bench import load_utterances
from avsr.eval.wer import error_rates
from avsr.media import read_video
from avsr.media.writer import write_mp4
from avsr.models.avsr_model import AVSRModel
from avsr.models.config import AudioConfig, AVSRConfig, DecoderConfig, EncoderConfig
from avsr.training.media import read_mouth_video, read_wav

ROOT = Path(__file__).resolve().parents[1]
AUTO_AVSR_SEARCH_SECONDS = 39.0  # beam 40, CTC weight 0.1, 10 s clip, 42 tokens, 2 CPU cores


# ---------------------------------------------------------------------------------------- 1. batched
def same_hypotheses(a: list, b: list, tolerance: float = 1e-3) -> tuple[bool, float]:
    """(all token sequences equal, largest score difference)."""
    equal = all(x.tokens == y.tokens for x, y in zip(a, b))
    gap = max(abs(x.score - y.score) for x, y in zip(a, b))
    return equal and gap <= tolerance, gap


def bench_batched(recognizer: Recognizer, manifest: Path, count: int, beam: int) -> dict[str, Any]:
    utterances = load_utterances(manifest, count)
    audios = [read_wav(u.audio_path) for u in utterances]
    videos = [read_mouth_video(u.video_path) for u in utterances]
    options = DecodeOptions(decoder="beam", beam=beam)
    recognizer.transcribe(audios[:1], videos[:1], options)  # warm-up

    alone_times = StageTimes()
    start = time.perf_counter()
    alone = [recognizer.transcribe([a], [v], options, times=alone_times)[0] for a, v in zip(audios, videos)]
    alone_seconds = time.perf_counter() - start

    batch_times = StageTimes()
    start = time.perf_counter()
    batched = recognizer.transcribe(audios, videos, options, times=batch_times)
    batched_seconds = time.perf_counter() - start

    same, gap = same_hypotheses(alone, batched)
    refs = [u.row.text for u in utterances]
    rates = error_rates(refs, [t.text for t in batched], recognizer.tokenizer.normalize)
    media_seconds = sum(u.row.frames for u in utterances) / 25
    return {
        "utterances": len(utterances),
        "media_seconds": round(media_seconds, 1),
        "beam": beam,
        "modality": "av",
        "one_at_a_time": {"seconds": round(alone_seconds, 3), "search_seconds": round(alone_times.seconds["search"], 3),
                          "utterances_per_s": round(len(utterances) / alone_seconds, 2)},
        "batched": {"seconds": round(batched_seconds, 3), "search_seconds": round(batch_times.seconds["search"], 3),
                    "utterances_per_s": round(len(utterances) / batched_seconds, 2)},
        "speedup": round(alone_seconds / batched_seconds, 2),
        "search_speedup": round(alone_times.seconds["search"] / batch_times.seconds["search"], 2),
        "same_hypotheses": same,
        "max_score_difference": gap,
        "wer_percent": round(rates.wer, 2),
        "target": "batched >= 5x faster than one at a time, same hypotheses",
        "met": bool(same and alone_seconds / batched_seconds >= 5.0),
    }


# ------------------------------------------------------------------------------ 2. auto_avsr's scale
def auto_avsr_scale_decoder(vocab: int, seed: int = 0) -> AVSRModel:
    """A model whose decoder and CTC head have auto_avsr's sizes (the encoder is not used here)."""
    torch.manual_seed(seed)
    enc = EncoderConfig(kind="transformer", layers=1, model_dim=768, heads=12, ffn_dim=3072, dropout=0.0)
    config = AVSRConfig(
        vocab_size=vocab,
        audio=AudioConfig(kind="fbank"),
        visual=None,
        audio_encoder=enc,
        encoder=enc,
        decoder=DecoderConfig(layers=6, heads=12, ffn_dim=3072, dropout=0.0, max_len=1024),
    )
    return AVSRModel(config).eval()


def spelled_posteriors(transcripts: list[list[int]], frames: int, vocab: int, blank: int, seed: int) -> torch.Tensor:
    """CTC log-posteriors (B, T, V) that spell each transcript: each token's frames put 0.7 on it,
    the frames between tokens 0.7 on blank; the rest is spread at random over all units."""
    g = torch.Generator().manual_seed(seed)
    out = torch.rand(len(transcripts), frames, vocab, generator=g)
    out = 0.3 * out / out.sum(-1, keepdim=True)
    for b, tokens in enumerate(transcripts):
        edges = np.linspace(0, frames, len(tokens) + 1).astype(int)
        out[b, :, blank] += 0.7
        for token, lo, hi in zip(tokens, edges[:-1], edges[1:]):
            mid = (lo + hi) // 2
            out[b, mid : mid + 2, blank] -= 0.7
            out[b, mid : mid + 2, token] += 0.7
    return out.log()


def bench_auto_avsr_scale(clips: int, beam: int, tokens: int, frames: int, vocab: int = 5049) -> dict[str, Any]:
    model = auto_avsr_scale_decoder(vocab)
    blank, eos = model.config.blank_id, model.config.eos_id
    g = torch.Generator().manual_seed(1)
    transcripts = [torch.randint(1, vocab - 1, (tokens,), generator=g).tolist() for _ in range(clips)]
    log_probs = spelled_posteriors(transcripts, frames, vocab, blank, seed=2)
    encoded = 0.1 * torch.randn(clips, frames, 768, generator=g)
    lengths = torch.full((clips,), frames, dtype=torch.int64)
    # Random decoder weights know no end of sentence: cap the search at the transcript's length so
    # it runs the steps a real 42-token hypothesis takes (the last step forces <eos>).
    config = BeamSearchConfig(beam=beam, ctc_weight=0.1, max_length=tokens)

    def search(rows: slice) -> tuple[list, float]:
        n = rows.stop - rows.start
        with torch.inference_mode():
            decoder = ModelStepDecoder(model, encoded[rows], lengths[rows], frames)
            start = time.perf_counter()
            nbest = beam_search(log_probs[rows], lengths[rows], decoder, config, blank, eos)
            return nbest, (time.perf_counter() - start) / n

    search(slice(0, 1))  # warm-up
    one, one_seconds = search(slice(0, 1))
    many, many_seconds_each = search(slice(0, clips))
    out_tokens = len(one[0][0].tokens) if one and one[0] else 0
    search_params = sum(p.numel() for m in (model.decoder, model.ctc_head) for p in m.parameters())
    return {
        "decoder": "6 layers, width 768, 12 heads, FFN 3072 (random weights)",
        "decoder_and_ctc_head_parameters_millions": round(search_params / 1e6, 1),
        "vocab": vocab,
        "beam": beam,
        "ctc_weight": 0.1,
        "clip_seconds": frames / 25,
        "transcript_tokens": tokens,
        "output_tokens": out_tokens,
        "one_clip_search_seconds": round(one_seconds, 3),
        "one_clip_rtf": round(one_seconds / (frames / 25), 4),
        f"batched_{clips}_clips_search_seconds_per_clip": round(many_seconds_each, 3),
        "auto_avsr_search_seconds": AUTO_AVSR_SEARCH_SECONDS,
        "times_faster_than_auto_avsr": round(AUTO_AVSR_SEARCH_SECONDS / one_seconds, 1),
        "target": "at least 10x less than auto_avsr's 39 s on the CPU",
        "met": bool(AUTO_AVSR_SEARCH_SECONDS / one_seconds >= 10.0) if tokens == 42 and beam == 40 else None,
    }


# ------------------------------------------------------------------------------------ 3. avsr-decode
def join_clips(corpus: Path, seconds: float, out: Path) -> tuple[Path, str, float]:
    """One held-out speaker's clips joined into a video of at least ``seconds`` (mp4 with audio);
    returns (path, joined transcript, duration)."""
    held_out = [line.strip() for line in (corpus / "test.txt").read_text().splitlines() if line.strip()]
    if not held_out:
        raise SystemExit(f"{corpus}/test.txt lists no clips")
    speaker = held_out[0].split("/")[0]
    frames, audio, words, total = [], [], [], 0.0
    for item in (i for i in held_out if i.startswith(speaker + "/")):
        clip = read_video(corpus / "main" / f"{item}.mp4")
        frames.append(clip.frames)
        audio.append(clip.audio)
        text = (corpus / "main" / f"{item}.txt").read_text().splitlines()[0]
        words.append(text.split(":", 1)[1].strip())
        total += clip.duration
        if total >= seconds:
            break
    write_mp4(out, np.concatenate(frames), np.concatenate(audio))
    return out, " ".join(words), total


def bench_avsr_decode(recognizer: Recognizer, video: Path, truth: str, seconds: float, beam: int) -> dict[str, Any]:
    out: dict[str, Any] = {"video_seconds": round(seconds, 1), "modality": "av"}
    for decoder in ("beam", "greedy"):
        times = StageTimes()
        chain = FaceChain()
        start = time.perf_counter()
        loaded = load_input(video, "av", lambda: chain, times)
        results = transcribe_files(recognizer, [loaded], "av", DecodeOptions(decoder=decoder, beam=beam), segmenting_for(recognizer), times=times)
        wall = time.perf_counter() - start
        rates = error_rates([truth], [results[0].text], recognizer.tokenizer.normalize)
        out[decoder] = {
            "stages": times.report(seconds),
            "end_to_end_seconds": round(wall, 3),
            "end_to_end_rtf": round(wall / seconds, 4),
            "segments": len(results[0].segments),
            "wer_percent": round(rates.wer, 2),
            "notes": results[0].notes,
        }
    out["target"] = "real-time factor below 1 on 2 CPU cores (faster than real time)"
    out["met"] = bool(out["beam"]["end_to_end_rtf"] < 1.0)
    return out


# ------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "runs/demo/train/model")
    parser.add_argument("--manifest", type=Path, default=ROOT / "runs/demo/prepared/test.tsv")
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs/demo/corpus", help="the synthetic corpus root (for the 60 s video)")
    parser.add_argument("--quick", action="store_true", help="8 utterances, a 20 s video, the auto_avsr-scale search on 12 tokens")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    for path, what in ((args.model / "model.yaml", "model"), (args.manifest, "test manifest"), (args.corpus / "test.txt", "corpus")):
        if not path.is_file():
            print(f"decode benchmark: no {what} at {path}: run 'bash scripts/demo.sh' first or pass its path", file=sys.stderr)
            return 2
    torch.manual_seed(0)
    recognizer = Recognizer.load(args.model)
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "model": str(args.model),
    }
    report["batched"] = bench_batched(recognizer, args.manifest, 8 if args.quick else 32, beam=10)
    report["auto_avsr_scale"] = bench_auto_avsr_scale(
        clips=2 if args.quick else 8, beam=40, tokens=12 if args.quick else 42, frames=75 if args.quick else 250
    )
    with tempfile.TemporaryDirectory() as tmp:
        video, truth, seconds = join_clips(args.corpus, 20.0 if args.quick else 60.0, Path(tmp) / "joined.mp4")
        report["avsr_decode"] = bench_avsr_decode(recognizer, video, truth, seconds, beam=10)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
