"""The AVSR task on fairseq2's recipe/trainer machinery (fairseq2 == 0.8.1).

What knows fairseq2's recipe API lives here and in `avsr.training.frontend_recipe` (the moco,
lrw and wav2vec2 tasks, which reuse this file's task wrapper and log handling; a run directory's
files are `avsr.training.runs`'s): the training configuration (fairseq2's sections plus ours; loaded by
`avsr.training.config_loading`), the model family registration, the `Recipe`, the train/eval
units and the end-of-training export. The model (`avsr.models`), the data pipeline
(`avsr.training.data`) and the export format (`avsr.training.export`) do not depend on it, so a
fairseq2 release that changes the recipe API is confined to these two files.

How a run goes (``avsr-train CONFIG.yaml key=value ...``):

1. `load_train_config` merges the YAML and the overrides over the defaults of `AVSRTrainConfig`
   and checks every key and value (one-line `TrainConfigError`).
2. `prepare_run` loads the tokenizer, resolves the model config (``model.arch`` + ``model.config``
   + the tokenizer's vocabulary) with `AVSRConfig.from_dict`, and reads the manifests (one-line
   `DatasetError`), before fairseq2 starts.
3. `run_training` hands the config to ``fairseq2.recipe.run`` with `AVSRRecipe`. The recipe
   registers the ``avsr`` model family with the resolved config as its architecture (fairseq2
   then builds the model, wraps it for DDP, checkpoints and restores it), and creates a trainer
   over our data reader with a `AVSRTrainUnit` and one `AVSREvalUnit` per validated modality.
   fairseq2 writes ``checkpoints/step_N`` (model, optimizer, trainer, data reader state; a rerun
   of the same command resumes from the last one), ``metrics/*.jsonl``, ``tb/`` and ``logs/``.
4. At the end, rank 0 exports ``OUTPUT_DIR/model/`` (`export_run`), optionally averaging the last
   or best checkpoints.

Deliberate deviations from fairseq2's defaults: mixed precision is off unless asked for
(fairseq2 defaults to bf16 autocast), ``common.no_sweep_dir`` is true (a stable output directory
is what makes "rerun the same command to resume" work), and environment variables that look like
secrets are masked in the start-up log (fairseq2 logs every variable).
"""

from __future__ import annotations

import copy
import logging
import os
import re
import sys
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, final

import yaml
from torch import Tensor
from torch.nn import Module

import fairseq2.recipe  # noqa: F401  (first: importing fairseq2.evaluator first is a circular import in 0.8.1)
from fairseq2.evaluator import EvalUnit
from fairseq2.metrics import Mean, MetricBag, Sum, format_as_float
from fairseq2.metrics.recorders import MetricDescriptor
from fairseq2.recipe import Recipe, RecipeContext
from fairseq2.recipe.config import (
    CommonSection,
    GangSection,
    LRSchedulerSection,
    ModelSection,
    OptimizerSection,
    RegimeSection,
    TrainerSection,
)
from fairseq2.runtime.dependency import DependencyContainer
from fairseq2.task import Task
from fairseq2.trainer import Trainer, TrainUnit

from avsr.data.tokenizers import Tokenizer, TokenizerError, load_tokenizer
from avsr.models.config import FREEZABLE, AVSRConfig, ConfigError, ModalityDropoutConfig
from avsr.training.finetune import FinetuneConfigError, FinetuneSection, check_finetune, frozen_at, parameter_groups
from avsr.training.data import MODALITIES, AVBatch, AVDataset, DatasetConfig, DatasetError
from avsr.training.config_loading import (
    TrainConfigError,
    config_to_dict,
    deep_merge,
    default_common,
    default_lr_scheduler,
    default_optimizer,
    default_regime,
    default_trainer,
    load_config,
    read_user_tree,
)
from avsr.training.checkpoints import secure_checkpoints
from avsr.training.ddp import data_parallel_model
from avsr.training.export import ExportError, write_export
from avsr.training.runs import (
    RUN_FILE,
    averaged_checkpoints,
    checkpoint_model_files,
    read_run_file,
    recorded_config_differs,
)

log = logging.getLogger("avsr.training")

AVSR_FAMILY = "avsr"
ARCHS = ("tiny", "seed_paper", "default")


