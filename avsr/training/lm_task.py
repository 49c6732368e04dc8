"""``task: lm``: a token language model (`avsr.models.lm.TokenLM`) on text, on fairseq2's trainer.

The text is the transcripts of prepared manifests (``dataset.path`` + ``train_splits``, as the
AVSR task reads them) and/or plain text files, one sentence per line (``dataset.text_files``),
tokenized with the recogniser's tokenizer (``dataset.tokenizer``), so the LM's ids are the
recogniser's. The loss is the negative log-likelihood per token, each sentence closed by
``<eos>``; validation reports it and the per-token perplexity. The export, ``OUTPUT_DIR/model/``,
is a model folder of family ``lm`` with the tokenizer, what ``avsr-decode --lm`` and
``avsr-bench --lm`` take. Checkpointing, resume, DDP and metrics are fairseq2's, on the kit every
task shares (`avsr.training.kit`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, final

import fairseq2.recipe  # noqa: F401  (first: importing fairseq2.evaluator first is a circular import in 0.8.1)
import torch
import yaml
from fairseq2.data.data_pipeline import DataPipeline, read_sequence
from fairseq2.datasets import DataPipelineReader, SyncMode
from fairseq2.device import Device, SupportsDeviceTransfer
from fairseq2.evaluator import EvalUnit
from fairseq2.gang import Gangs
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
from fairseq2.trainer import TrainUnit
from torch import Tensor
from torch.nn import Module

from avsr.data.manifest import ManifestError, read_manifest
from avsr.data.tokenizers import Tokenizer, TokenizerError, load_tokenizer
from avsr.media.atomic import atomic_path
from avsr.models.config import ConfigError
from avsr.models.folder import TOKENIZER_DIR
from avsr.models.io import save_model
from avsr.models.lm import FAMILY, TokenLM, TokenLMConfig
from avsr.training.batching import derive_seed
from avsr.training.checkpoints import secure_checkpoints
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
from avsr.training.data import AVDataReader, DatasetError, PipelineState, move_tensors, resolve_manifest
from avsr.training.ddp import data_parallel_model
from avsr.training.export import ExportError
from avsr.training.kit import (
    ExportSection,
    TrainThenExport,
    install_secret_filter,
    register_resolved_model,
    share_log_files,
)
from avsr.training.runs import RUN_FILE, averaged_checkpoints, read_run_file, recorded_config_differs

log = logging.getLogger("avsr.training")

#: named sizes (``model.arch``); ``model.config`` overrides any field
ARCHS: dict[str, dict[str, Any]] = {
    "tiny": {"model_dim": 64, "layers": 2, "heads": 2, "ffn_dim": 256},
    "small": {"model_dim": 256, "layers": 4, "heads": 4, "ffn_dim": 1024},
}


# ======================================================================================= config


@dataclass(kw_only=True)
class LMModelSection(ModelSection):
    family: str | None = FAMILY
    arch: str | None = "tiny"
    """Size: tiny (d=64, 2 layers) or small (d=256, 4 layers)."""
    config: dict[str, object] = field(default_factory=dict)
    """TokenLMConfig fields over the arch (``dropout``, ``max_len`` ...)."""


@dataclass(kw_only=True)
class LMDatasetConfig:
    path: Path | None = None
    """Prepared corpus folder whose manifests' transcripts are text (``train_splits``, ``valid_split``)."""
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    valid_split: str | None = "val"
    text_files: list[Path] = field(default_factory=list)
    """Plain text files, one sentence per line (added to the training text)."""
    tokenizer: Path | None = None
    """The recogniser's tokenizer folder (required): the LM predicts its units."""
    batch_size: int = 64
    """Sentences per batch."""
    max_tokens: int = 256
    """Longer sentences are left out (reported)."""


