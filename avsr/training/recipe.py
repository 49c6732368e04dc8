"""The AVSR task on fairseq2's recipe/trainer machinery (fairseq2 == 0.8.1).

The task is four modules: its configuration (`avsr.training.avsr_config`), its train and eval
units (`avsr.training.avsr_units`), its data (`avsr.training.data`), and this one: the model
family registration, the `Recipe`, the weights a run starts from, and the end-of-training export.
What every task shares (the export section, train-then-export, log handling) is
`avsr.training.kit`; a run directory's files are `avsr.training.runs`'s. The model
(`avsr.models`) and the export format (`avsr.training.export`) do not depend on fairseq2's recipe
API, so a fairseq2 release that changes it is confined to the training package.

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

Deliberate deviations from fairseq2's defaults: mixed precision is bf16 autocast on CUDA and off
on the CPU unless asked for (``performance``, `avsr.training.performance`; fairseq2 defaults to
bf16 everywhere), ``common.no_sweep_dir`` is true (a stable output directory
is what makes "rerun the same command to resume" work), and environment variables that look like
secrets are masked in the start-up log (fairseq2 logs every variable).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fairseq2.recipe  # noqa: F401  (first: importing fairseq2.evaluator first is a circular import in 0.8.1)
import yaml
from fairseq2.evaluator import EvalUnit
from fairseq2.metrics import format_as_float
from fairseq2.metrics.recorders import MetricDescriptor
from fairseq2.recipe import Recipe, RecipeContext
from fairseq2.runtime.dependency import DependencyContainer
from fairseq2.task import Task
from torch.nn import Module

from avsr.data.tokenizers import Tokenizer, TokenizerError, load_tokenizer
from avsr.models.config import FREEZABLE, AVSRConfig
from avsr.training.avsr_config import (
    AVSR_FAMILY,
    AVSRModelSection,
    AVSRTrainConfig,
    add_finetune_groups,
    load_task_config,
    resolve_model_config,
)
from avsr.training.avsr_units import AVSREvalUnit, AVSRTrainUnit
from avsr.training.checkpoints import secure_checkpoints
from avsr.training.config_loading import TrainConfigError, config_to_dict
from avsr.training.data import MODALITIES, AVBatch, AVDataset, DatasetError
from avsr.training.ddp import data_parallel_model
from avsr.training.export import ExportError, write_export
from avsr.training.kit import TrainThenExport, install_secret_filter, register_resolved_model, share_log_files
from avsr.training.performance import apply_performance, compile_model, describe, training_device
from avsr.training.runs import (
    RUN_FILE,
    averaged_checkpoints,
    checkpoint_model_files,
    read_run_file,
    recorded_config_differs,
)

log = logging.getLogger("avsr.training")


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
    return any(
        callable(getattr(m, "update_freezing", None))
        for m in (getattr(model, "audio_frontend", None), getattr(model, "visual_frontend", None))
        if m is not None
    )


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
        from avsr.models.avsr_model import AVSRModel

        arch = self._inputs.config.model.arch or "default"
        register_resolved_model(
            container,
            AVSR_FAMILY,
            AVSRModel,
            AVSRConfig,
            _create_model,
            arch,
            self._inputs.model_config,
            compiler=compile_model,
        )
        for name, display in (("att_loss", "Attention Loss"), ("cer", "Character Error Rate (CER)")):
            container.collection.register_instance(
                MetricDescriptor, MetricDescriptor(name, display, 100 if "loss" in name else 200, format_as_float)
            )

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
                config.dataset,
                inputs.tokenizer,
                inputs.model_config.modalities,
                seed=config.common.seed,
                cache_dir=context.output_dir / "cache",
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
            modalities = list(config.validation.modalities) or [
                "av" if len(inputs.model_config.modalities) == 2 else inputs.model_config.modalities[0]
            ]
            for m in modalities:
                wanted = MODALITIES if m == "av" else (m,)
                name = None if len(modalities) == 1 else m
                valid_units.append(AVSREvalUnit(module, inputs.tokenizer, m, name=name, wer=config.validation.wer))
                valid_readers.append(dataset.create_valid_reader(gangs, wanted))
        trainer = context.create_trainer(unit, reader, valid_units, valid_readers)
        export = config.export
        return TrainThenExport(
            trainer,
            context,
            (lambda out: export_run(out, last_n=export.average_last_n, best_n=export.average_best_n))
            if export.enabled
            else None,
        )


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
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
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
        lines.append(
            f"model.init: the output layers follow the run's tokenizer: {kept} of its {tokenizer.vocab_size} "
            f"units carried over from {path}'s, the others start fresh"
        )
    new = [k for k in own if k not in state]
    problems = state_problems(
        {k: v for k, v in own.items() if k in state}, state, unexpected="weight(s) the run's model has no place for"
    )
    if problems:
        raise TrainConfigError(f"model.init: {path}: " + "; ".join(problems))
    model.load_state_dict({**own, **state}, strict=True)
    lines.append(
        f"model <- {path}: {len(state)} tensors" + (f"; new, at initialisation: {name_list(new)}" if new else "")
    )
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


# ======================================================================================= export


def export_run(
    output_dir: str | os.PathLike[str], *, last_n: int = 1, best_n: int = 0, out_dir: Path | None = None
) -> Path:
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
        raise ExportError(
            f"{output_dir / 'checkpoints'} (step {steps[-1]}): weights do not fit the model config ({str(exc).splitlines()[0]})"
        ) from None
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
        raise DatasetError(
            f"{tok_dir}: tokenizer folder not found (dataset.tokenizer; make it with avsr-prepare tokenizer)"
        )
    try:
        tokenizer = load_tokenizer(tok_dir)
    except TokenizerError as exc:
        raise DatasetError(str(exc)) from None
    model_config = resolve_model_config(config.model, tokenizer)
    device = training_device()
    model_config, speed = apply_performance(config, model_config, device)
    for stage in config.finetune.freeze:
        for name in stage.modules:
            if (
                name in ("audio_frontend", "audio_encoder")
                and model_config.audio is None
                or name in ("visual_frontend", "video_encoder")
                and model_config.visual is None
                or name == "encoder"
                and model_config.encoder is None
                or name == "ctc_head"
                and not model_config.ctc_head
            ):
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
            raise TrainConfigError(
                f"{output_dir} holds checkpoints trained with another tokenizer; use another --output-dir"
            )
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
            raise TrainConfigError(
                f"modality_schedule: modality_dropout needs inputs: av (the stage until step {stage.until_step} has {stage.inputs})"
            )
    regime = config.regime
    if regime.score_metric in ("wer", "cer") and not config.validation.wer:
        raise TrainConfigError(f"regime.score_metric={regime.score_metric} needs validation.wer: true")
    inputs = RunInputs(
        config=config, model_config=model_config, tokenizer=tokenizer, tokenizer_dir=tok_dir, output_dir=output_dir
    )
    if load_data:
        inputs.dataset = AVDataset(
            ds, tokenizer, model_config.modalities, seed=config.common.seed, cache_dir=output_dir / "cache"
        )
        if inputs.dataset.valid is None or len(inputs.dataset.valid) == 0:
            if regime.validate_every_n_steps is not None:
                log.warning("no validation utterances (dataset.valid_split): training without validation")
            inputs.dataset.valid = None
            regime.validate_every_n_steps = None
            regime.validate_every_n_data_epochs = None
            regime.score_metric = None
            regime.keep_best_n_checkpoints = None
    log.info("%s", describe(speed, device))  # after every check: a refused run prints its one line only
    return inputs


def run_training(inputs: RunInputs, *, no_rich: bool = False) -> None:
    """Run (or resume) training with fairseq2's trainer; exceptions propagate to the caller."""
    from fairseq2.recipe import run

    install_secret_filter()
    inputs.output_dir.mkdir(parents=True, exist_ok=True)
    run(AVSRRecipe(inputs), inputs.config, inputs.output_dir, no_rich=no_rich)
    install_secret_filter()


__all__ = [
    "AVSRRecipe",
    "RunInputs",
    "export_run",
    "initialise_weights",
    "load_task_config",
    "prepare_run",
    "restore_frozen",
    "run_training",
]
