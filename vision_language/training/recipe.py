"""``vl-train``: projector training on cached features with fairseq2's trainer.

The same machinery, config style and output layout as ``avsr-train`` (`avsr.training`): YAML with
``base:`` files and dotted overrides, checkpoints and resume, DDP (the loss gathers the negatives of
every rank), JSONL/TensorBoard metrics, ``OUTPUT_DIR/model/`` at the end. The frozen encoders run
once, before fairseq2 starts, into the feature caches (`vision_language.features`).
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, final

import fairseq2.recipe  # noqa: F401  (first: importing fairseq2.evaluator first is a circular import in 0.8.1)
import torch
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
from torch import Tensor
from torch.nn import Module

from avsr.media.atomic import atomic_path
from avsr.training.checkpoints import secure_checkpoints
from avsr.training.config_loading import (
    TrainConfigError,
    config_to_dict,
    default_common,
    default_lr_scheduler,
    default_optimizer,
    default_regime,
    default_trainer,
)
from avsr.training.ddp import data_parallel_model
from avsr.training.export import ExportError
from avsr.training.kit import (
    ExportSection,
    TrainThenExport,
    install_secret_filter,
    register_resolved_model,
    share_log_files,
)
from avsr.training.runs import RUN_FILE, averaged_checkpoints, read_run_file
from vision_language.encoders import ImageEncoderConfig, TextEncoderConfig
from vision_language.features import EncodeOptions, PairFeatures, pair_features
from vision_language.model import Aligner, AlignerConfig
from vision_language.model_paths import portable_encoder, with_resolved_path
from vision_language.saved_model import write_model
from vision_language.training.data import FeatureBatch, create_reader

log = logging.getLogger("vision_language")

ALIGNER_FAMILY = "vl_aligner"


@dataclass(kw_only=True)
class AlignDataSection:
    train: Path | None = None
    """Image-caption pairs: a TSV/CSV file (image path, caption) or WebDataset shards."""
    valid: Path | None = None
    cache_dir: Path = Path("runs/vl/cache")
    """Feature caches, one folder per (encoder, data source); shared by vl-embed/-train/-eval/-align."""
    batch_size: int = 256
    """Pairs per step and rank (the in-batch negatives: more is better for a contrastive loss)."""
    embed_batch_size: int = 32
    shard_size: int = 4096
    max_valid_pairs: int = 2048
    num_prefetch: int = 2


@dataclass(kw_only=True)
class EncodersSection:
    """``image``: `ImageEncoderConfig` fields; ``text``: `TextEncoderConfig` fields."""

    image: dict[str, object] = field(default_factory=dict)
    text: dict[str, object] = field(default_factory=dict)


@dataclass(kw_only=True)
class AlignModelSection(ModelSection):
    family: str | None = ALIGNER_FAMILY
    arch: str | None = "default"
    config: dict[str, object] = field(default_factory=dict)
    """`AlignerConfig` fields (embed_dim, image_projector, text_projector, *_manager, loss)."""


@dataclass(kw_only=True)
class AlignTrainConfig:
    FREE_FORM: ClassVar = (("model", "config"), ("encoders", "image"), ("encoders", "text"))

    task: Literal["align"] = "align"
    output_dir: Path | None = None
    data: AlignDataSection = field(default_factory=AlignDataSection)
    encoders: EncodersSection = field(default_factory=EncodersSection)
    model: AlignModelSection = field(default_factory=AlignModelSection)
    export: ExportSection = field(default_factory=ExportSection)
    gang: GangSection = field(default_factory=GangSection)
    trainer: TrainerSection = field(default_factory=default_trainer)
    optimizer: OptimizerSection = field(default_factory=lambda: default_optimizer(weight_decay=0.02))
    lr_scheduler: LRSchedulerSection = field(default_factory=lambda: default_lr_scheduler(num_warmup_steps=100))
    regime: RegimeSection = field(default_factory=lambda: default_regime(score_metric=None))
    common: CommonSection = field(default_factory=default_common)


def encoder_configs(section: EncodersSection) -> tuple[ImageEncoderConfig, TextEncoderConfig]:
    """The two encoder configs, with one-line errors."""
    out = []
    for name, kls in (("image", ImageEncoderConfig), ("text", TextEncoderConfig)):
        try:
            out.append(kls(**with_resolved_path(dict(getattr(section, name)))))
        except (TypeError, ValueError) as exc:
            raise TrainConfigError(f"bad value in encoders.{name}: {exc}") from None
    return out[0], out[1]  # type: ignore[return-value]


def aligner_config(overrides: dict[str, object], pairs: PairFeatures) -> AlignerConfig:
    """The model config: the recipe's settings plus the feature sizes of the caches."""
    image_shape, text_shape = pairs.images.item_shape, pairs.texts.item_shape
    dims = {
        "image_dim": image_shape[-1],
        "text_dim": text_shape[-1],
        "image_layers": image_shape[0] if len(image_shape) == 2 else 1,
        "text_layers": text_shape[0] if len(text_shape) == 2 else 1,
    }
    for key, value in dims.items():
        if key in overrides and overrides[key] != value:
            raise TrainConfigError(
                f"model.config.{key}={overrides[key]!r} contradicts the encoder's features ({value})"
            )
    try:
        return AlignerConfig.from_dict({**copy.deepcopy(dict(overrides)), **dims})
    except (TypeError, ValueError) as exc:
        raise TrainConfigError(f"bad value in model.config: {exc}") from None


