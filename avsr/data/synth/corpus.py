"""Write a synthetic audio-visual corpus in the real LRS2 or LRW layout.

Planning (speakers, their faces, splits, texts, ids) happens up front in one process from one
seed, so the corpus is the same whatever the number of workers; rendering each utterance
(speech, mouth track, face video, mp4) is independent and runs in a pool of worker processes,
each building a speaker's face (its rig) once, when it first renders that speaker.

Each speaker is a distinct person (``avsr.data.synth.identities``): identities are disjoint
between train, val and test, and checked with dlib's face recogniser when they are cast.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from avsr.data.synth.face import Appearance, TalkingFace
from avsr.data.synth.identities import SOURCES, Identity, Source, user_sources
from avsr.data.synth.identities.ahead import Measurer
from avsr.data.synth.identities.cast import Cast
from avsr.data.synth.identities.measured import appearance_lip_sync
from avsr.data.synth.scenes import PEOPLE_PER_SCENE, Scene, plan_scenes, render_scene
from avsr.data.synth.text import SentenceSampler, news_words, spoken_form
from avsr.data.synth.tts import SPEAKER_VOICES, Voice
from avsr.data.synth.verify import SCREEN_THRESHOLD
from avsr.media.constants import AUDIO_RATE, SAMPLES_PER_FRAME, VIDEO_FPS

LAYOUTS = ("lrs2", "lrw", "scenes")
LRW_FRAMES = 29  # 1.16 s, the word centred, as in LRW
META_FILE = "synth_meta.json"
APPEARANCE_DRAWS = 4  # appearances tried per speaker before its look is made plain (screened_appearance)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides a corpus's content: same config, same corpus."""

    layout: str = "lrs2"
    utterances: int = 100
    speakers: int = 8
    seed: int = 0
    vocabulary: str = "grid"  # lrs2 and scenes: grid | open
    words: int = 10  # lrw: number of target words
    image_size: int | None = None  # frame side in pixels; None: 160 (lrs2, as LRS2) or 256 (lrw)
    pretrain_fraction: float = 0.2  # lrs2: share of training speakers' utterances in pretrain/
    test_fraction: float = 0.2  # share of speakers held out for test (and half that for val)
    identities: int | None = None  # distinct people cast (>= speakers; extra ones are spares); None: speakers
    faces: str | None = None  # a folder of the user's face photographs to use instead of the built-in ones
    identity_margin: float = 0.6  # dlib distance each new identity should keep from those chosen before
    distinct_from: str | None = None  # another corpus (its root) whose people this one's must not be
    people_per_scene: int = 2  # scenes: people side by side in one video, taking turns

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose from {', '.join(LAYOUTS)}")
        if self.utterances < 1:
            raise ValueError("--utterances must be at least 1")
        if self.speakers < 3:
            raise ValueError("--speakers must be at least 3 (train, val and test speakers are disjoint)")
        if self.layout == "lrw" and not 1 <= self.words <= len(news_words()):
            raise ValueError(f"--words must be between 1 and {len(news_words())}")
        if self.image_size is not None and not 64 <= self.image_size <= 1024:
            raise ValueError("--image-size must be between 64 and 1024 pixels")
        if not 0 <= self.pretrain_fraction < 1 or not 0 < self.test_fraction < 0.5:
            raise ValueError("need 0 <= pretrain_fraction < 1 and 0 < test_fraction < 0.5")
        if self.identities is not None and self.identities < self.speakers:
            raise ValueError("--identities must be at least --speakers (each speaker is one identity)")
        if not 0 <= self.identity_margin <= 2:
            raise ValueError("the identity margin is a dlib distance between 0 and 2")
        if self.layout == "scenes" and not (
            PEOPLE_PER_SCENE[0] <= self.people_per_scene <= min(PEOPLE_PER_SCENE[1], self.speakers)
        ):
            raise ValueError(
                f"--people-per-scene must be between {PEOPLE_PER_SCENE[0]} and {PEOPLE_PER_SCENE[1]}, and at most --speakers"
            )
        SentenceSampler(self.vocabulary)  # validates the vocabulary name

    @property
    def frame_size(self) -> int:
        if self.image_size is not None:
            return self.image_size
        return 256 if self.layout == "lrw" else 160  # per person: a scene is people * 160 wide

    @property
    def identity_count(self) -> int:
        return self.identities if self.identities is not None else self.speakers

    def face_sources(self) -> tuple[Source, ...]:
        """The photographs identities are made from: the user's folder, or the built-in ones."""
        return user_sources(self.faces) if self.faces is not None else SOURCES


