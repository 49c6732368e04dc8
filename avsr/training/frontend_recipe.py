"""Training one front-end alone, on fairseq2's trainer: the stages before audio-visual training.

* ``task: moco``: self-supervised MoCo v2 pretraining of the visual front-end on unlabelled mouth
  crops (`avsr.models.moco`, views from `avsr.training.lip_views`);
* ``task: lrw``: word classification (`avsr.models.word_classifier`), from scratch or from a
  MoCo (or earlier LRW) front-end;
* ``task: wav2vec2``: self-supervised wav2vec 2.0 pretraining of the audio front-end on
  unlabelled audio, with fairseq2's model and objective (masking, quantiser, contrastive and
  diversity losses).

The visual tasks export ``OUTPUT_DIR/model/frontend.safetensors`` (keys ``stem.*``/``trunk.*``:
what ``model.pretrained.visual`` of the next stage takes with ``visual_format: avsr``), the audio
task ``OUTPUT_DIR/model/wav2vec2.safetensors`` (fairseq2 naming with the architecture in its
metadata: what ``model.pretrained.audio`` takes, like a converted fairseq1 or Hugging Face
checkpoint); both also write ``model.safetensors`` (the whole trained model) and ``model.yaml``.
Checkpointing, resume, DDP, mixed precision and metrics are fairseq2's, as for the AVSR recipe
(`avsr.training.recipe`, whose config loader, export averaging and task wrapper this reuses).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, final

import torch.nn.functional as F
import yaml
from safetensors.torch import save_file
from torch import Tensor
from torch.nn import Module

import fairseq2.recipe  # noqa: F401  (first: importing fairseq2.evaluator first is a circular import in 0.8.1)
from fairseq2.evaluator import EvalUnit
from fairseq2.metrics import Mean, MetricBag, Sum
from fairseq2.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model, create_wav2vec2_model
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
from fairseq2.trainer import TrainUnit

from avsr.media.atomic import atomic_path
from avsr.models.audio import WAV2VEC2_ARCHS, WAV2VEC2_PREFIXES
from avsr.models.convert.common import ConvertedWav2Vec2, encoder_config_from_dict, encoder_config_to_dict, save_converted
from avsr.models.config import AVSRConfig, ConfigError, EncoderConfig, VisualConfig, from_plain, to_plain
from avsr.models.moco import MoCo, MoCoConfig
from avsr.models.word_classifier import WordClassifier, WordClassifierConfig
from avsr.training.checkpoints import secure_checkpoints
from avsr.training.clips import ClipBatch, ClipDataset, ClipDatasetConfig, ClipMode
from avsr.training.data import DatasetError
from avsr.training.config_loading import (
    TrainConfigError,
    config_to_dict,
    deep_merge,
    default_common,
    default_lr_scheduler,
    default_optimizer,
    default_regime,
    default_trainer,
)
from avsr.training.ddp import data_parallel_model
from avsr.training.export import ExportError
from avsr.training.lip_views import LipViewConfig
from avsr.training.recipe import ExportSection, TrainThenExport, install_secret_filter, share_log_files
from avsr.training.runs import RUN_FILE, averaged_checkpoints, read_run_file, recorded_config_differs

log = logging.getLogger("avsr.training")

WORD_FAMILY = "avsr_word"
MOCO_FAMILY = "avsr_moco"
WAV2VEC2_FAMILY = "avsr_wav2vec2"
FRONTEND_FILE = "frontend.safetensors"
WAV2VEC2_FILE = "wav2vec2.safetensors"
VISUAL_ARCHS = ("tiny", "seed_paper")


# ======================================================================================= models


@dataclass
class MoCoModelConfig:
    """The ``avsr_moco`` model family: a visual front-end and MoCo's settings."""

    visual: VisualConfig = field(default_factory=VisualConfig)
    moco: MoCoConfig = field(default_factory=MoCoConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoCoModelConfig:
        return from_plain(cls, data, "")


def base_visual(arch: str) -> VisualConfig:
    """The visual front-end of a named AVSR size, so a stage's output fits the next stage."""
    if arch == "tiny":
        return AVSRConfig.tiny(3).visual  # type: ignore[return-value]
    if arch == "seed_paper":
        return AVSRConfig.seed_paper().visual  # type: ignore[return-value]
    raise TrainConfigError(f"bad value for model.arch: {arch!r} (one of {', '.join(VISUAL_ARCHS)})")


def _resolve(kind: type, arch: str, base: dict[str, Any], overrides: dict[str, object]) -> Any:
    tree = deep_merge({**base, "visual": to_plain(base_visual(arch))}, dict(overrides))
    try:
        return kind.from_dict(tree)
    except (ConfigError, TypeError, ValueError) as exc:
        raise TrainConfigError(f"bad value in model.config: {exc}") from None


def word_model_config(arch: str, overrides: dict[str, object], num_classes: int) -> WordClassifierConfig:
    backend = EncoderConfig(kind="conformer", layers=2, model_dim=128, heads=4, ffn_dim=256, conv_kernel=15, dropout=0.1)
    if arch == "seed_paper":
        backend = EncoderConfig(kind="conformer", layers=4, model_dim=512, heads=8, ffn_dim=2048, conv_kernel=15, dropout=0.1)
    base = {"num_classes": num_classes, "backend": to_plain(backend), "dropout": 0.1}
    if "num_classes" in overrides and overrides["num_classes"] != num_classes:
        raise TrainConfigError(f"model.config.num_classes={overrides['num_classes']!r} contradicts the data ({num_classes} words)")
    return _resolve(WordClassifierConfig, arch, base, overrides)


def moco_model_config(arch: str, overrides: dict[str, object]) -> MoCoModelConfig:
    return _resolve(MoCoModelConfig, arch, {"moco": to_plain(MoCoConfig())}, overrides)


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
        raise TrainConfigError(f"unknown key(s) in model.config: {', '.join(unknown)} (known: encoder, {', '.join(sorted(known))})")
    if "codebook_sampling_temperature" in overrides:
        overrides["codebook_sampling_temperature"] = tuple(overrides["codebook_sampling_temperature"])  # type: ignore[arg-type]
    return Wav2Vec2Config(encoder_config=encoder, **overrides)  # type: ignore[arg-type]


def _build_moco(config: MoCoModelConfig) -> MoCo:
    return MoCo(config.visual, config.moco)


@dataclass(frozen=True)
class FrontendTask:
    """What differs between the front-end tasks: the fairseq2 model family and how clips are read."""

    family: str
    model_kls: type[Module]
    config_kls: type
    build: Callable[[Any], Module]
    clip_mode: ClipMode
    min_batch_size: Callable[[Any], int] = lambda config: 1
    """Clips a training batch needs, from the model config (2 where the model normalises over the batch)."""


FRONTEND_TASKS = {
    "lrw": FrontendTask(WORD_FAMILY, WordClassifier, WordClassifierConfig, WordClassifier, "classify"),
    "moco": FrontendTask(MOCO_FAMILY, MoCo, MoCoModelConfig, _build_moco, "views", lambda config: config.moco.min_batch_size),
    "wav2vec2": FrontendTask(WAV2VEC2_FAMILY, Wav2Vec2Model, Wav2Vec2Config, create_wav2vec2_model, "audio"),
}


def frontend_of(model: Module) -> Module:
    """The visual front-end a stage trains (the query encoder's, for MoCo)."""
    model = getattr(model, "module", model)
    return model.query_frontend if isinstance(model, MoCo) else model.frontend


# ======================================================================================= config


@dataclass(kw_only=True)
class FrontendModelSection(ModelSection):
    family: str | None = None
    arch: str | None = "tiny"
    """Front-end size. Visual tasks: tiny (the small AVSR recipe's) or seed_paper (ResNet-50);
    wav2vec2: tiny, base, large or large_lv60k."""
    config: dict[str, object] = field(default_factory=dict)
    """Model config fields over the arch (``visual``, ``backend``, ``moco`` ...)."""
    init_frontend: Path | None = None
    """Start from this front-end: an earlier stage's ``model/`` folder or a ``frontend.safetensors``
    (``init_frontend_format: avsr``), or an image MoCo v2 ResNet-50 checkpoint (``moco_v2``:
    ``moco_v2_800ep_pretrain.pth.tar``, the seed paper's start; its trunk only)."""
    init_frontend_format: Literal["avsr", "moco_v2"] = "avsr"


def _visual_regime() -> RegimeSection:
    return default_regime(score_metric="accuracy")


@dataclass(kw_only=True)
class FrontendTrainConfig:
    FREE_FORM: ClassVar = (("model", "config"),)

    output_dir: Path | None = None
    model: FrontendModelSection = field(default_factory=FrontendModelSection)
    dataset: ClipDatasetConfig = field(default_factory=ClipDatasetConfig)
    export: ExportSection = field(default_factory=ExportSection)
    gang: GangSection = field(default_factory=GangSection)
    trainer: TrainerSection = field(default_factory=default_trainer)
    optimizer: OptimizerSection = field(default_factory=lambda: default_optimizer(weight_decay=0.01))
    lr_scheduler: LRSchedulerSection = field(default_factory=lambda: default_lr_scheduler(num_warmup_steps=50))
    regime: RegimeSection = field(default_factory=_visual_regime)
    common: CommonSection = field(default_factory=default_common)


@dataclass(kw_only=True)
class LRWTrainConfig(FrontendTrainConfig):
    """``task: lrw``: word classification on clips whose transcript is one word."""

    task: Literal["lrw"] = "lrw"
    model: FrontendModelSection = field(default_factory=lambda: FrontendModelSection(family=WORD_FAMILY))


@dataclass(kw_only=True)
class Wav2Vec2TrainConfig(FrontendTrainConfig):
    """``task: wav2vec2``: wav2vec 2.0 pretraining on the audio of any manifests (transcripts unused)."""

    task: Literal["wav2vec2"] = "wav2vec2"
    model: FrontendModelSection = field(default_factory=lambda: FrontendModelSection(family=WAV2VEC2_FAMILY))
    diversity_weight: float = 0.1
    features_penalty_weight: float = 10.0
    regime: RegimeSection = field(default_factory=lambda: default_regime(score_metric=None))


@dataclass(kw_only=True)
class MoCoTrainConfig(FrontendTrainConfig):
    """``task: moco``: MoCo v2 pretraining on the clips of any manifests (transcripts unused)."""

    task: Literal["moco"] = "moco"
    model: FrontendModelSection = field(default_factory=lambda: FrontendModelSection(family=MOCO_FAMILY))
    views: LipViewConfig = field(default_factory=LipViewConfig)


# ======================================================================================= units


def _metrics(bag: MetricBag) -> None:
    for name in ("loss", "accuracy"):
        bag.add(name, Mean())
    for name in ("num_examples", "num_elements"):
        bag.add(name, Sum())


def _update(bag: MetricBag, batch: ClipBatch, loss: Tensor, accuracy: Tensor) -> None:
    n = batch.batch_size
    bag.get("loss", Mean).update(loss.detach().float(), weight=n)
    bag.get("accuracy", Mean).update(100.0 * accuracy.detach().float(), weight=n)
    bag.get("num_examples", Sum).update(n)
    bag.get("num_elements", Sum).update(batch.num_elements)


@dataclass(frozen=True)
class Wav2Vec2Weights:
    diversity: float = 0.1
    features_penalty: float = 10.0


def _wav2vec2_step(model: Module, batch: ClipBatch, weights: Wav2Vec2Weights) -> tuple[Tensor, Tensor, int, Any]:
    """(summed loss, accuracy of picking the true quantised target, number of targets, the loss parts)."""
    from fairseq2.nn import BatchLayout

    layout = BatchLayout.of(batch.inputs, seq_lens=batch.lengths.tolist())
    loss, out = model(batch.inputs, layout, diversity_weight=weights.diversity, features_penalty_weight=weights.features_penalty)
    logits = out.logits  # (N, S_msk, 1 + distractors); the true target first
    accuracy = (logits[..., 0] > logits[..., 1:].max(dim=-1).values).float().mean()
    return loss.aggregate, accuracy, int(out.num_targets), (loss, out)


def _update_wav2vec2(bag: MetricBag, batch: ClipBatch, summed: Tensor, accuracy: Tensor, targets: int, parts: Any) -> None:
    loss, out = parts
    n = max(targets, 1)
    _update(bag, batch, summed / n, accuracy)
    bag.get("contrastive_loss", Mean).update(loss.contrastive.detach().float() / n, weight=n)
    bag.get("diversity_loss", Mean).update(loss.diversity.detach().float() / n, weight=n)
    bag.get("code_perplexity", Mean).update(out.quantizer_output.code_perplexity.detach().float(), weight=1)
    bag.get("prob_perplexity", Mean).update(out.quantizer_output.prob_perplexity.detach().float(), weight=1)


def _wav2vec2_metrics(bag: MetricBag) -> None:
    _metrics(bag)
    for name in ("contrastive_loss", "diversity_loss", "code_perplexity", "prob_perplexity"):
        bag.add(name, Mean())


def _step(model: Module, batch: ClipBatch) -> tuple[Tensor, Tensor]:
    """(mean loss, accuracy) of one batch of the visual models."""
    if batch.key_inputs is not None:  # MoCo views
        return model(batch.inputs, batch.key_inputs, batch.lengths, batch.key_lengths)
    assert batch.labels is not None
    logits = model(batch.inputs, batch.lengths)
    return F.cross_entropy(logits.float(), batch.labels), (logits.argmax(-1) == batch.labels).float().mean()


@final
class ClipTrainUnit(TrainUnit[ClipBatch]):
    """Cross-entropy (LRW) or InfoNCE (MoCo), summed over the clips of the step; wav2vec 2.0's
    loss summed over its masked targets."""

    def __init__(self, model: Module, wav2vec2: Wav2Vec2Weights | None = None) -> None:
        self._model = model
        self._wav2vec2 = wav2vec2

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        (_wav2vec2_metrics if self._wav2vec2 else _metrics)(metric_bag)

    def process_batch(self, batch: ClipBatch, metric_bag: MetricBag) -> tuple[Tensor, int | None]:
        if self._wav2vec2 is not None:
            summed, accuracy, targets, parts = _wav2vec2_step(self._model, batch, self._wav2vec2)
            _update_wav2vec2(metric_bag, batch, summed, accuracy, targets, parts)
            return summed, targets
        loss, accuracy = _step(self._model, batch)
        _update(metric_bag, batch, loss, accuracy)
        return loss * batch.batch_size, batch.batch_size


@final
class ClipEvalUnit(EvalUnit[ClipBatch]):
    """Validation loss and accuracy (LRW: top-1 word accuracy; MoCo: own key picked among the
    queue; wav2vec 2.0: true target picked among the distractors)."""

    def __init__(self, module: Module, wav2vec2: Wav2Vec2Weights | None = None) -> None:
        self._module = module
        self._wav2vec2 = wav2vec2

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        (_wav2vec2_metrics if self._wav2vec2 else _metrics)(metric_bag)

    def process_batch(self, batch: ClipBatch, metric_bag: MetricBag) -> None:
        if self._wav2vec2 is not None:
            _update_wav2vec2(metric_bag, batch, *_wav2vec2_step(self._module, batch, self._wav2vec2))
            return
        loss, accuracy = _step(self._module, batch)
        _update(metric_bag, batch, loss, accuracy)


# ======================================================================================= recipe


@dataclass
class FrontendRunInputs:
    config: FrontendTrainConfig
    model_config: WordClassifierConfig | MoCoModelConfig | Wav2Vec2Config
    dataset: ClipDataset
    output_dir: Path

    @property
    def task(self) -> str:
        return self.config.task  # type: ignore[attr-defined]


class FrontendRecipe(Recipe):
    """fairseq2 recipe for ``task: lrw``, ``task: moco`` and ``task: wav2vec2``."""

    def __init__(self, inputs: FrontendRunInputs) -> None:
        self._inputs = inputs

    @property
    def config_kls(self) -> type[object]:
        return type(self._inputs.config)

    def register(self, container: DependencyContainer) -> None:
        from fairseq2.composition import register_model_family
        from fairseq2.runtime.config_registry import ConfigRegistrar

        task = FRONTEND_TASKS[self._inputs.task]
        register_model_family(container, task.family, kls=task.model_kls, config_kls=task.config_kls, factory=task.build, supports_meta=False)
        resolved = self._inputs.model_config
        ConfigRegistrar(container, task.config_kls)(self._inputs.config.model.arch or "tiny")(lambda: copy.deepcopy(resolved))

    def setup_model(self, context: RecipeContext, model: Module, newly_initialized: bool) -> Module:
        if isinstance(model, MoCo):  # fairseq2 makes every parameter trainable: the key encoder is not
            for p in model._key_parameters():
                p.requires_grad_(False)
        section = self._inputs.config.model
        if newly_initialized and section.init_frontend is not None:  # (visual tasks only: prepare checks)
            log.info("%s", load_frontend_into(model, section.init_frontend, section.init_frontend_format))
        return model

    def create_task(self, context: RecipeContext) -> Task:
        share_log_files()
        secure_checkpoints(context)
        inputs = self._inputs
        dataset = inputs.dataset
        dataset.cache_dir = context.output_dir / "cache"
        log.info("Data: %s", dataset.describe())
        if context.gangs.root.rank == 0:
            _write_run_file(context.output_dir, inputs)
        config = inputs.config
        min_batch = FRONTEND_TASKS[inputs.task].min_batch_size(inputs.model_config)
        reader = dataset.create_train_reader(context.gangs, num_accumulate=config.trainer.grad_accumulation.num_batches, min_batch_size=min_batch)
        weights = None
        if isinstance(config, Wav2Vec2TrainConfig):
            weights = Wav2Vec2Weights(config.diversity_weight, config.features_penalty_weight)
        unit = ClipTrainUnit(data_parallel_model(context), weights)
        valid_units: list[EvalUnit[ClipBatch]] = []
        valid_readers = []
        if dataset.valid and config.regime.validate_every_n_steps:
            valid_units.append(ClipEvalUnit(context.get_model_as(Module), weights))
            valid_readers.append(dataset.create_valid_reader(context.gangs))
        trainer = context.create_trainer(unit, reader, valid_units, valid_readers)
        export = config.export
        return TrainThenExport(
            trainer, context,
            (lambda out: export_frontend_run(out, last_n=export.average_last_n, best_n=export.average_best_n)) if export.enabled else None,
        )


def frontend_file(path: str | os.PathLike[str], kind: str = "avsr") -> Path:
    """The front-end weights file of a stage's ``model/`` folder (or the file itself)."""
    p = Path(path)
    file = p / FRONTEND_FILE if (p.is_dir() and kind == "avsr") else p
    if not file.is_file():
        raise TrainConfigError(f"model.init_frontend: {file} not found (an earlier stage's model/ folder or {FRONTEND_FILE})")
    return file


def load_frontend_into(model: Module, path: str | os.PathLike[str], kind: str = "avsr") -> str:
    """Copy a front-end (a stage's ``model/`` folder or ``frontend.safetensors``; or an image MoCo
    v2 checkpoint's trunk) into ``model``'s, strictly (MoCo: into both encoders)."""
    from avsr.models.visual import load_moco_v2, load_visual_frontend

    file = frontend_file(path, kind)
    load = load_moco_v2 if kind == "moco_v2" else load_visual_frontend
    try:
        report = load(frontend_of(model), file)
    except ValueError as exc:
        raise TrainConfigError(f"model.init_frontend: {exc}") from None
    if isinstance(model, MoCo):
        model.key_frontend.load_state_dict(model.query_frontend.state_dict())
    return f"visual front-end <- {report.summary()}"


def model_config_to_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Wav2Vec2Config):
        plain = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "encoder_config"}
        plain["codebook_sampling_temperature"] = list(plain["codebook_sampling_temperature"])
        return {"encoder": encoder_config_to_dict(config.encoder_config), **plain}
    return config.to_dict()


