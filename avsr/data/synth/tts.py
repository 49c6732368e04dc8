"""Speech synthesis with phoneme and word timings: espeak-ng through ctypes.

The library and its data come from the ``espeakng-loader`` wheel (no system espeak, no MBROLA).
espeak-ng's C API reports, besides the audio (int16 mono at 22,050 Hz), a word event for every
word (its character position in the text) and, with ``espeakINITIALIZE_PHONEME_EVENTS``, a
phoneme event for every phoneme (its mnemonic, e.g. ``'oU``). Both carry the sample at which they
start. :class:`Synthesizer` turns them into a :class:`Speech`: audio as float32 plus
:class:`PhonemeEvent` and :class:`WordEvent` lists in seconds.

Timing conventions (what the corpus and the talking-face renderer rely on):

* A phoneme ends where the next one starts; the last one ends at the end of the voiced audio.
* espeak renders the silent closure of a stop (p, b, t, d, k, g, tS, dZ, ...) *before* the
  stop's event in some contexts (the event marks the burst). That closure is moved into the stop,
  so that the lips are shut for the whole of a p/b, not only for its burst.
* Pause phonemes (``_``, ``_:``, ``_!``, ...; see :data:`PAUSE_PHONEMES`) are kept in the phoneme
  list (``word_index == -1``, :attr:`PhonemeEvent.is_pause`) so a renderer can show rest; pauses
  of zero length are dropped.
* A word spans its own phonemes, pauses excluded: it starts at its first phoneme and ends at the
  end of its last one, so word timings are tight. Words are the text's whitespace-separated
  tokens with leading and trailing punctuation removed, spelled as given (case kept). Phonemes
  are mapped onto them by the character position espeak tags them with, so a token espeak reads
  as several words ("1999", "e.g.") is still one word. espeak reads some word sequences as one
  dictionary entry ("at a", "of the", "for a while") and tags all their phonemes with the first
  word; those phonemes are shared out over the words in proportion to each word's phonemes when
  said alone (see ``_assign_words``). A word that still gets no phoneme has a zero-length span.
* Phoneme mnemonics are espeak's own (its Kirshenbaum-like ASCII alphabet), with the stress marks
  espeak puts in front (``'`` primary, ``,`` secondary); :func:`strip_stress` removes them.

Determinism: espeak keeps synthesis state in C statics (pitch-flutter phase, a random generator
seeded from the clock, wave phase, echo buffers), so the same text gives slightly different
samples (and timings, by up to about 10 ms) on every call within a process. With
``deterministic=True`` (the default) each :meth:`Synthesizer.speak` runs on a freshly loaded
private copy of the library (initialise, seed the generator, synthesise, terminate, unload): the
same text and voice then give identical samples in any process, at a cost of about 3 ms a call
(and about 1.5 KB of memory that espeak-ng does not give back when it is unloaded).
``deterministic=False`` initialises once and reuses the library.

Processes and threads: espeak-ng is a C library with process-global state. A :class:`Synthesizer`
loads its own private copy of the shared library (an anonymous in-memory file on Linux), so
instances do not disturb each other nor anything else in the process that loads espeak, and a
lock serialises calls on one instance: one instance synthesises one utterance at a time.
For parallel synthesis use processes (the corpus generator uses one synthesizer per worker);
instances are not picklable, create them inside the worker.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = [
    "ESPEAK_SAMPLE_RATE",
    "PAUSE_PHONEMES",
    "SPEAKER_VOICES",
    "PhonemeEvent",
    "Speech",
    "Synthesizer",
    "Voice",
    "WordEvent",
    "list_variants",
    "list_voices",
    "strip_stress",
]

ESPEAK_SAMPLE_RATE = 22050  # what espeak_Initialize reports for espeak-ng's voices (Speech keeps the reported rate)

# --- the C API (speak_lib.h, API revision 12) ----------------------------------------------------
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
# espeak_EVENT_TYPE (WORD = 1, SENTENCE = 2, END = 5 are not needed: phoneme events carry the
# text position of their word)
_EV_LIST_TERMINATED, _EV_PHONEME = 0, 7
# espeak_PARAMETER
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE, _P_PUNCTUATION, _P_CAPITALS, _P_WORDGAP = 1, 2, 3, 4, 5, 6, 7
_RATE_MIN, _RATE_MAX = 80, 450  # espeakRATE_MINIMUM / espeakRATE_MAXIMUM (words per minute)


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),  # WORD and SENTENCE events
        ("name", ctypes.c_char_p),  # MARK and PLAY events
        ("string", ctypes.c_char * 8),  # PHONEME events: the mnemonic, NUL-terminated unless 8 long
    ]


class _Event(ctypes.Structure):
    """espeak_EVENT. On 64-bit Linux: six 4-byte ints, a pointer at 24, the union at 32; 40 bytes."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters (not bytes) of the UTF-8 text
        ("length", ctypes.c_int),  # word length in characters (WORD events)
        ("audio_position", ctypes.c_int),  # milliseconds, truncated
        ("sample", ctypes.c_int),  # the sample index in the output (audio_position is derived from it)
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _VoiceStruct(ctypes.Structure):
    """espeak_VOICE (as returned by espeak_ListVoices)."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated language) pairs
        ("identifier", ctypes.c_char_p),  # file under espeak-ng-data/voices or lang
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); 0 = continue
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Event))

# Pause "phonemes" (type phPAUSE in espeak's phoneme tables): silence of various lengths.
PAUSE_PHONEMES = frozenset({"_", "_:", "_::", "_!", "_|", "_;_", "_^_", "_X1", "||"})

# Stops and affricates: their silent closure may precede the event (see the module docstring).
_STOPS = frozenset(
    {"p", "b", "t", "d", "k", "g", "t#", "t2", "d#", "t[", "d[", "tS", "dZ", "tS;", "dZ;", "c", "J", "q", "?", "*"}
)
_STRESS_MARKS = "',%="  # primary, secondary, unstressed, diminished
_SILENCE = 8  # |int16 sample| at or below this counts as silence (espeak's gaps are exact zeros)
_MAX_CLOSURE_S = 0.1  # longest silent closure moved into a stop
_MIN_KEEP_S = 0.01  # what a phoneme keeps when its trailing closure moves to the next stop


def strip_stress(phoneme: str) -> str:
    """The mnemonic without espeak's stress marks: ``"'oU"`` -> ``"oU"``."""
    return phoneme.lstrip(_STRESS_MARKS) or phoneme


