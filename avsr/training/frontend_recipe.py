"""Training one front-end alone, on fairseq2's trainer: the stages before audio-visual training.

What the front-end tasks share lives here (the config sections, the train and eval units, the
fairseq2 recipe, export); what differs is a `FrontendTask`, one module per task:

* ``task: moco`` (`avsr.training.moco_task`): self-supervised MoCo v2 pretraining of the visual
  front-end on unlabelled mouth crops (`avsr.models.moco`, views from `avsr.training.lip_views`);
* ``task: lrw`` (`avsr.training.lrw_task`): word classification (`avsr.models.word_classifier`),
  from scratch or from a MoCo (or earlier LRW) front-end;
* ``task: wav2vec2`` (`avsr.training.wav2vec2_task`): self-supervised wav2vec 2.0 pretraining of
  the audio front-end on unlabelled audio, with fairseq2's model and objective.

The visual tasks export ``OUTPUT_DIR/model/frontend.safetensors`` (keys ``stem.*``/``trunk.*``:
what ``model.pretrained.visual`` of the next stage takes with ``visual_format: avsr``), the audio
task ``OUTPUT_DIR/model/wav2vec2.safetensors`` (fairseq2 naming with the architecture in its
metadata: what ``model.pretrained.audio`` takes, like a converted fairseq1 or Hugging Face
checkpoint); both also write ``model.safetensors`` (the whole trained model) and ``model.yaml``.
Checkpointing, resume, DDP, mixed precision and metrics are fairseq2's, as for the AVSR recipe
(`avsr.training.recipe`), on the same kit (`avsr.training.kit`).
"""

from __future__ import annotations

import importlib
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, final

import fairseq2.recipe  # noqa: F401  (first: importing fairseq2.evaluator first is a circular import in 0.8.1)
import yaml
from fairseq2.evaluator import EvalUnit
from fairseq2.metrics import Mean, MetricBag, Sum
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
from safetensors.torch import save_file
from torch import Tensor
from torch.nn import Module

from avsr.media.atomic import atomic_path
from avsr.models.config import AVSRConfig, ConfigError, VisualConfig, to_plain
from avsr.training.checkpoints import secure_checkpoints
from avsr.training.clips import ClipBatch, ClipDataset, ClipDatasetConfig, ClipMode
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
)
from avsr.training.data import DatasetError
from avsr.training.ddp import data_parallel_model
from avsr.training.export import ExportError
from avsr.training.kit import (
    ExportSection,
    TrainThenExport,
    install_secret_filter,
    register_resolved_model,
    share_log_files,
)
from avsr.training.lip_views import LipViewConfig
from avsr.training.runs import RUN_FILE, averaged_checkpoints, read_run_file, recorded_config_differs

log = logging.getLogger("avsr.training")

FRONTEND_FILE = "frontend.safetensors"
VISUAL_ARCHS = ("tiny", "seed_paper")
#: task -> "module:TASK", the `FrontendTask` of each front-end task (imported when first asked for).
FRONTEND_TASKS = {
    "lrw": "avsr.training.lrw_task:TASK",
    "moco": "avsr.training.moco_task:TASK",
    "wav2vec2": "avsr.training.wav2vec2_task:TASK",
}


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


def visual_regime() -> RegimeSection:
    return default_regime(score_metric="accuracy")


@dataclass(kw_only=True)
class FrontendTrainConfig:
    """What every front-end task's config has; each task's module subclasses it with its ``task``."""

    FREE_FORM: ClassVar = (("model", "config"),)

    output_dir: Path | None = None
    model: FrontendModelSection = field(default_factory=FrontendModelSection)
    dataset: ClipDatasetConfig = field(default_factory=ClipDatasetConfig)
    export: ExportSection = field(default_factory=ExportSection)
    gang: GangSection = field(default_factory=GangSection)
    trainer: TrainerSection = field(default_factory=default_trainer)
    optimizer: OptimizerSection = field(default_factory=lambda: default_optimizer(weight_decay=0.01))
    lr_scheduler: LRSchedulerSection = field(default_factory=lambda: default_lr_scheduler(num_warmup_steps=50))
    regime: RegimeSection = field(default_factory=visual_regime)
    common: CommonSection = field(default_factory=default_common)


# ======================================================================================= tasks


class ClipObjective(Protocol):
    """A task's loss on one batch of clips, and the metrics it reports."""

    def add_metrics(self, bag: MetricBag) -> None: ...

    def __call__(self, model: Module, batch: ClipBatch, bag: MetricBag) -> tuple[Tensor, int]:
        """(the loss summed over the batch's units, how many units), with ``bag`` updated."""
        ...


def add_loss_metrics(bag: MetricBag) -> None:
    for name in ("loss", "accuracy"):
        bag.add(name, Mean())
    for name in ("num_examples", "num_elements"):
        bag.add(name, Sum())


