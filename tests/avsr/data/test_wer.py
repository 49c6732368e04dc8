"""WER/CER: counts summed over utterances, normalisation applied to both sides."""

from __future__ import annotations

import pytest

from avsr.data.text import TextNormalizer
from avsr.data.wer import error_rates


def test_wer_counts_edits_over_the_corpus():
    normalize = TextNormalizer()
    rates = error_rates(["BIN BLUE AT F TWO NOW", "SET RED"], ["bin blue at f two now", "SET READ BY"], normalize)
    assert rates.words.reference_length == 8
    assert rates.words.substitutions == 1 and rates.words.insertions == 1
    assert rates.wer == pytest.approx(2 / 8)
    assert 0 < rates.cer < rates.wer


def test_empty_hypothesis_is_all_deletions_and_punctuation_is_normalised():
    rates = error_rates(["YOU'RE RIGHT", "HELLO"], ["you're, right!", ""], TextNormalizer())
    assert rates.words.deletions == 1 and rates.words.substitutions == 0
    assert rates.wer == pytest.approx(1 / 3)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rates(["A", "B"], ["A"], TextNormalizer())
