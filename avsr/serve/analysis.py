"""What the page shows of one clip: avsr-decode's result, the same clip decoded audio-only,
lips-only and audio-visually, the faces' boxes frame by frame and the mouth crops the model saw.

The clip is read once (`avsr.decoding.reading.load_input`: the face chain, every face's mouth
crops, the speaker per segment as ``avsr-decode --speakers all``) and each modality decodes that
same read input (`avsr.decoding.transcribe.transcribe_files`), so the three transcripts differ
only by what the model heard and saw. The read input is kept, so the noise slider mixes noise into
its audio and decodes again without reading the file or finding the faces anew.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from avsr.data.text import normalize_text
from avsr.data.wer import error_rates
from avsr.decoding.outputs import decode_document
from avsr.decoding.reading import MODALITY_INPUTS, LoadedInput, TranscribeError, face_chain, load_input
from avsr.decoding.recognizer import DecodeOptions, Recognizer, RecognizerError
from avsr.decoding.segment import SegmentConfig
from avsr.decoding.transcribe import FileResult, transcribe_files
from avsr.media.constants import VIDEO_FPS
from avsr.serve.errors import ServeError
from avsr.serve.noise import NoiseSetting, noisy

#: the order the page shows the modalities in
MODALITIES = ("a", "v", "av")
#: crops tiled into a face's strip (evenly spaced over the clip)
STRIP_TILES = 12

#: ``progress(done, stage)``: the share done (0-1) and what is being done now
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class AnalysisSettings:
    """How every clip is read and decoded (fixed when the server starts)."""

    model: str  # the model folder, as the JSON names it
    options: DecodeOptions  # resolved: the model's recommended search where no flag was given
    segmenting: SegmentConfig
    detect_every: int = 10
    crop_config: object | None = None  # the model's MouthCropConfig (Recognizer.mouth_crop)


@dataclass
class Strip:
    """A face's mouth crops in one PNG row: ``times`` (s) of its tiles, left to right."""

    png: bytes
    times: list[float]


@dataclass
class Analysis:
    """One clip, read and decoded: ``results`` per modality decoded, ``main`` is avsr-decode's
    (the model's full modality, or what the clip allows), ``loaded`` the read input (dropped
    once old: the noise slider needs it)."""

    name: str
    main: str
    results: dict[str, FileResult]
    loaded: LoadedInput | None
    strips: dict[str, Strip] = field(default_factory=dict)

    def to_dict(self, model: str) -> dict:
        """The JSON of ``GET /jobs/ID``'s ``result``: ``decode`` is exactly ``avsr-decode --json
        --speakers all``'s document, ``modalities`` each modality's file result, ``faces`` each
        face's box per video frame ([left, top, right, bottom] pixels, or null where not found)."""
        return {
            "name": self.name,
            "main": self.main,
            "decode": decode_document(model, [self.results[self.main]]),
            "modalities": {m: r.to_dict() for m, r in self.results.items()},
            "faces": self._faces(),
            "strips": {label: {"times": s.times} for label, s in self.strips.items()},
        }

    def _faces(self) -> list[dict]:
        if self.loaded is None:
            return []
        return [
            {"label": f.label, "boxes": [None if np.isnan(b).any() else [round(float(v)) for v in b] for b in f.boxes]}
            for f in self.loaded.faces
        ]


def decodable(loaded: LoadedInput, model_modalities: tuple[str, ...]) -> list[str]:
    """The modalities this read input can be decoded in: the model's, where the clip has the audio
    and the mouth crops each needs."""
    have = {"audio": loaded.audio is not None, "video": any(f.crops.shape[1] for f in loaded.faces)}
    return [m for m in MODALITIES if m in model_modalities and all(have[x] for x in MODALITY_INPUTS[m])]


