"""The fairseq2 kit every training task shares (the AVSR task, the front-end tasks, and
vision_language's): the export section, the task that trains then exports, and the log handling
(our records in fairseq2's log files; secret-looking environment variables masked)."""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import final

import fairseq2.recipe  # noqa: F401  (first: importing fairseq2.evaluator first is a circular import in 0.8.1)
from fairseq2.recipe import RecipeContext
from fairseq2.runtime.dependency import DependencyContainer
from fairseq2.task import Task
from fairseq2.trainer import Trainer

log = logging.getLogger("avsr.training")


@dataclass(kw_only=True)
class ExportSection:
    enabled: bool = True
    """Write OUTPUT_DIR/model/ when training ends."""
    average_last_n: int = 1
    """Average the weights of the last N checkpoints (1: the final weights)."""
    average_best_n: int = 0
    """If > 0, average the N best checkpoints by regime.score_metric instead."""


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


class _SecretFilter(logging.Filter):
    """Masks secret-looking environment variables in fairseq2's start-up log line (it logs them all).

    The line is rebuilt from ``os.environ`` (as fairseq2 builds it), so a value containing the
    separator cannot leak a fragment.
    """

    PREFIX = "Environment Variables - "
    PATTERN = re.compile(
        r"(?i)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL|AUTH|COOKIE|SIGNATURE)"
    )
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


def register_resolved_model(
    container: DependencyContainer,
    family: str,
    kls: type,
    config_kls: type,
    factory: Callable,
    arch: str,
    resolved: object,
    compiler: Callable | None = None,
) -> None:
    """Tell fairseq2 about a task's model family, and that ``arch`` is the config this run resolved
    (``resolved``, from ``model.arch`` and ``model.config``) before fairseq2 started; ``compiler``:
    what ``model.compile: true`` calls (None: the family cannot be compiled)."""
    from fairseq2.composition import register_model_family
    from fairseq2.runtime.config_registry import ConfigRegistrar

    register_model_family(
        container, family, kls=kls, config_kls=config_kls, factory=factory, supports_meta=False, compiler=compiler
    )
    ConfigRegistrar(container, config_kls)(arch)(lambda: copy.deepcopy(resolved))


__all__ = ["ExportSection", "TrainThenExport", "install_secret_filter", "register_resolved_model", "share_log_files"]
