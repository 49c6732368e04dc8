"""WER benchmarking under noise: every modality x noise kind x SNR, on one or more test manifests,
with clean or deliberately corrupted video.

Noise is mixed deterministically: utterance ``i`` always gets the same stretch of the same noise
(seeded by ``(seed, i, kind)``), scaled to each SNR, so the rows of the table differ only in the
SNR. Babble is a cyclic track of many utterances talking at once, built from other utterances of
the corpus (the first test manifest unless another one is given). Video-only decoding does not
see the audio, so it is decoded once and reported for every condition.

Video corruptions (``blur``, ``occlusion``, ``frozen``, ``wrong_face``, ``noise``: the functions of
`avsr.training.augment`) are applied to the test clips' mouth crops, seeded per (corruption,
manifest, utterance); ``wrong_face`` shows another utterance of the same manifest. Audio-only
decoding does not see the video, so it is decoded once per manifest. Several manifests (e.g. test
speakers never seen in training, and seen ones) are each scored on their own, labelled by their
file's stem. With one manifest and no corruption the outputs are exactly those of a plain run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avsr.data.manifest import ManifestError, ManifestRow, read_manifest
from avsr.data.wer import error_rates
from avsr.decoding.reading import MODALITY_INPUTS
from avsr.decoding.recognizer import DecodeOptions, Recognizer
from avsr.media.atomic import atomic_path
from avsr.media.constants import AUDIO_RATE
from avsr.training import augment
from avsr.training.batching import make_batches, rng_for
from avsr.training.media import read_mouth_video, read_wav

NOISE_KINDS = ("babble", "white")


class BenchError(ValueError):
    """A benchmark that cannot run as asked; the message is one line."""


#: ``--video-corruption`` values: clean video, or one of the training corruptions.
VIDEO_CONDITIONS = ("none", *augment.VIDEO_CORRUPTIONS)


@dataclass(frozen=True)
class Condition:
    modality: str
    noise: str | None  # None: clean
    snr_db: float | None
    video_corruption: str = "none"

    @property
    def name(self) -> str:
        base = (
            f"{self.modality}_clean" if self.noise is None else f"{self.modality}_{self.noise}_{_snr_text(self.snr_db)}"
        )
        return base if self.video_corruption == "none" else f"{base}_{self.video_corruption}"


@dataclass
class BenchConfig:
    manifests: list[Path]
    """Test manifests, each scored on its own (rows labelled by `manifest_labels`)."""
    modalities: list[str] = field(default_factory=lambda: ["a", "v", "av"])
    noises: list[str] = field(default_factory=lambda: ["babble"])
    snrs: list[float | None] = field(default_factory=lambda: [None, 20.0, 10.0, 5.0, 0.0, -5.0])
    """SNRs in dB; ``None`` is the clean condition."""
    options: DecodeOptions = field(default_factory=DecodeOptions)
    babble_manifest: Path | None = None
    babble_utterances: int = 20
    babble_seconds: float = 120.0
    max_frames_per_batch: int = 3000
    max_batch_size: int = 32
    limit: int | None = None
    """Only the first N utterances of each manifest."""
    seed: int = 0
    video_corruptions: list[str] = field(default_factory=lambda: ["none"])
    """Video conditions: ``none`` (the clips as they are) and/or corruptions (`VIDEO_CONDITIONS`)."""

    def __post_init__(self) -> None:
        self.manifests = [Path(m) for m in self.manifests]
        if not self.manifests:
            raise BenchError("no manifest given")
        for kind in self.video_corruptions:
            if kind not in VIDEO_CONDITIONS:
                raise BenchError(f"unknown video corruption {kind!r} (expected {', '.join(VIDEO_CONDITIONS)})")
        if not self.video_corruptions:
            raise BenchError("no video corruption given (use none for the clips as they are)")
        self.video_corruptions = list(dict.fromkeys(self.video_corruptions))
        manifest_labels(self.manifests)  # distinct labels, or a one-line error
        for m in self.modalities:
            if m not in MODALITY_INPUTS:
                raise BenchError(f"unknown modality {m!r} (expected one of {', '.join(MODALITY_INPUTS)})")
        for kind in self.noises:
            if kind not in NOISE_KINDS:
                raise BenchError(f"unknown noise {kind!r} (expected {', '.join(NOISE_KINDS)})")
        if not self.modalities:
            raise BenchError("no modality given")

    @property
    def manifest(self) -> Path:
        """The first manifest (the only one of a plain run)."""
        return self.manifests[0]

    @property
    def extended(self) -> bool:
        """More than one manifest or a video corruption: the table gets manifest/video columns."""
        return len(self.manifests) > 1 or self.video_corruptions != ["none"]


def manifest_labels(manifests: Sequence[Path]) -> list[str]:
    """Row labels of the manifests: their stems (``test``, ``test_seen``), or ``folder/stem`` where
    two stems are the same; two paths that cannot be told apart so are an error."""
    stems = [Path(m).stem for m in manifests]
    labels = [s if stems.count(s) == 1 else f"{Path(m).parent.name}/{s}" for m, s in zip(manifests, stems)]
    for label in labels:
        if labels.count(label) > 1:
            raise BenchError(f"two manifests would both be labelled {label!r}: give each once, from distinct folders")
    return labels


@dataclass
class ConditionResult:
    modality: str
    noise: str
    snr_db: float | None
    wer: float
    cer: float
    words: int
    word_errors: int
    chars: int
    char_errors: int
    utterances: int
    decode_seconds: float
    audio_seconds: float
    manifest: str = ""
    """The manifest's label (`manifest_labels`)."""
    video_corruption: str = "none"

    @property
    def rtf(self) -> float:
        return self.decode_seconds / max(self.audio_seconds, 1e-9)