@dataclass(frozen=True)
class Speaker:
    index: int
    split: str  # train | val | test (lrs2 pretrain utterances come from train speakers)
    voice: Voice
    appearance: Appearance
    groups: tuple[str, ...]  # LRS2 programme ids this speaker appears in
    identity: Identity  # the person: photographs, shape edits, looks
    appearance_screen: float = float("nan")  # lip sync of the identity in this appearance (verify.screen_appearance)


@dataclass(frozen=True)
class Utterance:
    """One item to render: where it goes, who says what, and its own random seed."""

    key: str  # path of the item without extension, relative to the corpus root
    split: str
    speaker: int
    words: tuple[str, ...]  # the transcript; lrw: context words around the target
    target: int = -1  # lrw: index of the target word in `words`
    seed: int = 0
    scene: Scene | None = None  # scenes: the conversation (`speaker` is its first person, `words` all turns')


@dataclass
class CorpusPlan:
    config: SynthConfig
    speakers: list[Speaker]
    cast: Cast
    utterances: list[Utterance] = field(default_factory=list)

    def split_lists(self) -> dict[str, list[str]]:
        """LRS2's split files: ``pretrain.txt`` etc., one ``group/id`` per line; ``test_seen``:
        held-out clips of training speakers (for lip reading on seen against unseen faces)."""
        lists: dict[str, list[str]] = {"pretrain": [], "train": [], "val": [], "test": [], "test_seen": []}
        for utterance in self.utterances:
            lists[utterance.split].append(utterance.key.split("/", 1)[1])
        return lists


def _assign_splits(count: int, test_fraction: float, rng: np.random.Generator) -> list[str]:
    """``count`` splits in random order: ``test_fraction`` of them test, half that val (each at
    least one), the rest train."""
    test = max(1, round(count * test_fraction))
    val = max(1, round(count * test_fraction / 2))
    splits = ["test"] * test + ["val"] * val + ["train"] * (count - test - val)
    return [splits[i] for i in rng.permutation(count)]


def plan_speakers(
    config: SynthConfig, rng: np.random.Generator, measurer: Measurer | None = None
) -> tuple[list[Speaker], Cast]:
    """Voices, looks and identities of the speakers (plus any spare identities); ``measurer``'s
    workers measure the faces (the plan is the same with any number)."""
    from avsr.data.synth.identities.cast import cast_identities

    measurer = measurer or Measurer()
    splits = _assign_splits(config.speakers, config.test_fraction, rng)
    # Each identity's candidates come from its own seed: how many dlib rejects does not change
    # the draws of the rest of the plan.
    identity_seeds = [int(seed) for seed in rng.integers(2**31, size=config.identity_count)]
    cast = cast_identities(
        [*splits, *["spare"] * (config.identity_count - config.speakers)],
        identity_seeds,
        config.face_sources(),
        margin=config.identity_margin,
        avoid=recorded_people(Path(config.distinct_from), config.face_sources()) if config.distinct_from else (),
        measurer=measurer,
    )
    drawn = []
    for index, split in enumerate(splits):
        base = SPEAKER_VOICES[index % len(SPEAKER_VOICES)]
        # Beyond the listed voices, speakers differ by pitch and speaking rate.
        voice = replace(
            base,
            pitch=int(np.clip(base.pitch + rng.integers(-12, 13), 5, 95)),
            pitch_range=int(rng.integers(35, 80)),
            rate=int(rng.integers(140, 191)),
        )
        groups = tuple(str(rng.integers(10**18, 9 * 10**18)) for _ in range(int(rng.integers(1, 4))))
        drawn.append((voice, groups, Appearance.sample(rng)))
    # Each speaker's first look screened side by side; the few that fail draw again one by one.
    measurer.screen_appearances(
        [(cast.identities[index], first, config.frame_size) for index, (_, _, first) in enumerate(drawn)]
    )
    speakers = []
    for index, (split, (voice, groups, first)) in enumerate(zip(splits, drawn)):
        identity = cast.identities[index]
        appearance, screen = screened_appearance(identity, first, identity_seeds[index], config.frame_size)
        speakers.append(Speaker(index, split, voice, appearance, groups, identity, screen))
    return speakers, cast