@dataclass(kw_only=True)
class LMTrainConfig:
    FREE_FORM: ClassVar = (("model", "config"),)

    task: Literal["lm"] = "lm"
    output_dir: Path | None = None
    model: LMModelSection = field(default_factory=LMModelSection)
    dataset: LMDatasetConfig = field(default_factory=LMDatasetConfig)
    export: ExportSection = field(default_factory=ExportSection)
    gang: GangSection = field(default_factory=GangSection)
    trainer: TrainerSection = field(default_factory=default_trainer)
    optimizer: OptimizerSection = field(default_factory=lambda: default_optimizer(weight_decay=0.01))
    lr_scheduler: LRSchedulerSection = field(default_factory=lambda: default_lr_scheduler(num_warmup_steps=100))
    regime: RegimeSection = field(default_factory=lambda: default_regime(score_metric="nll_loss"))
    common: CommonSection = field(default_factory=default_common)


def lm_config(config: LMTrainConfig, tokenizer: Tokenizer) -> TokenLMConfig:
    arch = config.model.arch or "tiny"
    if arch not in ARCHS:
        raise TrainConfigError(f"bad value for model.arch: {arch!r} (one of {', '.join(ARCHS)})")
    tree = deep_merge(
        {**ARCHS[arch], "vocab_size": tokenizer.vocab_size, "blank_id": tokenizer.blank_id}, dict(config.model.config)
    )
    try:
        resolved = TokenLMConfig.from_dict(tree)
    except (ConfigError, TypeError, ValueError) as exc:
        raise TrainConfigError(f"bad value in model.config: {exc}") from None
    if resolved.vocab_size != tokenizer.vocab_size or resolved.blank_id != tokenizer.blank_id:
        raise TrainConfigError("model.config: vocab_size and blank_id come from the tokenizer")
    return resolved


# ======================================================================================= data


@dataclass
class TextBatch(SupportsDeviceTransfer):
    """units: (B, L) token ids without sos/eos, zero padded; lengths (B,)."""

    units: Tensor
    lengths: Tensor

    def to(self, device: Device, *, non_blocking: bool = False) -> None:
        move_tensors(self, ("units", "lengths"), device, non_blocking)

    @property
    def num_tokens(self) -> int:
        """Predicted tokens: each sentence's units and its <eos>."""
        return int(self.lengths.sum()) + len(self.lengths)