# --- public data types ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: a language voice (``name``) plus an optional ``+variant`` (speaker).

    ``pitch`` and ``pitch_range`` are espeak's 0-100 scales (50 = the voice's own), ``rate`` is
    in words per minute (80-450).
    """

    name: str = "en-us"
    variant: str | None = None  # a file in espeak-ng-data/voices/!v: "f3", "m2", "klatt", ...
    pitch: int = 50
    pitch_range: int = 50
    rate: int = 160

    @property
    def espeak_name(self) -> str:
        """The name espeak_SetVoiceByName takes: ``"en-us+f3"``."""
        return self.name if not self.variant else f"{self.name}+{self.variant}"

    def __str__(self) -> str:
        return f"{self.espeak_name}(pitch={self.pitch},range={self.pitch_range},rate={self.rate})"


@dataclass(frozen=True)
class PhonemeEvent:
    """One phoneme (espeak mnemonic, stress marks kept) and its span in seconds."""

    phoneme: str
    start: float
    end: float
    word_index: int = -1  # index into Speech.words; -1 for pauses

    @property
    def is_pause(self) -> bool:
        return strip_stress(self.phoneme) in PAUSE_PHONEMES

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class WordEvent:
    """One word of the text (spelled as given) and its span in seconds, pauses excluded."""

    word: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(eq=False)
class Speech:
    """Synthesised speech: mono float32 audio in [-1, 1] and its phoneme and word timings."""

    audio: np.ndarray
    sample_rate: int
    phonemes: list[PhonemeEvent] = field(default_factory=list)
    words: list[WordEvent] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)

    def resample(self, rate: int = 16000) -> Speech:
        """The same speech at ``rate`` Hz (polyphase, scipy.signal.resample_poly); times unchanged."""
        rate = int(rate)
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        if rate == self.sample_rate:
            return replace(self, audio=self.audio.copy())
        from scipy.signal import resample_poly

        g = math.gcd(rate, self.sample_rate)
        audio = resample_poly(self.audio.astype(np.float64), rate // g, self.sample_rate // g)
        return replace(self, audio=np.clip(audio, -1.0, 1.0).astype(np.float32), sample_rate=rate)

    def pad(self, before: float = 0.0, after: float = 0.0) -> Speech:
        """Add ``before``/``after`` seconds of silence, shifting every event by ``before``."""
        if before < 0 or after < 0:
            raise ValueError("padding must be non-negative")
        n0, n1 = round(before * self.sample_rate), round(after * self.sample_rate)
        shift = n0 / self.sample_rate
        audio = np.concatenate([np.zeros(n0, np.float32), self.audio.astype(np.float32), np.zeros(n1, np.float32)])
        return Speech(
            audio=audio,
            sample_rate=self.sample_rate,
            phonemes=[replace(p, start=p.start + shift, end=p.end + shift) for p in self.phonemes],
            words=[replace(w, start=w.start + shift, end=w.end + shift) for w in self.words],
        )


# --- the library ----------------------------------------------------------------------------------


def _paths() -> tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise RuntimeError("espeak-ng is missing: pip install espeakng-loader") from e
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_uint, c_char_p, c_void_p = ctypes.c_int, ctypes.c_uint, ctypes.c_char_p, ctypes.c_void_p
    lib.espeak_Initialize.argtypes = [c_int, c_int, c_char_p, c_int]
    lib.espeak_Initialize.restype = c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [c_char_p]
    lib.espeak_SetVoiceByName.restype = c_int
    lib.espeak_SetParameter.argtypes = [c_int, c_int, c_int]
    lib.espeak_SetParameter.restype = c_int
    lib.espeak_Synth.argtypes = [c_char_p, ctypes.c_size_t, c_uint, c_int, c_uint, c_uint, c_void_p, c_void_p]
    lib.espeak_Synth.restype = c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = c_int
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(c_char_p), c_int, c_int]
    lib.espeak_TextToPhonemes.restype = c_char_p
    lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_VoiceStruct)]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
    if hasattr(lib, "espeak_ng_SetRandSeed"):  # espeak-ng >= 1.52
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = c_int


class _Engine:
    """One loaded, initialised copy of libespeak-ng (its C statics are this copy's own)."""

    def __init__(self, lib_path: str, data_path: str, callback) -> None:
        self.lib = ctypes.CDLL(lib_path, mode=os.RTLD_LOCAL | os.RTLD_NOW)
        _declare(self.lib)
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 200, data_path.encode(), _INITIALIZE_PHONEME_EVENTS
        )
        if rate <= 0:
            self.close()
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data_path}")
        self.sample_rate = rate
        self.lib.espeak_SetSynthCallback(callback)
        self.voice: str | None = None

    def close(self) -> None:
        lib, self.lib = self.lib, None
        if lib is None:
            return
        try:
            lib.espeak_Terminate()
        finally:
            import _ctypes

            _ctypes.dlclose(lib._handle)

    def phoneme_count(self, word: str) -> int:
        """How many phonemes espeak gives ``word`` said on its own (current voice)."""
        buf = ctypes.create_string_buffer(word.encode("utf-8"))
        ptr = ctypes.c_char_p(ctypes.addressof(buf))
        separator = 0x00B7  # "·" between phonemes: no espeak mnemonic contains it
        out = []
        for _ in range(64):  # one clause per call; a word is one or two
            result = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, separator << 8)
            if result:
                out.append(result.decode("utf-8", "replace"))
            if not ptr.value:
                break
        tokens = " ".join(out).replace("\u00b7", " ").split()
        return sum(1 for t in tokens if strip_stress(t) not in PAUSE_PHONEMES)

    def voices(self, spec: bytes | None = None) -> list[tuple[str, str, str]]:
        """(name, primary language, identifier) of the voices matching ``spec`` (None = all)."""
        arg, keep = None, ctypes.create_string_buffer(spec or b"")
        if spec is not None:
            arg = ctypes.byref(_VoiceStruct(languages=ctypes.cast(keep, ctypes.c_void_p)))
        table = self.lib.espeak_ListVoices(arg)
        out, i = [], 0
        while table[i]:
            v = table[i].contents
            lang = ctypes.string_at(v.languages + 1).decode() if v.languages else ""  # skip priority
            out.append((v.name.decode(), lang, v.identifier.decode()))
            i += 1
        return out


