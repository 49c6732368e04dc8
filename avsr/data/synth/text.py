"""Transcripts for the synthetic corpus: a GRID-like command grammar and an open news vocabulary.

GRID's six-slot grammar gives a small closed vocabulary (51 words) where a tiny model can learn
every word; the open vocabulary (480 common words of broadcast news, the register of LRS2 and
LRW) gives sentences a model cannot memorise. Transcripts are upper case, as in LRS2 and LRW.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

GRID_SLOTS: tuple[tuple[str, ...], ...] = (
    ("BIN", "LAY", "PLACE", "SET"),
    ("BLUE", "GREEN", "RED", "WHITE"),
    ("AT", "BY", "IN", "WITH"),
    tuple("ABCDEFGHIJKLMNOPQRSTUVXYZ"),  # GRID leaves out W: it is three syllables long
    ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"),
    ("AGAIN", "NOW", "PLEASE", "SOON"),
)

VOCABULARIES = ("grid", "open")


@lru_cache(maxsize=1)
def news_words() -> tuple[str, ...]:
    """The open vocabulary, also the word list of the synthetic LRW layout (alphabetical)."""
    text = resources.files("avsr.data.synth").joinpath("words.txt").read_text(encoding="utf-8")
    return tuple(text.split())


def grid_vocabulary() -> tuple[str, ...]:
    return tuple(sorted({word for slot in GRID_SLOTS for word in slot}))


@dataclass(frozen=True)
class SentenceSampler:
    """Draws transcripts from one vocabulary; all randomness comes from the caller's generator."""

    vocabulary: str = "grid"
    min_words: int = 4
    max_words: int = 9

    def __post_init__(self) -> None:
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(f"unknown vocabulary {self.vocabulary!r}; choose from {VOCABULARIES}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError("need 1 <= min_words <= max_words")

    def sentence(self, rng: np.random.Generator) -> list[str]:
        if self.vocabulary == "grid":
            return [slot[rng.integers(len(slot))] for slot in GRID_SLOTS]
        words = news_words()
        length = int(rng.integers(self.min_words, self.max_words + 1))
        return [words[i] for i in rng.integers(len(words), size=length)]

    def words(self) -> tuple[str, ...]:
        return grid_vocabulary() if self.vocabulary == "grid" else news_words()


def spoken_form(word: str) -> str:
    """What the synthesiser is given for a transcript word.

    Single letters are spelt out so that espeak says the letter's name (as GRID speakers do) and
    reports it as one word event.
    """
    if word == "A":
        return "eh"  # espeak reads a lone "A" as the article; "eh" gives the letter's name
    if len(word) == 1 and word.isalpha():
        return word.upper()
    return word.lower()
