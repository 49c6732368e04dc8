"""Word and character error rates, always after one explicit text normaliser.

Scores are only comparable when references and hypotheses went through the same rules, so the
normaliser is a required argument (usually the tokenizer's), and the counts are kept so that
per-utterance results can be summed into corpus-level rates (not averaged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jiwer


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations and reference length; rates are errors / reference length."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / self.reference_length if self.reference_length else float(self.errors > 0)

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )


@dataclass(frozen=True)
class ErrorRates:
    words: ErrorCounts
    characters: ErrorCounts
    utterances: int

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.characters.rate

    def as_dict(self) -> dict:
        return {
            "wer": round(self.wer, 4),
            "cer": round(self.cer, 4),
            "utterances": self.utterances,
            "words": self.words.reference_length,
            "word_errors": self.words.errors,
        }


def _counts(references: list[str], hypotheses: list[str], characters: bool) -> ErrorCounts:
    total = ErrorCounts()
    for reference, hypothesis in zip(references, hypotheses):
        if not reference or not hypothesis:  # jiwer refuses empty strings
            ref_units = len(reference if characters else reference.split())
            hyp_units = len(hypothesis if characters else hypothesis.split())
            total += ErrorCounts(deletions=ref_units, insertions=hyp_units, reference_length=ref_units)
            continue
        process = jiwer.process_characters if characters else jiwer.process_words
        out = process(reference, hypothesis)
        total += ErrorCounts(
            out.substitutions, out.deletions, out.insertions, out.hits + out.substitutions + out.deletions
        )
    return total


def error_rates(references: Sequence[str], hypotheses: Sequence[str], normalize: Callable[[str], str]) -> ErrorRates:
    """Corpus WER and CER of ``hypotheses`` against ``references`` after ``normalize`` on both."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    return ErrorRates(_counts(refs, hyps, characters=False), _counts(refs, hyps, characters=True), len(refs))