# ======================================================================================= config


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
    """Also decode greedily with the CTC head and report WER/CER (%)."""


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
class ExportSection:
    enabled: bool = True
    """Write OUTPUT_DIR/model/ when training ends."""
    average_last_n: int = 1
    """Average the weights of the last N checkpoints (1: the final weights)."""
    average_best_n: int = 0
    """If > 0, average the N best checkpoints by regime.score_metric instead."""


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
    from fairseq2.recipe.config import AdamWConfig, AdamWGroupConfig

    import torch

    from avsr.models.avsr_model import AVSRModel

    optimizer = config.optimizer.config
    if not parameter_groups(model_config, config.finetune, 1.0):
        return
    with torch.device("meta"):  # the parameter names, without allocating the model
        names = [n for n, _ in AVSRModel(model_config, pretrained=False).named_parameters()]
    groups = parameter_groups(model_config, config.finetune, getattr(optimizer, "lr", 0.0), names)
    if not isinstance(optimizer, AdamWConfig):
        raise TrainConfigError("finetune.layer_decay and finetune.pretrained_lr_scale need optimizer.name: adamw")
    optimizer.groups = [*optimizer.groups, *(AdamWGroupConfig(params=str(g["params"]), lr=float(g["lr"])) for g in groups)]  # type: ignore[arg-type]


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
        raise TrainConfigError(f"bad model config: model.config.{exc}" if not str(exc).startswith("config") else f"bad model config: {exc}") from None
    return resolved


# ======================================================================================= units


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
        self, model: Module, module: Module, schedule: Sequence[ModalityStage] = (), finetune: FinetuneSection | None = None
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
                detail = f" (audio-only {dropout.p_audio_only}, video-only {dropout.p_video_only})" if stage.inputs == "av" else ""
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
        extra = {"video_corrupted": batch.video_corrupted} if batch.video_corrupted is not None and video is not None else {}
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


# ======================================================================================= recipe


def _create_model(config: AVSRConfig) -> Module:
    from avsr.models.avsr_model import AVSRModel

    model = AVSRModel(config)
    # What the model froze itself at construction (config.freeze, frozen CNNs): fairseq2 turns
    # every parameter trainable after building it; `AVSRRecipe.setup_model` restores these.
    model._avsr_frozen_at_init = frozenset(n for n, p in model.named_parameters() if not p.requires_grad)  # type: ignore[attr-defined]
    return model


def restore_frozen(model: Module) -> None:
    """Freeze again what the model froze at construction (fairseq2 makes everything trainable)."""
    frozen = getattr(model, "_avsr_frozen_at_init", frozenset())
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)


def _has_freezing_schedule(model: Module) -> bool:
    return any(callable(getattr(m, "update_freezing", None)) for m in (getattr(model, "audio_frontend", None), getattr(model, "visual_frontend", None)) if m is not None)


class _SecretFilter(logging.Filter):
    """Masks secret-looking environment variables in fairseq2's start-up log line (it logs them all).

    The line is rebuilt from ``os.environ`` (as fairseq2 builds it), so a value containing the
    separator cannot leak a fragment.
    """

    PREFIX = "Environment Variables - "
    PATTERN = re.compile(r"(?i)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL|AUTH|COOKIE|SIGNATURE)")
    SKIP = {"PS1", "LS_COLORS", "GREP_COLORS", "GCC_COLORS"}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(self.PREFIX):
            pairs = [
                f"{k}=***" if self.PATTERN.search(k) else f"{k}={v}"
                for k, v in os.environ.items()
                if not k.startswith("BASH_FUNC") and k not in self.SKIP
            ]
            record.msg, record.args = self.PREFIX + ", ".join(pairs), ()
        return True


_SECRET_FILTER = _SecretFilter()


def install_secret_filter() -> None:
    logger = logging.getLogger("fairseq2")
    if _SECRET_FILTER not in logger.filters:
        logger.addFilter(_SECRET_FILTER)


@dataclass
class RunInputs:
    """What `prepare_run` resolved before fairseq2 starts."""

    config: AVSRTrainConfig
    model_config: AVSRConfig
    tokenizer: Tokenizer
    tokenizer_dir: Path
    output_dir: Path
    dataset: AVDataset | None = None