def update_loss_metrics(bag: MetricBag, batch: ClipBatch, loss: Tensor, accuracy: Tensor) -> None:
    n = batch.batch_size
    bag.get("loss", Mean).update(loss.detach().float(), weight=n)
    bag.get("accuracy", Mean).update(100.0 * accuracy.detach().float(), weight=n)
    bag.get("num_examples", Sum).update(n)
    bag.get("num_elements", Sum).update(batch.num_elements)


class MeanLossObjective(ABC):
    """An objective with one mean loss and one accuracy per batch of clips (the visual tasks)."""

    def add_metrics(self, bag: MetricBag) -> None:
        add_loss_metrics(bag)

    @abstractmethod
    def loss_and_accuracy(self, model: Module, batch: ClipBatch) -> tuple[Tensor, Tensor]:
        """(mean loss, accuracy) of the batch."""

    def __call__(self, model: Module, batch: ClipBatch, bag: MetricBag) -> tuple[Tensor, int]:
        loss, accuracy = self.loss_and_accuracy(model, batch)
        update_loss_metrics(bag, batch, loss, accuracy)
        return loss * batch.batch_size, batch.batch_size


class FrontendTask(ABC):
    """What one front-end task is: its config class, its fairseq2 model family, how its clips
    are read, how its model config is resolved, its objective and what its export writes."""

    name: ClassVar[str]
    family: ClassVar[str]
    model_kls: ClassVar[type[Module]]
    config_kls: ClassVar[type]
    train_config_kls: ClassVar[type[FrontendTrainConfig]]
    clip_mode: ClassVar[ClipMode]

    @abstractmethod
    def build(self, model_config: Any) -> Module: ...

    @abstractmethod
    def model_config(self, config: FrontendTrainConfig, dataset: ClipDataset) -> Any:
        """The model config from ``model.arch`` and ``model.config`` (one-line TrainConfigError)."""

    @abstractmethod
    def objective(self, config: FrontendTrainConfig) -> ClipObjective: ...

    @abstractmethod
    def export_frontend(
        self, model: Module, weights: dict[str, Tensor], run: dict[str, Any], out: Path
    ) -> dict[str, Any]:
        """Write the front-end file the next stage takes into ``out``; returns model.yaml's ``frontend`` entry."""

    def check(self, config: FrontendTrainConfig) -> None:
        """Refuse settings that do not apply to this task (before any data is read)."""

    def views(self, config: FrontendTrainConfig) -> LipViewConfig | None:
        return None

    def min_batch_size(self, model_config: Any) -> int:
        """Clips a training batch needs (2 where the model normalises over the batch)."""
        return 1

    def setup_model(self, model: Module, section: FrontendModelSection, newly_initialized: bool) -> None:
        """After fairseq2 built (or restored) the model."""

    def config_to_dict(self, model_config: Any) -> dict[str, Any]:
        return model_config.to_dict()

    def config_from_dict(self, data: dict[str, Any]) -> Any:
        return self.config_kls.from_dict(data)


def frontend_task(name: str) -> FrontendTask:
    """The `FrontendTask` of ``name`` (KeyError for a name not in ``FRONTEND_TASKS``)."""
    module, _, attr = FRONTEND_TASKS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


# ---------------------------------------------------------------------- the visual tasks
def base_visual(arch: str) -> VisualConfig:
    """The visual front-end of a named AVSR size, so a stage's output fits the next stage."""
    if arch == "tiny":
        return AVSRConfig.tiny(3).visual  # type: ignore[return-value]
    if arch == "seed_paper":
        return AVSRConfig.seed_paper().visual  # type: ignore[return-value]
    raise TrainConfigError(f"bad value for model.arch: {arch!r} (one of {', '.join(VISUAL_ARCHS)})")


def resolve_visual_model(kind: type, arch: str, base: dict[str, Any], overrides: dict[str, object]) -> Any:
    """``kind.from_dict`` of ``base`` with the arch's visual front-end, under ``overrides``."""
    tree = deep_merge({**base, "visual": to_plain(base_visual(arch))}, dict(overrides))
    try:
        return kind.from_dict(tree)
    except (ConfigError, TypeError, ValueError) as exc:
        raise TrainConfigError(f"bad value in model.config: {exc}") from None


class VisualTask(FrontendTask):
    """A task that trains the visual front-end: it may start from an earlier stage's front-end
    (``model.init_frontend``) and exports ``frontend.safetensors``."""

    def frontend_of(self, model: Module) -> Module:
        """The visual front-end the task trains."""
        return getattr(model, "module", model).frontend

    def setup_model(self, model: Module, section: FrontendModelSection, newly_initialized: bool) -> None:
        if newly_initialized and section.init_frontend is not None:
            log.info("%s", load_frontend_into(self, model, section.init_frontend, section.init_frontend_format))

    def export_frontend(
        self, model: Module, weights: dict[str, Tensor], run: dict[str, Any], out: Path
    ) -> dict[str, Any]:
        with atomic_path(out / FRONTEND_FILE) as temp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.frontend_of(model).state_dict().items()}, temp)
        return {"file": FRONTEND_FILE, "visual": run["model_config"]["visual"]}


