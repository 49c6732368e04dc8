"""The token id layout shared by every tokenizer, and the `Tokenizer` interface.

Id layout (ESPnet's, which auto_avsr uses; fixed for all kinds):

    0          <blank>    CTC blank; also the value to pad id tensors with (`pad_id`)
    1 .. V-2   units      the tokenizer's own units, in the order of its units file; "<unk>" is
                          id 1 in every tokenizer this package trains
    V-1        <sos/eos>  one symbol that starts and ends every decoder sequence (`sos_id == eos_id`)

Why: CTC wants the blank at a fixed id and the attention decoder wants one start/end symbol; with
both at the ends, the units between them are exactly a units file ("piece index" lines, indices
1..V-2, auto_avsr's format), so auto_avsr's published unigram5000 model (5049 classes) and our own
tokenizers share one code path and one file format. Padding shares id 0 with the blank: padded
positions carry no label, so losses must mask them by length (or use `IGNORE_ID`, -1, as ESPnet's
decoder loss does); they are never read as blanks.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from avsr.data.text import TextNormalizer

BLANK = "<blank>"
UNK = "<unk>"
EOS = "<sos/eos>"
BLANK_ID = 0
IGNORE_ID = -1
UNITS_FILE = "units.txt"
METADATA_FILE = "tokenizer.json"
FORMAT_NAME = "avsr-tokenizer"
FORMAT_VERSION = 1


class TokenizerError(ValueError):
    """A tokenizer that cannot be built, trained or loaded; the message is one line."""


class Tokenizer(ABC):
    """Text <-> ids with the fixed layout above; `encode` normalises first, `decode` skips specials.

    Subclasses supply the units (ids 1..V-2) and how text splits into them, plus the files that
    `save` writes. `fingerprint` identifies everything that decides the ids, so a model config
    can record it and refuse to decode with any other tokenizer.
    """

    kind: str = ""

    def __init__(self, units: Sequence[str], normalizer: TextNormalizer) -> None:
        units = tuple(units)
        if not units:
            raise TokenizerError("a tokenizer needs at least one unit")
        for special in (BLANK, EOS):
            if special in units:
                raise TokenizerError(f"{special} is implicit (the first and last id) and cannot be a unit")
        if len(set(units)) != len(units):
            duplicates = sorted({u for u in units if units.count(u) > 1})
            raise TokenizerError(f"duplicate units: {' '.join(duplicates[:5])}")
        self.normalizer = normalizer
        self._pieces: tuple[str, ...] = (BLANK, *units, EOS)
        self._piece_to_id = {piece: i for i, piece in enumerate(self._pieces)}
        self._unk_id = self._piece_to_id.get(UNK)
        self._skip = {BLANK_ID, IGNORE_ID, self.eos_id} | ({self._unk_id} if self._unk_id is not None else set())
        self._fingerprint: str | None = None

    # -- layout ---------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of output classes (blank + units + sos/eos): the size of the model's last layer."""
        return len(self._pieces)

    @property
    def blank_id(self) -> int:
        return BLANK_ID

    @property
    def pad_id(self) -> int:
        """Value that pads id tensors; shared with the blank (mask padded targets by length)."""
        return BLANK_ID

    @property
    def ignore_id(self) -> int:
        """Target value a loss ignores (ESPnet's convention)."""
        return IGNORE_ID

    @property
    def unk_id(self) -> int | None:
        return self._unk_id

    @property
    def eos_id(self) -> int:
        return len(self._pieces) - 1

    @property
    def sos_id(self) -> int:
        return self.eos_id

    @property
    def pieces(self) -> tuple[str, ...]:
        """Every id's piece, blank first and sos/eos last."""
        return self._pieces

    @property
    def units(self) -> tuple[str, ...]:
        """The pieces between the blank and sos/eos (ids 1..V-2): what `units.txt` lists."""
        return self._pieces[1:-1]

    def id_to_piece(self, token_id: int) -> str:
        return self._pieces[token_id]

    def piece_to_id(self, piece: str) -> int:
        """The piece's id; unknown pieces give `unk_id` (a KeyError when there is none)."""
        token_id = self._piece_to_id.get(piece, self._unk_id)
        if token_id is None:
            raise KeyError(piece)
        return token_id

    def is_special(self, token_id: int) -> bool:
        """Blank/pad, unk, sos/eos or the ignore id: ids that `decode` leaves out."""
        return token_id in self._skip

    def vocab_info(self) -> Any:
        """fairseq2's `VocabularyInfo` for this layout (imported lazily: fairseq2 is slow to load)."""
        from fairseq2.data.tokenizers import VocabularyInfo

        return VocabularyInfo(self.vocab_size, self._unk_id, self.sos_id, self.eos_id, self.pad_id)

    # -- text -----------------------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        return self.normalizer(text)

    def encode(self, text: str) -> list[int]:
        """Ids for a transcript, after this tokenizer's normalisation; no sos/eos added."""
        return self._encode_normalized(self.normalizer(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Text for ids (a list, tensor or array); blank/pad, unk, sos/eos and -1 are skipped.

        It does not collapse CTC repeats: that is the CTC decoder's job.
        """
        kept = [int(i) for i in ids]
        kept = [i for i in kept if i not in self._skip]
        for i in kept:
            if not 0 <= i < len(self._pieces):
                raise TokenizerError(f"token id {i} outside the vocabulary (size {self.vocab_size})")
        return " ".join(self._join([self._pieces[i] for i in kept]).split())

    def piece_text(self, token_id: int) -> str:
        """The text one token stands for with its word break kept (the space unit is " ", the
        sentencepiece piece "▁the" is " the"): what word timings group tokens by."""
        if not 0 <= token_id < len(self._pieces) or token_id in self._skip:
            return ""
        return self._join([self._pieces[token_id]])

    @abstractmethod
    def _encode_normalized(self, text: str) -> list[int]: ...

    @abstractmethod
    def _join(self, pieces: list[str]) -> str:
        """Pieces back to text (word breaks restored; whitespace is tidied by `decode`)."""

    # -- storage --------------------------------------------------------------------------------

    @abstractmethod
    def files(self) -> dict[str, bytes]:
        """What `save` writes besides tokenizer.json: file name -> exact bytes."""

    def metadata_extra(self) -> dict[str, Any]:
        """Kind-specific fields for tokenizer.json."""
        return {}

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the kind, the normaliser and the checksum of every file (hex).

        Everything that decides the ids is in it; a model config records it.
        """
        if self._fingerprint is None:
            self._fingerprint = compute_fingerprint(self.kind, self.normalizer, self.file_checksums())
        return self._fingerprint

    def file_checksums(self) -> dict[str, str]:
        return {name: sha256_hex(data) for name, data in sorted(self.files().items())}

    def metadata(self) -> dict[str, Any]:
        """The content of tokenizer.json."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            **self.metadata_extra(),
            "vocab_size": self.vocab_size,
            "blank_id": self.blank_id,
            "pad_id": self.pad_id,
            "unk_id": self.unk_id,
            "sos_id": self.sos_id,
            "eos_id": self.eos_id,
            "ignore_id": self.ignore_id,
            "normalizer": self.normalizer.to_dict(),
            "files": self.file_checksums(),
            "fingerprint": self.fingerprint,
        }

    def save(self, out_dir: Path | str) -> Path:
        """Write the files and tokenizer.json (last, so a half-written folder does not load)."""
        from avsr.data.tokenizers.storage import save_tokenizer

        return save_tokenizer(self, Path(out_dir))

    @classmethod
    def from_sentencepiece(
        cls,
        model_path: Path | str,
        units_path: Path | str | None = None,
        normalizer: TextNormalizer | None = None,
    ) -> "Tokenizer":
        """A sentencepiece model as a tokenizer; with `units_path` ("piece index" lines, as
        auto_avsr's unigram5000_units.txt) the ids follow that file exactly, otherwise the model's
        own non-control pieces in model order become ids 1..V-2."""
        from avsr.data.tokenizers.spm import SentencePieceTokenizer

        return SentencePieceTokenizer.from_files(model_path, units_path, normalizer or TextNormalizer())

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(kind={self.kind!r}, vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]})"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compute_fingerprint(kind: str, normalizer: TextNormalizer, checksums: dict[str, str]) -> str:
    payload = {"kind": kind, "normalizer": normalizer.to_dict(), "files": dict(sorted(checksums.items()))}
    return sha256_hex(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def format_units(units: Sequence[str]) -> bytes:
    """The units file: one "piece index" line per unit, indices from 1 (auto_avsr's format)."""
    return "".join(f"{unit} {i}\n" for i, unit in enumerate(units, start=1)).encode("utf-8")


def parse_units(data: bytes, source: Path | str) -> list[str]:
    """Units from a "piece index" file; indices must run 1, 2, 3... in file order, since the
    file order is the decoding table and the index the encoding one (auto_avsr uses both)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{source}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    units: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        piece, _, index = line.rstrip().rpartition(" ")
        if not piece or not index.isdigit():
            raise TokenizerError(f"{source}:{number}: expected 'piece index', got {line[:60]!r}")
        if int(index) != len(units) + 1:
            raise TokenizerError(f"{source}:{number}: index {index} out of sequence (expected {len(units) + 1})")
        units.append(piece)
    if not units:
        raise TokenizerError(f"{source}: no units")
    return units
