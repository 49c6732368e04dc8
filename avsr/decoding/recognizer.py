"""A trained model ready to transcribe: model + tokenizer + the preprocessing it was trained with.

Shared by ``avsr-bench`` and ``avsr-decode``: both hand it lists of raw inputs (16 kHz float32
audio, uint8 grey mouth crops as ``avsr-prepare`` writes them) and get text back, decoded as one
padded batch with greedy CTC or the hybrid CTC/attention beam search.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from avsr.data.video import Preprocessing, model_view
from avsr.decoding.alignment import AlignmentError, WordTiming, forced_align, word_timings
from avsr.decoding.beam_search import SEARCH_DEFAULTS, BeamSearchConfig, Semantics, beam_search, recommended_settings
from avsr.decoding.ctc import greedy_ctc
from avsr.decoding.lm_decoder import LMStepDecoder
from avsr.decoding.model_decoder import ModelStepDecoder
from avsr.decoding.reading import MODALITY_INPUTS, fit_audio
from avsr.decoding.stages import StageTimes, timed
from avsr.media.constants import AUDIO_RATE, SAMPLES_PER_FRAME
from avsr.models.folder import load_model_folder, mouth_crop_config
from avsr.models.lm import TokenLM

if TYPE_CHECKING:
    from avsr.face import MouthCropConfig


class RecognizerError(ValueError):
    """The model folder or an input cannot be used; the message is one line."""


@dataclass(frozen=True)
class DecodeOptions:
    """``greedy``: best CTC path. ``beam``: hybrid CTC/attention beam search (ESPnet-style)."""

    decoder: Literal["greedy", "beam"] = "beam"
    beam: int | None = None
    ctc_weight: float | None = None
    length_bonus: float = 0.0
    max_length: int | None = None
    """Longest output in tokens (default: the number of encoder frames)."""
    length_normalisation: float | None = None
    """Rank ended hypotheses by score / (tokens + 1) ** this (fairseq's lenpen)."""
    semantics: Semantics | None = None
    """The search's rules (``avsr.decoding.beam_search``): ``exact`` or ``espnet`` (auto_avsr's)."""
    lm_weight: float = 0.0
    """Shallow fusion with the attached language model (`Recognizer.attach_lm`): its log-prob x this."""
    # beam, ctc_weight, length_normalisation, semantics: None is what the model recommends
    # (model.yaml ``extra.decoding``: auto_avsr's beam 40, CTC weight 0.1 and ESPnet's search;
    # AV-HuBERT's length normalisation 1 and beam 50), else SEARCH_DEFAULTS (Recognizer.resolve).

    def __post_init__(self) -> None:
        if self.decoder not in ("greedy", "beam"):
            raise RecognizerError(f"decoder must be greedy or beam, got {self.decoder!r}")
        if self.max_length is not None and self.max_length < 1:
            raise RecognizerError(f"max_length must be at least 1, got {self.max_length}")
        try:  # validates
            BeamSearchConfig(**self.search_settings(), lm_weight=self.lm_weight)
        except ValueError as exc:
            raise RecognizerError(str(exc)) from None

    def search_settings(self) -> dict[str, Any]:
        """The settings of ``SEARCH_DEFAULTS`` these options choose (not None)."""
        return {name: getattr(self, name) for name in SEARCH_DEFAULTS if getattr(self, name) is not None}


@dataclass
class Transcript:
    text: str
    tokens: list[int]
    score: float
    """Log-probability of the hypothesis (the search's combined score, divided by (tokens + 1) ** p
    under length normalisation; greedy: the CTC path's)."""
    words: list[WordTiming] = field(default_factory=list)
    """Word times in seconds from the start of the input (with ``timings=True``; empty if the
    tokens could not be aligned)."""


class Recognizer:
    """Load once with :meth:`load`, then :meth:`transcribe` batches of inputs."""

    def __init__(
        self, model: Any, tokenizer: Any, preprocessing: Preprocessing, device: torch.device, folder: Path | None = None
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocessing = preprocessing
        self.device = device
        self.folder = folder
        """The model folder it was loaded from (files its model.yaml names are read from there)."""
        self.lm: TokenLM | None = None
        """A language model the beam search fuses (`attach_lm`)."""

    def attach_lm(self, lm_dir: str | os.PathLike[str]) -> None:
        """Fuse the language model of ``lm_dir`` (a model folder of family ``lm``) into the beam
        search (``DecodeOptions.lm_weight``). Its tokenizer must be the recogniser's: the same
        units under the same ids (RecognizerError, one line, otherwise)."""
        folder = load_model_folder(lm_dir, str(self.device))
        if not isinstance(folder.model, TokenLM):
            raise RecognizerError(f"{lm_dir}: not a language model (model.yaml family is not lm)")
        if folder.tokenizer.fingerprint != self.tokenizer.fingerprint:
            raise RecognizerError(
                f"{lm_dir}: its tokenizer is not the model's (another fingerprint): its ids mean other units"
            )
        self.lm = folder.model.eval()

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], device: str = "cpu") -> Recognizer:
        """A model folder's model and tokenizer (`avsr.models.folder.load_model_folder`: checksums
        and the tokenizer's fingerprint checked)."""
        model_dir = Path(model_dir)
        if not (model_dir / "model.yaml").is_file():
            raise RecognizerError(
                f"{model_dir}: not a model folder (no model.yaml; avsr-train writes one under OUTPUT_DIR/model)"
            )
        folder = load_model_folder(model_dir, device)
        return cls(folder.model, folder.tokenizer, folder.preprocessing, torch.device(device), folder.path)

    @property
    def typical_input_seconds(self) -> float | None:
        """The median length of the training utterances (recorded at export), if known: long
        recordings are cut at pauses into pieces of about this length."""
        lengths = self.model.metadata.get("train_utterance_seconds") or {}
        value = lengths.get("median")
        return float(value) if value else None

    @property
    def mouth_crop(self) -> MouthCropConfig | None:
        """How the model's mouth crops are made, when its metadata records it (converted models);
        None: avsr-prepare's default crops. A mean face other than the shipped one is read only
        from inside the model folder (WeightsError otherwise)."""
        recorded = self.model.metadata.get("mouth_crop")
        if not recorded:
            return None
        try:
            return mouth_crop_config(recorded, self.folder)
        except (TypeError, ValueError) as exc:
            raise RecognizerError(
                f"the model's mouth_crop settings are not usable ({exc}); convert it again with avsr-convert"
            ) from None

    @property
    def length_normalisation(self) -> float:
        """The length normalisation the model was meant to be decoded with (0 unless recorded)."""
        return self.resolve(DecodeOptions()).length_normalisation or 0.0

    def resolve(self, options: DecodeOptions) -> DecodeOptions:
        """``options`` with each search setting it leaves None set to the model's recommendation
        (model.yaml ``extra.decoding``), else to ``SEARCH_DEFAULTS``."""
        try:
            recommended = recommended_settings(self.model.metadata.get("decoding"))
        except ValueError as exc:
            where = self.folder / "model.yaml" if self.folder is not None else "the model"
            raise RecognizerError(f"{where}: its decoding settings are not usable ({exc})") from None
        return replace(options, **{**SEARCH_DEFAULTS, **recommended, **options.search_settings()})

    @property
    def has_ctc(self) -> bool:
        """False for models without a CTC head (AV-HuBERT): attention-only beam search, no greedy
        CTC decoding and no word times."""
        return self.model.has_ctc

    @property
    def modalities(self) -> tuple[str, ...]:
        """The CLI modality names this model decodes (``a``, ``v``, ``av``): those its branches
        allow, which its config may narrow (auto_avsr's AV model needs both streams)."""
        return self.model.decodable_modalities

    def check_modality(self, modality: str) -> tuple[str, ...]:
        if modality not in MODALITY_INPUTS:
            raise RecognizerError(f"unknown modality {modality!r} (expected one of a, v, av)")
        if modality not in self.modalities:
            if set(MODALITY_INPUTS[modality]) <= set(self.model.config.modalities):  # narrowed by the model
                raise RecognizerError(f"this model cannot decode {modality!r}; it decodes {', '.join(self.modalities)}")
            raise RecognizerError(
                f"this model has no {'/'.join(MODALITY_INPUTS[modality])} branch; it decodes {', '.join(self.modalities)}"
            )
        return MODALITY_INPUTS[modality]

    # ------------------------------------------------------------------ inputs
    def _video_tensor(self, videos: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
        p = self.preprocessing
        crops = []
        for video in videos:
            if video.ndim != 3:
                raise RecognizerError(f"mouth video must be (T, H, W) grey frames, got shape {video.shape}")
            height, width = video.shape[1:]
            if height < p.crop_size or width < p.crop_size:
                raise RecognizerError(
                    f"mouth crops of {width}x{height} px are smaller than the model's {p.crop_size} px"
                )
            crops.append(model_view(video, p))
        lengths = [c.shape[0] for c in crops]
        batch = torch.zeros(len(crops), max(lengths), p.crop_size, p.crop_size)
        for i, c in enumerate(crops):
            batch[i, : lengths[i]] = torch.from_numpy(c)
        return batch, torch.tensor(lengths, dtype=torch.int64)

    @staticmethod
    def _audio_tensor(audios: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
        lengths = [a.shape[0] for a in audios]
        batch = torch.zeros(len(audios), max(max(lengths), 1))
        for i, a in enumerate(audios):
            batch[i, : lengths[i]] = torch.from_numpy(np.asarray(a, dtype=np.float32))
        return batch, torch.tensor(lengths, dtype=torch.int64)

    # ------------------------------------------------------------------ decoding
    @torch.inference_mode()
    def transcribe(
        self,
        audios: Sequence[np.ndarray] | None,
        videos: Sequence[np.ndarray] | None,
        options: DecodeOptions,
        *,
        timings: bool = False,
        times: StageTimes | None = None,
    ) -> list[Transcript]:
        """Decode one batch. Pass ``audios`` and/or ``videos`` (same length) for the modality
        wanted; with both, each audio is cut or zero-padded to 640 samples per video frame.
        ``timings``: also align each result's tokens to the frames for word times.
        ``times`` collects the seconds spent in the model (inputs and encoder), the search and the
        alignment."""
        if audios is None and videos is None:
            raise RecognizerError("nothing to decode: give audio, video or both")
        if options.decoder == "greedy" and not self.has_ctc:
            raise RecognizerError("this model has no CTC head, so there is no greedy CTC decoding: use --decoder beam")
        if audios is not None and videos is not None:
            if len(audios) != len(videos):
                raise RecognizerError(f"{len(audios)} audio inputs but {len(videos)} videos")
            audios = [fit_audio(a, v.shape[0]) for a, v in zip(audios, videos)]
        if times is not None and self.device.type == "cuda" and times.sync is None:
            times.sync = torch.cuda.synchronize
        audio = audio_lens = video = video_lens = None
        with timed(times, "model"):
            if audios is not None:
                audio, audio_lens = (t.to(self.device) for t in self._audio_tensor(audios))
            if videos is not None:
                video, video_lens = (t.to(self.device) for t in self._video_tensor(videos))
            encoded, lengths = self.model.encode(audio, audio_lens, video, video_lens)
            log_probs = self.model.ctc_log_probs(encoded) if self.has_ctc else None
        with timed(times, "search"):
            if options.decoder == "greedy":
                out = self._greedy(log_probs, lengths)
            else:
                out = self._beam(encoded, log_probs, lengths, options)
        if timings and log_probs is not None:  # word times come from the CTC posteriors
            with timed(times, "align"):
                self._align(out, log_probs, lengths)
        return out

    def _align(self, out: list[Transcript], log_probs: Tensor, lengths: Tensor) -> None:
        blank = self.model.config.blank_id
        for i, t in enumerate(out):
            try:
                spans = forced_align(log_probs[i, : int(lengths[i])], t.tokens, blank)
            except AlignmentError:
                continue
            t.words = word_timings(spans, self.tokenizer.piece_text, frame_seconds=SAMPLES_PER_FRAME / AUDIO_RATE)

    def _beam(
        self, encoded: Tensor, log_probs: Tensor | None, lengths: Tensor, options: DecodeOptions
    ) -> list[Transcript]:
        settings = self.resolve(options).search_settings()
        if log_probs is None:  # no CTC head: attention only
            settings["ctc_weight"] = 0.0
        ctc_weight = settings["ctc_weight"]
        config = BeamSearchConfig(
            length_bonus=options.length_bonus, max_length=options.max_length, lm_weight=options.lm_weight, **settings
        )
        lm = LMStepDecoder(self.lm) if self.lm is not None and options.lm_weight > 0 else None
        step_decoder = None
        if ctc_weight < 1.0:
            step_decoder = ModelStepDecoder(self.model, encoded, lengths, int(lengths.max()))
        nbest = beam_search(
            log_probs, lengths, step_decoder, config, self.model.config.blank_id, self.model.config.eos_id, lm=lm
        )
        out = []
        for hyps in nbest:
            best = hyps[0] if hyps else None
            tokens = list(best.tokens) if best else []
            out.append(Transcript(self.tokenizer.decode(tokens), tokens, float(best.score) if best else float("-inf")))
        return out

    def _greedy(self, log_probs: Tensor, lengths: Tensor) -> list[Transcript]:
        blank = self.model.config.blank_id
        paths = greedy_ctc(log_probs, lengths, blank)
        best = log_probs.max(dim=-1).values  # (B, T): the greedy path's frame scores
        out = []
        for i, tokens in enumerate(paths):
            score = float(best[i, : int(lengths[i])].sum())
            out.append(Transcript(self.tokenizer.decode(tokens), list(tokens), score))
        return out


__all__ = ["DecodeOptions", "MODALITY_INPUTS", "Preprocessing", "Recognizer", "RecognizerError", "Transcript"]