# ======================================================================================= units


def _metrics(bag: MetricBag) -> None:
    for name in ("loss", "accuracy"):
        bag.add(name, Mean())
    bag.add("num_examples", Sum())


def _step(model: Module, batch: FeatureBatch, bag: MetricBag) -> Tensor:
    loss, image_emb, text_emb = model(batch.image, batch.text)
    with torch.no_grad():  # in-batch image -> text top-1: a cheap signal that alignment is happening
        picked = (image_emb @ text_emb.t()).argmax(dim=1)
        accuracy = (picked == torch.arange(len(picked), device=picked.device)).float().mean()
    n = batch.batch_size
    bag.get("loss", Mean).update(loss.detach().float(), weight=n)
    bag.get("accuracy", Mean).update(100.0 * accuracy, weight=n)
    bag.get("num_examples", Sum).update(n)
    return loss


@final
class AlignTrainUnit(TrainUnit[FeatureBatch]):
    def __init__(self, model: Module) -> None:
        self._model = model

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        _metrics(metric_bag)

    def process_batch(self, batch: FeatureBatch, metric_bag: MetricBag) -> tuple[Tensor, int | None]:
        loss = _step(self._model, batch, metric_bag)
        return loss * batch.batch_size, batch.batch_size


@final
class AlignEvalUnit(EvalUnit[FeatureBatch]):
    def __init__(self, module: Module) -> None:
        self._module = module

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        _metrics(metric_bag)

    def process_batch(self, batch: FeatureBatch, metric_bag: MetricBag) -> None:
        _step(self._module, batch, metric_bag)


# ======================================================================================= recipe


@dataclass
class AlignRunInputs:
    config: AlignTrainConfig
    model_config: AlignerConfig
    image_encoder: ImageEncoderConfig
    text_encoder: TextEncoderConfig
    train: PairFeatures
    valid: PairFeatures | None
    output_dir: Path

    def describe(self) -> str:
        valid = f"; valid: {len(self.valid)} pairs" if self.valid is not None else ""
        return f"train: {len(self.train)} pairs ({len(self.train.images)} images){valid}"


