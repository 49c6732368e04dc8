"""Sentencepiece tokenizers (unigram, BPE): our own and auto_avsr's unigram5000.

Text is split into pieces by the sentencepiece model, and pieces become ids through a units list
(ids 1..V-2), exactly as auto_avsr's `TextTransform` does: a piece missing from the list (for
instance the raw text sentencepiece emits for an unknown character) becomes <unk>. For the models
this package trains, the units are the model's pieces in model order, <unk> first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sentencepiece

from avsr.data.text import TextNormalizer
from avsr.data.tokenizers.base import UNITS_FILE, UNK, Tokenizer, TokenizerError, format_units, parse_units

MODEL_FILE = "spm.model"
WORD_BOUNDARY = "\u2581"  # sentencepiece's "▁", which starts every word


def load_processor(
    model_bytes: bytes, source: Path | str = "sentencepiece model"
) -> sentencepiece.SentencePieceProcessor:
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(model_bytes)
    except Exception as e:  # sentencepiece raises RuntimeError/OSError with multi-line text
        first_line = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise TokenizerError(f"{source}: not a sentencepiece model ({first_line})") from None
    return processor


def model_units(processor: sentencepiece.SentencePieceProcessor) -> list[str]:
    """The model's pieces in model order, leaving out control (<s>, </s>) and unused ones."""
    return [
        processor.id_to_piece(i)
        for i in range(processor.get_piece_size())
        if not (processor.is_control(i) or processor.is_unused(i))
    ]


def model_type(model_bytes: bytes) -> str:
    """ "unigram", "bpe", "word" or "char", from the model's trainer spec ("unknown" if unreadable)."""
    try:
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(model_bytes)
        return sentencepiece_model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type).lower()
    except Exception:  # protobuf missing or an exotic model: the type is information only
        return "unknown"


class SentencePieceTokenizer(Tokenizer):
    """Sentencepiece segmentation + a units list for the ids (blank 0 and sos/eos last around it)."""

    kind = "sentencepiece"

    def __init__(
        self,
        model_bytes: bytes,
        units: Sequence[str] | None,
        normalizer: TextNormalizer,
        source: Path | str = "sentencepiece model",
    ) -> None:
        self._processor = load_processor(model_bytes, source)
        super().__init__(model_units(self._processor) if units is None else units, normalizer)
        if self.unk_id is None:
            raise TokenizerError(f"{source}: the units have no {UNK}")
        self.model_bytes = model_bytes
        self.model_type = model_type(model_bytes)

    @classmethod
    def from_files(
        cls, model_path: Path | str, units_path: Path | str | None = None, normalizer: TextNormalizer | None = None
    ) -> "SentencePieceTokenizer":
        model_bytes = _read(model_path)
        units = None if units_path is None else parse_units(_read(units_path), units_path)
        return cls(model_bytes, units, normalizer or TextNormalizer(), source=model_path)

    def _encode_normalized(self, text: str) -> list[int]:
        unk = self._unk_id
        return [self._piece_to_id.get(piece, unk) for piece in self._processor.encode(text, out_type=str)]

    def _join(self, pieces: list[str]) -> str:
        return "".join(pieces).replace(WORD_BOUNDARY, " ")

    def files(self) -> dict[str, bytes]:
        return {MODEL_FILE: self.model_bytes, UNITS_FILE: format_units(self.units)}

    def metadata_extra(self) -> dict[str, Any]:
        return {"model_type": self.model_type}


def _read(path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read ({e.strerror or e})") from None
