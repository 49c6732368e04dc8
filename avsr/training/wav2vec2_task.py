"""``task: wav2vec2``: wav2vec 2.0 pretraining of the audio front-end on the audio of any manifests
(transcripts unused), with fairseq2's model and objective (masking, quantiser, contrastive and
diversity losses). Exports ``wav2vec2.safetensors``, what ``model.pretrained.audio`` takes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fairseq2.metrics import Mean, MetricBag
from fairseq2.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model, create_wav2vec2_model
from fairseq2.recipe.config import RegimeSection
from torch import Tensor
from torch.nn import Module

from avsr.models.audio import WAV2VEC2_ARCHS, WAV2VEC2_PREFIXES
from avsr.models.convert.common import (
    ConvertedWav2Vec2,
    encoder_config_from_dict,
    encoder_config_to_dict,
    save_converted,
)
from avsr.training.clips import ClipBatch, ClipDataset
from avsr.training.config_loading import TrainConfigError, default_regime
from avsr.training.frontend_recipe import (
    FrontendModelSection,
    FrontendTask,
    FrontendTrainConfig,
    add_loss_metrics,
    update_loss_metrics,
)

WAV2VEC2_FAMILY = "avsr_wav2vec2"
WAV2VEC2_FILE = "wav2vec2.safetensors"


@dataclass(kw_only=True)
class Wav2Vec2TrainConfig(FrontendTrainConfig):
    """``task: wav2vec2``: wav2vec 2.0 pretraining on the audio of any manifests (transcripts unused)."""

    task: Literal["wav2vec2"] = "wav2vec2"
    model: FrontendModelSection = field(default_factory=lambda: FrontendModelSection(family=WAV2VEC2_FAMILY))
    diversity_weight: float = 0.1
    features_penalty_weight: float = 10.0
    regime: RegimeSection = field(default_factory=lambda: default_regime(score_metric=None))


def wav2vec2_model_config(arch: str, overrides: dict[str, object]) -> Wav2Vec2Config:
    """fairseq2's pretraining config: our encoder arch (tiny/base/large/large_lv60k) with
    ``encoder`` overrides, and the pretraining fields (quantiser, masking, distractors) over it."""
    if arch not in WAV2VEC2_ARCHS:
        raise TrainConfigError(f"bad value for model.arch: {arch!r} (one of {', '.join(WAV2VEC2_ARCHS)})")
    overrides = dict(overrides)
    try:
        encoder = encoder_config_from_dict(dict(overrides.pop("encoder", None) or {}), WAV2VEC2_ARCHS[arch]())
    except (ValueError, TypeError) as exc:
        raise TrainConfigError(f"bad value in model.config.encoder: {exc}") from None
    known = {f.name for f in dataclasses.fields(Wav2Vec2Config)} - {"encoder_config"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TrainConfigError(
            f"unknown key(s) in model.config: {', '.join(unknown)} (known: encoder, {', '.join(sorted(known))})"
        )
    if "codebook_sampling_temperature" in overrides:
        overrides["codebook_sampling_temperature"] = tuple(overrides["codebook_sampling_temperature"])  # type: ignore[arg-type]
    return Wav2Vec2Config(encoder_config=encoder, **overrides)  # type: ignore[arg-type]


class ContrastiveObjective:
    """fairseq2's wav2vec 2.0 loss summed over the masked targets; accuracy: the true quantised
    target scored above every distractor; plus the loss parts and the codebook perplexities."""

    def __init__(self, diversity: float, features_penalty: float) -> None:
        self.diversity = diversity
        self.features_penalty = features_penalty

    def add_metrics(self, bag: MetricBag) -> None:
        add_loss_metrics(bag)
        for name in ("contrastive_loss", "diversity_loss", "code_perplexity", "prob_perplexity"):
            bag.add(name, Mean())

    def __call__(self, model: Module, batch: ClipBatch, bag: MetricBag) -> tuple[Tensor, int]:
        from fairseq2.nn import BatchLayout

        layout = BatchLayout.of(batch.inputs, seq_lens=batch.lengths.tolist())
        loss, out = model(
            batch.inputs, layout, diversity_weight=self.diversity, features_penalty_weight=self.features_penalty
        )
        logits = out.logits  # (N, S_msk, 1 + distractors); the true target first
        accuracy = (logits[..., 0] > logits[..., 1:].max(dim=-1).values).float().mean()
        targets = int(out.num_targets)
        n = max(targets, 1)
        update_loss_metrics(bag, batch, loss.aggregate / n, accuracy)
        bag.get("contrastive_loss", Mean).update(loss.contrastive.detach().float() / n, weight=n)
        bag.get("diversity_loss", Mean).update(loss.diversity.detach().float() / n, weight=n)
        bag.get("code_perplexity", Mean).update(out.quantizer_output.code_perplexity.detach().float(), weight=1)
        bag.get("prob_perplexity", Mean).update(out.quantizer_output.prob_perplexity.detach().float(), weight=1)
        return loss.aggregate, targets


class Wav2Vec2Task(FrontendTask):
    name = "wav2vec2"
    family = WAV2VEC2_FAMILY
    model_kls = Wav2Vec2Model
    config_kls = Wav2Vec2Config
    train_config_kls = Wav2Vec2TrainConfig
    clip_mode = "audio"

    def build(self, model_config: Any) -> Module:
        return create_wav2vec2_model(model_config)

    def check(self, config: FrontendTrainConfig) -> None:
        if config.model.init_frontend is not None:
            raise TrainConfigError(
                "model.init_frontend is for the visual tasks (wav2vec2 pretraining starts from scratch)"
            )

    def model_config(self, config: FrontendTrainConfig, dataset: ClipDataset) -> Wav2Vec2Config:
        return wav2vec2_model_config(config.model.arch or "tiny", config.model.config)

    def objective(self, config: FrontendTrainConfig) -> ContrastiveObjective:
        assert isinstance(config, Wav2Vec2TrainConfig)
        return ContrastiveObjective(config.diversity_weight, config.features_penalty_weight)

    def config_to_dict(self, model_config: Any) -> dict[str, Any]:
        plain = {
            f.name: getattr(model_config, f.name)
            for f in dataclasses.fields(model_config)
            if f.name != "encoder_config"
        }
        plain["codebook_sampling_temperature"] = list(plain["codebook_sampling_temperature"])
        return {"encoder": encoder_config_to_dict(model_config.encoder_config), **plain}

    def config_from_dict(self, data: dict[str, Any]) -> Wav2Vec2Config:
        # the stored encoder is complete, so the arch it is applied over does not matter
        return wav2vec2_model_config("base", data)

    def export_frontend(
        self, model: Module, weights: dict[str, Tensor], run: dict[str, Any], out: Path
    ) -> dict[str, Any]:
        normalize = bool(((run.get("train_config") or {}).get("dataset") or {}).get("normalize_audio", False))
        kept = {k: v for k, v in weights.items() if k.startswith(WAV2VEC2_PREFIXES)}
        encoder = self.config_from_dict(run["model_config"]).encoder_config
        save_converted(ConvertedWav2Vec2(kept, encoder, "avsr", normalize_waveform=normalize), out / WAV2VEC2_FILE)
        return {"file": WAV2VEC2_FILE, "encoder": run["model_config"]["encoder"], "normalize_waveform": normalize}


TASK = Wav2Vec2Task()

__all__ = ["TASK", "WAV2VEC2_FAMILY", "WAV2VEC2_FILE", "Wav2Vec2Task", "Wav2Vec2TrainConfig", "wav2vec2_model_config"]