class AlignRecipe(Recipe):
    def __init__(self, inputs: AlignRunInputs) -> None:
        self._inputs = inputs

    @property
    def config_kls(self) -> type[object]:
        return AlignTrainConfig

    def register(self, container: DependencyContainer) -> None:
        arch = self._inputs.config.model.arch or "default"
        register_resolved_model(
            container, ALIGNER_FAMILY, Aligner, AlignerConfig, Aligner, arch, self._inputs.model_config
        )

    def create_task(self, context: RecipeContext) -> Task:
        share_log_files()
        secure_checkpoints(context)
        inputs, config = self._inputs, self._inputs.config
        log.info("Data: %s", inputs.describe())
        if context.gangs.root.rank == 0:
            write_run_file(context.output_dir, inputs)
        data = config.data
        reader = create_reader(
            inputs.train,
            context.gangs,
            batch_size=data.batch_size,
            train=True,
            seed=config.common.seed,
            num_prefetch=data.num_prefetch,
        )
        unit = AlignTrainUnit(data_parallel_model(context))
        valid_units: list[EvalUnit[FeatureBatch]] = []
        valid_readers = []
        if inputs.valid is not None and config.regime.validate_every_n_steps:
            valid_units.append(AlignEvalUnit(context.get_model_as(Module)))
            valid_readers.append(
                create_reader(
                    inputs.valid,
                    context.gangs,
                    batch_size=data.batch_size,
                    train=False,
                    seed=config.common.seed,
                    limit=data.max_valid_pairs,
                )
            )
        trainer = context.create_trainer(unit, reader, valid_units, valid_readers)
        export = config.export
        return TrainThenExport(
            trainer,
            context,
            (lambda out: export_align_run(out, last_n=export.average_last_n, best_n=export.average_best_n))
            if export.enabled
            else None,
        )


def write_run_file(output_dir: Path, inputs: AlignRunInputs) -> None:
    from dataclasses import asdict

    data = {
        "task": "align",
        "model_config": inputs.model_config.to_dict(),
        "encoders": {
            name: portable_encoder(asdict(config), getattr(inputs.config.encoders, name))
            for name, config in (("image", inputs.image_encoder), ("text", inputs.text_encoder))
        },
        "train_config": config_to_dict(inputs.config),
    }
    with atomic_path(output_dir / RUN_FILE) as temp:
        Path(temp).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


# ======================================================================================= export


def export_align_run(
    output_dir: str | os.PathLike[str], *, last_n: int = 1, best_n: int = 0, out_dir: Path | None = None
) -> Path:
    output_dir = Path(output_dir)
    run = read_run_file(output_dir)
    if run.get("task") != "align":
        raise ExportError(f"{output_dir / RUN_FILE}: not a vl-train run")
    state, steps = averaged_checkpoints(output_dir, last_n=last_n, best_n=best_n)
    model = Aligner(AlignerConfig.from_dict(run["model_config"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"{output_dir}: weights do not fit the model config ({str(exc).splitlines()[0]})") from None
    extra = {"step": steps[-1], "averaged_steps": steps, "source": str(output_dir.resolve())}
    return write_model(out_dir or output_dir / "model", model, run["encoders"], extra)


# ======================================================================================= entry


def prepare_align_run(config: AlignTrainConfig, output_dir: Path) -> AlignRunInputs:
    """Encoder configs, feature caches (built here when missing) and the model config, before
    fairseq2 starts; one-line errors."""
    if config.data.train is None:
        raise TrainConfigError("data.train: no training pairs given (a TSV/CSV of image, caption or WebDataset shards)")
    image, text = encoder_configs(config.encoders)
    options = EncodeOptions(
        config.data.cache_dir,
        config.data.embed_batch_size,
        config.data.shard_size,
        show_progress=int(os.environ.get("RANK", "0")) == 0,
    )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        options.allow_build = False  # ranks would race on the same files: vl-embed builds them first
    train = pair_features(config.data.train, image, text, options)
    valid = pair_features(config.data.valid, image, text, options) if config.data.valid is not None else None
    model_config = aligner_config(dict(config.model.config), train)
    if valid is None:
        config.regime.validate_every_n_steps = None
        config.regime.score_metric = None
    previous = output_dir / RUN_FILE
    if previous.is_file() and (output_dir / "checkpoints").is_dir():
        old = yaml.safe_load(previous.read_text(encoding="utf-8")) or {}
        if old.get("model_config") not in (None, model_config.to_dict()):
            raise TrainConfigError(
                f"{output_dir} holds checkpoints of a different model config; use another --output-dir"
            )
    return AlignRunInputs(config, model_config, image, text, train, valid, output_dir)


def run_align_training(inputs: AlignRunInputs, *, no_rich: bool = False) -> None:
    from fairseq2.recipe import run

    install_secret_filter()
    inputs.output_dir.mkdir(parents=True, exist_ok=True)
    run(AlignRecipe(inputs), inputs.config, inputs.output_dir, no_rich=no_rich)


__all__ = ["AlignTrainConfig", "export_align_run", "prepare_align_run", "run_align_training"]
