"""Transcript text: the one normaliser shared by training, decoding and scoring.

Why one normaliser: WER is only comparable when the reference and the hypothesis went through the
same rules, and a model only learns what its tokenizer was trained on. The tokenizer records its
`TextNormalizer` (in `tokenizer.json`), so training, decoding and scoring all apply the same one.

LRS2, LRS3 and LRW transcripts are upper-case words with apostrophes ("WHEN YOU'RE COOKING CHIPS
AT HOME"). LRS2 and LRW spell numbers as words; LRS3 also has digits ("2008"). The default keeps
numbers as the corpus writes them: spelling digits out is a choice about what the reference says
("1990" may be "NINETEEN NINETY" or "ONE THOUSAND NINE HUNDRED AND NINETY"), so it is an opt-in
(`numbers="words"`), never a silent default.

The rules, in order (`TextNormalizer.__call__`):
  1. Unicode NFKC (full-width forms, ligatures, non-breaking spaces), case mapping, NFKC again.
  2. Apostrophe look-alikes (’ ‘ ʼ ′ ` ´ ＇) become "'".
  3. Thousands separators inside numbers are dropped ("1,000" -> "1000").
  4. Punctuation and symbols (Unicode categories P* and S*) become spaces when `strip_punctuation`;
     so "WELL-KNOWN" -> "WELL KNOWN", "U.S." -> "U S", "50%" -> "50", "3.5" -> "3 5".
     Format/control characters (zero-width joiners, soft hyphens) are always removed.
  5. Apostrophes are kept inside and at the edges of words ("YOU'RE", "PARENTS'", "'CAUSE") when
     `keep_apostrophes`, but a word made only of apostrophes (a quote mark) is dropped; otherwise
     they are deleted ("YOU'RE" -> "YOURE").
  6. Optional digits-to-words for whole-number words (`numbers="words"`, British style: "ONE
     HUNDRED AND FIVE"); words that mix digits and letters ("1990S", "4TH") are left alone.
  7. NFKC once more (dropped characters can leave combining marks out of order); whitespace is
     collapsed to single spaces, none at the ends.

The result is deterministic and idempotent: normalising twice gives the same text as once.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, fields
from typing import Any

CASES = ("upper", "lower", "keep")
NUMBER_MODES = ("keep", "words")

# Characters read as an apostrophe. ` and ´ are mapped before NFKC, which would turn ´ into a space
# plus a combining accent; ` again after it, since NFKC makes it from other grave accents.
_PRE_NFKC_APOSTROPHES = str.maketrans({"`": "'", "\u00b4": "'"})
_APOSTROPHES = str.maketrans({c: "'" for c in "`\u2019\u2018\u02bc\u2032\u201b\uff07\u02b9\u02bb\u02bd"})
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


@dataclass(frozen=True)
class TextNormalizer:
    """How transcripts are normalised; recorded with every tokenizer so scoring can reuse it.

    case: "upper" (LRS2/LRS3/LRW and the seed paper), "lower" (auto_avsr scores lower case),
        or "keep".
    keep_apostrophes: keep "'" in words ("YOU'RE"); False deletes it ("YOURE").
    strip_punctuation: punctuation and symbols become word breaks.
    numbers: "keep" leaves digits as written (the default: the corpus decides); "words" spells
        whole-number words out in English.
    """

    case: str = "upper"
    keep_apostrophes: bool = True
    strip_punctuation: bool = True
    numbers: str = "keep"

    def __post_init__(self) -> None:
        if self.case not in CASES:
            raise ValueError(f"text normaliser: case must be one of {CASES}, not {self.case!r}")
        if self.numbers not in NUMBER_MODES:
            raise ValueError(f"text normaliser: numbers must be one of {NUMBER_MODES}, not {self.numbers!r}")

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFKC", text.translate(_PRE_NFKC_APOSTROPHES))
        if self.case != "keep":
            # Case mapping can emit decomposed sequences (e.g. "ΐ".upper()); NFKC recomposes them.
            text = unicodedata.normalize("NFKC", self._apply_case(text))
        text = text.translate(_APOSTROPHES)
        text = _THOUSANDS_COMMA.sub("", text)
        text = "".join(self._map_char(c) for c in text)
        words = text.split()
        if self.keep_apostrophes:
            words = [w for w in words if w.strip("'")]
        else:
            words = [w.replace("'", "") for w in words]
            words = [w for w in words if w]
        if self.numbers == "words":
            words = [self._apply_case(number_to_words(int(w))) if _is_ascii_number(w) else w for w in words]
        # Dropping a character can leave combining marks out of canonical order: NFKC once more.
        return " ".join(unicodedata.normalize("NFKC", " ".join(words)).split())

    def _apply_case(self, text: str) -> str:
        if self.case == "upper":
            return text.upper()
        if self.case == "lower":
            return text.lower()
        return text

    def _map_char(self, char: str) -> str:
        category = unicodedata.category(char)
        if category in ("Cf", "Co", "Cn", "Cs") or (category == "Cc" and not char.isspace()):
            return ""
        if char == "'" or not self.strip_punctuation:
            return char
        if category[0] in "PS":
            return " "
        return char

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TextNormalizer":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"text normaliser: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)


def normalize_text(text: str, config: TextNormalizer | None = None) -> str:
    """Normalise one transcript (see the module docstring for the rules); default: `TextNormalizer()`."""
    return (config or TextNormalizer())(text)


def _is_ascii_number(word: str) -> bool:
    return word.isascii() and word.isdigit()


_ONES = (
    "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN FOURTEEN FIFTEEN "
    "SIXTEEN SEVENTEEN EIGHTEEN NINETEEN"
).split()
_TENS = "_ _ TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()
_SCALES = ((10**12, "TRILLION"), (10**9, "BILLION"), (10**6, "MILLION"), (10**3, "THOUSAND"))


def number_to_words(n: int) -> str:
    """English cardinal in upper case, British style ("ONE HUNDRED AND FIVE"); digits beyond 10**15."""
    if n < 0:
        raise ValueError("number_to_words takes a non-negative integer")
    if n >= 10**15:
        return " ".join(_ONES[int(d)] for d in str(n))
    if n == 0:
        return _ONES[0]
    words: list[str] = []
    for scale, name in _SCALES:
        if n >= scale:
            words += [_below_thousand(n // scale), name]
            n %= scale
    if n:
        if words and n < 100:
            words.append("AND")
        words.append(_below_thousand(n))
    return " ".join(words)


def _below_thousand(n: int) -> str:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "HUNDRED"]
        n %= 100
        if n:
            words.append("AND")
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return " ".join(words)


# ----------------------------------------------------------------------------------------------
# Manifests