def frontend_file(path: str | os.PathLike[str], kind: str = "avsr") -> Path:
    """The front-end weights file of a stage's ``model/`` folder (or the file itself)."""
    p = Path(path)
    file = p / FRONTEND_FILE if (p.is_dir() and kind == "avsr") else p
    if not file.is_file():
        raise TrainConfigError(
            f"model.init_frontend: {file} not found (an earlier stage's model/ folder or {FRONTEND_FILE})"
        )
    return file


def load_frontend_into(task: VisualTask, model: Module, path: str | os.PathLike[str], kind: str = "avsr") -> str:
    """Copy a front-end (a stage's ``model/`` folder or ``frontend.safetensors``; or an image MoCo
    v2 checkpoint's trunk) into the front-end ``task`` trains, strictly."""
    from avsr.models.visual import load_moco_v2, load_visual_frontend

    file = frontend_file(path, kind)
    load = load_moco_v2 if kind == "moco_v2" else load_visual_frontend
    try:
        report = load(task.frontend_of(model), file)
    except ValueError as exc:
        raise TrainConfigError(f"model.init_frontend: {exc}") from None
    return f"visual front-end <- {report.summary()}"


# ======================================================================================= units


@final
class ClipTrainUnit(TrainUnit[ClipBatch]):
    """The task's objective summed over the units of the step (clips, or wav2vec 2.0's masked targets)."""

    def __init__(self, model: Module, objective: ClipObjective) -> None:
        self._model = model
        self._objective = objective

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        self._objective.add_metrics(metric_bag)

    def process_batch(self, batch: ClipBatch, metric_bag: MetricBag) -> tuple[Tensor, int | None]:
        return self._objective(self._model, batch, metric_bag)


@final
class ClipEvalUnit(EvalUnit[ClipBatch]):
    """Validation loss and accuracy (LRW: top-1 word accuracy; MoCo: own key picked among the
    queue; wav2vec 2.0: true target picked among the distractors)."""

    def __init__(self, module: Module, objective: ClipObjective) -> None:
        self._module = module
        self._objective = objective

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        self._objective.add_metrics(metric_bag)

    def process_batch(self, batch: ClipBatch, metric_bag: MetricBag) -> None:
        self._objective(self._module, batch, metric_bag)


# ======================================================================================= recipe


@dataclass
class FrontendRunInputs:
    config: FrontendTrainConfig
    model_config: Any
    dataset: ClipDataset
    output_dir: Path

    @property
    def task(self) -> FrontendTask:
        return frontend_task(self.config.task)  # type: ignore[attr-defined]


class FrontendRecipe(Recipe):
    """fairseq2 recipe for the front-end tasks (``task: lrw``, ``moco``, ``wav2vec2``)."""

    def __init__(self, inputs: FrontendRunInputs) -> None:
        self._inputs = inputs

    @property
    def config_kls(self) -> type[object]:
        return type(self._inputs.config)

    def register(self, container: DependencyContainer) -> None:
        task = self._inputs.task
        arch = self._inputs.config.model.arch or "tiny"
        register_resolved_model(
            container, task.family, task.model_kls, task.config_kls, task.build, arch, self._inputs.model_config
        )

    def setup_model(self, context: RecipeContext, model: Module, newly_initialized: bool) -> Module:
        self._inputs.task.setup_model(model, self._inputs.config.model, newly_initialized)
        return model

    def create_task(self, context: RecipeContext) -> Task:
        share_log_files()
        secure_checkpoints(context)
        inputs = self._inputs
        task = inputs.task
        dataset = inputs.dataset
        dataset.cache_dir = context.output_dir / "cache"
        log.info("Data: %s", dataset.describe())
        if context.gangs.root.rank == 0:
            _write_run_file(context.output_dir, inputs)
        config = inputs.config
        reader = dataset.create_train_reader(
            context.gangs,
            num_accumulate=config.trainer.grad_accumulation.num_batches,
            min_batch_size=task.min_batch_size(inputs.model_config),
        )
        objective = task.objective(config)
        unit = ClipTrainUnit(data_parallel_model(context), objective)
        valid_units: list[EvalUnit[ClipBatch]] = []
        valid_readers = []
        if dataset.valid and config.regime.validate_every_n_steps:
            valid_units.append(ClipEvalUnit(context.get_model_as(Module), objective))
            valid_readers.append(dataset.create_valid_reader(context.gangs))
        trainer = context.create_trainer(unit, reader, valid_units, valid_readers)
        export = config.export
        return TrainThenExport(
            trainer,
            context,
            (lambda out: export_run(out, last_n=export.average_last_n, best_n=export.average_best_n))
            if export.enabled
            else None,
        )


