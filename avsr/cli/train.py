"""avsr-train: train (or resume) a model from a YAML recipe with fairseq2's trainer.

    avsr-train recipes/synth/conf.yaml dataset.path=DATA dataset.tokenizer=TOK [KEY=VALUE ...]
    avsr-train recipes/lrw/moco.yaml dataset.path=DATA        # task: moco (visual pretraining)
    avsr-train recipes/lrw/conf.yaml dataset.path=DATA        # task: lrw (word classification)
    avsr-train recipes/lm/synth.yaml dataset.path=DATA dataset.tokenizer=TOK   # task: lm (language model)
    torchrun --nproc_per_node 2 -m avsr.cli.train recipes/synth/conf.yaml ...     # DDP

The config's ``task`` key picks the recipe (``avsr`` when absent).

Rerunning the same command resumes from the last checkpoint in the output directory.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from avsr.console import fail

PROGRAM = "avsr-train"


@dataclass(frozen=True)
class TrainProgram:
    """What differs between avsr-train and vl-train: the name, the help and the task table (a
    module with the interface of `avsr.training.tasks`, imported late: fairseq2 is slow to load)."""

    name: str
    description: str
    epilog: str
    example_config: str
    tasks_module: str


AVSR_TRAIN = TrainProgram(
    PROGRAM,
    "Train an audio-visual speech recogniser (task: avsr), or a front-end alone "
    "(task: moco, self-supervised; task: lrw, word classification; task: wav2vec2), or a language model for "
    "the search (task: lm), from a YAML config (fairseq2 trainer: "
    "checkpoints, resume, DDP, mixed precision, TensorBoard and JSONL metrics). "
    "Rerun the same command to resume from the last checkpoint.",
    "Overrides use dotted keys of the config, e.g. regime.num_steps=20 "
    "regime.checkpoint_every_n_steps=10 dataset.path=DIR dataset.tokenizer=DIR "
    "model.config.encoder.layers=4 optimizer.config.lr=0.0005. Values are YAML.",
    "recipes/synth/conf.yaml",
    "avsr.training.tasks",
)


def build_parser(program: TrainProgram = AVSR_TRAIN) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=program.name, description=program.description, epilog=program.epilog)
    parser.add_argument("config", type=Path, help=f"recipe YAML (e.g. {program.example_config})")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="run directory (default: output_dir of the config, else runs/<config name>)",
    )
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="do not train: export OUTPUT_DIR/model/ from the run's checkpoints (export.* settings)",
    )
    parser.add_argument("--dump-config", action="store_true", help="print the merged config as YAML and exit")
    parser.add_argument("--no-rich", action="store_true", help="plain log lines, no progress bar (for files and CI)")
    return parser


def _one_line(exc: BaseException) -> str:
    """The innermost message of an exception chain, on one line."""
    messages = []
    current: BaseException | None = exc
    while current is not None:
        text = " ".join(str(current).split())
        messages.append(text or type(current).__name__)
        current = current.__cause__ or (current.__context__ if not current.__suppress_context__ else None)
    inner = messages[-1]
    return inner if len(messages) == 1 or inner in messages[0] else f"{messages[0]} ({inner})"


def _log_traceback(logger: logging.Logger, message: str) -> None:
    """The current exception's traceback, in the run's log files only when there are some (the
    console gets the one-line error)."""
    has_files = any(isinstance(h, logging.FileHandler) for h in logger.handlers)
    propagate, logger.propagate = logger.propagate, not has_files
    try:
        logger.exception("%s", message)
    finally:
        logger.propagate = propagate


def main(argv: list[str] | None = None, program: TrainProgram = AVSR_TRAIN) -> int:
    args = build_parser(program).parse_intermixed_args(argv)
    name = program.name
    # fairseq2 is slow to import: the config is checked first, with one-line errors.
    from avsr.training.config_loading import config_to_dict
    from avsr.training.export import ExportError
    from avsr.training.runs import default_output_dir

    tasks = importlib.import_module(program.tasks_module)
    user_errors = tasks.USER_ERRORS
    if not args.config.is_file():
        fail(name, f"{args.config}: config file not found")
    try:
        config = tasks.load_task_config(args.config, args.overrides)
    except user_errors as exc:
        fail(name, str(exc))
    if args.dump_config:
        import yaml

        sys.stdout.write(yaml.safe_dump(config_to_dict(config), sort_keys=False))
        return 0
    output_dir = args.output_dir or config.output_dir or default_output_dir(args.config)
    output_dir = Path(output_dir)
    if args.export_only:
        try:
            out = tasks.export(config, output_dir)
        except ExportError as exc:
            fail(name, str(exc))
        print(f"exported {out}")
        return 0
    try:
        inputs = tasks.prepare(config, output_dir)
    except user_errors as exc:
        fail(name, str(exc))
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        print(f"{name}: {tasks.describe(inputs)}; output {output_dir}", file=sys.stderr)
    try:
        tasks.train(inputs, no_rich=args.no_rich)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    except user_errors as exc:
        fail(name, str(exc))
    except Exception as exc:  # noqa: BLE001 - report any failure on one line, traceback in the log
        from fairseq2.task import TaskStopException

        if isinstance(exc, TaskStopException):
            print(f"{name}: stopped; rerun the same command to resume", file=sys.stderr)
            return 0
        _log_traceback(logging.getLogger("fairseq2"), f"{name} failed")
        fail(name, f"training failed: {_one_line(exc)} (traceback in {output_dir / 'logs'})", code=1)
    if rank == 0:
        print(f"{name}: done; model in {output_dir / 'model'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
