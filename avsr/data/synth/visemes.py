"""Mouth shapes for espeak phonemes, and the per-frame mouth track that drives the talking face.

A mouth pose has three numbers (the columns of a track, indexed by :data:`OPEN`, :data:`SPREAD`,
:data:`TEETH`):

* ``open``   0..1: jaw and lip opening. Exactly 0 for the bilabial closures p, b, m; about 0.05
  in a pause; open vowels (a, aa, A:, aI...) open most.
* ``spread`` -1..1: -1 rounded, protruded lips (u:, w, oU), +1 spread lips (i:, eI), 0 neutral.
* ``teeth``  0..1: the lower lip tucked under the upper teeth (f, v).

:data:`VISEMES` maps every phoneme of espeak-ng's English phoneme tables (base1, en and the
regional en-* tables: what English voices emit as phoneme events) to a class and a target pose;
diphthongs glide from a first to a second target. Unknown mnemonics (other languages) fall back
on a generic vowel or consonant (:func:`viseme`).

:func:`mouth_track` turns a phoneme list into a track at the video frame rate. It holds each
phoneme's target over its interval and blends neighbours with a Gaussian (coarticulation) in
which each class has a *dominance* per column (after Cohen and Massaro): a p or an f imposes its
lips on its neighbours, a t or a k borrows the lips of the vowels around it. Every p/b/m and f/v
is then guaranteed at least one frame that shows it (lips shut, lip under the teeth), however
short it is, since those are the phonemes a lip-reader can see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "OPEN",
    "REST",
    "SPREAD",
    "TEETH",
    "VISEMES",
    "MouthShape",
    "mouth_track",
    "frame_count",
    "viseme",
    "viseme_class",
]

OPEN, SPREAD, TEETH = 0, 1, 2  # columns of a mouth track


class MouthShape(NamedTuple):
    open: float  # 0..1
    spread: float  # -1 rounded .. +1 spread
    teeth: float  # 0..1 lower lip under the upper teeth


_S = MouthShape
REST = _S(0.0, 0.0, 0.0)  # before and after speech: lips closed, relaxed
PAUSE = _S(0.05, 0.0, 0.0)  # a pause inside speech: lips barely parted
CLOSED = _S(0.0, 0.0, 0.0)  # p b m
LABIODENTAL = _S(0.08, 0.0, 1.0)  # f v
DENTAL = _S(0.22, 0.1, 0.0)  # th: tongue tip between the teeth
ALVEOLAR = _S(0.2, 0.1, 0.0)  # t d n: jaw nearly closed, lips take the vowels' shape
SIBILANT = _S(0.12, 0.3, 0.0)  # s z: teeth together, lips a little spread
LATERAL = _S(0.3, 0.1, 0.0)  # l
POSTALVEOLAR = _S(0.18, -0.55, 0.0)  # sh zh ch j: lips pushed forward
R_SHAPE = _S(0.22, -0.45, 0.0)  # English r: lips a little rounded
VELAR = _S(0.3, 0.0, 0.0)  # k g ng
GLOTTAL = _S(0.4, 0.0, 0.0)  # h and glottal stop: shaped by the next vowel
PALATAL = _S(0.2, 0.6, 0.0)  # y glide (j) and palatals
LABIOVELAR = _S(0.12, -1.0, 0.0)  # w: rounded and protruded
SCHWA = _S(0.35, 0.0, 0.0)  # weak, central vowels
VOWEL = _S(0.5, 0.0, 0.0)  # fallback for an unknown vowel
CONSONANT = _S(0.25, 0.0, 0.0)  # fallback for an unknown consonant

# phoneme -> (class, target) or (class, (start target, end target)) for a glide. Phoneme names
# are espeak's, without the stress marks ' and , that espeak puts in front of vowels.
VISEMES: dict[str, tuple[str, MouthShape | tuple[MouthShape, MouthShape]]] = {
    # --- silence: pauses of every length, the language-switch and glottal-onset pauses
    **{p: ("pause", PAUSE) for p in ("_", "_:", "_::", "_!", "_|", "_;_", "_^_", "_X1", "||")},
    # --- bilabials: lips pressed together (B is the bilabial fricative, m- a syllabic m)
    **{p: ("bilabial", CLOSED) for p in ("p", "b", "m", "m-")},
    "B": ("bilabial", _S(0.04, 0.0, 0.0)),
    # --- labiodentals: lower lip under the upper teeth
    **{p: ("labiodental", LABIODENTAL) for p in ("f", "v", "v#")},
    # --- dentals: th as in "thin" (T) and "this" (D); t[ d[ dental stops
    **{p: ("dental", DENTAL) for p in ("T", "D", "t[", "d[")},
    # --- alveolar stops and nasals: t d n and espeak's allophones (flap t#, t2, d#, syllabic n-)
    **{p: ("alveolar", ALVEOLAR) for p in ("t", "d", "n", "t#", "t2", "d#", "n-", "n.", "*", "**")},
    # --- sibilants s z and their allophones
    **{p: ("sibilant", SIBILANT) for p in ("s", "z", "z#", "z/2", "s.", "z.", "s;", "z;")},
    # --- laterals: l, dark l (l/, l/2, l/3), syllabic l-, the others of base1
    **{p: ("lateral", LATERAL) for p in ("l", "l/", "l/2", "l/3", "l-", "l.", "l^", "l#", "L", "L/")},
    # --- postalveolars: sh zh ch j (lips protruded)
    **{p: ("postalveolar", POSTALVEOLAR) for p in ("S", "Z", "tS", "dZ", "S;", "Z;", "tS;", "dZ;")},
    # --- r sounds: approximant r, linking r-, r/ (and trills/taps of base1)
    **{p: ("r", R_SHAPE) for p in ("r", "r-", "r/", "r.", "R", "R2", "R3", 'r"')},
    # --- velars and uvulars: k g ng x and friends
    **{p: ("velar", VELAR) for p in ("k", "g", "N", "N-", "x", "X", "Q", 'Q"', "Q^", "q", "#X1")},
    # --- glottals: h, glottal stop
    **{p: ("glottal", GLOTTAL) for p in ("h", "?")},
    # --- palatals: y glide (j), the glide ; between vowels ("pre;amble"), c J C J^ n^
    **{p: ("palatal", PALATAL) for p in ("j", ";", "c", "J", "C", "J^", "n^")},
    # --- labio-velars: w, and the voiceless wh of Scottish English (w#)
    **{p: ("round", LABIOVELAR) for p in ("w", "w#")},
    # --- close front vowels: fleece, happy (spread lips, jaw nearly closed)
    "i:": ("vowel", _S(0.3, 0.8, 0.0)),
    "i": ("vowel", _S(0.3, 0.7, 0.0)),
    # --- near-close front vowels: kit and its weak forms
    **{p: ("vowel", _S(0.35, 0.5, 0.0)) for p in ("I", "I2", "I#", "I2#")},
    # --- mid front vowels: dress, face-like monophthongs
    **{p: ("vowel", _S(0.5, 0.45, 0.0)) for p in ("E", "E#", "E2", "e", "e#", "e:")},
    # --- open front vowels: trap, bath (a, aa) and the weak a#: open most
    **{p: ("vowel", _S(0.85, 0.3, 0.0)) for p in ("a", "aa", "a2", "a/")},
    **{p: ("vowel", _S(0.55, 0.15, 0.0)) for p in ("a#", "a#2")},
    # --- open back vowels: palm, start (A@), and French-style nasal A~
    **{p: ("vowel", _S(0.95, 0.0, 0.0)) for p in ("A:", "A#", "A@", "A~")},
    # --- lot (0: rounded in British voices, open in American ones)
    **{p: ("vowel", _S(0.75, -0.35, 0.0)) for p in ("0", "0#", "02")},
    # --- open-mid back rounded: thought, north, force
    **{p: ("vowel", _S(0.6, -0.7, 0.0)) for p in ("O:", "O", "O2", "O@", "o@", "O~")},
    # --- close-mid back rounded: o
    **{p: ("vowel", _S(0.45, -0.8, 0.0)) for p in ("o", "o:")},
    # --- strut
    "V": ("vowel", _S(0.6, 0.0, 0.0)),
    # --- foot and cure: near-close rounded
    **{p: ("vowel", _S(0.32, -0.7, 0.0)) for p in ("U", "U@")},
    # --- goose: close rounded, lips protruded
    **{p: ("vowel", _S(0.25, -1.0, 0.0)) for p in ("u:", "u")},
    # --- nurse: mid central, a little rounded
    **{p: ("vowel", _S(0.4, -0.2, 0.0)) for p in ("3:", "IR", "VR")},
    # --- schwa and its kinds: @, weak "er" (3), syllabic l (@L), the weak vowels of other tables
    **{p: ("vowel", SCHWA) for p in ("@", "@2", "@5", "@-", "@#", "3", "@L")},
    # --- diphthongs: glide from the first target to the second
    "aI": ("vowel", (_S(0.85, 0.2, 0.0), _S(0.4, 0.5, 0.0))),  # price
    "aI2": ("vowel", (_S(0.7, 0.2, 0.0), _S(0.4, 0.5, 0.0))),  # Scottish price
    "aI@": ("vowel", (_S(0.85, 0.2, 0.0), _S(0.4, 0.0, 0.0))),  # fire
    "aI3": ("vowel", (_S(0.85, 0.2, 0.0), _S(0.4, -0.2, 0.0))),  # fire (American)
    "aU": ("vowel", (_S(0.85, 0.1, 0.0), _S(0.35, -0.7, 0.0))),  # mouth
    "aU@": ("vowel", (_S(0.85, 0.1, 0.0), _S(0.4, -0.3, 0.0))),  # hour
    "eI": ("vowel", (_S(0.5, 0.45, 0.0), _S(0.35, 0.65, 0.0))),  # face
    "OI": ("vowel", (_S(0.6, -0.7, 0.0), _S(0.35, 0.5, 0.0))),  # choice
    "oU": ("vowel", (_S(0.5, -0.6, 0.0), _S(0.3, -0.9, 0.0))),  # goat
    "oU#": ("vowel", (_S(0.5, -0.5, 0.0), _S(0.3, -0.8, 0.0))),  # goat (weak)
    "e@": ("vowel", (_S(0.55, 0.4, 0.0), _S(0.4, 0.0, 0.0))),  # square
    "i@": ("vowel", (_S(0.32, 0.7, 0.0), _S(0.4, 0.0, 0.0))),  # near
    "i@3": ("vowel", (_S(0.32, 0.7, 0.0), _S(0.35, -0.2, 0.0))),  # near (rhotic)
}

# How strongly each class imposes its target on its neighbours, per column (open, spread, teeth).
# Coarticulation: the blended pose is sum(dominance * target) / sum(dominance) under a Gaussian.
DOMINANCE: dict[str, tuple[float, float, float]] = {
    "rest": (1.0, 1.0, 1.0),
    "pause": (0.6, 0.6, 1.0),
    "bilabial": (4.0, 1.0, 4.0),  # lips must shut, whatever the vowels around do
    "labiodental": (3.0, 1.0, 4.0),  # the lip must reach the teeth
    "dental": (0.8, 0.3, 1.0),
    "alveolar": (0.5, 0.2, 1.0),  # the tongue does the work: the lips follow the vowels
    "sibilant": (1.5, 0.5, 1.0),  # teeth close together
    "lateral": (0.5, 0.2, 1.0),
    "postalveolar": (1.5, 2.0, 1.0),  # protruded lips are visible
    "r": (0.8, 1.5, 1.0),
    "velar": (0.4, 0.2, 1.0),
    "glottal": (0.2, 0.1, 1.0),  # h takes the shape of its vowel
    "palatal": (0.6, 1.0, 1.0),
    "round": (1.5, 4.0, 1.0),  # w rounds hard
    "vowel": (1.0, 1.0, 1.0),
    "consonant": (0.5, 0.3, 1.0),
}

_STRESS_MARKS = "',%=!"
_VOWEL_START = set("aeiouAEIOU@03V")
_GRID_RATE = 1000.0  # Hz of the internal target signal


def _lookup(phoneme: str) -> tuple[str, MouthShape | tuple[MouthShape, MouthShape]]:
    name = phoneme.lstrip(_STRESS_MARKS) or phoneme
    entry = VISEMES.get(name)
    if entry is not None:
        return entry
    # an allophone of a known phoneme: drop trailing modifiers ("t[" -> "t", "E3" -> "E")
    stem = name
    while len(stem) > 1 and not stem[-1].isalpha():
        stem = stem[:-1]
        entry = VISEMES.get(stem)
        if entry is not None:
            return entry
    if name[:1] in _VOWEL_START:
        return "vowel", VOWEL
    return "consonant", CONSONANT


def viseme_class(phoneme: str) -> str:
    """The mouth-shape class of an espeak phoneme: "bilabial", "labiodental", "vowel", ..."""
    return _lookup(phoneme)[0]


def viseme(phoneme: str) -> MouthShape:
    """The target pose of an espeak phoneme (stress marks ignored; a glide's midpoint)."""
    target = _lookup(phoneme)[1]
    if isinstance(target[0], MouthShape):
        a, b = target
        return MouthShape(*((np.asarray(a) + np.asarray(b)) / 2).tolist())
    return target


def frame_count(duration: float, fps: float = 25.0) -> int:
    """Video frames needed to cover ``duration`` seconds at ``fps`` (at least one)."""
    return max(1, math.ceil(duration * fps - 1e-6))


def mouth_track(
    phonemes: Sequence,
    num_frames: int,
    fps: float = 25.0,
    smoothing: float = 0.02,
    lead: float = 0.0,
) -> np.ndarray:
    """Per-frame mouth poses (num_frames, 3) float32: columns open, spread, teeth.

    ``phonemes`` are :class:`~avsr.data.synth.tts.PhonemeEvent` (or anything with ``phoneme``,
    ``start`` and ``end`` in seconds). Frame ``i`` shows the pose at its centre, ``(i + 0.5) / fps``.
    Targets are held over each phoneme's interval (glides interpolate) and blended with a Gaussian
    of standard deviation ``smoothing`` seconds, weighted by each class's dominance; before the
    first and after the last spoken phoneme the mouth is at :data:`REST`. ``lead`` seconds moves
    the lips ahead of the sound (real talkers start shaping a sound before it is heard).
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    if num_frames == 0:
        return np.zeros((0, 3), np.float32)
    duration = num_frames / fps
    events = sorted(
        ((float(p.start) - lead, float(p.end) - lead, str(p.phoneme)) for p in phonemes), key=lambda e: e[0]
    )
    spoken = [e for e in events if _lookup(e[2])[0] != "pause"]

    pad = 4 * smoothing + 1.0 / fps
    t0 = -pad
    n = int(math.ceil((duration + 2 * pad) * _GRID_RATE)) + 1
    times = t0 + np.arange(n) / _GRID_RATE
    target = np.tile(np.asarray(REST, np.float64), (n, 1))
    weight = np.tile(np.asarray(DOMINANCE["rest"], np.float64), (n, 1))
    must_show: list[tuple[float, float, str]] = []
    if spoken:
        speech_start, speech_end = spoken[0][0], spoken[-1][1]
        for start, end, name in events:
            if end <= start:
                continue
            cls, shape = _lookup(name)
            if cls == "pause" and (end <= speech_start or start >= speech_end):
                continue  # leading and trailing silence stay at rest
            a = int(np.searchsorted(times, start, side="left"))
            b = int(np.searchsorted(times, end, side="left"))
            if b <= a:
                continue
            if isinstance(shape[0], MouthShape):  # glide
                first, second = (np.asarray(s, np.float64) for s in shape)
                frac = np.linspace(0.0, 1.0, b - a)[:, None]
                target[a:b] = first + (second - first) * frac
            else:
                target[a:b] = shape
            weight[a:b] = DOMINANCE[cls]
            if cls in ("bilabial", "labiodental"):
                must_show.append((start, end, cls))

    if smoothing > 0:
        sigma = smoothing * _GRID_RATE
        half = int(math.ceil(4 * sigma))
        x = np.arange(-half, half + 1)
        kernel = np.exp(-0.5 * (x / sigma) ** 2)
        kernel /= kernel.sum()
        num = np.stack([np.convolve(weight[:, c] * target[:, c], kernel, "same") for c in range(3)], 1)
        den = np.stack([np.convolve(weight[:, c], kernel, "same") for c in range(3)], 1)
        blended = num / np.maximum(den, 1e-12)
    else:
        blended = target

    centres = (np.arange(num_frames) + 0.5) / fps
    index = np.clip(np.round((centres - t0) * _GRID_RATE).astype(np.int64), 0, n - 1)
    track = blended[index]

    # lips that a lip-reader must see: the frame nearest each p/b/m (f/v) shows it
    for start, end, cls in must_show:
        middle = (start + end) / 2
        if not 0.0 <= middle < duration:
            continue
        frame = min(int(middle * fps), num_frames - 1)
        shape = np.asarray(_lookup("p" if cls == "bilabial" else "f")[1])
        if cls == "bilabial":
            track[frame, OPEN] = min(track[frame, OPEN], shape[OPEN] + 0.02)
        else:
            track[frame, TEETH] = max(track[frame, TEETH], 0.8 * shape[TEETH])
            track[frame, OPEN] = min(track[frame, OPEN], shape[OPEN] + 0.05)

    track[:, OPEN] = np.clip(track[:, OPEN], 0.0, 1.0)
    track[:, SPREAD] = np.clip(track[:, SPREAD], -1.0, 1.0)
    track[:, TEETH] = np.clip(track[:, TEETH], 0.0, 1.0)
    return track.astype(np.float32)