class AVSRRecipe(Recipe):
    """fairseq2 recipe: the avsr model family, our data readers, train/eval units and export."""

    def __init__(self, inputs: RunInputs) -> None:
        self._inputs = inputs

    @property
    def config_kls(self) -> type[object]:
        return AVSRTrainConfig

    def register(self, container: DependencyContainer) -> None:
        from fairseq2.composition import register_model_family
        from fairseq2.runtime.config_registry import ConfigRegistrar

        from avsr.models.avsr_model import AVSRModel

        register_model_family(
            container, AVSR_FAMILY, kls=AVSRModel, config_kls=AVSRConfig, factory=_create_model, supports_meta=False
        )
        resolved = self._inputs.model_config
        arch = self._inputs.config.model.arch or "default"
        ConfigRegistrar(container, AVSRConfig)(arch)(lambda: copy.deepcopy(resolved))
        for name, display in (("att_loss", "Attention Loss"), ("cer", "Character Error Rate (CER)")):
            container.collection.register_instance(MetricDescriptor, MetricDescriptor(name, display, 100 if "loss" in name else 200, format_as_float))

    def has_static_autograd_graph(self, context: RecipeContext) -> bool:
        # A freezing schedule (wav2vec 2.0) changes which parameters get gradients during
        # training: DDP must look for unused parameters then. (Decided from the config: the
        # model is still being built when fairseq2 asks.)
        # So does a modality schedule (a stage leaves one branch out).
        audio = self._inputs.model_config.audio
        unimodal_stage = any(stage.inputs != "av" for stage in self._inputs.config.modality_schedule)
        held_parts = bool(self._inputs.config.finetune.freeze)
        return not (audio is not None and audio.kind == "wav2vec2") and not unimodal_stage and not held_parts

    def setup_model(self, context: RecipeContext, model: Module, newly_initialized: bool) -> Module:
        restore_frozen(model)
        config = context.get_config_as(AVSRTrainConfig)
        if newly_initialized:
            for line in initialise_weights(model, config.model, self._inputs.tokenizer):
                log.info("%s", line)
        if context.gangs.dp.size > 1 and _has_freezing_schedule(model):
            # DDP only syncs parameters that are trainable when it wraps the model: make the ones
            # the schedule will train trainable now; the train unit applies the schedule per step.
            model.update_freezing(sys.maxsize)  # type: ignore[operator]
        return model

    def create_task(self, context: RecipeContext) -> Task:
        from avsr.models.avsr_model import AVSRModel

        share_log_files()
        secure_checkpoints(context)
        config = context.get_config_as(AVSRTrainConfig)
        inputs = self._inputs
        module = context.get_model_as(AVSRModel)
        gangs = context.gangs
        dataset = inputs.dataset
        if dataset is None:
            dataset = AVDataset(
                config.dataset, inputs.tokenizer, inputs.model_config.modalities,
                seed=config.common.seed, cache_dir=context.output_dir / "cache",
            )
        else:
            dataset.cache_dir = context.output_dir / "cache"
        log.info("Data: %s", dataset.describe())
        if gangs.root.rank == 0:
            _write_run_file(context.output_dir, inputs)
        reader = dataset.create_train_reader(gangs, num_accumulate=config.trainer.grad_accumulation.num_batches)
        unit = AVSRTrainUnit(data_parallel_model(context), module, config.modality_schedule, config.finetune)
        valid_units: list[EvalUnit[AVBatch]] = []
        valid_readers = []
        if dataset.valid is not None and config.regime.validate_every_n_steps:
            modalities = list(config.validation.modalities) or ["av" if len(inputs.model_config.modalities) == 2 else inputs.model_config.modalities[0]]
            for m in modalities:
                wanted = MODALITIES if m == "av" else (m,)
                name = None if len(modalities) == 1 else m
                valid_units.append(AVSREvalUnit(module, inputs.tokenizer, m, name=name, wer=config.validation.wer))
                valid_readers.append(dataset.create_valid_reader(gangs, wanted))
        trainer = context.create_trainer(unit, reader, valid_units, valid_readers)
        export = config.export
        return TrainThenExport(
            trainer, context,
            (lambda out: export_run(out, last_n=export.average_last_n, best_n=export.average_best_n)) if export.enabled else None,
        )


