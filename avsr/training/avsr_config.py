"""The AVSR task's training configuration: fairseq2's sections plus ours, loaded and checked (one-line
`TrainConfigError`s), and the model config it resolves (``model.arch`` or ``model.init``, then
``model.config``, at the tokenizer's vocabulary)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import fairseq2.recipe  # noqa: F401  (first: importing fairseq2.evaluator first is a circular import in 0.8.1)
from fairseq2.recipe.config import (
    CommonSection,
    GangSection,
    LRSchedulerSection,
    ModelSection,
    OptimizerSection,
    RegimeSection,
    TrainerSection,
)

from avsr.data.tokenizers import Tokenizer
from avsr.models.config import AVSRConfig, ConfigError, ModalityDropoutConfig
from avsr.training.config_loading import (
    TrainConfigError,
    deep_merge,
    default_common,
    default_lr_scheduler,
    default_optimizer,
    default_regime,
    default_trainer,
    load_config,
    read_user_tree,
)
from avsr.training.data import MODALITIES, DatasetConfig
from avsr.training.finetune import FinetuneConfigError, FinetuneSection, check_finetune, parameter_groups
from avsr.training.kit import ExportSection
from avsr.training.performance import PerformanceSection

log = logging.getLogger("avsr.training")

AVSR_FAMILY = "avsr"
ARCHS = ("tiny", "seed_paper", "default")


@dataclass(kw_only=True)
class InitFromModel:
    """Copy the weights of some sub-modules from a saved model (a stage's ``model/`` folder)."""

    path: Path
    """A folder written by avsr-train (``model/``) or a ``.safetensors``/``.pt`` file."""
    modules: list[str] = field(default_factory=list)
    """Sub-modules to copy (audio_frontend, visual_frontend, audio_encoder, ...); empty: all."""


@dataclass(kw_only=True)
class PretrainedFrontends:
    """Self-supervised front-end weights for a fresh model (`avsr.models.io.load_pretrained_frontends`)."""

    visual: Path | None = None
    visual_format: Literal["moco_v2", "avsr"] = "moco_v2"
    audio: Path | None = None


@dataclass(kw_only=True)
class AVSRModelSection(ModelSection):
    """fairseq2's model section, for the ``avsr`` family: a named size plus overrides."""

    family: str | None = AVSR_FAMILY
    arch: str | None = "tiny"
    """Base size: tiny (CPU toy), seed_paper (Pan et al. 2022), default (AVSRConfig's defaults)."""
    init: Path | None = None
    """A model folder to fine-tune (ours, or converted by avsr-convert): its architecture replaces
    ``arch`` and all its weights start the run. With another tokenizer than the folder's, the
    output layers keep the rows of the units both share and start fresh for the others."""
    config: dict[str, object] = field(default_factory=dict)
    """AVSRConfig fields over the arch or init (nested); vocab_size/blank_id/eos_id come from the tokenizer."""
    pretrained: PretrainedFrontends = field(default_factory=PretrainedFrontends)
    init_from: list[InitFromModel] = field(default_factory=list)
    """Weights of earlier stages (applied after ``pretrained``), only when training starts."""


@dataclass(kw_only=True)
class ValidationSection:
    modalities: list[Literal["av", "audio", "video"]] = field(default_factory=list)
    """Inputs to validate with (one validation pass each); empty: the model's own modalities."""
    wer: bool = True
    """Also decode greedily (the CTC head, or the attention decoder of a model without one) and
    report WER/CER (%)."""


@dataclass(kw_only=True)
class ModalityStage:
    """One stage of the modality schedule: the inputs training steps use up to ``until_step``."""

    until_step: int
    """Last step of this stage (inclusive); the last stage also covers every step after it."""
    inputs: Literal["av", "audio", "video"] = "av"
    """``av``: both (with the model's modality dropout); ``audio``/``video``: only that one; the
    other is not computed and the model sees its learned absent-modality embedding."""
    modality_dropout: ModalityDropoutConfig | None = None
    """An ``av`` stage's own modality dropout (e.g. mostly video-only batches late in training,
    once the audio is learned); None: the model config's. The exported model keeps its own."""


@dataclass(kw_only=True)
class AVSRTrainConfig:
    """The whole training configuration (the YAML file's top-level keys)."""

    FREE_FORM: ClassVar = (("model", "config"), ("model", "config_overrides"))
    """Checked by AVSRConfig.from_dict when the model config is resolved."""

    task: Literal["avsr"] = "avsr"
    """What is trained: ``avsr`` (this config); ``lrw``, ``moco``, ``wav2vec2``: `avsr.training.tasks`."""

    output_dir: Path | None = None
    """Where checkpoints, logs, metrics and model/ go (default: runs/<config file name>)."""
    model: AVSRModelSection = field(default_factory=AVSRModelSection)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    validation: ValidationSection = field(default_factory=ValidationSection)
    modality_schedule: list[ModalityStage] = field(default_factory=list)
    """Which inputs training steps use, by step (e.g. audio first, then video, then both): the
    seed paper's unimodal-then-fused curriculum inside one run. Empty: ``av`` throughout."""
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    """Parts frozen until a step, layer-wise learning-rate decay, a lower rate for pretrained parts
    (`avsr.training.finetune`)."""
    export: ExportSection = field(default_factory=ExportSection)
    performance: PerformanceSection = field(default_factory=PerformanceSection)
    """Speed switches (bf16 autocast, torch.compile, fused AdamW, fused attention, channels-last),
    each on for CUDA and off on the CPU unless set (`avsr.training.performance`)."""
    gang: GangSection = field(default_factory=GangSection)
    trainer: TrainerSection = field(default_factory=default_trainer)
    optimizer: OptimizerSection = field(default_factory=lambda: default_optimizer(weight_decay=0.03))
    lr_scheduler: LRSchedulerSection = field(default_factory=lambda: default_lr_scheduler(num_warmup_steps=100))
    regime: RegimeSection = field(default_factory=default_regime)
    common: CommonSection = field(default_factory=default_common)


def load_train_config(path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()) -> AVSRTrainConfig:
    """The defaults, updated by the YAML file at ``path``, then by ``KEY=VALUE`` overrides.

    A config file may name ``base: other.yaml`` (or a list), read first and updated by the file.
    Relative paths in values (``dataset.path`` ...) are relative to the working directory.
    Every problem raises a one-line `TrainConfigError`.
    """
    return load_task_config(read_user_tree(path, overrides))


def load_task_config(tree: dict[str, Any]) -> AVSRTrainConfig:
    """The config of a user's tree (`avsr.training.tasks`'s interface)."""
    return check_train_config(load_config(AVSRTrainConfig, tree))


def check_train_config(config: AVSRTrainConfig) -> AVSRTrainConfig:
    """What the generic loader cannot know about an AVSR config."""
    for m in config.validation.modalities:
        if m not in ("av", *MODALITIES):
            raise TrainConfigError(f"bad value for validation.modalities: {m!r}")
    if config.export.average_last_n < 1:
        raise TrainConfigError("bad value for export.average_last_n: must be >= 1")
    if config.common.no_sweep_dir is False:
        log.warning("common.no_sweep_dir is false: each config change starts a new sub-directory and does not resume")
    try:
        check_finetune(config.finetune)
    except FinetuneConfigError as exc:
        raise TrainConfigError(str(exc)) from None
    return config


def add_finetune_groups(config: AVSRTrainConfig, model_config: AVSRConfig) -> None:
    """Turn ``finetune``'s rates into optimizer parameter groups, after the user's own groups
    (fairseq2 gives a parameter to the first group that matches)."""
    import torch
    from fairseq2.recipe.config import AdamWConfig, AdamWGroupConfig

    from avsr.models.avsr_model import AVSRModel

    optimizer = config.optimizer.config
    if not parameter_groups(model_config, config.finetune, 1.0):
        return
    with torch.device("meta"):  # the parameter names, without allocating the model
        names = [n for n, _ in AVSRModel(model_config, pretrained=False).named_parameters()]
    groups = parameter_groups(model_config, config.finetune, getattr(optimizer, "lr", 0.0), names)
    if not isinstance(optimizer, AdamWConfig):
        raise TrainConfigError("finetune.layer_decay and finetune.pretrained_lr_scale need optimizer.name: adamw")
    optimizer.groups = [
        *optimizer.groups,
        *(AdamWGroupConfig(params=str(g["params"]), lr=float(g["lr"])) for g in groups),
    ]  # type: ignore[arg-type]


def init_folder_config(path: Path) -> AVSRConfig:
    """The model config of the folder ``model.init`` names (built on the meta device: no weights read)."""
    import torch

    from avsr.models.io import build_saved_model, read_model_yaml
    from avsr.models.weights import WeightsError

    try:
        meta = read_model_yaml(path)
        with torch.device("meta"):
            model, _ = build_saved_model(meta, str(path))
    except WeightsError as exc:
        raise TrainConfigError(f"model.init: {exc}") from None
    config = getattr(model, "config", None)
    if not isinstance(config, AVSRConfig):
        family = meta.get("family")
        raise TrainConfigError(f"model.init: {path} is a {family} model, which avsr decodes but cannot fine-tune yet")
    return config


def resolve_model_config(section: AVSRModelSection, tokenizer: Tokenizer) -> AVSRConfig:
    """``section.arch`` (or the config of the ``section.init`` folder) at the tokenizer's
    vocabulary, updated by ``section.config``."""
    arch = section.arch or "default"
    vocab = tokenizer.vocab_size
    if section.init is not None:
        base = init_folder_config(Path(section.init))
    elif arch == "tiny":
        base = AVSRConfig.tiny(vocab)
    elif arch == "seed_paper":
        base = AVSRConfig.seed_paper(vocab)
    elif arch == "default":
        base = AVSRConfig(vocab_size=vocab)
    else:
        raise TrainConfigError(f"bad value for model.arch: {arch!r} (one of {', '.join(ARCHS)})")
    user = dict(section.config or {})
    for key, actual in (("vocab_size", vocab), ("blank_id", tokenizer.blank_id), ("eos_id", tokenizer.eos_id)):
        if key in user and user[key] != actual:
            raise TrainConfigError(f"model.config.{key}={user[key]!r} contradicts the tokenizer ({key} {actual})")
    merged = deep_merge(base.to_dict(), user, ("model", "config"))
    merged.update(vocab_size=vocab, blank_id=tokenizer.blank_id, eos_id=tokenizer.eos_id)
    try:
        resolved = AVSRConfig.from_dict(merged)
    except ConfigError as exc:
        raise TrainConfigError(
            f"bad model config: model.config.{exc}" if not str(exc).startswith("config") else f"bad model config: {exc}"
        ) from None
    return resolved
