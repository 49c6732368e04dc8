"""The AVSR task's fairseq2 train and eval units: the joint CTC/attention loss with the modality
schedule and the fine-tuning freezes applied per step, and validation loss plus greedy-decoding
WER/CER per validated modality."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, Sequence
from typing import Any, final

import fairseq2.recipe  # noqa: F401  (first: importing fairseq2.evaluator first is a circular import in 0.8.1)
from fairseq2.evaluator import EvalUnit
from fairseq2.metrics import Mean, MetricBag, Sum
from fairseq2.trainer import TrainUnit
from torch import Tensor
from torch.nn import Module

from avsr.data.tokenizers import Tokenizer
from avsr.training.avsr_config import ModalityStage
from avsr.training.data import AVBatch
from avsr.training.finetune import FinetuneSection, frozen_at

log = logging.getLogger("avsr.training")


def _frames_and_padding(batch: AVBatch) -> tuple[int, int]:
    frames = batch.num_frames
    return frames, max(0, batch.padded_frames - frames)


def _update_common_metrics(bag: MetricBag, batch: AVBatch, out: Any) -> None:
    n = max(int(out.num_targets), 1)
    bag.get("loss", Mean).update(out.loss.detach().float(), weight=n)
    bag.get("ctc_loss", Mean).update(out.ctc_loss.detach().float(), weight=n)
    bag.get("att_loss", Mean).update(out.att_loss.detach().float(), weight=n)
    bag.get("accuracy", Mean).update(out.accuracy.detach().float(), weight=n)
    frames, padding = _frames_and_padding(batch)
    bag.get("num_examples", Sum).update(batch.batch_size)
    bag.get("num_elements", Sum).update(frames)
    bag.get("num_target_elements", Sum).update(batch.num_targets)
    bag.get("padding", Sum).update(padding)


def _add_common_metrics(bag: MetricBag) -> None:
    for name in ("loss", "ctc_loss", "att_loss", "accuracy"):
        bag.add(name, Mean())
    for name in ("num_examples", "num_elements", "num_target_elements", "padding"):
        bag.add(name, Sum())


@final
class AVSRTrainUnit(TrainUnit[AVBatch]):
    """One training step: the model's joint CTC/attention loss, summed over target tokens (the
    trainer divides the gradients by the tokens of the whole step, across ranks and accumulated
    batches). Calls the model's per-step freezing hook (wav2vec 2.0 schedule) before each step."""

    def __init__(
        self,
        model: Module,
        module: Module,
        schedule: Sequence[ModalityStage] = (),
        finetune: FinetuneSection | None = None,
    ) -> None:
        self._model = model  # possibly DDP-wrapped
        self._module = module  # the AVSRModel itself
        self._schedule = sorted(schedule, key=lambda s: s.until_step)
        self._inputs = "av"
        self._finetune = finetune or FinetuneSection()
        self._held: frozenset[str] = frozenset()

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        _add_common_metrics(metric_bag)
        metric_bag.add("total_num_examples", Sum())
        metric_bag.add("total_num_elements", Sum())

    def set_step_nr(self, step_nr: int) -> None:
        hook = getattr(self._module, "update_freezing", None)
        if callable(hook):
            hook(step_nr)
        if self._finetune.freeze:
            held = frozen_at(self._finetune, step_nr)
            if held != self._held:
                log.info("Step %d: frozen by finetune.freeze: %s", step_nr, ", ".join(sorted(held)) or "nothing")
            self._held = held
            self._module.hold_parts(held)
        if self._schedule:
            stage = next((s for s in self._schedule if step_nr <= s.until_step), self._schedule[-1])
            dropout = stage.modality_dropout or self._module.config.modality_dropout
            if stage.inputs != self._inputs or dropout != self._module.modality_dropout:
                detail = (
                    f" (audio-only {dropout.p_audio_only}, video-only {dropout.p_video_only})"
                    if stage.inputs == "av"
                    else ""
                )
                log.info("Step %d: training on %s input%s", step_nr, stage.inputs, detail)
            self._inputs = stage.inputs
            self._module.modality_dropout = dropout

    def process_batch(self, batch: AVBatch, metric_bag: MetricBag) -> tuple[Tensor, int | None]:
        audio, audio_lens, video, video_lens = batch.audio, batch.audio_lens, batch.video, batch.video_lens
        if self._inputs == "video" and video is not None:
            audio = audio_lens = None
        elif self._inputs == "audio" and audio is not None:
            video = video_lens = None
        # Corrupted videos (dataset.video.corruption) keep their audio under modality dropout.
        extra = (
            {"video_corrupted": batch.video_corrupted}
            if batch.video_corrupted is not None and video is not None
            else {}
        )
        out = self._model(audio, audio_lens, video, video_lens, batch.targets, batch.target_lens, **extra)
        _update_common_metrics(metric_bag, batch, out)
        metric_bag.get("total_num_examples", Sum).update(batch.batch_size)
        metric_bag.get("total_num_elements", Sum).update(batch.num_frames)
        n = int(out.num_targets)
        return out.loss * n, n


@final
class AVSREvalUnit(EvalUnit[AVBatch]):
    """Validation loss (teacher forced) and WER/CER of greedy decoding (CTC, or the attention
    decoder for a model without a CTC head) on the tokenizer's normalised text."""

    def __init__(self, module: Module, tokenizer: Tokenizer, inputs: str, *, name: str | None, wer: bool) -> None:
        self._module = module
        self._tokenizer = tokenizer
        self._inputs = inputs
        self._name = name
        self._wer = wer

    @property
    def name(self) -> str | None:
        return self._name

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        _add_common_metrics(metric_bag)
        for name in ("word_errors", "words", "char_errors", "chars"):
            metric_bag.add(name, Sum())

    def process_batch(self, batch: AVBatch, metric_bag: MetricBag) -> None:
        use_audio = self._inputs in ("av", "audio")
        use_video = self._inputs in ("av", "video")
        audio = batch.audio if use_audio else None
        audio_lens = batch.audio_lens if use_audio else None
        video = batch.video if use_video else None
        video_lens = batch.video_lens if use_video else None
        out = self._module(audio, audio_lens, video, video_lens, batch.targets, batch.target_lens)
        _update_common_metrics(metric_bag, batch, out)
        if not self._wer:
            return
        from avsr.data.wer import error_rates
        from avsr.decoding.model_decoder import best_paths

        encoded, lens = self._module.encode(audio, audio_lens, video, video_lens)
        hyps = [self._tokenizer.decode(ids) for ids in best_paths(self._module, encoded, lens)]
        rates = error_rates(batch.texts, hyps, self._tokenizer.normalize)
        metric_bag.get("word_errors", Sum).update(rates.words.errors)
        metric_bag.get("words", Sum).update(rates.words.reference_length)
        metric_bag.get("char_errors", Sum).update(rates.characters.errors)
        metric_bag.get("chars", Sum).update(rates.characters.reference_length)

    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        counts = {k: values.pop(k, None) for k in ("word_errors", "words", "char_errors", "chars")}
        if self._wer:
            for rate, errors, total in (("wer", "word_errors", "words"), ("cer", "char_errors", "chars")):
                e, t = counts[errors], counts[total]
                if e is not None and t is not None and float(t) > 0:  # type: ignore[arg-type]
                    values[rate] = 100.0 * float(e) / float(t)  # type: ignore[arg-type]
