"""Read real corpus layouts (LRS2, LRS3, LRW) into a flat list of items to prepare.

An item is one clip, or one piece of a long pretrain clip: which file, which time window,
which split, what was said. Nothing here decodes media; listing an LRS2-sized corpus takes
seconds, so every run (and every shard) can list the whole corpus and agree on the order.

An item that cannot be prepared for a reason seen while listing (its path leads outside the
corpus root, its media or transcript file is missing) carries that one-line ``problem``: the
preparation reports it as skipped and goes on, rather than failing the listing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from avsr.media.paths import Confined, OutsideRootError

CORPORA = ("lrs2", "lrs3", "lrw")
LRS2_SPLITS = ("pretrain", "train", "val", "test")
# Optional extra lists: avsr-synth's held-out clips of training speakers (seen faces, unseen clips).
LRS2_EXTRA_SPLITS = ("test_seen",)
LRS3_SPLITS = {"pretrain": "pretrain", "trainval": "train", "test": "test"}  # folder -> split
LRW_SPLITS = ("train", "val", "test")
WORD_LINE = re.compile(r"^(\S+)\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)(?:\s+\S+)?\s*$")
# LRS2's test list flags some lines (``5535415699068794046/00001 NF``): a short upper-case word.
LIST_FLAG = re.compile(r"^(.*\S)\s+[A-Z]{1,4}$")


class CorpusError(ValueError):
    """The corpus root does not look like the layout asked for (one-line message)."""


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[TimedWord, ...] = ()


@dataclass(frozen=True)
class CorpusItem:
    """One clip (or piece of a clip) to prepare."""

    id: str  # unique, path-like: where its outputs go under the prepared root
    split: str
    video: Path  # source media file
    text: str
    start: float = 0.0  # seconds into the source
    end: float | None = None  # None: to the end of the source
    words: tuple[TimedWord, ...] = field(default=(), compare=False, repr=False)
    source_id: str = ""  # the whole source clip's id (pieces of a long clip share it)
    problem: str = ""  # why it cannot be prepared, seen while listing ("" when none)

    @property
    def source(self) -> str:
        return self.source_id or self.id


def parse_transcript(path: Path) -> Transcript:
    """LRS2/LRS3/LRW ``.txt``: ``Text:`` line, then ``Conf:`` etc., then optional word timings."""
    text = ""
    words = []
    in_words = False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("Text:"):
            text = line[len("Text:") :].strip()
        elif line.startswith("WORD START END"):
            in_words = True
        elif in_words:
            match = WORD_LINE.match(line)
            if match:
                words.append(TimedWord(match.group(1), float(match.group(2)), float(match.group(3))))
    return Transcript(" ".join(text.split()), tuple(words))


def split_long(item: CorpusItem, max_seconds: float) -> list[CorpusItem]:
    """Cut a long clip into pieces of at most ``max_seconds`` at word boundaries.

    Each piece runs from its first word's start to its last word's end, as auto_avsr and the
    seed paper do; a clip without word timings, or short enough, stays whole. A single word
    longer than the limit becomes a piece of its own.
    """
    words = item.words
    if not words or words[-1].end - words[0].start <= max_seconds:
        return [item]
    pieces: list[list[TimedWord]] = [[]]
    for word in words:
        current = pieces[-1]
        if current and word.end - current[0].start > max_seconds:
            pieces.append([word])
        else:
            current.append(word)
    return [
        CorpusItem(
            id=f"{item.id}_{index:02d}",
            split=item.split,
            video=item.video,
            text=" ".join(w.word for w in piece),
            start=item.start + piece[0].start,
            end=item.start + piece[-1].end,
            words=tuple(TimedWord(w.word, w.start - piece[0].start, w.end - piece[0].start) for w in piece),
            source_id=item.source,
            problem=item.problem,
        )
        for index, piece in enumerate(pieces, start=1)
    ]


def _item(root: Confined, listed: Path, split: str) -> CorpusItem:
    """The item for the media file ``listed`` (a path under ``root``, as listed or globbed), with
    its problem if any. Plain strings here: this runs once per clip of corpora of 100k clips."""
    video = os.path.normpath(listed)
    stem = os.path.splitext(video)[0]
    prefix = root.root.rstrip(os.sep) + os.sep
    relative = stem[len(prefix) :] if stem.startswith(prefix) else os.path.relpath(stem, root.root)
    item_id, text = relative.replace(os.sep, "/"), stem + ".txt"
    try:
        root.resolve(video)
        root.resolve(text)
    except OutsideRootError as error:
        return CorpusItem(item_id, split, Path(video), "", problem=error.problem)
    if not os.path.isfile(video):
        return CorpusItem(item_id, split, Path(video), "", problem="missing media file")
    if not os.path.isfile(text):
        return CorpusItem(item_id, split, Path(video), "", problem="no transcript file")
    transcript = parse_transcript(Path(text))
    return CorpusItem(item_id, split, Path(video), transcript.text, words=transcript.words)


def _list_name(folder: Path, line: str) -> str:
    """The clip a split-list line names: the whole line (names may hold spaces), or the line
    without a trailing flag (``NF``) when only that names a file or the line is ``name FLAG``."""
    name = line.strip()
    flagged = LIST_FLAG.match(name)
    if flagged is None or (folder / f"{name}.mp4").is_file():
        return name
    return flagged.group(1)


def list_lrs2(root: Path) -> list[CorpusItem]:
    """``main/`` and ``pretrain/`` with the split lists ``pretrain.txt train.txt val.txt test.txt``.

    List lines are ``group/id`` (test lines may carry a trailing flag, which is ignored; a name
    may hold spaces). The media may sit under ``mvlrs_v1/`` as in the distributed archive.
    A ``test_seen.txt`` (clips of ``main/``, as a synthetic corpus writes) becomes split ``test_seen``.
    """
    media = root / "mvlrs_v1" if (root / "mvlrs_v1").is_dir() else root
    lists = {split: root / f"{split}.txt" for split in (*LRS2_SPLITS, *LRS2_EXTRA_SPLITS)}
    if not any(path.is_file() for path in lists.values()):
        raise CorpusError(f"{root}: no LRS2 split lists (pretrain.txt, train.txt, val.txt, test.txt)")
    items = []
    confined = Confined(media)
    for split, path in lists.items():
        if not path.is_file():
            continue
        folder = media / ("pretrain" if split == "pretrain" else "main")
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                items.append(_item(confined, folder / f"{_list_name(folder, line)}.mp4", split))
    return items


def list_lrs3(root: Path) -> list[CorpusItem]:
    """``pretrain/``, ``trainval/`` (split "train") and ``test/``, each ``<speaker>/<nnnnn>.mp4``."""
    folders = [name for name in LRS3_SPLITS if (root / name).is_dir()]
    if not folders:
        raise CorpusError(f"{root}: no LRS3 folders (pretrain/, trainval/, test/)")
    confined = Confined(root)
    return [
        _item(confined, video, LRS3_SPLITS[folder])
        for folder in folders
        for video in sorted((root / folder).glob("*/*.mp4"))
    ]


def list_lrw(root: Path) -> list[CorpusItem]:
    """``lipread_mp4/<WORD>/{train,val,test}/<WORD>_<nnnnn>.mp4``; the text is the word."""
    media = root / "lipread_mp4" if (root / "lipread_mp4").is_dir() else root
    videos = sorted(media.glob("*/*/*.mp4"))
    videos = [v for v in videos if v.parent.name in LRW_SPLITS]
    if not videos:
        raise CorpusError(f"{root}: no LRW clips (lipread_mp4/<WORD>/<split>/<WORD>_nnnnn.mp4)")
    items = []
    confined = Confined(media)
    for video in videos:
        item = _item(confined, video, video.parent.name)
        # LRW's transcript is the folder's word (the .txt's Text: line says the same; it may be absent).
        problem = "" if item.problem == "no transcript file" else item.problem
        items.append(
            CorpusItem(item.id, item.split, item.video, item.text or video.parent.parent.name, problem=problem)
        )
    return items


def list_corpus(kind: str, root: Path, max_seconds: float | None = None) -> list[CorpusItem]:
    """Every item of the corpus, long pretrain clips cut into pieces, sorted by id.

    Only pretrain clips are cut: the other splits are sentence-level already, and cutting a test
    utterance would change what is scored.
    """
    if kind not in CORPORA:
        raise CorpusError(f"unknown corpus {kind!r}; choose from {', '.join(CORPORA)}")
    if not root.is_dir():
        raise CorpusError(f"{root}: no such directory")
    items = {"lrs2": list_lrs2, "lrs3": list_lrs3, "lrw": list_lrw}[kind](root)
    if max_seconds is not None:
        items = [
            piece for item in items for piece in (split_long(item, max_seconds) if item.split == "pretrain" else [item])
        ]
    return sorted(items, key=lambda item: item.id)