@dataclass
class Utterance:
    row: ManifestRow
    audio_path: Path
    video_path: Path


def parse_snrs(text: str) -> list[float | None]:
    """``"clean,20,10,0,-5"`` -> [None, 20.0, 10.0, 0.0, -5.0]."""
    out: list[float | None] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower() == "clean":
            out.append(None)
            continue
        try:
            value = float(part)
        except ValueError:
            raise BenchError(f"SNR {part!r} is neither 'clean' nor a number of dB") from None
        if not math.isfinite(value):
            raise BenchError(f"SNR {part!r} must be finite")
        out.append(value)
    if not out:
        raise BenchError("no SNR given")
    return list(dict.fromkeys(out))


def _snr_text(snr: float | None) -> str:
    if snr is None:
        return "clean"
    return f"{snr:g}dB"


def load_utterances(manifest: Path, limit: int | None) -> list[Utterance]:
    if not manifest.is_file():
        raise BenchError(f"{manifest}: manifest not found")
    try:
        rows = read_manifest(manifest)
    except ManifestError as exc:
        raise BenchError(str(exc)) from None
    base = manifest.parent.resolve()
    utterances = [Utterance(r, base / r.audio, base / r.video) for r in rows[: limit or None]]
    if not utterances:
        raise BenchError(f"{manifest}: no utterances")
    return utterances


def build_babble(utterances: Sequence[Utterance], config: BenchConfig) -> np.ndarray:
    rng = rng_for(config.seed, "babble")
    return augment.make_babble_bank(
        lambda i: read_wav(utterances[i].audio_path),
        len(utterances),
        [u.row.samples for u in utterances],
        int(config.babble_seconds * AUDIO_RATE),
        config.babble_utterances,
        rng,
    )


def noise_for(index: int, kind: str, num_samples: int, babble: np.ndarray | None, seed: int) -> np.ndarray:
    """The noise utterance ``index`` gets for ``kind``: the same at every SNR."""
    rng = rng_for(seed, "noise", kind, index)
    if kind == "babble":
        assert babble is not None
        return augment.cyclic_slice(babble, num_samples, rng)
    return augment.white_noise(num_samples, rng)