def model_config_from_dict(task: str, data: dict[str, Any]) -> Any:
    """Inverse of `model_config_to_dict` (wav2vec 2.0: the stored encoder is complete, so the arch
    it is applied over does not matter)."""
    if task == "wav2vec2":
        return wav2vec2_model_config("base", data)
    return FRONTEND_TASKS[task].config_kls.from_dict(data)


def _write_run_file(output_dir: Path, inputs: FrontendRunInputs) -> None:
    data = {
        "task": inputs.task,
        "model_config": model_config_to_dict(inputs.model_config),
        "classes": inputs.dataset.classes,
        "train_config": config_to_dict(inputs.config),
    }
    with atomic_path(output_dir / RUN_FILE) as temp:
        Path(temp).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


# ======================================================================================= export


def export_frontend_run(output_dir: str | os.PathLike[str], *, last_n: int = 1, best_n: int = 0, out_dir: Path | None = None) -> Path:
    """``OUTPUT_DIR/model/``: frontend.safetensors, model.safetensors and model.yaml."""
    output_dir = Path(output_dir)
    run = read_run_file(output_dir)
    task = run.get("task")
    if task not in FRONTEND_TASKS:
        raise ExportError(f"{output_dir / RUN_FILE}: not a front-end run (task {task!r})")
    state, steps = averaged_checkpoints(output_dir, last_n=last_n, best_n=best_n)
    config = model_config_from_dict(task, run["model_config"])
    model = FRONTEND_TASKS[task].build(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"{output_dir}: weights do not fit the model config ({str(exc).splitlines()[0]})") from None
    out = out_dir or output_dir / "model"
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / "model.safetensors") as temp:
        save_file(weights, temp)
    if task == "wav2vec2":
        normalize = bool(((run.get("train_config") or {}).get("dataset") or {}).get("normalize_audio", False))
        kept = {k: v for k, v in weights.items() if k.startswith(WAV2VEC2_PREFIXES)}
        save_converted(ConvertedWav2Vec2(kept, config.encoder_config, "avsr", normalize_waveform=normalize), out / WAV2VEC2_FILE)
        frontend = {"file": WAV2VEC2_FILE, "encoder": run["model_config"]["encoder"], "normalize_waveform": normalize}
    else:
        with atomic_path(out / FRONTEND_FILE) as temp:
            save_file({k: v.detach().cpu().contiguous() for k, v in frontend_of(model).state_dict().items()}, temp)
        frontend = {"file": FRONTEND_FILE, "visual": run["model_config"]["visual"]}
    meta = {
        "format": f"avsr-{task}",
        "task": task,
        "config": run["model_config"],
        "classes": run.get("classes"),
        "step": steps[-1],
        "averaged_steps": steps,
        "frontend": frontend,
        "source": str(output_dir.resolve()),
    }
    with atomic_path(out / "model.yaml") as temp:
        Path(temp).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return out