def recorded_people(root: Path, sources: tuple[Source, ...] = ()) -> tuple[Identity, ...]:
    """The people of the corpus at ``root`` (speakers, then spare identities), rebuilt from its
    ``synth_meta.json``; photographs by name among ``sources`` and the built-in ones. ValueError
    (one line) when it is no avsr-synth corpus or needs a photograph this run does not have."""
    meta_path = root / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        recipes = [speaker["identity"] for speaker in meta["speakers"]] + list(meta.get("spare_identities", []))
    except OSError:
        raise ValueError(f"{root}: no {META_FILE} (not a corpus made by avsr-synth)") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{meta_path}: unreadable ({type(error).__name__}: {error})") from None
    by_name = {source.name: source for source in (*SOURCES, *sources)}
    wanted = {
        str(entry.get("name"))
        for recipe in recipes
        if isinstance(recipe, dict)
        for entry in recipe.get("sources", [])
        if isinstance(entry, dict)
    }
    if wanted - set(by_name):
        raise ValueError(
            f"{meta_path}: made from the photograph {sorted(wanted - set(by_name))[0]!r}; pass the --faces folder that has it"
        )
    try:
        return tuple(Identity.from_recipe(recipe, by_name) for recipe in recipes)
    except ValueError as error:
        raise ValueError(f"{meta_path}: {error}") from None


def screened_appearance(identity: Identity, first: Appearance, seed: int, size: int) -> tuple[Appearance, float]:
    """How the speaker looks, and its lip-sync screen in that look (``verify.screen_appearance``).

    ``first`` is kept when the identity's lips stay readable in it; otherwise up to
    ``APPEARANCE_DRAWS - 1`` more appearances are drawn from ``seed``, then the first is made plain
    (framed as average, frontal, evenly lit, sharp, crf 18, its colours kept), then the casting
    screen's own look. The first that passes is kept, else the best of them. Only the speakers
    that fail change: the plan's own random stream is not touched.
    """

    def candidates() -> Iterator[Appearance]:
        yield first
        rng = np.random.default_rng([seed, 1])
        for _ in range(APPEARANCE_DRAWS - 1):
            yield Appearance.sample(rng)
        yield Appearance(
            mirror=first.mirror,
            gains=first.gains,
            gamma=first.gamma,
            background=first.background,
            background_seed=first.background_seed,
            motion=min(first.motion, 0.5),
            motion_seed=first.motion_seed,
        )
        yield Appearance(motion=0.5)

    tried: list[tuple[float, Appearance]] = []
    for appearance in candidates():
        screen = appearance_lip_sync(identity, appearance, size)
        if screen >= SCREEN_THRESHOLD:
            return appearance, screen
        tried.append((screen if not np.isnan(screen) else -np.inf, appearance))
    screen, appearance = max(tried, key=lambda pair: pair[0])
    return appearance, float(screen) if np.isfinite(screen) else float("nan")


def plan_corpus(config: SynthConfig, workers: int = 1) -> CorpusPlan:
    """The whole corpus, decided from ``config`` alone (casting the identities takes seconds to
    a minute per speaker: dlib measures each candidate face, in ``workers`` processes)."""
    rng = np.random.default_rng(config.seed)
    with Measurer(workers) as measurer:
        speakers, cast = plan_speakers(config, rng, measurer)
    plan = CorpusPlan(config, speakers, cast)
    PLANNERS[config.layout](plan, rng)
    return plan


def _pick_speaker(plan: CorpusPlan, split: str, rng: np.random.Generator) -> Speaker:
    """One of the speakers of ``split``, uniformly."""
    candidates = [s for s in plan.speakers if s.split == split]
    return candidates[int(rng.integers(len(candidates)))]


def _utterance_splits(plan: CorpusPlan, rng: np.random.Generator) -> list[str]:
    """Each utterance's split: quotas (``test_fraction`` test, half that val, the rest train),
    shuffled, so that even a corpus of a handful of clips has every split (independent draws
    left small corpora without a validation clip)."""
    return _assign_splits(plan.config.utterances, plan.config.test_fraction, rng)


def _plan_lrs2(plan: CorpusPlan, rng: np.random.Generator) -> None:
    config = plan.config
    sampler = SentenceSampler(config.vocabulary)
    next_id: Counter[str] = Counter()
    for split in _utterance_splits(plan, rng):
        speaker = _pick_speaker(plan, split, rng)
        if split == "train" and rng.random() < config.pretrain_fraction:
            split = "pretrain"  # longer, multi-sentence clips, as LRS2's pretrain set
        sentences = 1 if split != "pretrain" else int(rng.integers(2, 4))
        words = tuple(word for _ in range(sentences) for word in sampler.sentence(rng))
        group = speaker.groups[int(rng.integers(len(speaker.groups)))]
        next_id[group] += 1
        folder = "pretrain" if split == "pretrain" else "main"
        key = f"{folder}/{group}/{next_id[group]:05d}"
        plan.utterances.append(Utterance(key, split, speaker.index, words, seed=int(rng.integers(2**31))))
    _hold_out_seen(plan, rng)