def share_log_files() -> None:
    """Send our log records to the files fairseq2 opened (``OUTPUT_DIR/logs/rank_N.log``) too."""
    ours = logging.getLogger("avsr")
    ours.setLevel(logging.INFO)
    current = [h for h in logging.getLogger("fairseq2").handlers if isinstance(h, logging.FileHandler)]
    for handler in list(ours.handlers):
        if isinstance(handler, logging.FileHandler) and handler not in current:
            ours.removeHandler(handler)  # from an earlier run in this process
    for handler in current:
        if handler not in ours.handlers:
            ours.addHandler(handler)


def initialise_weights(model: Module, section: AVSRModelSection, tokenizer: Tokenizer | None = None) -> list[str]:
    """Pretrained front-ends, then weights of earlier stages; returns report lines. A model folder
    in ``init_from`` is loaded whole (checksums, its tokenizer's fingerprint); its CTC head and
    decoder are taken only into a run with the same ``tokenizer`` (the run's)."""
    from avsr.models.folder import check_token_modules, load_model_folder
    from avsr.models.io import load_pretrained_frontends
    from avsr.models.weights import WeightsError, load_frontend_weights, read_state_dict

    lines: list[str] = []
    if section.init is not None:
        lines += init_whole_model(model, Path(section.init), tokenizer)
    pre = section.pretrained
    if pre.visual is not None or pre.audio is not None:
        lines += load_pretrained_frontends(model, visual=pre.visual, visual_format=pre.visual_format, audio=pre.audio)  # type: ignore[arg-type]
    for source in section.init_from:
        path = Path(source.path)
        modules = source.modules or [n for n in FREEZABLE if getattr(model, n, None) is not None]
        if path.is_dir():
            try:
                folder = load_model_folder(path)
                if tokenizer is not None:
                    check_token_modules(folder, modules, tokenizer)
            except (WeightsError, TokenizerError) as exc:
                raise TrainConfigError(f"model.init_from: {exc}") from None
            file, state = path / "model.safetensors", folder.model.state_dict()
        else:
            file, state = path, read_state_dict(path)
        for name in modules:
            part = getattr(model, name, None)
            if part is None:
                raise TrainConfigError(f"model.init_from: the model has no {name}")
            prefix = f"{name}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not sub:
                raise TrainConfigError(f"model.init_from: {file} has no weights for {name}")
            report = load_frontend_weights(part, sub, {"": ""})
            lines.append(f"{name} <- {file}: {len(report.loaded)} tensors")
    return lines


def init_whole_model(model: Module, path: Path, tokenizer: Tokenizer | None) -> list[str]:
    """Every weight of the folder ``path`` into ``model`` (``model.init``). Token layers follow the
    run's tokenizer (`avsr.models.vocabulary`); parts the run adds (e.g. absent-modality embeddings
    switched on) keep their initialisation and are reported; a weight with no place, or of another
    shape, is an error."""
    from avsr.models.folder import load_model_folder
    from avsr.models.vocabulary import remap_vocabulary
    from avsr.models.weights import WeightsError
    from avsr.nn.state import name_list, state_problems

    try:
        folder = load_model_folder(path)
    except (WeightsError, TokenizerError) as exc:
        raise TrainConfigError(f"model.init: {exc}") from None
    own = model.state_dict()
    state = folder.model.state_dict()
    lines = []
    if tokenizer is not None and folder.tokenizer.fingerprint != tokenizer.fingerprint:
        state, kept = remap_vocabulary(state, folder.tokenizer.pieces, tokenizer.pieces, own)
        lines.append(f"model.init: the output layers follow the run's tokenizer: {kept} of its {tokenizer.vocab_size} "
                     f"units carried over from {path}'s, the others start fresh")
    new = [k for k in own if k not in state]
    problems = state_problems({k: v for k, v in own.items() if k in state}, state,
                              unexpected="weight(s) the run's model has no place for")
    if problems:
        raise TrainConfigError(f"model.init: {path}: " + "; ".join(problems))
    model.load_state_dict({**own, **state}, strict=True)
    lines.append(f"model <- {path}: {len(state)} tensors" + (f"; new, at initialisation: {name_list(new)}" if new else ""))
    return lines


