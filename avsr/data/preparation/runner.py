"""Run preparation over a corpus: workers, shards, resuming, the skip report and the manifests.

Progress is logged per shard in ``OUT/.records/shard-I-of-N.jsonl``, one JSON line per item
(appended after the item's files are complete), so a killed run resumes where it stopped and
shards running at once never write to the same file. Manifests and the report are rebuilt from
every shard's log at the end of each run. ``OUT/.records/settings.json`` holds the options that
shape an item (layout, crop size, mouth alignment, quality, pretrain cut): a rerun with other ones
is refused, so one folder never mixes crops of two kinds.

A bad item is skipped and reported; an output that cannot be written (disk full, permissions)
stops the run with a one-line :class:`MediaError` naming the file, leaving no temporary files
behind (the workers unwind their atomic writes); the rerun resumes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from avsr.data.corpora import CorpusItem, list_corpus
from avsr.data.manifest import ManifestRow, write_manifest
from avsr.data.preparation.clip import ClipSettings, SkipItem
from avsr.media.atomic import atomic_path
from avsr.media.errors import media_errors

RECORDS = ".records"
REPORT = "report.tsv"
SETTINGS = "settings.json"
#: the options that shape a prepared item, and the flag that sets each
SHAPING_OPTIONS = {
    "corpus": "the layout",
    "crop_size": "--crop-size",
    "mouth_crop": "--mouth-crop",
    "crf": "--crf",
    "max_seconds": "--max-duration",
}


@dataclass(frozen=True)
class PrepareConfig:
    corpus: str  # lrs2 | lrs3 | lrw
    source: Path
    output: Path
    clip: ClipSettings = field(default_factory=ClipSettings)
    workers: int = 1
    shard: int = 0  # this job's shard, 0 <= shard < shards
    shards: int = 1
    max_seconds: float = 24.0  # pretrain clips longer than this are cut at word boundaries
    retry_skipped: bool = False  # redo items an earlier run skipped

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if not 0 <= self.shard < self.shards:
            raise ValueError(f"--shard must be I/N with 0 <= I < N, got {self.shard}/{self.shards}")
        if self.max_seconds <= 0:
            raise ValueError("--max-duration must be positive")
        source, output = self.source.resolve(), self.output.resolve()
        if output == source or source in output.parents:
            raise ValueError(f"{self.output}: the output must not be inside the source corpus {self.source}")


@dataclass(frozen=True)
class ItemOutcome:
    id: str
    split: str
    row: ManifestRow | None = None
    skipped: str | None = None  # the reason
    source: str = ""  # the source file, for the report

    def to_json(self) -> str:
        data = {"id": self.id, "split": self.split, "source": self.source}
        if self.row is not None:
            data["row"] = asdict(self.row)
        else:
            data["skipped"] = self.skipped
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> ItemOutcome:
        data = json.loads(line)
        row = ManifestRow(**data["row"]) if "row" in data else None
        return cls(data["id"], data["split"], row, data.get("skipped"), data.get("source", ""))


@dataclass
class PrepareSummary:
    items: int  # in this shard
    prepared: int = 0  # by this run
    skipped: int = 0  # by this run
    already_done: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    manifests: dict[str, int] = field(default_factory=dict)  # split -> rows, all shards


def read_outcomes(output: Path) -> dict[str, ItemOutcome]:
    """Every item any shard has finished (a torn last line from a killed run is ignored)."""
    outcomes: dict[str, ItemOutcome] = {}
    for log in sorted((output / RECORDS).glob("shard-*.jsonl")):
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                outcome = ItemOutcome.from_json(line)
            except (ValueError, KeyError, TypeError):
                continue
            outcomes[outcome.id] = outcome
    return outcomes


def shard_items(items: list[CorpusItem], shard: int, shards: int) -> list[CorpusItem]:
    return [item for index, item in enumerate(items) if index % shards == shard]


def pending_items(config: PrepareConfig, items: list[CorpusItem], done: dict[str, ItemOutcome]) -> list[CorpusItem]:
    def finished(item: CorpusItem) -> bool:
        outcome = done.get(item.id)
        if outcome is None:
            return False
        if outcome.row is None:
            return not config.retry_skipped
        # A finished item whose files were deleted since is redone.
        return (config.output / outcome.row.video).is_file() and (config.output / outcome.row.audio).is_file()

    return [item for item in items if not finished(item)]


def shaping_settings(config: PrepareConfig) -> dict[str, object]:
    clip = asdict(config.clip)
    return {name: clip[name] if name in clip else getattr(config, name) for name in SHAPING_OPTIONS}


def claim_output(config: PrepareConfig) -> None:
    """Record in OUT the options that shape its items, or check them against those recorded:
    ValueError (one line) when this run would add items of another kind."""
    path = config.output / RECORDS / SETTINGS
    wanted = shaping_settings(config)
    if path.is_file():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(
                f"{path}: unreadable ({exc}); it records the options {config.output} was prepared with"
            ) from None
        changed = [
            name for name in wanted if isinstance(recorded, dict) and recorded.get(name, wanted[name]) != wanted[name]
        ]
        if changed:
            was = ", ".join(f"{SHAPING_OPTIONS[n]} {recorded[n]}" for n in changed)
            now = ", ".join(f"{SHAPING_OPTIONS[n]} {wanted[n]}" for n in changed)
            raise ValueError(
                f"{config.output} was prepared with {was}, not {now}: use another output folder, or the same options"
            )
        if recorded == wanted:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        Path(temp).write_text(json.dumps(wanted, sort_keys=True) + "\n", encoding="utf-8")


def prepare_corpus(config: PrepareConfig, on_outcome: Callable[[ItemOutcome], None] | None = None) -> PrepareSummary:
    items = shard_items(list_corpus(config.corpus, config.source, config.max_seconds), config.shard, config.shards)
    config.output.mkdir(parents=True, exist_ok=True)
    claim_output(config)
    todo = pending_items(config, items, read_outcomes(config.output))
    summary = PrepareSummary(items=len(items), already_done=len(items) - len(todo))
    log_path = config.output / RECORDS / f"shard-{config.shard}-of-{config.shards}.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a+", encoding="utf-8") as log:
        _end_torn_line(log)
        for outcome in _run(todo, config):
            with media_errors(log_path, writing=True):
                log.write(outcome.to_json() + "\n")
                log.flush()
            if outcome.row is not None:
                summary.prepared += 1
            else:
                summary.skipped += 1
                summary.skip_reasons[outcome.skipped or "?"] += 1
            if on_outcome is not None:
                on_outcome(outcome)
    summary.manifests = write_outputs(config.output)
    return summary


def _end_torn_line(log) -> None:
    """A run killed mid-write leaves a partial last line: close it so the next record stands alone."""
    if log.tell() > 0:
        log.seek(log.tell() - 1)
        if log.read(1) != "\n":
            log.write("\n")


def write_outputs(output: Path) -> dict[str, int]:
    """Manifests per split and the skip report, from every shard's log."""
    from avsr.media.atomic import atomic_path

    outcomes = read_outcomes(output)
    rows: dict[str, list[ManifestRow]] = {}
    for outcome in outcomes.values():
        if outcome.row is not None:
            rows.setdefault(outcome.split, []).append(outcome.row)
    for split, split_rows in rows.items():
        write_manifest(output / f"{split}.tsv", split_rows)
    skipped = sorted((o for o in outcomes.values() if o.row is None), key=lambda o: o.id)
    with media_errors(output / REPORT, writing=True), atomic_path(output / REPORT) as temp:
        lines = ["id\tsource\treason"] + [f"{o.id}\t{o.source}\t{o.skipped}" for o in skipped]
        Path(temp).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {split: len(split_rows) for split, split_rows in sorted(rows.items())}


# --- workers ------------------------------------------------------------------------------------------

_preparer = None


def _init_worker(settings: ClipSettings) -> None:
    import cv2

    from avsr.data.preparation.clip import ClipPreparer

    global _preparer
    cv2.setNumThreads(1)
    _preparer = ClipPreparer(settings)


def _prepare_one(job: tuple[CorpusItem, Path]) -> ItemOutcome:
    item, output = job
    assert _preparer is not None
    try:
        row = _preparer.prepare(item, output)
    except SkipItem as reason:
        return ItemOutcome(item.id, item.split, skipped=str(reason), source=str(item.video))
    return ItemOutcome(item.id, item.split, row=row, source=str(item.video))


def _run(todo: list[CorpusItem], config: PrepareConfig) -> Iterator[ItemOutcome]:
    from avsr.parallel import run_jobs

    jobs = [(item, config.output) for item in todo]
    yield from run_jobs(_prepare_one, jobs, config.workers, _init_worker, (config.clip,))
