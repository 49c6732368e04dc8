"""Conversations: two or more synthetic people side by side in one video, taking turns.

Test material for active-speaker detection (``avsr-decode --speakers``): who speaks when is known
exactly. Each scene is a row of the corpus's people, each in a square panel of their own framing,
taking turns with a sentence each; between turns there is a pause. While one speaks the others
either keep their lips still or move them as if saying another sentence that is not heard
(``listeners``: ``still`` or ``mumble``, alternating between scenes; a mumbled sentence starts at
a random point of itself, so its syllables do not fall with the heard ones): lips that move are not
enough to tell the speaker, only lips that move *with the sound* are.

A scene ``scenes/NNNNN`` is written as ``.mp4`` (H.264 + AAC 16 kHz), ``.json`` (the truth: the
people left to right, their panels, and each turn's person, start, end and words) and ``.txt``
(``Text:`` all words in order, then one ``PERSON START END WORDS`` line per turn), written last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avsr.data.synth.text import SentenceSampler, spoken_form
from avsr.media.constants import AUDIO_RATE, SAMPLES_PER_FRAME, VIDEO_FPS

if TYPE_CHECKING:
    from avsr.data.synth.corpus import CorpusPlan, UtteranceRenderer

LISTENERS = ("still", "mumble")
PEOPLE_PER_SCENE = (2, 4)  # the fewest and the most people in one scene
TURNS = (3, 5)  # turns per scene: at least, at most
PAUSE = (0.45, 0.9)  # seconds of silence between turns
EDGE = (0.25, 0.5)  # seconds of silence before the first turn and after the last


@dataclass(frozen=True)
class Turn:
    person: int  # position in the scene, left to right
    words: tuple[str, ...]


@dataclass(frozen=True)
class Scene:
    """One conversation: who sits where, who says what in which order, how listeners behave."""

    key: str
    people: tuple[int, ...]  # speaker indices of the corpus, left to right
    turns: tuple[Turn, ...]
    listeners: str
    seed: int


def plan_scenes(plan: CorpusPlan, rng: np.random.Generator) -> list[Scene]:
    """``config.utterances`` scenes of ``config.people_per_scene`` distinct people of the corpus
    each; consecutive turns are by different people, and everybody speaks at least once."""
    config = plan.config
    sampler = SentenceSampler(config.vocabulary)
    scenes = []
    for index in range(config.utterances):
        count = config.people_per_scene
        people = tuple(int(i) for i in rng.choice(len(plan.speakers), size=count, replace=False))
        order = [int(i) for i in rng.permutation(count)]
        while len(order) < int(rng.integers(max(TURNS[0], count), TURNS[1] + 1)):
            order.append(int(rng.choice([p for p in range(count) if p != order[-1]])))
        turns = tuple(Turn(person, tuple(sampler.sentence(rng))) for person in order)
        listeners = LISTENERS[index % len(LISTENERS)]
        scenes.append(Scene(f"scenes/{index + 1:05d}", people, turns, listeners, int(rng.integers(2**31))))
    return scenes


@dataclass
class ComposedScene:
    frames: np.ndarray  # (T, S, people * S, 3) uint8 RGB
    audio: np.ndarray  # (T * 640,) float32 at 16 kHz
    truth: dict  # the .json file's content
    transcript: str  # the .txt file's content


def compose_scene(renderer: UtteranceRenderer, scene: Scene) -> ComposedScene:
    """Speech of every turn placed on one timeline, each person's mouth track (speaking, still or
    mumbling), each person's panel rendered, the panels side by side."""
    from avsr.data.synth.visemes import mouth_track

    rng = np.random.default_rng(scene.seed)
    speakers = [renderer.speakers[i] for i in scene.people]
    speeches = [
        renderer.synthesizer.speak(" ".join(spoken_form(w) for w in turn.words), speakers[turn.person].voice)
        for turn in scene.turns
    ]
    speeches = [speech.resample(AUDIO_RATE) for speech in speeches]
    starts, frame = [], _frames(rng.uniform(*EDGE))
    for speech in speeches:
        starts.append(frame)
        frame += _frames(speech.duration) + _frames(rng.uniform(*PAUSE))
    total = starts[-1] + _frames(speeches[-1].duration) + _frames(rng.uniform(*EDGE))
    audio = np.zeros(total * SAMPLES_PER_FRAME, np.float32)
    spoken = [mouth_track(speech.phonemes, _frames(speech.duration), VIDEO_FPS) for speech in speeches]
    tracks = np.repeat(mouth_track([], total, VIDEO_FPS)[None], len(speakers), axis=0)
    for number, (turn, speech, start) in enumerate(zip(scene.turns, speeches, starts)):
        audio[start * SAMPLES_PER_FRAME : start * SAMPLES_PER_FRAME + len(speech.audio)] += speech.audio
        tracks[turn.person, start : start + len(spoken[number])] = spoken[number]
        if scene.listeners == "mumble":  # the others mouth another turn's sentence, unheard and out of step
            for person in range(len(speakers)):
                if person != turn.person:
                    other = spoken[(number + 1 + person) % len(spoken)]
                    other = np.roll(other, int(rng.integers(len(other))), axis=0)[: len(spoken[number])]
                    tracks[person, start : start + len(other)] = other
    panels = [
        renderer.face(speaker).render(tracks[person], speaker.appearance, VIDEO_FPS, seed=scene.seed + person)
        for person, speaker in enumerate(speakers)
    ]
    size = renderer.config.frame_size
    truth = {
        "people": [
            {
                "position": person,
                "speaker": speaker.index,
                "identity": speaker.identity.name,
                "panel": [person * size, 0, size, size],
            }
            for person, speaker in enumerate(speakers)
        ],
        "listeners": scene.listeners,
        "turns": [
            {
                "person": turn.person,
                "start": round(start / VIDEO_FPS, 2),
                "end": round((start + len(spoken[number])) / VIDEO_FPS, 2),
                "text": " ".join(turn.words),
            }
            for number, (turn, start) in enumerate(zip(scene.turns, starts))
        ],
    }
    lines = [f"Text:  {' '.join(w for turn in scene.turns for w in turn.words)}", "", "PERSON START END WORDS"]
    lines += [f"{t['person']} {t['start']:.2f} {t['end']:.2f} {t['text']}" for t in truth["turns"]]
    return ComposedScene(np.concatenate(panels, axis=2), audio, truth, "\n".join(lines) + "\n")


def render_scene(renderer: UtteranceRenderer, scene: Scene, root: Path) -> int:
    """Write the scene's ``.mp4``, ``.json`` and then ``.txt``; returns its number of frames."""
    from avsr.data.synth.corpus import _write_text
    from avsr.media import write_mp4

    composed = compose_scene(renderer, scene)
    crf = min(renderer.speakers[i].appearance.crf for i in scene.people)
    write_mp4(
        root / f"{scene.key}.mp4", composed.frames, composed.audio, fps=VIDEO_FPS, sample_rate=AUDIO_RATE, crf=crf
    )
    _write_text(root / f"{scene.key}.json", json.dumps(composed.truth, indent=1) + "\n")
    _write_text(root / f"{scene.key}.txt", composed.transcript)
    return len(composed.frames)


def _frames(seconds: float) -> int:
    return int(np.ceil(seconds * VIDEO_FPS))


__all__ = [
    "LISTENERS",
    "PEOPLE_PER_SCENE",
    "ComposedScene",
    "Scene",
    "Turn",
    "compose_scene",
    "plan_scenes",
    "render_scene",
]