def inherited_extra(init: Path) -> dict[str, Any]:
    """What the export of a run fine-tuned from the folder ``init`` keeps of its ``extra``
    (`avsr.models.folder.INHERITED_EXTRA`), and where it started from."""
    from avsr.models.folder import INHERITED_EXTRA
    from avsr.models.io import read_model_yaml

    extra = read_model_yaml(init).get("extra") or {}
    kept = {key: extra[key] for key in INHERITED_EXTRA if key in extra}
    kept["init"] = {"path": str(init.resolve()), "source": extra.get("source")}
    return kept


def _write_run_file(output_dir: Path, inputs: RunInputs) -> None:
    from avsr.media.atomic import atomic_path

    data = {
        "model_config": inputs.model_config.to_dict(),
        "tokenizer": str(inputs.tokenizer_dir.resolve()),
        "tokenizer_fingerprint": inputs.tokenizer.fingerprint,
        "train_config": config_to_dict(inputs.config),
    }
    if inputs.dataset is not None:
        data["train_utterance_seconds"] = inputs.dataset.train.length_summary()
    if inputs.config.model.init is not None:
        data["inherited_extra"] = inherited_extra(Path(inputs.config.model.init))
    with atomic_path(output_dir / RUN_FILE) as temp:
        Path(temp).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@final
class TrainThenExport(Task):
    """fairseq2's trainer, then (rank 0, when training ended normally) the model export."""

    def __init__(self, trainer: Trainer, context: RecipeContext, export: Callable[[Path], Path] | None) -> None:
        self._trainer = trainer
        self._context = context
        self._export = export

    def run(self) -> None:
        rank = self._context.gangs.root.rank  # (the trainer closes the gangs when it ends)
        self._trainer.run()  # raises TaskStopException when stopped early: no export then
        if self._export is not None and rank == 0:
            out = self._export(self._context.output_dir)
            log.info("Model exported to %s", out)

    def request_stop(self) -> None:
        self._trainer.request_stop()

    @property
    def step_nr(self) -> int:
        return self._trainer.step_nr

    def close(self) -> None:
        self._trainer.close()


# ======================================================================================= export


def export_run(output_dir: str | os.PathLike[str], *, last_n: int = 1, best_n: int = 0, out_dir: Path | None = None) -> Path:
    """Export ``OUTPUT_DIR/model/`` from a run's checkpoints (no fairseq2 runtime needed).

    Averages the last ``last_n`` checkpoints, or the ``best_n`` best when ``best_n > 0``.
    """
    from avsr.data.video import Preprocessing
    from avsr.models.avsr_model import AVSRModel

    output_dir = Path(output_dir)
    run = read_run_file(output_dir)
    state, steps = averaged_checkpoints(output_dir, last_n=last_n, best_n=best_n)
    model_config = AVSRConfig.from_stored(run["model_config"])
    model = AVSRModel(model_config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"{output_dir / 'checkpoints'} (step {steps[-1]}): weights do not fit the model config ({str(exc).splitlines()[0]})") from None
    extra = {
        "tokenizer_fingerprint": run.get("tokenizer_fingerprint"),
        "step": steps[-1],
        "averaged_steps": steps,
        "source": str(output_dir.resolve()),
        "preprocessing": Preprocessing.from_train_config(run.get("train_config")).to_dict(),
    }
    if run.get("train_utterance_seconds"):
        extra["train_utterance_seconds"] = run["train_utterance_seconds"]
    extra.update(run.get("inherited_extra") or {})
    return write_export(
        out_dir or output_dir / "model",
        model,
        tokenizer_dir=Path(run["tokenizer"]),
        train_config=run.get("train_config"),
        extra=extra,
    )


# ======================================================================================= entry


