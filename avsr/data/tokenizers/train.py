"""Training tokenizers from manifests (what `avsr-prepare tokenizer` runs).

Sentencepiece is trained with the `sentencepiece` package (fairseq2 can load models but not train
them), on the normalised transcripts, fed from memory so no temporary path ends up in the model,
with one thread and no sampling or shuffling: the same manifests give byte-identical model files.

`vocab_size` for unigram/BPE is sentencepiece's piece count, <unk> included (auto_avsr's
"unigram5000" and ESPnet's nbpe mean the same); the model's output layer has two more classes
(blank and sos/eos). A size the corpus cannot fill is an error that names the largest size that
works, rather than sentencepiece's `hard_vocab_limit=False`, which would silently give a smaller
vocabulary than the recipe asked for.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import sentencepiece

from avsr.data.manifest import read_manifest_texts
from avsr.data.text import TextNormalizer
from avsr.data.tokenizers.base import Tokenizer, TokenizerError
from avsr.data.tokenizers.char import CharTokenizer
from avsr.data.tokenizers.spm import SentencePieceTokenizer

SENTENCEPIECE_KINDS = ("unigram", "bpe")
KINDS = ("char", *SENTENCEPIECE_KINDS)

_TOO_LARGE = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_SMALL = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def train_tokenizer(
    manifest_paths: Sequence[Path | str],
    out_dir: Path | str,
    kind: str,
    vocab_size: int | None,
    normalizer: TextNormalizer | None = None,
) -> Tokenizer:
    """Train a `kind` tokenizer ("char", "unigram", "bpe") on the manifests' transcripts, save it
    in `out_dir` and return it. `vocab_size` is required for unigram/BPE and must be None for char
    (its size follows the corpus)."""
    normalizer = normalizer or TextNormalizer()
    if kind not in KINDS:
        raise TokenizerError(f"unknown tokenizer kind {kind!r}; choose from {', '.join(KINDS)}")
    if not manifest_paths:
        raise TokenizerError("no manifests given")
    texts = [text for path in manifest_paths for text in read_manifest_texts(path)]
    if kind == "char":
        if vocab_size is not None:
            raise TokenizerError("--vocab-size does not apply to char tokenizers (their size follows the corpus)")
        tokenizer: Tokenizer = CharTokenizer.build(texts, normalizer)
    else:
        if vocab_size is None:
            raise TokenizerError(
                f"{kind} needs --vocab-size (auto_avsr uses unigram 5000 on LRS3; small corpora need far fewer)"
            )
        tokenizer = train_sentencepiece(texts, kind, vocab_size, normalizer)
    tokenizer.save(out_dir)
    return tokenizer


def train_sentencepiece(
    texts: Sequence[str], model_type: str, vocab_size: int, normalizer: TextNormalizer | None = None
) -> SentencePieceTokenizer:
    """A unigram or BPE model of `vocab_size` pieces trained on the normalised `texts` (in memory)."""
    normalizer = normalizer or TextNormalizer()
    if model_type not in SENTENCEPIECE_KINDS:
        choices = ", ".join(SENTENCEPIECE_KINDS)
        raise TokenizerError(f"unknown sentencepiece model type {model_type!r}; choose from {choices}")
    if vocab_size < 2:
        raise TokenizerError(f"--vocab-size {vocab_size} is too small")
    sentences = [s for s in (normalizer(t) for t in texts) if s]
    if not sentences:
        raise TokenizerError("no transcripts to train on (all empty after normalisation)")
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=1.0,  # every character of the corpus gets a piece: no <unk> in training text
            normalization_rule_name="identity",  # TextNormalizer already did it; one normaliser only
            unk_id=0,  # ids 1.. in our layout; no <s>, </s>, <pad> pieces (the layout adds its own)
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            input_sentence_size=0,  # all sentences, no sampling
            shuffle_input_sentence=False,
            max_sentence_length=1 << 16,  # long pretrain transcripts are kept, not skipped
            num_threads=1,  # deterministic
            hard_vocab_limit=True,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise _training_error(str(e), model_type, vocab_size, len(sentences)) from None
    return SentencePieceTokenizer(model.getvalue(), None, normalizer)


def _training_error(message: str, model_type: str, vocab_size: int, count: int) -> TokenizerError:
    if match := _TOO_LARGE.search(message):
        return TokenizerError(
            f"--vocab-size {vocab_size} is too large for this corpus ({model_type}, {count} transcripts): "
            f"the largest that works is {match.group(2)}"
        )
    if match := _TOO_SMALL.search(message):
        return TokenizerError(
            f"--vocab-size {vocab_size} is too small for this corpus: "
            f"its characters need at least {match.group(2)} {model_type} pieces"
        )
    last = message.strip().splitlines()[-1] if message.strip() else "unknown error"
    return TokenizerError(f"sentencepiece training failed: {last}")