def _hold_out_seen(plan: CorpusPlan, rng: np.random.Generator) -> None:
    """Move a few training speakers' clips (as many as a quarter of the test clips, at least one)
    to ``test_seen``: lip reading on faces seen in training, against ``test`` on unseen ones.

    Only clips of ``main/`` move, from speakers with another clip left in training."""
    wanted = max(1, round(sum(u.split == "test" for u in plan.utterances) / 4))
    per_speaker = Counter(u.speaker for u in plan.utterances if u.split in ("train", "pretrain"))
    candidates = [i for i, u in enumerate(plan.utterances) if u.split == "train"]
    for position in rng.permutation(len(candidates)):
        if wanted == 0:
            break
        index = candidates[int(position)]
        utterance = plan.utterances[index]
        if per_speaker[utterance.speaker] > 1:
            plan.utterances[index] = replace(utterance, split="test_seen")
            per_speaker[utterance.speaker] -= 1
            wanted -= 1


def _plan_lrw(plan: CorpusPlan, rng: np.random.Generator) -> None:
    config = plan.config
    vocabulary = news_words()
    targets = sorted(vocabulary[i] for i in rng.choice(len(vocabulary), size=config.words, replace=False))
    counts: Counter[tuple[str, str]] = Counter()
    for index, split in enumerate(_utterance_splits(plan, rng)):
        target = targets[index % len(targets)]  # balanced classes
        speaker = _pick_speaker(plan, split, rng)
        before = [vocabulary[i] for i in rng.integers(len(vocabulary), size=int(rng.integers(1, 3)))]
        after = [vocabulary[i] for i in rng.integers(len(vocabulary), size=int(rng.integers(1, 3)))]
        counts[(target, speaker.split)] += 1
        key = f"lipread_mp4/{target}/{speaker.split}/{target}_{counts[(target, speaker.split)]:05d}"
        plan.utterances.append(
            Utterance(
                key, speaker.split, speaker.index, (*before, target, *after), len(before), int(rng.integers(2**31))
            )
        )


def _plan_scenes(plan: CorpusPlan, rng: np.random.Generator) -> None:
    for scene in plan_scenes(plan, rng):
        words = tuple(word for turn in scene.turns for word in turn.words)
        plan.utterances.append(Utterance(scene.key, "scenes", scene.people[0], words, seed=scene.seed, scene=scene))


#: how each layout decides its utterances
PLANNERS: dict[str, Callable[[CorpusPlan, np.random.Generator], None]] = {
    "lrs2": _plan_lrs2,
    "lrw": _plan_lrw,
    "scenes": _plan_scenes,
}


# --- rendering (runs in worker processes) -----------------------------------------------------------


@dataclass(frozen=True)
class RenderedItem:
    key: str
    frames: int
    seconds: float