def _private_copy(lib_path: str) -> tuple[str, Callable[[], None] | None]:
    """A private copy of the shared library, so that no other loader in this process (nor another
    Synthesizer) shares its C statics; and how to release it.

    On Linux the copy lives in an anonymous memory file (memfd), which vanishes with the process
    even when it ends with os._exit (as multiprocessing workers do). Elsewhere it is a file in a
    temporary folder; failing both, the original file is used.
    """
    try:
        with open(lib_path, "rb") as f:
            data = f.read()
        fd = os.memfd_create("libespeak-ng.so")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            os.close(fd)
            raise
        return f"/proc/self/fd/{fd}", functools.partial(os.close, fd)
    except (AttributeError, OSError):  # no memfd (not Linux): a temporary file
        pass
    try:
        folder = tempfile.mkdtemp(prefix="avsr-espeak-")
        path = os.path.join(folder, os.path.basename(lib_path))
        shutil.copyfile(lib_path, path)
        return path, functools.partial(shutil.rmtree, folder, True)
    except OSError:  # pragma: no cover - read-only temp
        return lib_path, None


# --- the synthesizer ------------------------------------------------------------------------------


class Synthesizer:
    """Text -> :class:`Speech` with espeak-ng. See the module docstring for timing conventions,
    determinism and the per-process/thread rules (one instance per worker process)."""

    def __init__(self, deterministic: bool = True) -> None:
        self.deterministic = deterministic
        self._lock = threading.Lock()
        self._engine: _Engine | None = None
        self._lib_path: str | None = None
        self._data_path: str | None = None
        self._callback = _SynthCallback(self._on_synth)  # kept alive as long as the instance
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, int, int, str]] = []  # phoneme events
        self._finalizer: weakref.finalize | None = None

    # espeak calls this from inside espeak_Synth, on the calling thread (synchronous mode)
    def _on_synth(self, wav, numsamples, events) -> int:
        if wav and numsamples > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * numsamples))
        if events:
            i = 0
            while (kind := events[i].type) != _EV_LIST_TERMINATED:
                if kind == _EV_PHONEME:
                    ev = events[i]
                    name = ev.id.string.decode("utf-8", "replace")
                    self._events.append((ev.text_position, ev.sample, ev.audio_position, name))
                i += 1
        return 0

    def _open(self) -> _Engine:
        if self._engine is None:
            if self._lib_path is None or not os.path.exists(self._lib_path):
                lib_path, self._data_path = _paths()
                self._lib_path, release = _private_copy(lib_path)
                if release is not None:
                    self._finalizer = weakref.finalize(self, release)
            self._engine = _Engine(self._lib_path, self._data_path, self._callback)
        return self._engine

    def close(self) -> None:
        """Unload the library now (it is reloaded on the next call)."""
        with self._lock:
            if self._engine is not None:
                engine, self._engine = self._engine, None
                engine.close()

    @property
    def sample_rate(self) -> int:
        return ESPEAK_SAMPLE_RATE

    def speak(self, text: str, voice: Voice | None = None) -> Speech:
        """Synthesise ``text`` with ``voice``; raises ValueError for empty text or a bad voice."""
        voice = Voice() if voice is None else voice
        if not isinstance(text, str) or not text.strip():
            raise ValueError("cannot synthesise empty text")
        spans = _word_spans(text)
        if not spans:
            raise ValueError(f"text has no words to synthesise: {text!r}")
        _check_voice(voice)
        espeak_voice = _resolve_voice(voice)
        with self._lock:
            engine = self._open()
            try:
                self._synth(engine, text.replace("\x00", " "), voice, espeak_voice)
                chunks, events = self._chunks, self._events
                self._chunks, self._events = [], []
                audio16 = np.frombuffer(b"".join(chunks), dtype=np.int16)
                return _assemble(text, spans, audio16, engine.sample_rate, events, engine.phoneme_count)
            finally:
                if self.deterministic:
                    self._engine = None
                    engine.close()

    def _synth(self, engine: _Engine, text: str, voice: Voice, espeak_voice: str) -> None:
        lib = engine.lib
        if engine.voice != espeak_voice:
            if lib.espeak_SetVoiceByName(espeak_voice.encode()) != _EE_OK:
                raise ValueError(f"espeak could not load voice {espeak_voice!r}")
            engine.voice = espeak_voice
        for param, value in (
            (_P_RATE, voice.rate),
            (_P_PITCH, voice.pitch),
            (_P_RANGE, voice.pitch_range),
            (_P_VOLUME, 100),
            (_P_PUNCTUATION, 0),
            (_P_CAPITALS, 0),
            (_P_WORDGAP, 0),
        ):
            lib.espeak_SetParameter(param, int(value), 0)
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed(0)  # breathy and Klatt voices draw noise from it
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        rc = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if rc != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with code {rc}")

    def __getstate__(self):
        raise TypeError("a Synthesizer wraps a loaded C library; create one inside each process")


