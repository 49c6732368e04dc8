"""Which recipe a training config is for: its top-level ``task`` key (default ``avsr``).

``avsr`` trains the audio-visual recogniser (`avsr.training.recipe`); ``moco`` and ``lrw`` train
the visual front-end alone, ``wav2vec2`` the audio front-end (`avsr.training.frontend_recipe`,
with one module per task); ``lm`` a token language model for the search (`avsr.training.lm_task`). ``avsr-train`` goes through here: each task's module has the same
four functions, ``load_task_config(tree)``, ``prepare_run(config, output_dir)``,
``run_training(inputs, no_rich=)`` and ``export_run(output_dir, last_n=, best_n=)``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from avsr.training.config_loading import TrainConfigError, read_user_tree

#: task -> the module that runs it (imported when first used: fairseq2 is slow to load)
TASKS = {
    "avsr": "avsr.training.recipe",
    "lrw": "avsr.training.frontend_recipe",
    "moco": "avsr.training.frontend_recipe",
    "wav2vec2": "avsr.training.frontend_recipe",
    "lm": "avsr.training.lm_task",
}


def _user_errors() -> tuple[type[BaseException], ...]:
    from avsr.training.checkpoints import UnsafeCheckpointError
    from avsr.training.data import DatasetError

    return (TrainConfigError, DatasetError, UnsafeCheckpointError)


#: Errors that mean bad input (one line to the user, exit 2), not a bug.
USER_ERRORS = _user_errors()


def _runner(task: Any) -> ModuleType:
    if not isinstance(task, str) or task not in TASKS:
        raise TrainConfigError(f"bad value for task: {task!r} (one of {', '.join(TASKS)})")
    return importlib.import_module(TASKS[task])


def load_task_config(path: str | os.PathLike[str] | None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The config of the task the file (or an override) names; one-line `TrainConfigError`s."""
    tree = read_user_tree(path, overrides)
    tree.setdefault("task", "avsr")
    return _runner(tree["task"]).load_task_config(tree)


def prepare(config: Any, output_dir: Path) -> Any:
    """Check the data and model before fairseq2 starts; returns what `train` takes."""
    return _runner(config.task).prepare_run(config, output_dir)


def train(inputs: Any, *, no_rich: bool = False) -> None:
    _runner(inputs.config.task).run_training(inputs, no_rich=no_rich)


def export(config: Any, output_dir: Path) -> Path:
    """``OUTPUT_DIR/model/`` from a finished (or stopped) run's checkpoints."""
    return _runner(config.task).export_run(
        output_dir, last_n=config.export.average_last_n, best_n=config.export.average_best_n
    )


def describe(inputs: Any) -> str:
    dataset = getattr(inputs, "dataset", None)
    return dataset.describe() if dataset is not None else ""


__all__ = ["TASKS", "USER_ERRORS", "describe", "export", "load_task_config", "prepare", "train"]
