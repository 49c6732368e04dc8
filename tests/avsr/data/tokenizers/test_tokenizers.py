"""Text normalisation, manifest reading, tokenizer training/round trips/storage, auto_avsr's model."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from avsr.data.manifest import ManifestError, read_manifest_texts
from avsr.data.synth.text import GRID_SLOTS, news_words
from avsr.data.text import TextNormalizer, normalize_text, number_to_words
from avsr.data.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    TokenizerError,
    load_tokenizer,
    seed_char_tokenizer,
    train_sentencepiece,
    train_tokenizer,
)
from avsr.models.pretrained.auto_avsr import SPM_MODEL, SPM_UNITS

AUTO_AVSR_MODEL, AUTO_AVSR_UNITS = SPM_MODEL, SPM_UNITS  # auto_avsr's files, shipped inside the package
HEADER = "id\tvideo\taudio\tframes\tsamples\ttext\n"

# ---------------------------------------------------------------------------------------------
# Normalisation

NORMALISATION_CASES = [
    ("when you're cooking chips at home", "WHEN YOU'RE COOKING CHIPS AT HOME"),
    ("WHEN YOU'RE COOKING CHIPS AT HOME", "WHEN YOU'RE COOKING CHIPS AT HOME"),
    ("  Hello,   world!  ", "HELLO WORLD"),
    ("A\tB\nC\r\nD", "A B C D"),
    ("It\u2019s \u201cquoted\u201d text.", "IT'S QUOTED TEXT"),
    ("it`s and it\u00b4s", "IT'S AND IT'S"),
    ("well-known U.S. policy; 50% (approx.)", "WELL KNOWN U S POLICY 50 APPROX"),
    ("'CAUSE THE PARENTS' VIEW", "'CAUSE THE PARENTS' VIEW"),
    ("he said ' hello '' there", "HE SAID HELLO THERE"),
    ("1,000 people in 2008, 3.5 times", "1000 PEOPLE IN 2008 3 5 TIMES"),
    ("\uff21\uff22\uff23 \ufb01ne", "ABC FINE"),  # full-width letters, the fi ligature
    ("zero\u200bwidth soft\u00adhyphen", "ZEROWIDTH SOFTHYPHEN"),
    ("caf\u00e9 CAFE\u0301", "CAF\u00c9 CAF\u00c9"),  # composed and decomposed forms agree
    ("", ""),
    (" ... !!! ", ""),
]


@pytest.mark.parametrize("raw, expected", NORMALISATION_CASES)
def test_default_normalisation(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected
    assert normalize_text(expected) == expected


def test_normaliser_options() -> None:
    assert normalize_text("WHEN You're HOME", TextNormalizer(case="lower")) == "when you're home"
    assert normalize_text("When You're", TextNormalizer(case="keep")) == "When You're"
    assert normalize_text("YOU'RE THE PARENTS' 'EM", TextNormalizer(keep_apostrophes=False)) == "YOURE THE PARENTS EM"
    assert normalize_text("Hello, world!", TextNormalizer(strip_punctuation=False)) == "HELLO, WORLD!"
    words = TextNormalizer(numbers="words")
    assert words("105 and 2,000 in the 1990s, 4th") == "ONE HUNDRED AND FIVE AND TWO THOUSAND IN THE 1990S 4TH"
    assert TextNormalizer(case="lower", numbers="words")("7 days") == "seven days"


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "ZERO"),
        (13, "THIRTEEN"),
        (40, "FORTY"),
        (101, "ONE HUNDRED AND ONE"),
        (1005, "ONE THOUSAND AND FIVE"),
        (2024, "TWO THOUSAND AND TWENTY FOUR"),
        (1_200_017, "ONE MILLION TWO HUNDRED THOUSAND AND SEVENTEEN"),
    ],
)
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


def test_normaliser_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="case"):
        TextNormalizer(case="title")
    with pytest.raises(ValueError, match="numbers"):
        TextNormalizer(numbers="roman")
    with pytest.raises(ValueError, match="unknown option"):
        TextNormalizer.from_dict({"case": "upper", "accents": False})
    config = TextNormalizer(case="lower", numbers="words")
    assert TextNormalizer.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "config",
    [
        TextNormalizer(),
        TextNormalizer(case="lower"),
        TextNormalizer(case="keep", keep_apostrophes=False),
        TextNormalizer(strip_punctuation=False, numbers="words"),
    ],
)
def test_normalisation_is_idempotent(config: TextNormalizer) -> None:
    rng = random.Random(7)
    # Mostly ordinary text with digits and punctuation, plus arbitrary Unicode (combining marks,
    # ligatures, scripts whose case mapping decomposes), which is where idempotence usually breaks.
    pool = list("abcXYZ 019',.-\u2019`\u00b4\t") * 20 + [chr(i) for i in range(0x80, 0x3000)]
    samples = [raw for raw, _ in NORMALISATION_CASES]
    samples += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 16))) for _ in range(3000)]
    for raw in samples:
        once = config(raw)
        assert config(once) == once, (raw, once)
        assert once == " ".join(once.split())


# ---------------------------------------------------------------------------------------------
# Manifests


def write_manifest(path: Path, texts: list[str]) -> Path:
    rows = [f"utt{i:05d}\tvideo/{i}.mp4\taudio/{i}.wav\t50\t32000\t{text}\n" for i, text in enumerate(texts)]
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def corpus_texts(count: int = 300, seed: int = 0) -> list[str]:
    """GRID commands and news-like sentences (upper case, some with apostrophes)."""
    rng = random.Random(seed)
    words = list(news_words()) + ["YOU'RE", "IT'S", "DON'T", "PEOPLE'S"]
    texts = ["BIN BLUE AT F TWO NOW"]
    texts += [" ".join(rng.choice(slot) for slot in GRID_SLOTS) for _ in range(count // 3)]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(count)]
    return texts


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("manifest") / "train.tsv", corpus_texts())


def test_read_manifest_texts(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_text(HEADER + "a\tv.mp4\ta.wav\t3\t100\tHELLO THERE  WORLD\r\n\n" + "b\tv.mp4\ta.wav\t3\t100\tYOU'RE\n")
    assert read_manifest_texts(path) == ["HELLO THERE  WORLD", "YOU'RE"]


@pytest.mark.parametrize(
    "content, where, what",
    [
        (HEADER + "a\tv\ta\t1\t2\tOK\nb\tv\ta\t1\tMISSING A FIELD\n", ":3:", "expected 6 tab-separated fields"),
        (HEADER + "a\tv\ta\t1\t2\tOK\tEXTRA\n", ":2:", "found 7"),
        (HEADER + "a\tv\ta\t1\t2\t   \n", ":2:", "empty transcript"),
        ("a\tv\ta\t1\t2\tNO HEADER\n", ":1:", "not a manifest header"),
        ("", "", "empty file"),
    ],
)
def test_malformed_manifest_names_file_and_line(tmp_path: Path, content: str, where: str, what: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        read_manifest_texts(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}{where}") and what in message


def test_unreadable_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest_texts(tmp_path / "missing.tsv")
    (tmp_path / "latin1.tsv").write_bytes(HEADER.encode() + b"a\tv\ta\t1\t2\tCAF\xc9\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest_texts(tmp_path / "latin1.tsv")


# ---------------------------------------------------------------------------------------------
# Training, layout and round trips

SPM_SIZE = 120


@pytest.fixture(scope="module")
def trained(manifest: Path, tmp_path_factory) -> dict[str, Tokenizer]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {
        kind: train_tokenizer([manifest], root / kind, kind, None if kind == "char" else SPM_SIZE, TextNormalizer())
        for kind in ("char", "unigram", "bpe")
    }


@pytest.mark.parametrize("kind", ["char", "unigram", "bpe"])
def test_round_trip(trained: dict[str, Tokenizer], manifest: Path, kind: str) -> None:
    tokenizer = trained[kind]
    texts = read_manifest_texts(manifest)
    texts += ["bin blue at f two now.", "  You\u2019re   PEOPLE's -- TODAY!  ", ""]
    for text in texts:
        ids = tokenizer.encode(text)
        assert all(0 < i < tokenizer.eos_id and i != tokenizer.unk_id for i in ids), text
        assert tokenizer.decode(ids) == normalize_text(text)


@pytest.mark.parametrize("kind", ["char", "unigram", "bpe"])
def test_id_layout(trained: dict[str, Tokenizer], kind: str) -> None:
    tokenizer = trained[kind]
    assert (tokenizer.blank_id, tokenizer.pad_id, tokenizer.unk_id) == (0, 0, 1)
    assert tokenizer.sos_id == tokenizer.eos_id == tokenizer.vocab_size - 1
    assert tokenizer.pieces[0] == "<blank>" and tokenizer.pieces[1] == "<unk>" and tokenizer.pieces[-1] == "<sos/eos>"
    assert len(tokenizer.pieces) == tokenizer.vocab_size
    assert all(tokenizer.piece_to_id(p) == i for i, p in enumerate(tokenizer.pieces))
    if kind == "char":
        assert tokenizer.pieces[2:5] == ("<space>", "'", "A") and tokenizer.vocab_size == 41
    else:
        assert isinstance(tokenizer, SentencePieceTokenizer) and tokenizer.model_type == kind
        assert tokenizer.vocab_size == SPM_SIZE + 2
    info = tokenizer.vocab_info()
    assert (info.size, info.unk_idx, info.bos_idx, info.eos_idx, info.pad_idx) == (
        tokenizer.vocab_size,
        1,
        tokenizer.eos_id,
        tokenizer.eos_id,
        0,
    )


def test_decode_skips_specials(trained: dict[str, Tokenizer]) -> None:
    char = trained["char"]
    ids = char.encode("HI THERE")
    noisy = [0, ids[0], 0, char.unk_id, *ids[1:], char.eos_id, -1, -1]
    assert char.decode(noisy) == "HI THERE"
    assert char.decode([char.piece_to_id("<space>")] * 3) == ""
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        char.decode([char.vocab_size])


def test_unknown_characters_become_unk(trained: dict[str, Tokenizer]) -> None:
    for tokenizer in trained.values():
        ids = tokenizer.encode("HI \u00c9T\u00c9")
        assert tokenizer.unk_id in ids
        assert "HI" in tokenizer.decode(ids)


def test_char_vocabulary_grows_with_corpus_but_keeps_base_ids() -> None:
    plain = CharTokenizer.build(["HELLO"])
    accented = CharTokenizer.build(["CAF\u00c9 NA\u00cfVE"])
    assert accented.pieces[:-3] == plain.pieces[:-1] and accented.pieces[-3:-1] == ("\u00c9", "\u00cf")
    assert accented.vocab_size == plain.vocab_size + 2
    assert accented.decode(accented.encode("caf\u00e9")) == "CAF\u00c9"
    assert CharTokenizer.build(["hello"], TextNormalizer(case="lower")).pieces[4] == "a"


def test_seed_character_table() -> None:
    seed = seed_char_tokenizer()
    assert seed.vocab_size == 40 and seed.eos_id == 39 and seed.unk_id is None
    expected = {"<space>": 1, "E": 2, "T": 3, "'": 22, "Z": 28, "0": 29, "9": 31, "4": 38}
    assert {p: seed.piece_to_id(p) for p in expected} == expected
    assert seed.decode(seed.encode("you're home")) == "YOU'RE HOME"
    with pytest.raises(TokenizerError, match="no <unk>"):
        seed.encode("CAF\u00c9")


def test_training_is_deterministic(manifest: Path, tmp_path: Path) -> None:
    for kind in ("unigram", "bpe", "char"):
        size = None if kind == "char" else SPM_SIZE
        first = train_tokenizer([manifest], tmp_path / f"{kind}1", kind, size, TextNormalizer())
        second = train_tokenizer([manifest], tmp_path / f"{kind}2", kind, size, TextNormalizer())
        assert first.fingerprint == second.fingerprint
        names = sorted(p.name for p in (tmp_path / f"{kind}1").iterdir())
        assert names == sorted(p.name for p in (tmp_path / f"{kind}2").iterdir())
        assert "tokenizer.json" in names and "units.txt" in names and ("spm.model" in names) == (kind != "char")
        for name in names:
            first_bytes = (tmp_path / f"{kind}1" / name).read_bytes()
            assert first_bytes == (tmp_path / f"{kind}2" / name).read_bytes(), (kind, name)


def test_several_manifests_and_normaliser_choice(tmp_path: Path) -> None:
    a = write_manifest(tmp_path / "a.tsv", ["HELLO THERE"] * 5)
    b = write_manifest(tmp_path / "b.tsv", ["GOODBYE, WORLD!"] * 5)
    tokenizer = train_tokenizer([a, b], tmp_path / "tok", "unigram", 15, TextNormalizer(case="lower"))
    assert tokenizer.decode(tokenizer.encode("Goodbye World")) == "goodbye world"
    assert json.loads((tmp_path / "tok" / "tokenizer.json").read_text())["normalizer"]["case"] == "lower"


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_too_large_vocabulary_names_the_largest_that_works(kind: str) -> None:
    texts = corpus_texts(60)
    with pytest.raises(TokenizerError) as info:
        train_sentencepiece(texts, kind, 5000)
    message = str(info.value)
    assert "\n" not in message and "too large" in message
    largest = int(re.search(r"largest that works is (\d+)$", message).group(1))
    assert 27 < largest < 5000
    assert train_sentencepiece(texts, kind, largest).vocab_size == largest + 2


def test_too_small_vocabulary_and_bad_arguments(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"too small .* at least \d+ unigram pieces"):
        train_sentencepiece(corpus_texts(30), "unigram", 10)
    with pytest.raises(TokenizerError, match="does not apply to char"):
        train_tokenizer([manifest], tmp_path / "x", "char", 100, TextNormalizer())
    with pytest.raises(TokenizerError, match="needs --vocab-size"):
        train_tokenizer([manifest], tmp_path / "x", "bpe", None, TextNormalizer())
    with pytest.raises(TokenizerError, match="unknown tokenizer kind"):
        train_tokenizer([manifest], tmp_path / "x", "wordpiece", 100, TextNormalizer())
    with pytest.raises(TokenizerError, match="all empty"):
        train_sentencepiece(["...", "!!"], "unigram", 50)


# ---------------------------------------------------------------------------------------------
# Storage and checksums


@pytest.mark.parametrize("kind", ["char", "unigram"])
def test_save_load_round_trip(trained: dict[str, Tokenizer], kind: str, tmp_path: Path) -> None:
    tokenizer = trained[kind]
    tokenizer.save(tmp_path)
    metadata = json.loads((tmp_path / "tokenizer.json").read_text())
    assert metadata["fingerprint"] == tokenizer.fingerprint and len(tokenizer.fingerprint) == 64
    assert (metadata["vocab_size"], metadata["blank_id"], metadata["unk_id"], metadata["eos_id"]) == (
        tokenizer.vocab_size,
        0,
        1,
        tokenizer.vocab_size - 1,
    )
    for path in (tmp_path, tmp_path / "tokenizer.json"):
        loaded = load_tokenizer(path, expected_fingerprint=tokenizer.fingerprint)
        assert type(loaded) is type(tokenizer) and loaded.pieces == tokenizer.pieces
        assert loaded.encode("YOU'RE AT HOME") == tokenizer.encode("YOU'RE AT HOME")


def test_tokenizers_pickle(trained: dict[str, Tokenizer]) -> None:
    """Data-loader workers receive tokenizers by pickling."""
    import pickle

    for tokenizer in trained.values():
        copy = pickle.loads(pickle.dumps(tokenizer))
        assert copy.fingerprint == tokenizer.fingerprint
        assert copy.encode("BIN BLUE AT F TWO NOW") == tokenizer.encode("BIN BLUE AT F TWO NOW")


@pytest.mark.parametrize("name", ["units.txt", "spm.model"])
def test_checksum_mismatch_is_detected(trained: dict[str, Tokenizer], tmp_path: Path, name: str) -> None:
    trained["bpe"].save(tmp_path)
    data = bytearray((tmp_path / name).read_bytes())
    data[-3] ^= 1
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(TokenizerError) as info:
        load_tokenizer(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / name}: checksum mismatch") and "\n" not in str(info.value)


def test_edited_metadata_and_wrong_tokenizer_are_refused(trained: dict[str, Tokenizer], tmp_path: Path) -> None:
    trained["char"].save(tmp_path)
    path = tmp_path / "tokenizer.json"
    metadata = json.loads(path.read_text())
    metadata["normalizer"]["case"] = "lower"
    path.write_text(json.dumps(metadata))
    with pytest.raises(TokenizerError, match="fingerprint mismatch"):
        load_tokenizer(tmp_path)
    trained["char"].save(tmp_path)
    with pytest.raises(TokenizerError, match="trained with another tokenizer"):
        load_tokenizer(tmp_path, expected_fingerprint=trained["unigram"].fingerprint)
    (tmp_path / "units.txt").unlink()
    with pytest.raises(TokenizerError, match="units.txt: cannot read"):
        load_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        load_tokenizer(tmp_path / "elsewhere")


def test_fingerprint_depends_on_normaliser(trained: dict[str, Tokenizer]) -> None:
    char = trained["char"]
    other = CharTokenizer(char.units, TextNormalizer(keep_apostrophes=False))
    assert CharTokenizer(char.units, TextNormalizer()).fingerprint == char.fingerprint
    assert other.fingerprint != char.fingerprint


# ---------------------------------------------------------------------------------------------
# auto_avsr's unigram5000


def test_auto_avsr_unigram5000(tmp_path: Path) -> None:
    import sentencepiece

    tokenizer = Tokenizer.from_sentencepiece(AUTO_AVSR_MODEL, AUTO_AVSR_UNITS)
    assert tokenizer.vocab_size == 5049 and tokenizer.model_type == "unigram"
    assert (tokenizer.blank_id, tokenizer.unk_id, tokenizer.eos_id) == (0, 1, 5048)

    # auto_avsr's TextTransform: pieces from the model, ids from the units file, <unk> otherwise.
    units = {}
    for line in AUTO_AVSR_UNITS.read_text(encoding="utf-8").splitlines():
        piece, index = line.split()
        units[piece] = int(index)
    assert tokenizer.units == tuple(units)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(AUTO_AVSR_MODEL))
    for text in ["WHEN YOU'RE COOKING CHIPS AT HOME", "IN 2008 THE PEOPLE'S VOTE CAME 44TH", "ZOO ZONE ZERO"]:
        expected = [units.get(piece, units["<unk>"]) for piece in processor.encode_as_pieces(text)]
        assert tokenizer.encode(text.lower() + "!") == expected
        assert tokenizer.decode(expected + [tokenizer.eos_id]) == text
    assert tokenizer.encode("THE")[0] == units["\u2581THE"]

    tokenizer.save(tmp_path)
    assert (tmp_path / "spm.model").read_bytes() == AUTO_AVSR_MODEL.read_bytes()
    assert (tmp_path / "units.txt").read_bytes() == AUTO_AVSR_UNITS.read_bytes()
    loaded = load_tokenizer(tmp_path, expected_fingerprint=tokenizer.fingerprint)
    assert loaded.pieces == tokenizer.pieces

    # Without the units file the model's own pieces give the ids (a different, 5000-class layout).
    assert Tokenizer.from_sentencepiece(AUTO_AVSR_MODEL).vocab_size == 5000


def test_units_file_errors(tmp_path: Path) -> None:
    model = train_sentencepiece(corpus_texts(30), "unigram", 40)
    model_path = tmp_path / "m.model"
    model_path.write_bytes(model.model_bytes)
    (tmp_path / "gap.txt").write_text("<unk> 1\nA 3\n")
    with pytest.raises(TokenizerError, match=r"gap.txt:2: index 3 out of sequence"):
        Tokenizer.from_sentencepiece(model_path, tmp_path / "gap.txt")
    (tmp_path / "nounk.txt").write_text("A 1\n")
    with pytest.raises(TokenizerError, match="no <unk>"):
        Tokenizer.from_sentencepiece(model_path, tmp_path / "nounk.txt")
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="not a sentencepiece model"):
        Tokenizer.from_sentencepiece(tmp_path / "junk.model")


def test_tokenizer_files_outside_the_folder_are_refused(trained: dict[str, Tokenizer], tmp_path: Path) -> None:
    """A file tokenizer.json lists may be a symlink only if it stays in the folder: one leading out
    (even to an identical file, so every checksum holds) is refused, naming the file."""
    folder, elsewhere = tmp_path / "tokenizer", tmp_path / "elsewhere"
    trained["unigram"].save(folder)
    elsewhere.mkdir()
    for name in ("spm.model", "units.txt"):
        (folder / name).rename(elsewhere / name)
        (folder / name).symlink_to(elsewhere / name)
        with pytest.raises(TokenizerError) as info:
            load_tokenizer(folder)
        assert str(info.value).startswith(f"{folder / name}: ") and "outside" in str(info.value)
        (folder / name).unlink()
        (elsewhere / name).rename(folder / name)
    (folder / "kept").mkdir()  # a symlink that stays inside is fine
    (folder / "units.txt").rename(folder / "kept" / "units.txt")
    (folder / "units.txt").symlink_to(folder / "kept" / "units.txt")
    assert load_tokenizer(folder).fingerprint == trained["unigram"].fingerprint