def _write_run_file(output_dir: Path, inputs: FrontendRunInputs) -> None:
    data = {
        "task": inputs.config.task,  # type: ignore[attr-defined]
        "model_config": inputs.task.config_to_dict(inputs.model_config),
        "classes": inputs.dataset.classes,
        "train_config": config_to_dict(inputs.config),
    }
    with atomic_path(output_dir / RUN_FILE) as temp:
        Path(temp).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


# ======================================================================================= export


def export_run(
    output_dir: str | os.PathLike[str], *, last_n: int = 1, best_n: int = 0, out_dir: Path | None = None
) -> Path:
    """``OUTPUT_DIR/model/``: the task's front-end file, model.safetensors and model.yaml."""
    output_dir = Path(output_dir)
    run = read_run_file(output_dir)
    name = run.get("task")
    if name not in FRONTEND_TASKS:
        raise ExportError(f"{output_dir / RUN_FILE}: not a front-end run (task {name!r})")
    task = frontend_task(name)
    state, steps = averaged_checkpoints(output_dir, last_n=last_n, best_n=best_n)
    model = task.build(task.config_from_dict(run["model_config"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"{output_dir}: weights do not fit the model config ({str(exc).splitlines()[0]})") from None
    out = out_dir or output_dir / "model"
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / "model.safetensors") as temp:
        save_file(weights, temp)
    meta = {
        "format": f"avsr-{name}",
        "task": name,
        "config": run["model_config"],
        "classes": run.get("classes"),
        "step": steps[-1],
        "averaged_steps": steps,
        "frontend": task.export_frontend(model, weights, run, out),
        "source": str(output_dir.resolve()),
    }
    with atomic_path(out / "model.yaml") as temp:
        Path(temp).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return out


# ======================================================================================= entry


def load_task_config(tree: dict[str, Any]) -> FrontendTrainConfig:
    """The config of the task ``tree["task"]`` names (one-line TrainConfigError)."""
    task = frontend_task(tree["task"])
    config = load_config(task.train_config_kls, tree)
    task.check(config)
    return config


def prepare_run(config: FrontendTrainConfig, output_dir: Path) -> FrontendRunInputs:
    """Read the clips and resolve the model config before fairseq2 starts (one-line errors)."""
    task = frontend_task(config.task)  # type: ignore[attr-defined]
    task.check(config)
    dataset = ClipDataset(
        config.dataset, task.clip_mode, task.views(config), seed=config.common.seed, cache_dir=output_dir / "cache"
    )
    model_config = task.model_config(config, dataset)
    min_batch = task.min_batch_size(model_config)
    if config.dataset.batch_size < min_batch:
        raise TrainConfigError(
            f"dataset.batch_size={config.dataset.batch_size}: this model normalises over the batch and needs at least {min_batch} clips per batch"
        )
    if len(dataset.train) < min_batch:
        raise DatasetError(f"{len(dataset.train)} training clip(s): this model needs at least {min_batch} per batch")
    if config.model.init_frontend is not None:
        frontend_file(
            config.model.init_frontend, config.model.init_frontend_format
        )  # fails now, not after fairseq2 started
    previous = output_dir / RUN_FILE
    if previous.is_file():
        old = yaml.safe_load(previous.read_text(encoding="utf-8")) or {}
        if (
            recorded_config_differs(old.get("model_config"), model_config, task.config_from_dict)
            and (output_dir / "checkpoints").is_dir()
        ):
            raise TrainConfigError(
                f"{output_dir} holds checkpoints of a different model config; use another --output-dir"
            )
    if not dataset.valid:
        config.regime.validate_every_n_steps = None
        config.regime.score_metric = None
    return FrontendRunInputs(config, model_config, dataset, output_dir)


def run_training(inputs: FrontendRunInputs, *, no_rich: bool = False) -> None:
    from fairseq2.recipe import run

    install_secret_filter()
    inputs.output_dir.mkdir(parents=True, exist_ok=True)
    run(FrontendRecipe(inputs), inputs.config, inputs.output_dir, no_rich=no_rich)


__all__ = [
    "FRONTEND_FILE",
    "FRONTEND_TASKS",
    "ClipObjective",
    "FrontendModelSection",
    "FrontendRecipe",
    "FrontendTask",
    "FrontendTrainConfig",
    "MeanLossObjective",
    "VisualTask",
    "export_run",
    "frontend_task",
    "load_frontend_into",
    "load_task_config",
    "prepare_run",
    "run_training",
]