def conditions_of(config: BenchConfig) -> list[Condition]:
    """The conditions decoded for each manifest: for every video condition, every modality that
    sees the video; audio-only once (with ``none``), whatever the video corruptions asked for."""
    out: list[Condition] = []
    for corruption in config.video_corruptions:
        for modality in config.modalities:
            inputs = MODALITY_INPUTS[modality]
            if "video" not in inputs and corruption != config.video_corruptions[0]:
                continue
            kind_of_video = corruption if "video" in inputs else "none"
            if "audio" not in inputs:
                out.append(Condition(modality, None, None, kind_of_video))
                continue
            if None in config.snrs:
                out.append(Condition(modality, None, None, kind_of_video))
            for kind in config.noises:
                out += [Condition(modality, kind, snr, kind_of_video) for snr in config.snrs if snr is not None]
    return out


def corrupted_video(
    video: dict[int, np.ndarray], index: int, kept: Sequence[int], kind: str, label: str, seed: int
) -> np.ndarray:
    """Utterance ``index``'s mouth crops under the video condition ``kind``: the same on every run
    (seeded by corruption, manifest label and utterance); ``wrong_face`` shows another of ``kept``."""
    if kind == "none":
        return video[index]
    rng = rng_for(seed, "video_corruption", kind, label, index)
    donor = None
    if kind == "wrong_face":
        others = [j for j in kept if j != index]
        if not others:
            raise BenchError(f"{label}: the wrong_face corruption needs at least two readable utterances")
        donor = video[others[int(rng.integers(0, len(others)))]]
    return augment.corrupt_video(video[index], kind, rng, donor)


def run_bench(
    recognizer: Recognizer,
    config: BenchConfig,
    *,
    on_batch: Callable[[int], None] | None = None,
    skipped: list[str] | None = None,
) -> tuple[list[ConditionResult], dict[str, list[tuple[str, str, str]]]]:
    """Decode every condition of every manifest; returns the results and, per condition name
    (prefixed ``<label>_`` when there are several manifests), (id, ref, hyp) rows.

    Unreadable utterances are skipped (named in ``skipped``) and left out of every condition, so
    all rows of a manifest score the same utterances.
    """
    for m in config.modalities:
        recognizer.check_modality(m)
    labels = manifest_labels(config.manifests)
    sets = [load_utterances(manifest, config.limit) for manifest in config.manifests]
    needs_audio = any("audio" in MODALITY_INPUTS[m] for m in config.modalities)
    babble = None
    if needs_audio and "babble" in config.noises and any(s is not None for s in config.snrs):
        source = load_utterances(config.babble_manifest, None) if config.babble_manifest else sets[0]
        babble = build_babble(source, config)
    results: list[ConditionResult] = []
    transcripts: dict[str, list[tuple[str, str, str]]] = {}
    for manifest, label, utterances in zip(config.manifests, labels, sets):
        prefix = f"{label}_" if len(config.manifests) > 1 else ""
        mine, texts = _bench_manifest(recognizer, config, manifest, label, utterances, babble, on_batch, skipped)
        results += mine
        transcripts.update({prefix + name: rows for name, rows in texts.items()})
    return results, transcripts