class UtteranceRenderer:
    """Per-process state: the speech synthesiser, and one face renderer per speaker, built when
    that speaker is first rendered (its rig is cached for the process too)."""

    def __init__(self, config: SynthConfig, speakers: list[Speaker]) -> None:
        from avsr.data.synth.tts import Synthesizer

        self.config = config
        self.speakers = speakers
        self.synthesizer = Synthesizer()
        self._faces: dict[int, TalkingFace] = {}

    def face(self, speaker: Speaker) -> TalkingFace:
        """The speaker's talking face (its identity's rig, framed at the corpus's frame size)."""
        from avsr.data.synth.identities import identity_rig

        if speaker.index not in self._faces:
            self._faces[speaker.index] = TalkingFace(self.config.frame_size, identity_rig(speaker.identity))
        return self._faces[speaker.index]

    def compose(self, utterance: Utterance) -> ComposedUtterance:
        """Speech, mouth track, frames and transcript of one utterance, in memory."""
        from avsr.data.synth.visemes import mouth_track

        speaker = self.speakers[utterance.speaker]
        rng = np.random.default_rng(utterance.seed)
        text = " ".join(spoken_form(word) for word in utterance.words)
        speech = self.synthesizer.speak(text, speaker.voice).resample(AUDIO_RATE)
        if self.config.layout == "lrs2":
            speech = speech.pad(before=float(rng.uniform(0.15, 0.4)), after=float(rng.uniform(0.15, 0.4)))
            first_frame = 0
            num_frames = int(np.ceil(speech.duration * VIDEO_FPS))
        else:
            # LRW: 29 frames with the target word's centre in the middle, context speech around it.
            half = LRW_FRAMES / VIDEO_FPS / 2
            target = speech.words[utterance.target]
            speech = speech.pad(before=max(0.0, half - (target.start + target.end) / 2) + 0.04, after=half + 0.04)
            target = speech.words[utterance.target]
            first_frame = int(round(((target.start + target.end) / 2 - half) * VIDEO_FPS))
            num_frames = LRW_FRAMES
        total_frames = first_frame + num_frames
        audio = np.zeros(total_frames * SAMPLES_PER_FRAME, np.float32)
        usable = min(len(audio), len(speech.audio))
        audio[:usable] = speech.audio[:usable]
        track = mouth_track(speech.phonemes, total_frames, VIDEO_FPS)[first_frame:]
        offset = first_frame / VIDEO_FPS
        if self.config.layout == "lrs2":
            transcript = lrs2_transcript(utterance.words, [(w.start - offset, w.end - offset) for w in speech.words])
        else:
            target = speech.words[utterance.target]
            transcript = lrw_transcript(utterance.words[utterance.target], target.end - target.start)
        return ComposedUtterance(
            frames=self.face(speaker).render(track, speaker.appearance, VIDEO_FPS, seed=utterance.seed),
            audio=audio[first_frame * SAMPLES_PER_FRAME :],
            track=track,
            transcript=transcript,
        )

    def render(self, utterance: Utterance, root: Path) -> RenderedItem:
        """Write ``<key>.mp4`` (H.264 + AAC 16 kHz) and then ``<key>.txt`` (a scene: its ``.json`` too)."""
        from avsr.media import write_mp4

        if utterance.scene is not None:
            frames = render_scene(self, utterance.scene, root)
            return RenderedItem(utterance.key, frames, frames / VIDEO_FPS)
        item = self.compose(utterance)
        crf = getattr(self.speakers[utterance.speaker].appearance, "crf", 18)  # some speakers' clips compressed harder
        write_mp4(
            root / f"{utterance.key}.mp4", item.frames, item.audio, fps=VIDEO_FPS, sample_rate=AUDIO_RATE, crf=crf
        )
        _write_text(root / f"{utterance.key}.txt", item.transcript)
        return RenderedItem(utterance.key, len(item.frames), len(item.frames) / VIDEO_FPS)


@dataclass
class ComposedUtterance:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    audio: np.ndarray  # (T * 640,) float32 at 16 kHz
    track: np.ndarray  # (T, 3) mouth pose per frame: open, spread, teeth
    transcript: str  # the .txt file's content


def lrs2_transcript(words: tuple[str, ...], times: list[tuple[float, float]]) -> str:
    """LRS2's .txt: ``Text:``, ``Conf:``, then one ``WORD START END ASDSCORE`` line per word."""
    lines = [f"Text:  {' '.join(words)}", "Conf:  4", "", "WORD START END ASDSCORE"]
    lines += [f"{word} {start:.2f} {end:.2f} 1.0" for word, (start, end) in zip(words, times)]
    return "\n".join(lines) + "\n"


def lrw_transcript(word: str, duration: float) -> str:
    """LRW's .txt: the word, a confidence, and the word's duration (centred in the clip)."""
    return f"Text: {word}\nConf: 4\nDuration: {duration:.2f} seconds\n"


def _write_text(path: Path, text: str) -> None:
    """Atomically; a failed write (disk full) is a one-line MediaError naming ``path``."""
    from avsr.media.atomic import atomic_path
    from avsr.media.errors import media_errors

    with media_errors(path, writing=True), atomic_path(path) as temp:
        Path(temp).write_text(text, encoding="utf-8")


# --- orchestration -----------------------------------------------------------------------------------


def is_done(root: Path, utterance: Utterance) -> bool:
    """The .txt is written after the .mp4, so its presence marks a finished item."""
    return (root / f"{utterance.key}.txt").is_file() and (root / f"{utterance.key}.mp4").is_file()