def _check_voice(voice: Voice) -> None:
    if not isinstance(voice, Voice):
        raise ValueError(f"voice must be a Voice, got {type(voice).__name__}")
    if not voice.name or "+" in voice.name:
        raise ValueError(f"bad espeak voice name {voice.name!r} (give a variant as Voice.variant)")
    if not _RATE_MIN <= voice.rate <= _RATE_MAX:
        raise ValueError(f"voice rate {voice.rate} is outside {_RATE_MIN}-{_RATE_MAX} words per minute")
    for label, value in (("pitch", voice.pitch), ("pitch_range", voice.pitch_range)):
        if not 0 <= value <= 100:
            raise ValueError(f"voice {label} {value} is outside 0-100")


def _resolve_voice(voice: Voice) -> str:
    """The name espeak_SetVoiceByName accepts (``identifier+variant``) for a Voice whose name is a
    language code (``en-gb``), an identifier (``gmw/en``), its file name or espeak's voice name.
    espeak itself only accepts the last three (``en-gb`` fails: its file is ``gmw/en``)."""
    languages, variants = _voice_tables()
    key = voice.name.lower()
    identifier = next(
        (
            ident
            for name, lang, ident in languages
            if key in (lang.lower(), ident.lower(), ident.rsplit("/", 1)[-1].lower(), name.lower())
        ),
        None,
    )
    if identifier is None:
        raise ValueError(f"unknown espeak voice {voice.name!r}; English voices: {', '.join(list_voices())}")
    if voice.variant is not None and voice.variant not in variants:
        raise ValueError(f"unknown espeak voice variant {voice.variant!r}; e.g. f1-f5, m1-m8 (see list_variants())")
    return identifier if not voice.variant else f"{identifier}+{voice.variant}"


