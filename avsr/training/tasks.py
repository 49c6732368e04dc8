"""Which recipe a training config is for: its top-level ``task`` key (default ``avsr``).

``avsr`` trains the audio-visual recogniser (`avsr.training.recipe`); ``moco`` and ``lrw`` train
the visual front-end alone, ``wav2vec2`` the audio front-end (`avsr.training.frontend_recipe`). ``avsr-train`` goes through here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from avsr.training.config_loading import TrainConfigError, load_config, read_user_tree

TASKS = ("avsr", "lrw", "moco", "wav2vec2")


def _user_errors() -> tuple[type[BaseException], ...]:
    from avsr.training.checkpoints import UnsafeCheckpointError
    from avsr.training.data import DatasetError

    return (TrainConfigError, DatasetError, UnsafeCheckpointError)


#: Errors that mean bad input (one line to the user, exit 2), not a bug.
USER_ERRORS = _user_errors()


def load_task_config(path: str | os.PathLike[str] | None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The config of the task the file (or an override) names; one-line `TrainConfigError`s."""
    tree = read_user_tree(path, overrides)
    task = tree.get("task", "avsr")
    if task == "avsr":
        from avsr.training.recipe import AVSRTrainConfig, check_train_config

        return check_train_config(load_config(AVSRTrainConfig, tree))
    from avsr.training.frontend_recipe import LRWTrainConfig, MoCoTrainConfig, Wav2Vec2TrainConfig

    kinds = {"lrw": LRWTrainConfig, "moco": MoCoTrainConfig, "wav2vec2": Wav2Vec2TrainConfig}
    if task not in kinds:
        raise TrainConfigError(f"bad value for task: {task!r} (one of {', '.join(TASKS)})")
    return load_config(kinds[task], tree)


def prepare(config: Any, output_dir: Path) -> Any:
    """Check the data and model before fairseq2 starts; returns what `train` takes."""
    if config.task == "avsr":
        from avsr.training.recipe import prepare_run

        return prepare_run(config, output_dir)
    from avsr.training.frontend_recipe import prepare_frontend_run

    return prepare_frontend_run(config, output_dir)


def train(inputs: Any, *, no_rich: bool = False) -> None:
    if inputs.config.task == "avsr":
        from avsr.training.recipe import run_training

        run_training(inputs, no_rich=no_rich)
    else:
        from avsr.training.frontend_recipe import run_frontend_training

        run_frontend_training(inputs, no_rich=no_rich)


def export(config: Any, output_dir: Path) -> Path:
    """``OUTPUT_DIR/model/`` from a finished (or stopped) run's checkpoints."""
    last_n, best_n = config.export.average_last_n, config.export.average_best_n
    if config.task == "avsr":
        from avsr.training.recipe import export_run

        return export_run(output_dir, last_n=last_n, best_n=best_n)
    from avsr.training.frontend_recipe import export_frontend_run

    return export_frontend_run(output_dir, last_n=last_n, best_n=best_n)


def describe(inputs: Any) -> str:
    dataset = getattr(inputs, "dataset", None)
    return dataset.describe() if dataset is not None else ""


__all__ = ["TASKS", "USER_ERRORS", "describe", "export", "load_task_config", "prepare", "train"]