def _bench_manifest(
    recognizer: Recognizer,
    config: BenchConfig,
    manifest: Path,
    label: str,
    utterances: Sequence[Utterance],
    babble: np.ndarray | None,
    on_batch: Callable[[int], None] | None,
    skipped: list[str] | None,
) -> tuple[list[ConditionResult], dict[str, list[tuple[str, str, str]]]]:
    needs_video = any("video" in MODALITY_INPUTS[m] for m in config.modalities)
    needs_audio = any("audio" in MODALITY_INPUTS[m] for m in config.modalities)
    # Read everything once: decoding dominates, and every condition sees the same inputs.
    audio: dict[int, np.ndarray] = {}
    video: dict[int, np.ndarray] = {}
    kept: list[int] = []
    for i, u in enumerate(utterances):
        try:
            if needs_audio:
                audio[i] = read_wav(u.audio_path)
            if needs_video:
                video[i] = read_mouth_video(u.video_path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped and reported
            if skipped is not None:
                skipped.append(f"{u.row.id}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            audio.pop(i, None)
            continue
        kept.append(i)
    if not kept:
        raise BenchError(f"{manifest}: none of its {len(utterances)} utterances could be read")

    lengths = [utterances[i].row.frames for i in kept]
    cap = max(config.max_frames_per_batch, max(lengths))
    batches = [[kept[j] for j in group] for group in make_batches(lengths, cap, config.max_batch_size, descending=True)]
    results: list[ConditionResult] = []
    transcripts: dict[str, list[tuple[str, str, str]]] = {}
    corrupted: dict[str, dict[int, np.ndarray]] = {}
    for cond in conditions_of(config):
        inputs = MODALITY_INPUTS[cond.modality]
        if "video" in inputs and cond.video_corruption not in corrupted:
            kind = cond.video_corruption
            corrupted = {kind: {i: corrupted_video(video, i, kept, kind, label, config.seed) for i in kept}}
        refs: dict[int, str] = {}
        hyps: dict[int, str] = {}
        seconds = 0.0
        for batch in batches:
            audios = videos = None
            if "audio" in inputs:
                audios = [_noisy(audio[i], i, cond, babble, config.seed) for i in batch]
            if "video" in inputs:
                videos = [corrupted[cond.video_corruption][i] for i in batch]
            start = time.perf_counter()
            out = recognizer.transcribe(audios, videos, config.options)
            seconds += time.perf_counter() - start
            for i, t in zip(batch, out):
                refs[i], hyps[i] = utterances[i].row.text, t.text
            if on_batch:
                on_batch(1)
        rates = error_rates([refs[i] for i in kept], [hyps[i] for i in kept], recognizer.tokenizer.normalize)
        audio_seconds = sum(utterances[i].row.frames for i in kept) / 25.0
        results.append(
            ConditionResult(
                modality=cond.modality,
                noise=cond.noise or "clean",
                snr_db=cond.snr_db,
                wer=rates.wer,
                cer=rates.cer,
                words=rates.words.reference_length,
                word_errors=rates.words.errors,
                chars=rates.characters.reference_length,
                char_errors=rates.characters.errors,
                utterances=len(kept),
                decode_seconds=seconds,
                audio_seconds=audio_seconds,
                manifest=label,
                video_corruption=cond.video_corruption,
            )
        )
        transcripts[cond.name] = [(utterances[i].row.id, refs[i], hyps[i]) for i in kept]
    return results, transcripts


def _noisy(clean: np.ndarray, index: int, cond: Condition, babble: np.ndarray | None, seed: int) -> np.ndarray:
    if cond.noise is None:
        return clean
    return augment.mix_at_snr(clean, noise_for(index, cond.noise, clean.shape[0], babble, seed), float(cond.snr_db))


def num_batches(config: BenchConfig, frames: Sequence[int]) -> int:
    cap = max(config.max_frames_per_batch, max(frames, default=1))
    return len(make_batches(list(frames), cap, config.max_batch_size))


def total_batches(config: BenchConfig, frames_by_manifest: Sequence[Sequence[int]]) -> int:
    """Decoding batches of a whole run (for a progress bar): conditions x batches, per manifest."""
    return len(conditions_of(config)) * sum(num_batches(config, frames) for frames in frames_by_manifest)


# ------------------------------------------------------------------------------------- reporting
MODALITY_NAMES = {"a": "audio", "v": "video", "av": "audio-visual"}


def _columns(noises: Sequence[str], snrs: Sequence[float | None]) -> list[tuple[str, float | None]]:
    columns: list[tuple[str, float | None]] = [("clean", None)] if None in snrs else []
    return columns + [(kind, s) for kind in noises for s in snrs if s is not None]


def _groups(results: Sequence[ConditionResult]) -> list[tuple[str, str, str]]:
    """(manifest, video corruption, modality) of the results, in their order."""
    return list(dict.fromkeys((r.manifest, r.video_corruption, r.modality) for r in results))


def _is_extended(results: Sequence[ConditionResult]) -> bool:
    return len({r.manifest for r in results}) > 1 or any(r.video_corruption != "none" for r in results)


def results_table(results: Sequence[ConditionResult], noises: Sequence[str], snrs: Sequence[float | None]) -> str:
    """Markdown: one row per modality, one column per (noise, SNR); cells 'WER (CER)' in %.

    With several manifests or video corruptions, rows are per (manifest, video, modality) (a
    ``manifest`` and/or ``video`` column in front), and a second table gives audio-visual minus
    audio WER per (manifest, video) where both were decoded: positive means the video hurt."""
    columns = _columns(noises, snrs)
    by_key = {(r.manifest, r.video_corruption, r.modality, r.noise, r.snr_db): r for r in results}
    several = len({r.manifest for r in results}) > 1
    corrupted = any(r.video_corruption != "none" for r in results)
    front = (["manifest"] if several else []) + (["video"] if corrupted else [])
    names = [("clean" if s is None else f"{kind} {_snr_text(s)}") for kind, s in columns]

    def cell(group: tuple[str, str, str], kind: str, s: float | None) -> ConditionResult | None:
        return by_key.get((*group, kind, s)) or by_key.get((*group, "clean", None))

    def lead(manifest: str, corruption: str, modality: str) -> list[str]:
        video = corruption if "video" in MODALITY_INPUTS.get(modality, ("video",)) else "-"
        return ([manifest] if several else []) + ([video] if corrupted else [])

    header = front + ["modality"] + names
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in _groups(results):
        cells = lead(*group) + [MODALITY_NAMES.get(group[2], group[2])]
        for kind, s in columns:
            r = cell(group, kind, s)
            cells.append("" if r is None else f"{100 * r.wer:.1f} ({100 * r.cer:.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if not (several or corrupted):
        words = results[0].words if results else 0
        utts = results[0].utterances if results else 0
        lines.append(f"WER (CER) in %, {utts} utterances, {words} words. Video-only decoding does not hear the noise.")
        return "\n".join(lines)
    counts = {r.manifest: (r.utterances, r.words) for r in results}
    sizes = "; ".join(f"{m or 'test'}: {u} utterances, {w} words" for m, (u, w) in counts.items())
    lines.append(
        f"WER (CER) in %, {sizes}. Video-only decoding does not hear the noise; audio-only decoding does not see the video."
    )
    heard = {r.manifest for r in results if r.modality == "a"}
    deltas = []
    for manifest, corruption, modality in _groups(results):
        if modality != "av" or manifest not in heard:
            continue
        row = lead(manifest, corruption, "av")
        for kind, s in columns:
            av, a = cell((manifest, corruption, "av"), kind, s), cell((manifest, "none", "a"), kind, s)
            row.append("" if av is None or a is None else f"{100 * (av.wer - a.wer):+.1f}")
        deltas.append("| " + " | ".join(row) + " |")
    if deltas:
        lines += ["", "Audio-visual minus audio, WER points (positive: the video made it worse):", ""]
        lines += ["| " + " | ".join(front + names) + " |", "|" + "---|" * len(front + names), *deltas]
    return "\n".join(lines)


def write_outputs(
    out_dir: Path,
    results: Sequence[ConditionResult],
    transcripts: dict[str, list[tuple[str, str, str]]],
    config: BenchConfig,
    meta: dict[str, Any],
) -> dict[str, Path]:
    """results.json, results.md, wer_vs_snr.png and hyps/<condition>.tsv under ``out_dir``. With
    one manifest and no video corruption, exactly the files of a plain run; otherwise each result
    also names its ``manifest`` (label) and ``video_corruption``, and the JSON lists them all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md", "plot": out_dir / "wer_vs_snr.png"}
    decode_seconds = sum(r.decode_seconds for r in results)
    audio_seconds = sum(r.audio_seconds for r in results)
    extended = config.extended
    rows = [{**asdict(r), "rtf": r.rtf} for r in results]
    if not extended:
        for row in rows:
            row.pop("manifest")
            row.pop("video_corruption")
    payload = {
        **meta,
        "manifest": str(config.manifest),
        **(
            {
                "manifests": dict(zip(manifest_labels(config.manifests), map(str, config.manifests))),
                "video_corruptions": list(config.video_corruptions),
            }
            if extended
            else {}
        ),
        "decoder": asdict(config.options),
        "seed": config.seed,
        "real_time_factor": decode_seconds / max(audio_seconds, 1e-9),
        "results": rows,
    }
    with atomic_path(paths["json"]) as temp:
        Path(temp).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    table = results_table(results, config.noises, config.snrs)
    rtf_line = f"Decoding ({config.options.decoder}{'' if config.options.decoder == 'greedy' else f', beam {config.options.beam}, CTC weight {config.options.ctc_weight}'}): real-time factor {payload['real_time_factor']:.3f}."
    with atomic_path(paths["markdown"]) as temp:
        Path(temp).write_text(table + "\n" + rtf_line + "\n", encoding="utf-8")
    hyp_dir = out_dir / "hyps"
    hyp_dir.mkdir(exist_ok=True)
    for name, hyp_rows in transcripts.items():
        with atomic_path(hyp_dir / f"{name}.tsv") as temp:
            Path(temp).write_text(
                "id\treference\thypothesis\n" + "".join(f"{i}\t{r}\t{h}\n" for i, r, h in hyp_rows), encoding="utf-8"
            )
    plot_wer_vs_snr(results, config.noises, paths["plot"])
    return paths


def plot_wer_vs_snr(results: Sequence[ConditionResult], noises: Sequence[str], path: Path) -> None:
    """One line per modality (and noise kind; and manifest and video corruption when there are
    several); clean is drawn at the right edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snrs = sorted({r.snr_db for r in results if r.snr_db is not None})
    clean_x = (max(snrs) + 10.0) if snrs else 0.0
    extended = _is_extended(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.0) if not extended else (8.0, 5.0), dpi=100)
    styles = ["-", "--", ":", "-."]
    for manifest, corruption, modality in _groups(results):
        mine = [r for r in results if (r.manifest, r.video_corruption, r.modality) == (manifest, corruption, modality)]
        clean = next((r for r in mine if r.noise == "clean"), None)
        for k, kind in enumerate(noises):
            points = sorted((r.snr_db, 100 * r.wer) for r in mine if r.noise == kind and r.snr_db is not None)
            if clean is not None:
                points.append((clean_x, 100 * clean.wer))
            if not points and clean is not None and modality == "v":
                points = [(min(snrs, default=0.0), 100 * clean.wer), (clean_x, 100 * clean.wer)]
            if points:
                xs, ys = zip(*points)
                label = MODALITY_NAMES.get(modality, modality) + (f" ({kind})" if len(noises) > 1 else "")
                if extended:
                    label += (
                        " [" + ", ".join(x for x in (manifest, "" if corruption == "none" else corruption) if x) + "]"
                    )
                ax.plot(xs, ys, styles[k % len(styles)], marker="o", label=label)
    ticks = snrs + ([clean_x] if results else [])
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{s:g}" for s in snrs] + ["clean"])
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("WER (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small" if extended else None)
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png")
    plt.close(fig)


__all__ = [
    "BenchConfig",
    "BenchError",
    "Condition",
    "ConditionResult",
    "VIDEO_CONDITIONS",
    "conditions_of",
    "corrupted_video",
    "manifest_labels",
    "noise_for",
    "parse_snrs",
    "results_table",
    "run_bench",
    "total_batches",
    "write_outputs",
]