def _variants(engine: _Engine) -> frozenset[str]:
    return frozenset(ident.split("/", 1)[1] for _, _, ident in engine.voices(b"variant") if "/" in ident)


# --- turning events into timings ------------------------------------------------------------------

_TOKEN = re.compile(r"\S+")


def _word_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) character spans of the text's words: whitespace tokens, outer punctuation off."""
    spans = []
    for m in _TOKEN.finditer(text):
        token = m.group()
        alnum = [i for i, ch in enumerate(token) if ch.isalnum()]
        if alnum:
            spans.append((m.start() + alnum[0], m.start() + alnum[-1] + 1))
    return spans


def _owner_table(text: str, spans: list[tuple[int, int]]) -> np.ndarray:
    """For each character index (and one past the end): the word it belongs to, or the next word
    after it (the last word after the final one)."""
    owner = np.full(len(text) + 1, len(spans) - 1, dtype=np.int64)
    nxt = len(spans) - 1
    for i in range(len(text), -1, -1):
        while nxt > 0 and spans[nxt - 1][1] > i:
            nxt -= 1
        owner[i] = nxt
    return owner


def _assign_words(
    positions: list[int | None],
    owner: np.ndarray,
    words: list[str],
    phoneme_count: Callable[[str], int],
) -> list[int]:
    """The word index of each phoneme (-1 for pauses, whose position is None).

    espeak tags each phoneme with the text position of its word, but it reads some word pairs and
    triples as one dictionary entry ("at a", "of the", "for a while") and then tags them all with
    the first word's position (or one past it). The phonemes of such a run are shared out over its
    words in proportion to the phonemes each word has when said alone, cutting at espeak's own
    word boundaries where one is within a phoneme of the cut.
    """
    result = [-1] * len(positions)
    speech = [k for k, pos in enumerate(positions) if pos is not None]
    by_word: dict[int, list[int]] = {}
    unit_starts: set[int] = set()  # phoneme indices where espeak starts a new word
    current, last_pos = 0, None
    for k in speech:
        pos = positions[k]
        if pos != last_pos:
            current = max(current, int(owner[min(max(pos - 1, 0), len(owner) - 1)]))
            last_pos = pos
            unit_starts.add(k)
        by_word.setdefault(current, []).append(k)
    voiced = sorted(by_word)
    for i, w in enumerate(voiced):
        following = voiced[i + 1] if i + 1 < len(voiced) else len(words)
        members = list(range(w, following))
        phonemes = by_word[w]
        if len(members) == 1:
            for k in phonemes:
                result[k] = w
            continue
        counts = np.array([max(1, phoneme_count(words[m])) for m in members], dtype=np.float64)
        total = len(phonemes)
        cuts = [0]
        boundaries = [j for j, k in enumerate(phonemes) if k in unit_starts and j > 0]
        for j, share in enumerate(np.cumsum(counts)[:-1] / counts.sum(), start=1):
            cut = int(round(total * share))
            near = [b for b in boundaries if abs(b - cut) <= 1]
            if near:
                cut = min(near, key=lambda b: abs(b - cut))
            # each word keeps at least one phoneme while there are enough of them
            low = cuts[-1] + (1 if total - cuts[-1] > len(members) - j else 0)
            high = total - max(0, min(len(members) - j, total - low))
            cuts.append(min(max(cut, low), max(low, high)))
        cuts.append(total)
        for m, a, b in zip(members, cuts[:-1], cuts[1:]):
            for k in phonemes[a:b]:
                result[k] = m
    return result