def prepare_run(config: AVSRTrainConfig, output_dir: Path, *, load_data: bool = True) -> RunInputs:
    """Check everything fairseq2 does not: tokenizer, model config, manifests, resume consistency."""
    ds = config.dataset
    if ds.tokenizer is None:
        raise DatasetError("dataset.tokenizer is not set (a folder made by avsr-prepare tokenizer)")
    if ds.path is None and any(not s.endswith(".tsv") for s in ds.train_splits):
        raise DatasetError("dataset.path is not set (the prepared data folder made by avsr-prepare)")
    if ds.path is not None and not Path(ds.path).is_dir():
        raise DatasetError(f"{ds.path}: prepared data folder not found (dataset.path; make it with avsr-prepare)")
    tok_dir = Path(ds.tokenizer)
    if not tok_dir.exists():
        raise DatasetError(f"{tok_dir}: tokenizer folder not found (dataset.tokenizer; make it with avsr-prepare tokenizer)")
    try:
        tokenizer = load_tokenizer(tok_dir)
    except TokenizerError as exc:
        raise DatasetError(str(exc)) from None
    model_config = resolve_model_config(config.model, tokenizer)
    for stage in config.finetune.freeze:
        for name in stage.modules:
            if name in ("audio_frontend", "audio_encoder") and model_config.audio is None or \
               name in ("visual_frontend", "video_encoder") and model_config.visual is None or \
               name == "encoder" and model_config.encoder is None or name == "ctc_head" and not model_config.ctc_head:
                raise TrainConfigError(f"finetune.freeze: this model has no {name}")
    add_finetune_groups(config, model_config)
    run_file = output_dir / RUN_FILE
    if run_file.is_file() and checkpoint_model_files(output_dir):
        try:
            previous = yaml.safe_load(run_file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            previous = {}
        if recorded_config_differs(previous.get("model_config"), model_config, AVSRConfig.from_stored):
            raise TrainConfigError(
                f"{output_dir} holds checkpoints of a different model config; resume with the same model settings or use another --output-dir"
            )
        if previous.get("tokenizer_fingerprint") not in (None, tokenizer.fingerprint):
            raise TrainConfigError(f"{output_dir} holds checkpoints trained with another tokenizer; use another --output-dir")
    checks = [("validation.modalities", m) for m in config.validation.modalities]
    checks += [("modality_schedule", stage.inputs) for stage in config.modality_schedule]
    for key, m in checks:
        for x in MODALITIES if m == "av" else (m,):
            if x not in model_config.modalities:
                raise TrainConfigError(f"{key}: {m!r} needs a {x} branch, which this model has not")
    for stage in config.modality_schedule:
        if stage.until_step < 1:
            raise TrainConfigError(f"modality_schedule: until_step must be >= 1, got {stage.until_step}")
        if stage.modality_dropout is not None and stage.inputs != "av":
            raise TrainConfigError(f"modality_schedule: modality_dropout needs inputs: av (the stage until step {stage.until_step} has {stage.inputs})")
    regime = config.regime
    if regime.score_metric in ("wer", "cer") and not config.validation.wer:
        raise TrainConfigError(f"regime.score_metric={regime.score_metric} needs validation.wer: true")
    inputs = RunInputs(config=config, model_config=model_config, tokenizer=tokenizer, tokenizer_dir=tok_dir, output_dir=output_dir)
    if load_data:
        inputs.dataset = AVDataset(ds, tokenizer, model_config.modalities, seed=config.common.seed, cache_dir=output_dir / "cache")
        if inputs.dataset.valid is None or len(inputs.dataset.valid) == 0:
            if regime.validate_every_n_steps is not None:
                log.warning("no validation utterances (dataset.valid_split): training without validation")
            inputs.dataset.valid = None
            regime.validate_every_n_steps = None
            regime.validate_every_n_data_epochs = None
            regime.score_metric = None
            regime.keep_best_n_checkpoints = None
    return inputs


def run_training(inputs: RunInputs, *, no_rich: bool = False) -> None:
    """Run (or resume) training with fairseq2's trainer; exceptions propagate to the caller."""
    from fairseq2.recipe import run

    install_secret_filter()
    inputs.output_dir.mkdir(parents=True, exist_ok=True)
    run(AVSRRecipe(inputs), inputs.config, inputs.output_dir, no_rich=no_rich)
    install_secret_filter()


__all__ = [
    "AVSRModelSection",
    "AVSRRecipe",
    "AVSRTrainConfig",
    "AVSREvalUnit",
    "AVSRTrainUnit",
    "ExportSection",
    "InitFromModel",
    "PretrainedFrontends",
    "RunInputs",
    "TrainConfigError",
    "ValidationSection",
    "export_run",
    "initialise_weights",
    "restore_frozen",
    "load_train_config",
    "prepare_run",
    "resolve_model_config",
    "run_training",
]
