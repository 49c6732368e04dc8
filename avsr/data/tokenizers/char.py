"""Character tokenizer: the seed paper's output units (letters, digits, apostrophe, a space token).

The vocabulary starts from a fixed base, so that character models trained on different corpora
(LRW, LRS2, LRS3) agree on the ids of every ordinary character and can be fine-tuned from one
another; characters a corpus has beyond the base are appended in code-point order:

    0 <blank>, 1 <unk>, 2 <space>, 3 ', 4-29 A-Z, 30-39 0-9, [extras], <sos/eos>

(41 classes for English transcripts; lower-case letters when the normaliser lower-cases).
`seed_char_tokenizer()` gives the seed paper's own 40-class table instead (no <unk>), for its
checkpoints.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence

from avsr.data.text import TextNormalizer
from avsr.data.tokenizers.base import UNITS_FILE, UNK, Tokenizer, TokenizerError, format_units

SPACE = "<space>"


def base_characters(normalizer: TextNormalizer) -> list[str]:
    """The units every char tokenizer has, in id order after <unk>."""
    letters = string.ascii_lowercase if normalizer.case == "lower" else string.ascii_uppercase
    return [SPACE, "'", *letters, *string.digits]


class CharTokenizer(Tokenizer):
    """One id per character; a space between words is the `<space>` unit."""

    kind = "char"

    def __init__(self, units: Sequence[str], normalizer: TextNormalizer) -> None:
        super().__init__(units, normalizer)
        if SPACE not in self._piece_to_id:
            raise TokenizerError(f"a char tokenizer needs a {SPACE} unit")
        for unit in self.units:
            if len(unit) != 1 and unit not in (SPACE, UNK):
                raise TokenizerError(f"char tokenizer unit {unit!r} is not one character")
        self._space_id = self._piece_to_id[SPACE]

    @classmethod
    def build(cls, texts: Iterable[str], normalizer: TextNormalizer | None = None) -> "CharTokenizer":
        """The base characters plus any others in the (normalised) texts."""
        normalizer = normalizer or TextNormalizer()
        base = base_characters(normalizer)
        seen = {c for text in texts for c in normalizer(text) if c != " "}
        extras = sorted(seen - set(base))
        return cls([UNK, *base, *extras], normalizer)

    def _encode_normalized(self, text: str) -> list[int]:
        ids = []
        for char in text:
            token_id = self._space_id if char == " " else self._piece_to_id.get(char, self._unk_id)
            if token_id is None:
                raise TokenizerError(f"character {char!r} is not in this tokenizer's vocabulary (it has no <unk>)")
            ids.append(token_id)
        return ids

    def _join(self, pieces: list[str]) -> str:
        return "".join(" " if piece == SPACE else piece for piece in pieces)

    def files(self) -> dict[str, bytes]:
        return {UNITS_FILE: format_units(self.units)}


# The seed paper's table (LUMIA-Group/Leveraging-Self-Supervised-Learning-for-AVSR, config.py
# CHAR_TO_INDEX): ids 1..38, blank 0 and <EOS> 39 around them, as in our layout.
_SEED_UNITS = (SPACE, *"ETOAINSHRLDUYWGCMFBP'VKJXQZ0192856734")


def seed_char_tokenizer(normalizer: TextNormalizer | None = None) -> CharTokenizer:
    """The seed paper's 40 classes (blank 0, space 1, letters by frequency, <EOS> 39; no <unk>)."""
    normalizer = normalizer or TextNormalizer()
    if normalizer.case != "upper":
        raise TokenizerError("the seed paper's character table is upper case; use case='upper'")
    return CharTokenizer(_SEED_UNITS, normalizer)