def _assemble(
    text: str,
    spans: list[tuple[int, int]],
    audio16: np.ndarray,
    rate: int,
    events: list[tuple[int, int, int, str]],
    phoneme_count: Callable[[str], int],
) -> Speech:
    n = len(audio16)

    def sample_of(sample: int, audio_ms: int) -> int:
        # `sample` is exact; audio_position is int(sample * 1000 / rate). Trust the former only
        # while the two agree (the field is documented as "internal use").
        if abs(sample * 1000 / rate - audio_ms) <= 1.5:
            return min(max(sample, 0), n)
        return min(max(round(audio_ms * rate / 1000), 0), n)

    names: list[str] = []
    starts: list[int] = []
    positions: list[int | None] = []
    for pos, sample, audio_ms, name in events:
        if not name:
            continue
        start = sample_of(sample, audio_ms)
        if starts and start < starts[-1]:  # never seen; keep the list ordered anyway
            start = starts[-1]
        names.append(name)
        starts.append(start)
        positions.append(None if strip_stress(name) in PAUSE_PHONEMES else pos)
    words_text = [text[a:b] for a, b in spans]
    word_of = _assign_words(positions, _owner_table(text, spans), words_text, phoneme_count)

    amplitude = np.abs(audio16.astype(np.int32))
    loud = np.flatnonzero(amplitude > _SILENCE)
    voiced_end = int(loud[-1]) + 1 if len(loud) else n

    ends = starts[1:] + [n]
    # the last speech phoneme ends where the voiced audio does
    for k in range(len(names) - 1, -1, -1):
        if word_of[k] >= 0:
            ends[k] = max(starts[k], min(ends[k], voiced_end))
            break

    # move a stop's silent closure (just before its event) from the previous phoneme into it
    max_closure = round(_MAX_CLOSURE_S * rate)
    keep = round(_MIN_KEEP_S * rate)
    for k in range(1, len(names)):
        if strip_stress(names[k]) not in _STOPS:
            continue
        s = starts[k]
        limit = max(starts[k - 1] + keep, s - max_closure)
        j = s
        while j > limit and amplitude[j - 1] <= _SILENCE:
            j -= 1
        if j < s:
            starts[k] = j
            ends[k - 1] = j

    phonemes = [
        PhonemeEvent(name, s / rate, max(e, s) / rate, w)
        for name, s, e, w in zip(names, starts, ends, word_of)
        if w >= 0 or e > s  # drop zero-length pauses
    ]

    found: list[tuple[float, float] | None] = [None] * len(spans)
    for p in phonemes:
        if p.word_index >= 0:
            old = found[p.word_index]
            found[p.word_index] = (p.start, p.end) if old is None else (old[0], p.end)
    words: list[WordEvent] = []
    previous_end = phonemes[0].start if phonemes else 0.0
    for i, word in enumerate(words_text):
        span = found[i]
        if span is None:  # espeak said nothing for it: a zero-length span where it would be
            later = next((t for t in found[i + 1 :] if t is not None), None)
            start = previous_end if later is None else min(previous_end, later[0])
            span = (start, start)
        words.append(WordEvent(word, span[0], span[1]))
        previous_end = span[1]

    audio = audio16.astype(np.float32) / 32768.0
    return Speech(audio=audio, sample_rate=rate, phonemes=phonemes, words=words)


