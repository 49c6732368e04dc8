"""Validation curves of training runs side by side: one line per run, a metric against the step.

    python -m avsr.eval.curves runs/lrw/words_scratch runs/lrw/words_moco \\
        --labels "random init" "MoCo init" --metric Accuracy --out runs/lrw/curves.png

Reads each run's ``metrics/valid.jsonl`` (fairseq2's JSONL metrics); prints the values as a
markdown table and writes the plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from avsr.console import fail

PROGRAM = "avsr.eval.curves"
#: fairseq2 metrics reported in percent.
PERCENT_METRICS = ("Accuracy", "Word Error Rate (WER)", "Character Error Rate (CER)")


def read_curve(run_dir: Path, metric: str, category: str = "valid") -> list[tuple[int, float]]:
    """(step, value) of ``metric`` in a run's ``metrics/<category>.jsonl``, by step."""
    path = run_dir / "metrics" / f"{category}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics (is {run_dir} an avsr-train output directory?)")
    points = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if metric in row and "Step" in row:
                points[int(row["Step"])] = float(row[metric])
    return sorted(points.items())


def plot_curves(curves: dict[str, list[tuple[int, float]]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, points in curves.items():
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o", label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {metric.lower()}" + (" (%)" if metric in PERCENT_METRICS else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def markdown_table(curves: dict[str, list[tuple[int, float]]], metric: str) -> str:
    steps = sorted({s for points in curves.values() for s, _ in points})
    lines = [f"| step | {' | '.join(curves)} |", "|---|" + "---|" * len(curves)]
    for step in steps:
        cells = [next((f"{v:.1f}" for s, v in points if s == step), "") for points in curves.values()]
        lines.append(f"| {step} | {' | '.join(cells)} |")
    return "\n".join(lines) + f"\n\nvalidation {metric}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Plot validation curves of avsr-train runs side by side."
    )
    parser.add_argument("runs", nargs="+", type=Path, help="avsr-train output directories")
    parser.add_argument("--labels", nargs="+", default=None, help="one name per run (default: the folder names)")
    parser.add_argument("--metric", default="Accuracy", help="column of metrics/valid.jsonl (default Accuracy)")
    parser.add_argument(
        "--category",
        default="valid",
        help="metrics file under metrics/ (default valid; valid/av, valid/audio, valid/video for AVSR runs)",
    )
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    labels = args.labels or [r.name for r in args.runs]
    if len(labels) != len(args.runs):
        fail(PROGRAM, f"{len(labels)} labels for {len(args.runs)} runs")
    try:
        curves = {label: read_curve(run, args.metric, args.category) for label, run in zip(labels, args.runs)}
    except (FileNotFoundError, ValueError) as exc:
        fail(PROGRAM, str(exc))
    if not any(curves.values()):
        fail(PROGRAM, f"no {args.metric!r} values in the runs' metrics/valid.jsonl")
    plot_curves(curves, args.metric, args.out)
    print(markdown_table(curves, args.metric))
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
