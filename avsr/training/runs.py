"""A training run's directory, read without fairseq2: what the run recorded at its start
(``avsr_run.yaml``), its checkpoints and their scores, averaged weights, its metrics.

    OUTPUT_DIR/avsr_run.yaml            model config, tokenizer, training config (`read_run_file`)
    OUTPUT_DIR/checkpoints/step_N/      fairseq2's checkpoints (`checkpoint_model_files`)
    OUTPUT_DIR/checkpoints/scores/      the validation score of each (`checkpoint_scores`)
    OUTPUT_DIR/metrics/<category>.jsonl fairseq2's metrics (`iter_metrics`)

Every task's recipe (avsr, moco, lrw, wav2vec2, vision_language's vl) writes and reads this layout.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor

from avsr.training.export import ExportError, average_state_dicts, load_torch_state

log = logging.getLogger("avsr.training")

RUN_FILE = "avsr_run.yaml"


def default_output_dir(config_path: str | os.PathLike[str] | None) -> Path:
    """``runs/<config name>`` (``runs/<parent>`` for a generic ``conf.yaml``)."""
    if config_path is None:
        return Path("runs") / "train"
    p = Path(config_path)
    name = p.parent.name if p.stem in ("conf", "config") and p.parent.name else p.stem
    return Path("runs") / name


def read_run_file(output_dir: Path) -> dict[str, Any]:
    """What a run recorded at its start (model config, tokenizer, training config ...)."""
    run_file = output_dir / RUN_FILE
    try:
        run = yaml.safe_load(run_file.read_text(encoding="utf-8"))
    except OSError:
        raise ExportError(f"{run_file}: not found (is {output_dir} an avsr-train output directory?)") from None
    if not isinstance(run, dict):
        raise ExportError(f"{run_file}: not a run file")
    return run


def recorded_config_differs(recorded: Any, config: Any, read: Callable[[Any], Any]) -> bool:
    """Whether a run file's ``model_config`` (plain data) describes another model than ``config``.

    The record is read back through ``read`` (e.g. ``AVSRConfig.from_stored``) and compared as a
    config, not as text: a field added to the config since the run was recorded takes its default,
    so runs recorded by an older avsr still resume. An unreadable record differs."""
    if recorded is None:
        return False
    try:
        return read(recorded) != config
    except (TypeError, ValueError, KeyError):
        return True


def checkpoint_model_files(output_dir: Path) -> dict[int, Path]:
    """step -> model weights file of each complete fairseq2 checkpoint under ``output_dir``."""
    found: dict[int, Path] = {}
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return found
    for step_dir in root.glob("step_*"):
        m = re.fullmatch(r"step_(\d+)", step_dir.name)
        file = step_dir / "model" / "pp_00" / "tp_00" / "sdp_00.pt"
        if m and step_dir.is_dir() and file.is_file():
            found[int(m.group(1))] = file
    return dict(sorted(found.items()))


def checkpoint_scores(output_dir: Path) -> dict[int, float]:
    """step -> score fairseq2 recorded (higher is better; negated for lower-is-better metrics)."""
    scores: dict[int, float] = {}
    for file in (output_dir / "checkpoints" / "scores").glob("step_*.txt"):
        m = re.fullmatch(r"step_(\d+)\.txt", file.name)
        try:
            if m:
                scores[int(m.group(1))] = float(file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return scores


def averaged_checkpoints(output_dir: Path, *, last_n: int = 1, best_n: int = 0) -> tuple[dict[str, Tensor], list[int]]:
    """The model weights of the last ``last_n`` (or ``best_n`` best) checkpoints, averaged, and
    their steps. A checkpoint whose weights cannot be read is skipped (one warning) and the next
    candidate taken."""
    files = checkpoint_model_files(output_dir)
    if not files:
        raise ExportError(f"{output_dir / 'checkpoints'}: no checkpoints to export")
    wanted = max(last_n if best_n <= 0 else best_n, 1)
    if best_n > 0:
        scores = checkpoint_scores(output_dir)
        candidates = sorted((s for s in files if s in scores), key=lambda s: scores[s], reverse=True)
        if not candidates:
            raise ExportError(
                f"{output_dir}: no scored checkpoints (set regime.score_metric and validate) for export.average_best_n"
            )
    else:
        candidates = sorted(files, reverse=True)
    loaded: dict[int, dict[str, Tensor]] = {}
    for step in candidates:
        if len(loaded) == wanted:
            break
        try:
            loaded[step] = load_torch_state(files[step])
        except ExportError as exc:
            log.warning("checkpoint of step %d skipped: %s", step, exc)
    if not loaded:
        raise ExportError(f"{output_dir / 'checkpoints'}: no checkpoint with readable weights to export")
    steps = sorted(loaded)
    if len(steps) < wanted:
        log.warning(
            "averaging %d checkpoint(s) (%s): fewer are kept than asked for", len(steps), ", ".join(map(str, steps))
        )
    states = [loaded[s] for s in steps]
    return (states[0] if len(states) == 1 else average_state_dicts(states)), steps


def iter_metrics(output_dir: str | os.PathLike[str], category: str = "train") -> Iterator[dict[str, Any]]:
    """Rows of ``metrics/<category>.jsonl`` that fairseq2 wrote for a run."""
    path = Path(output_dir) / "metrics" / f"{category}.jsonl"
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


__all__ = [
    "RUN_FILE",
    "averaged_checkpoints",
    "checkpoint_model_files",
    "checkpoint_scores",
    "default_output_dir",
    "iter_metrics",
    "read_run_file",
    "recorded_config_differs",
]