def write_metadata(root: Path, plan: CorpusPlan) -> None:
    """Split lists (lrs2), and ``synth_meta.json``: the config, the speakers and who said what."""
    if plan.config.layout == "lrs2":
        for split, keys in plan.split_lists().items():
            _write_text(root / f"{split}.txt", "".join(f"{key}\n" for key in keys))
    cast = plan.cast
    meta = {
        "config": asdict(plan.config),
        "speakers": [
            {
                "index": s.index,
                "split": s.split,
                "voice": asdict(s.voice),
                "appearance": asdict(s.appearance),
                "groups": list(s.groups),
                "identity": s.identity.recipe(),
                "lip_sync_screen": cast.lip_sync[s.index] if cast.lip_sync else None,
                "appearance_screen": None if np.isnan(s.appearance_screen) else round(s.appearance_screen, 4),
            }
            for s in plan.speakers
        ],
        "spare_identities": [identity.recipe() for identity in cast.identities[len(plan.speakers) :]],
        "identity_distinctness": cast.report(),
        "face_sources": [asdict(source) for source in plan.config.face_sources()],
        "utterances": [
            {
                "key": u.key,
                "split": u.split,
                "speaker": u.speaker,
                "identity": plan.speakers[u.speaker].identity.name,
                "text": " ".join(u.words),
                **({"people": list(u.scene.people)} if u.scene is not None else {}),
            }
            for u in plan.utterances
        ],
    }
    _write_text(root / META_FILE, json.dumps(meta, indent=1) + "\n")


def check_output_dir(root: Path, config: SynthConfig) -> None:
    """Refuse to mix two corpora in one directory; the same config resumes."""
    meta = root / META_FILE
    if meta.is_file():
        previous = json.loads(meta.read_text(encoding="utf-8"))["config"]
        # settings added since that corpus was made were at their defaults then
        if {**asdict(SynthConfig()), **previous} != asdict(config):
            raise ValueError(f"{root}: holds a corpus made with other settings; choose another directory")
    elif root.is_dir() and any(root.iterdir()):
        raise ValueError(f"{root}: exists and is not empty; choose another directory")


_worker: UtteranceRenderer | None = None


def _init_worker(config: SynthConfig, speakers: list[Speaker]) -> None:
    import cv2

    global _worker
    cv2.setNumThreads(1)
    _worker = UtteranceRenderer(config, speakers)


def _render_in_worker(job: tuple[Utterance, Path]) -> RenderedItem:
    assert _worker is not None
    return _worker.render(*job)


def generate(
    root: str | os.PathLike[str],
    config: SynthConfig,
    workers: int = 1,
    on_item: Callable[[RenderedItem], None] | None = None,
) -> CorpusPlan:
    """Write the corpus under ``root`` (resuming an interrupted run of the same config)."""
    root = Path(root)
    check_output_dir(root, config)
    plan = plan_corpus(config, workers)
    root.mkdir(parents=True, exist_ok=True)
    write_metadata(root, plan)
    todo = [u for u in plan.utterances if not is_done(root, u)]
    for item in _render_all(todo, plan, root, workers):
        if on_item is not None:
            on_item(item)
    return plan


def _render_all(todo: list[Utterance], plan: CorpusPlan, root: Path, workers: int) -> Iterator[RenderedItem]:
    from avsr.parallel import run_jobs

    jobs = [(utterance, root) for utterance in todo]
    yield from run_jobs(_render_in_worker, jobs, workers, _init_worker, (plan.config, plan.speakers))


def summarize(root: Path, plan: CorpusPlan) -> dict:
    """What the corpus holds: items and hours per split, speakers, vocabulary."""
    per_split: Counter[str] = Counter(u.split for u in plan.utterances)
    speakers_per_split: Counter[str] = Counter(s.split for s in plan.speakers)
    vocabulary = (
        {word for u in plan.utterances for word in u.words}
        if plan.config.layout != "lrw"
        else {u.words[u.target] for u in plan.utterances}
    )
    return {
        "root": str(root),
        "layout": plan.config.layout,
        "utterances": len(plan.utterances),
        "per_split": dict(sorted(per_split.items())),
        "speakers": dict(sorted(speakers_per_split.items())),
        "vocabulary": len(vocabulary),
        "frame_size": plan.config.frame_size,
        "frame_width": plan.config.frame_size * (plan.config.people_per_scene if plan.config.layout == "scenes" else 1),
    }


def total_duration(root: Path, plan: CorpusPlan) -> float:
    """Seconds of video written (read from the files' headers, so resumed items count too)."""
    from avsr.media import MediaError, probe

    seconds = 0.0
    for utterance in plan.utterances:
        try:
            seconds += probe(root / f"{utterance.key}.mp4").duration
        except MediaError:
            continue
    return seconds