# ======================================================================================= entry


def prepare_frontend_run(config: FrontendTrainConfig, output_dir: Path) -> FrontendRunInputs:
    """Read the clips and resolve the model config before fairseq2 starts (one-line errors)."""
    task = config.task  # type: ignore[attr-defined]
    views = config.views if isinstance(config, MoCoTrainConfig) else None
    dataset = ClipDataset(config.dataset, FRONTEND_TASKS[task].clip_mode, views, seed=config.common.seed, cache_dir=output_dir / "cache")
    arch = config.model.arch or "tiny"
    model_config: Any
    if task == "moco":
        model_config = moco_model_config(arch, config.model.config)
    elif task == "wav2vec2":
        if config.model.init_frontend is not None:
            raise TrainConfigError("model.init_frontend is for the visual tasks (wav2vec2 pretraining starts from scratch)")
        model_config = wav2vec2_model_config(arch, config.model.config)
    else:
        assert dataset.classes is not None
        model_config = word_model_config(arch, config.model.config, len(dataset.classes))
    min_batch = FRONTEND_TASKS[task].min_batch_size(model_config)
    if config.dataset.batch_size < min_batch:
        raise TrainConfigError(f"dataset.batch_size={config.dataset.batch_size}: this model normalises over the batch and needs at least {min_batch} clips per batch")
    if len(dataset.train) < min_batch:
        raise DatasetError(f"{len(dataset.train)} training clip(s): this model needs at least {min_batch} per batch")
    if config.model.init_frontend is not None:
        frontend_file(config.model.init_frontend, config.model.init_frontend_format)  # fails now, not after fairseq2 started
    previous = output_dir / RUN_FILE
    if previous.is_file():
        old = yaml.safe_load(previous.read_text(encoding="utf-8")) or {}
        read = functools.partial(model_config_from_dict, task)
        if recorded_config_differs(old.get("model_config"), model_config, read) and (output_dir / "checkpoints").is_dir():
            raise TrainConfigError(f"{output_dir} holds checkpoints of a different model config; use another --output-dir")
    if not dataset.valid:
        config.regime.validate_every_n_steps = None
        config.regime.score_metric = None
    return FrontendRunInputs(config, model_config, dataset, output_dir)


def run_frontend_training(inputs: FrontendRunInputs, *, no_rich: bool = False) -> None:
    from fairseq2.recipe import run

    install_secret_filter()
    inputs.output_dir.mkdir(parents=True, exist_ok=True)
    run(FrontendRecipe(inputs), inputs.config, inputs.output_dir, no_rich=no_rich)


__all__ = [
    "FRONTEND_FILE",
    "FrontendRecipe",
    "LRWTrainConfig",
    "MoCoModelConfig",
    "MoCoTrainConfig",
    "Wav2Vec2TrainConfig",
    "export_frontend_run",
    "load_frontend_into",
    "prepare_frontend_run",
    "run_frontend_training",
]
