"""The task table ``vl-train`` runs (the interface of `avsr.training.tasks`, one task: ``align``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from avsr.training.checkpoints import UnsafeCheckpointError
from avsr.training.config_loading import TrainConfigError, load_config, read_user_tree
from avsr.training.export import ExportError
from vision_language.cache import CacheError
from vision_language.data import DataError
from vision_language.features import EncoderError

TASKS = ("align",)
#: Errors that mean bad input (one line to the user, exit 2), not a bug.
USER_ERRORS: tuple[type[BaseException], ...] = (
    TrainConfigError,
    DataError,
    CacheError,
    EncoderError,
    UnsafeCheckpointError,
)


def load_task_config(path: str | os.PathLike[str] | None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    from vision_language.training.recipe import AlignTrainConfig

    tree = read_user_tree(path, overrides)
    task = tree.get("task", "align")
    if task != "align":
        raise TrainConfigError(
            f"bad value for task: {task!r} (vl-train runs: {', '.join(TASKS)}; avsr-train runs the others)"
        )
    return load_config(AlignTrainConfig, tree)


def prepare(config: Any, output_dir: Path) -> Any:
    from vision_language.training.recipe import prepare_align_run

    return prepare_align_run(config, output_dir)


def train(inputs: Any, *, no_rich: bool = False) -> None:
    from vision_language.training.recipe import run_align_training

    run_align_training(inputs, no_rich=no_rich)


def export(config: Any, output_dir: Path) -> Path:
    from vision_language.training.recipe import export_align_run

    return export_align_run(output_dir, last_n=config.export.average_last_n, best_n=config.export.average_best_n)


def describe(inputs: Any) -> str:
    return inputs.describe()


__all__ = ["TASKS", "USER_ERRORS", "ExportError", "describe", "export", "load_task_config", "prepare", "train"]