def _sentences(dataset: LMDatasetConfig, splits: list[str], files: list[Path]) -> list[str]:
    texts: list[str] = []
    for split in splits:
        manifest = resolve_manifest(dataset.path, split)
        try:
            texts += [row.text for row in read_manifest(manifest)]
        except (OSError, ManifestError) as exc:
            raise DatasetError(f"dataset: {exc}") from None
    for file in files:
        try:
            texts += [line.strip() for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(
                f"dataset.text_files: {file}: cannot be read ({getattr(exc, 'strerror', None) or exc})"
            ) from None
    return texts


class TextDataset:
    """Tokenized sentences for training and validation."""

    def __init__(self, config: LMDatasetConfig, seed: int) -> None:
        if config.tokenizer is None:
            raise TrainConfigError("dataset.tokenizer: the recogniser's tokenizer folder is required")
        if config.path is None and not config.text_files:
            raise TrainConfigError("dataset: give path (prepared manifests) and/or text_files")
        if config.batch_size < 1:
            raise TrainConfigError("dataset.batch_size must be at least 1")
        try:
            self.tokenizer = load_tokenizer(config.tokenizer)
        except TokenizerError as exc:
            raise TrainConfigError(f"dataset.tokenizer: {exc}") from None
        self.config = config
        self.seed = seed
        self.skipped = 0
        splits = list(config.train_splits) if config.path is not None else []
        self.train = self._encode(_sentences(config, splits, config.text_files))
        self.valid = None
        if config.path is not None and config.valid_split:
            self.valid = self._encode(_sentences(config, [config.valid_split], []))
        if not self.train:
            raise DatasetError("dataset: no training sentences")

    def _encode(self, texts: list[str]) -> list[list[int]]:
        out = []
        for text in texts:
            ids = self.tokenizer.encode(text)
            if 0 < len(ids) <= self.config.max_tokens:
                out.append(ids)
            else:
                self.skipped += 1
        return out

    def describe(self) -> str:
        valid = len(self.valid) if self.valid is not None else "none"
        return f"train: {len(self.train)} sentences, valid: {valid}" + (
            f" ({self.skipped} empty or longer than {self.config.max_tokens} tokens left out)" if self.skipped else ""
        )

    def _reader(
        self, sentences: list[list[int]], gangs: Gangs, *, train: bool, num_accumulate: int = 1
    ) -> AVDataReader:
        source = read_sequence(sentences)
        if gangs.dp.size > 1:
            source = source.shard(gangs.dp.rank, gangs.dp.size)
        if train:
            source = source.shuffle(0, seed=derive_seed(self.seed, gangs.dp.rank, "lm") % (2**31))
        pipeline: DataPipeline = source.bucket(self.config.batch_size, drop_remainder=False).map(_collate).and_return()
        sync = SyncMode.UNTIL_FIRST if train else SyncMode.UNTIL_LAST
        return AVDataReader(
            DataPipelineReader[TextBatch](pipeline, gangs, num_accumulate=num_accumulate, sync_mode=sync),
            PipelineState(),
        )

    def create_train_reader(self, gangs: Gangs, *, num_accumulate: int = 1) -> AVDataReader:
        return self._reader(self.train, gangs, train=True, num_accumulate=num_accumulate)

    def create_valid_reader(self, gangs: Gangs) -> AVDataReader:
        assert self.valid is not None
        return self._reader(self.valid, gangs, train=False)


def _collate(sentences: list[list[int]]) -> TextBatch:
    lengths = torch.tensor([len(s) for s in sentences])
    units = torch.zeros((len(sentences), int(lengths.max())), dtype=torch.long)
    for row, ids in enumerate(sentences):
        units[row, : len(ids)] = torch.tensor(ids)
    return TextBatch(units, lengths)


# ======================================================================================= units


def _add_metrics(bag: MetricBag) -> None:
    bag.add("nll_loss", Mean())
    bag.add("perplexity", Mean())
    bag.add("num_target_elements", Sum())


def _objective(model: Module, batch: TextBatch, bag: MetricBag) -> tuple[Tensor, int]:
    nll = -model.sentence_log_prob(batch.units, batch.lengths).sum()
    tokens = batch.num_tokens
    per_token = float(nll.detach()) / tokens
    bag.get("nll_loss", Mean).update(torch.tensor(per_token), weight=tokens)
    bag.get("perplexity", Mean).update(torch.tensor(math.exp(min(per_token, 50.0))), weight=tokens)
    bag.get("num_target_elements", Sum).update(tokens)
    return nll, tokens


@final
class LMTrainUnit(TrainUnit[TextBatch]):
    def __init__(self, model: Module) -> None:
        self._model = model

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        _add_metrics(metric_bag)

    def process_batch(self, batch: TextBatch, metric_bag: MetricBag) -> tuple[Tensor, int | None]:
        return _objective(self._model, batch, metric_bag)


@final
class LMEvalUnit(EvalUnit[TextBatch]):
    def __init__(self, model: Module) -> None:
        self._model = model

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        _add_metrics(metric_bag)

    def process_batch(self, batch: TextBatch, metric_bag: MetricBag) -> None:
        _objective(self._model, batch, metric_bag)


# ======================================================================================= recipe


@dataclass
class LMRunInputs:
    config: LMTrainConfig
    model_config: TokenLMConfig
    dataset: TextDataset
    output_dir: Path


class LMRecipe(Recipe):
    def __init__(self, inputs: LMRunInputs) -> None:
        self._inputs = inputs

    @property
    def config_kls(self) -> type[object]:
        return LMTrainConfig

    def register(self, container: DependencyContainer) -> None:
        arch = self._inputs.config.model.arch or "tiny"
        register_resolved_model(container, FAMILY, TokenLM, TokenLMConfig, TokenLM, arch, self._inputs.model_config)
        container.collection.register_instance(
            MetricDescriptor, MetricDescriptor("perplexity", "Perplexity (per token)", 110, format_as_float)
        )

    def create_task(self, context: RecipeContext) -> Task:
        share_log_files()
        secure_checkpoints(context)
        inputs, config = self._inputs, self._inputs.config
        log.info("Data: %s", inputs.dataset.describe())
        if context.gangs.root.rank == 0:
            data = {
                "task": "lm",
                "model_config": inputs.model_config.to_dict(),
                "tokenizer": str(config.dataset.tokenizer),
                "train_config": config_to_dict(config),
            }
            with atomic_path(context.output_dir / RUN_FILE) as temp:
                Path(temp).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        reader = inputs.dataset.create_train_reader(
            context.gangs, num_accumulate=config.trainer.grad_accumulation.num_batches
        )
        valid_units: list[EvalUnit[TextBatch]] = []
        valid_readers = []
        if inputs.dataset.valid and config.regime.validate_every_n_steps:
            valid_units.append(LMEvalUnit(context.get_model_as(Module)))
            valid_readers.append(inputs.dataset.create_valid_reader(context.gangs))
        trainer = context.create_trainer(LMTrainUnit(data_parallel_model(context)), reader, valid_units, valid_readers)
        export = config.export
        return TrainThenExport(
            trainer,
            context,
            (lambda out: export_run(out, last_n=export.average_last_n, best_n=export.average_best_n))
            if export.enabled
            else None,
        )


# ======================================================================================= export


def export_run(
    output_dir: str | os.PathLike[str], *, last_n: int = 1, best_n: int = 0, out_dir: Path | None = None
) -> Path:
    """``OUTPUT_DIR/model/``: the LM as a model folder of family ``lm``, with its tokenizer."""
    output_dir = Path(output_dir)
    run = read_run_file(output_dir)
    if run.get("task") != "lm":
        raise ExportError(f"{output_dir / RUN_FILE}: not a language-model run (task {run.get('task')!r})")
    state, steps = averaged_checkpoints(output_dir, last_n=last_n, best_n=best_n)
    model = TokenLM(TokenLMConfig.from_dict(run["model_config"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"{output_dir}: weights do not fit the model config ({str(exc).splitlines()[0]})") from None
    try:
        tokenizer = load_tokenizer(run["tokenizer"])
    except (KeyError, TokenizerError) as exc:
        raise ExportError(f"{output_dir / RUN_FILE}: the run's tokenizer cannot be loaded ({exc})") from None
    out = out_dir or output_dir / "model"
    tokenizer.save(out / TOKENIZER_DIR)
    extra = {
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "step": steps[-1],
        "averaged_steps": steps,
        "source": output_dir.name,
    }
    return save_model(out, model.eval(), extra=extra)


# ======================================================================================= entry


def load_task_config(tree: dict[str, Any]) -> LMTrainConfig:
    return load_config(LMTrainConfig, tree)


def prepare_run(config: LMTrainConfig, output_dir: Path) -> LMRunInputs:
    """Read and tokenize the text and resolve the model before fairseq2 starts (one-line errors)."""
    dataset = TextDataset(config.dataset, config.common.seed)
    model_config = lm_config(config, dataset.tokenizer)
    previous = output_dir / RUN_FILE
    if previous.is_file() and (output_dir / "checkpoints").is_dir():
        old = yaml.safe_load(previous.read_text(encoding="utf-8")) or {}
        if recorded_config_differs(old.get("model_config"), model_config, TokenLMConfig.from_dict):
            raise TrainConfigError(
                f"{output_dir} holds checkpoints of a different model config; use another --output-dir"
            )
    if not dataset.valid:
        config.regime.validate_every_n_steps = None
        config.regime.score_metric = None
    return LMRunInputs(config, model_config, dataset, output_dir)


def run_training(inputs: LMRunInputs, *, no_rich: bool = False) -> None:
    from fairseq2.recipe import run

    install_secret_filter()
    inputs.output_dir.mkdir(parents=True, exist_ok=True)
    run(LMRecipe(inputs), inputs.config, inputs.output_dir, no_rich=no_rich)


__all__ = [
    "ARCHS",
    "LMTrainConfig",
    "TextBatch",
    "TextDataset",
    "export_run",
    "load_task_config",
    "prepare_run",
    "run_training",
]