# --- voices ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _voice_tables() -> tuple[tuple[tuple[str, str, str], ...], tuple[str, ...]]:
    """(name, language, identifier) of every language voice, and the variant names."""
    lib_path, data_path = _paths()
    path, release = _private_copy(lib_path)
    noop = _SynthCallback(lambda wav, n, ev: 0)
    try:
        engine = _Engine(path, data_path, noop)
        try:
            languages = tuple(engine.voices(None))
            variants = tuple(sorted(_variants(engine), key=str.lower))
        finally:
            engine.close()
    finally:
        if release is not None:
            release()
    return languages, variants


def list_voices(language: str = "en") -> list[str]:
    """Names (primary language codes, e.g. ``"en-gb-scotland"``) of the installed espeak voices
    for ``language``; each works as :attr:`Voice.name`."""
    prefix = language.lower()
    names = {lang for _, lang, _ in _voice_tables()[0] if lang == prefix or lang.startswith(prefix + "-")}
    return sorted(names)


def list_variants() -> list[str]:
    """Speaker variants installed with espeak (files in espeak-ng-data/voices/!v): ``f1``..``f5``,
    ``m1``..``m8``, ``klatt``..., usable as :attr:`Voice.variant`."""
    return list(_voice_tables()[1])


# Speaker-distinct voices for the synthetic corpus: six English accents crossed with espeak's
# male (m1-m7) and female (f1-f5) variants. Each variant has its own pitch band (measured median F0
# from about 90 Hz for m1 to about 200 Hz for f3) and formant scaling, each accent its own vowels;
# pitch and rate offsets spread the speakers further apart. en-shaw (it reads the Shavian alphabet)
# and the named novelty variants (robots, whisper, croak, klatt...) are left out.
SPEAKER_VOICES: tuple[Voice, ...] = (
    Voice("en-us", "m1", pitch=45, rate=160),
    Voice("en-us", "f1", pitch=55, rate=170),
    Voice("en-us", "m3", pitch=55, rate=150),
    Voice("en-us", "f4", pitch=45, rate=165),
    Voice("en-gb", "m2", pitch=50, rate=175),
    Voice("en-gb", "f2", pitch=50, rate=155),
    Voice("en-gb-x-rp", "m4", pitch=50, rate=160),
    Voice("en-gb-x-rp", "f3", pitch=45, rate=170),
    Voice("en-gb-scotland", "m6", pitch=50, rate=150),
    Voice("en-gb-scotland", "f5", pitch=45, rate=160),
    Voice("en-029", "m7", pitch=50, rate=165),
    Voice("en-029", "f1", pitch=45, rate=155),
    Voice("en-us-nyc", "m5", pitch=45, rate=180),
    Voice("en-gb-x-gbclan", "m3", pitch=40, rate=160),
    Voice("en-gb-x-gbcwmd", "f4", pitch=55, rate=150),
    Voice("en-us", "m2", pitch=40, rate=170),
)
