"""Tokenizers for CTC + attention models: characters and sentencepiece (unigram, BPE).

Every tokenizer uses one id layout (see `base`): 0 = CTC blank (and padding), units 1..V-2
(<unk> = 1 for the ones trained here), V-1 = <sos/eos>. Text is normalised by the tokenizer's
`TextNormalizer` before encoding. `train_tokenizer` builds one from manifests and saves it;
`load_tokenizer` reads it back and verifies its checksums; `Tokenizer.fingerprint` is what a model
config records.
"""

from avsr.data.tokenizers.base import (
    BLANK,
    BLANK_ID,
    EOS,
    IGNORE_ID,
    METADATA_FILE,
    UNITS_FILE,
    UNK,
    Tokenizer,
    TokenizerError,
)
from avsr.data.tokenizers.char import SPACE, CharTokenizer, seed_char_tokenizer
from avsr.data.tokenizers.spm import MODEL_FILE, SentencePieceTokenizer
from avsr.data.tokenizers.storage import load_tokenizer, save_tokenizer
from avsr.data.tokenizers.train import KINDS, SENTENCEPIECE_KINDS, train_sentencepiece, train_tokenizer

__all__ = [
    "BLANK",
    "BLANK_ID",
    "EOS",
    "IGNORE_ID",
    "KINDS",
    "METADATA_FILE",
    "MODEL_FILE",
    "SENTENCEPIECE_KINDS",
    "SPACE",
    "UNITS_FILE",
    "UNK",
    "CharTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "TokenizerError",
    "load_tokenizer",
    "save_tokenizer",
    "seed_char_tokenizer",
    "train_sentencepiece",
    "train_tokenizer",
]