class Analyser:
    """Reads and decodes clips with one recogniser (one thread at a time: the job worker's)."""

    def __init__(self, recognizer: Recognizer, settings: AnalysisSettings) -> None:
        self.recognizer = recognizer
        self.settings = settings
        self._chain = None

    def _faces(self):
        if self._chain is None:  # dlib's models load once, on the first clip
            self._chain = face_chain(self.settings.detect_every, self.settings.crop_config)
        return self._chain

    def analyse(self, path: str | os.PathLike[str], name: str, progress: Progress) -> Analysis:
        """Read ``path`` (shown as ``name``) and decode it in every modality it allows."""
        progress(0.0, "reading the video and finding faces")
        model_modalities = self.recognizer.modalities
        asked = "av" if "av" in model_modalities or not model_modalities else model_modalities[0]  # avsr-decode's rule
        try:
            loaded = load_input(path, asked, self._faces, decodable=model_modalities, label_speakers=True)
        except (TranscribeError, ValueError) as exc:  # ValueError: a face chain's one-line refusal
            raise ServeError(str(exc).replace(os.fspath(path), name), 422) from None
        loaded.path = name
        wanted = decodable(loaded, model_modalities)
        main = loaded.modality or asked
        if main not in wanted:
            raise ServeError(f"{name}: this model cannot decode it (it decodes {', '.join(model_modalities)})", 422)
        order = [main] + [m for m in wanted if m != main]
        results = {}
        for step, modality in enumerate(order):
            progress(0.5 + 0.5 * step / len(order), f"decoding {_NAMES[modality]}")
            results[modality] = self._decode(replace(loaded, modality=modality), modality)
        strips = {f.label: _strip(f.crops) for f in loaded.faces if f.crops.shape[1]}
        progress(1.0, "done")
        return Analysis(name, main, {m: results[m] for m in MODALITIES if m in results}, loaded, strips)

    def with_noise(self, analysis: Analysis, setting: NoiseSetting, progress: Progress) -> dict:
        """Each modality's transcript with ``setting``'s noise in the audio, and the share of its
        words that changed from the clean transcript (no reference text: the clean decoding is it).
        Lips-only hears nothing, so its transcript is the clean one."""
        if analysis.loaded is None:
            raise ServeError(f"{analysis.name}: no longer kept in memory: upload it again", 410)
        loaded = replace(
            analysis.loaded, audio=None if analysis.loaded.audio is None else noisy(analysis.loaded.audio, setting)
        )
        out = {}
        for step, (modality, clean) in enumerate(analysis.results.items()):
            progress(step / len(analysis.results), f"decoding {_NAMES[modality]} at {setting.snr_db:g} dB")
            heard = "audio" in MODALITY_INPUTS[modality]
            result = self._decode(replace(loaded, modality=modality), modality) if heard else clean
            changed = error_rates([clean.text], [result.text], normalize_text).wer
            out[modality] = {"text": result.text, "changed": round(changed, 4), "result": result.to_dict()}
        progress(1.0, "done")
        return {"kind": setting.kind, "snr_db": setting.snr_db, "modalities": out}

    def _decode(self, loaded: LoadedInput, modality: str) -> FileResult:
        s = self.settings
        try:
            return transcribe_files(self.recognizer, [loaded], modality, s.options, s.segmenting, labelled=True)[0]
        except RecognizerError as exc:
            raise ServeError(f"{loaded.path}: {exc}", 422) from None


_NAMES = {"a": "audio only", "v": "lips only", "av": "audio and lips"}


def _strip(crops: np.ndarray, tiles: int = STRIP_TILES) -> Strip:
    """``crops`` (T, S, S) uint8 -> up to ``tiles`` of them side by side, one PNG (S, n*S)."""
    index = np.unique(np.linspace(0, len(crops) - 1, min(tiles, len(crops))).round().astype(int))
    ok, png = cv2.imencode(".png", np.hstack(list(crops[index])))
    if not ok:
        raise ServeError("could not encode the mouth crops as PNG", 500)
    return Strip(png.tobytes(), [round(float(i) / VIDEO_FPS, 3) for i in index])


__all__ = ["Analyser", "Analysis", "AnalysisSettings", "MODALITIES", "Progress", "Strip", "decodable"]
