"""Speech synthesis with timings (real espeak-ng from the espeakng-loader wheel) and mouth tracks."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from avsr.data.synth.tts import (
    SPEAKER_VOICES,
    PhonemeEvent,
    Speech,
    Synthesizer,
    Voice,
    list_variants,
    list_voices,
    strip_stress,
)
from avsr.data.synth.visemes import (
    OPEN,
    REST,
    SPREAD,
    TEETH,
    VISEMES,
    frame_count,
    mouth_track,
    viseme,
    viseme_class,
)
from repo_paths import REPO

SENTENCE = "Hello there, big papa bought seven apples."


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer()


@pytest.fixture(scope="module")
def speech(synth) -> Speech:
    return synth.speak(SENTENCE)


def _f0(audio: np.ndarray, rate: int) -> float:
    """Median pitch of the loud 40 ms frames (autocorrelation), Hz."""
    width, out = int(0.04 * rate), []
    for i in range(0, len(audio) - width, width // 2):
        x = audio[i : i + width].astype(np.float64)
        if np.sqrt(np.mean(x**2)) < 0.03:
            continue
        x -= x.mean()
        c = np.correlate(x, x, "full")[width - 1 :]
        lo, hi = int(rate / 400), int(rate / 60)
        k = lo + int(np.argmax(c[lo:hi]))
        if c[k] > 0.4 * c[0]:
            out.append(rate / k)
    return float(np.median(out))


# --- synthesis ------------------------------------------------------------------------------------


def test_audio_and_events_are_consistent(speech):
    assert speech.sample_rate == 22050
    assert speech.audio.dtype == np.float32 and speech.audio.ndim == 1
    assert 1.5 < speech.duration < 5.0
    assert np.abs(speech.audio).max() > 0.1
    ph = speech.phonemes
    assert len(ph) > 20
    for p in ph:
        assert 0.0 <= p.start <= p.end <= speech.duration + 1e-9
    # contiguous and increasing: a phoneme ends where the next starts
    for a, b in zip(ph, ph[1:]):
        assert a.start < b.start
        assert a.end == pytest.approx(b.start)
    words = speech.words
    for w in words:
        assert 0.0 <= w.start < w.end <= speech.duration
    for a, b in zip(words, words[1:]):
        assert a.end <= b.start + 1e-9


def test_words_are_the_texts_words_with_tight_spans(speech):
    assert [w.word for w in speech.words] == ["Hello", "there", "big", "papa", "bought", "seven", "apples"]
    for i, w in enumerate(speech.words):
        mine = [p for p in speech.phonemes if p.word_index == i]
        assert mine and not any(p.is_pause for p in mine)
        assert w.start == mine[0].start and w.end == mine[-1].end
    # the comma's pause lies between "there" and "big", outside both words
    there, big = speech.words[1], speech.words[2]
    pauses = [p for p in speech.phonemes if p.is_pause and there.end <= p.start < big.start]
    assert pauses and big.start - there.end > 0.1
    assert all(p.word_index == -1 for p in speech.phonemes if p.is_pause)


@pytest.mark.parametrize(
    "text, words",
    [
        ("BIN BLUE AT A TWO NOW", ["BIN", "BLUE", "AT", "A", "TWO", "NOW"]),  # "at a" is one dictionary entry
        ("they wind up for a while at a time", "they wind up for a while at a time".split()),
        (
            "In the year 1999, Dr. Smith's well-known idea!",
            ["In", "the", "year", "1999", "Dr", "Smith's", "well-known", "idea"],
        ),
        ("Café naïve ÉCOLE", ["Café", "naïve", "ÉCOLE"]),  # positions count characters, not bytes
    ],
)
def test_word_lists_survive_merges_numbers_and_unicode(synth, text, words):
    speech = synth.speak(text)
    assert [w.word for w in speech.words] == words
    assert all(w.end > w.start for w in speech.words)
    indices = [p.word_index for p in speech.phonemes if not p.is_pause]
    assert indices == sorted(indices) and set(indices) == set(range(len(words)))


def test_stop_closures_belong_to_the_stop(speech):
    """The silence before a p burst is part of the p, so the lips close for the whole of it."""
    papa = speech.words[3]
    ps = [p for p in speech.phonemes if strip_stress(p.phoneme) == "p" and papa.start <= p.start < papa.end]
    assert len(ps) == 2
    audio, rate = speech.audio, speech.sample_rate
    for p in ps:
        head = audio[int(p.start * rate) : int(p.start * rate) + int(0.02 * rate)]
        assert np.abs(head).max() < 1e-3  # the p starts with its silent closure
        assert p.end - p.start > 0.05


def test_same_text_and_voice_give_identical_samples(synth):
    voice = Voice("en-gb", "f3")
    first = synth.speak(SENTENCE, voice)
    synth.speak("Something else in between.", Voice("en-029", "m2", rate=200))
    second = synth.speak(SENTENCE, voice)
    assert np.array_equal(first.audio, second.audio)
    assert first.phonemes == second.phonemes and first.words == second.words
    assert np.array_equal(Synthesizer().speak(SENTENCE, voice).audio, first.audio)


def test_identical_samples_in_another_process(synth):
    code = (
        "import hashlib; from avsr.data.synth.tts import Synthesizer, Voice; "
        "a = Synthesizer().speak('Seven fish shops sell fresh food.', Voice('en-us', 'm1')).audio; "
        "print(hashlib.sha1(a.tobytes()).hexdigest())"
    )
    root = str(REPO)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    here = synth.speak("Seven fish shops sell fresh food.", Voice("en-us", "m1")).audio
    assert out.stdout.strip() == hashlib.sha1(here.tobytes()).hexdigest()


def test_voices_pitch_and_rate_change_the_speech(synth):
    text = "Please place the green box near the window soon."
    outputs = [synth.speak(text, v) for v in SPEAKER_VOICES[:6]]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            a, b = outputs[i].audio, outputs[j].audio
            assert len(a) != len(b) or not np.array_equal(a, b)
    male, female = synth.speak(text, Voice("en-us", "m1")), synth.speak(text, Voice("en-us", "f3"))
    assert _f0(female.audio, 22050) > 1.4 * _f0(male.audio, 22050)
    low, high = synth.speak(text, Voice(pitch=20)), synth.speak(text, Voice(pitch=80))
    assert _f0(high.audio, 22050) > 1.15 * _f0(low.audio, 22050)
    slow, fast = synth.speak(text, Voice(rate=120)), synth.speak(text, Voice(rate=200))
    assert fast.duration < 0.8 * slow.duration
    assert fast.words[-1].end < slow.words[-1].end
    assert [w.word for w in fast.words] == [w.word for w in slow.words]


def test_resample_to_16k_keeps_times(speech):
    out = speech.resample(16000)
    assert out.sample_rate == 16000 and out.audio.dtype == np.float32
    assert abs(len(out.audio) - round(speech.duration * 16000)) <= 1
    assert out.phonemes == speech.phonemes and out.words == speech.words
    assert np.abs(out.audio).max() <= 1.0
    assert speech.sample_rate == 22050  # the original is untouched


def test_pad_shifts_events(speech):
    out = speech.pad(0.5, 0.25)
    assert out.duration == pytest.approx(speech.duration + 0.75, abs=1e-4)
    assert out.words[0].start == pytest.approx(speech.words[0].start + 0.5, abs=1e-4)
    assert np.all(out.audio[: int(0.5 * 22050)] == 0)


@pytest.mark.parametrize("text", ["", "   \n", "?! ..."])
def test_empty_text_is_an_error(synth, text):
    with pytest.raises(ValueError) as e:
        synth.speak(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "voice",
    [Voice("xx-nowhere"), Voice("en-us", "nobody"), Voice("en-us+f3"), Voice(rate=20), Voice(pitch=101)],
)
def test_bad_voice_is_an_error(synth, voice):
    with pytest.raises(ValueError) as e:
        synth.speak("hello", voice)
    assert "\n" not in str(e.value)
    assert synth.speak("hello").words[0].word == "hello"  # still usable afterwards


def test_voice_lists():
    voices = list_voices()
    for name in ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp"):
        assert name in voices
    variants = set(list_variants())
    assert {f"f{i}" for i in range(1, 5)} | {f"m{i}" for i in range(1, 8)} <= variants
    assert len(set(SPEAKER_VOICES)) == len(SPEAKER_VOICES) >= 12
    for v in SPEAKER_VOICES:
        assert v.name in voices and v.variant in variants


def test_voice_names_espeak_itself_rejects_resolve(synth):
    """espeak_SetVoiceByName refuses "en-gb" (its file is gmw/en); Voice takes language codes."""
    a = synth.speak("hello", Voice("en-gb"))
    b = synth.speak("hello", Voice("gmw/en"))
    assert np.array_equal(a.audio, b.audio)


def test_synthesizer_is_not_picklable(synth):
    with pytest.raises(TypeError):
        pickle.dumps(synth)


def test_reused_engine_mode_works():
    s = Synthesizer(deterministic=False)
    a, b = s.speak(SENTENCE), s.speak(SENTENCE)
    assert [w.word for w in a.words] == [w.word for w in b.words]
    assert abs(a.duration - b.duration) < 0.05  # espeak's carried-over state jitters timings
    s.close()


# --- visemes --------------------------------------------------------------------------------------


def _frame_times(n: int, fps: float = 25.0) -> np.ndarray:
    return (np.arange(n) + 0.5) / fps


def test_papa_closes_at_the_ps_and_opens_at_the_as(synth):
    speech = synth.speak("papa")
    n = frame_count(speech.duration) + 5
    track = mouth_track(speech.phonemes, n)
    times = _frame_times(n)
    ps = [p for p in speech.phonemes if strip_stress(p.phoneme) == "p"]
    assert len(ps) == 2
    for p in ps:
        inside = (times >= p.start) & (times < p.end)
        if inside.any():
            assert track[inside, OPEN].max() < 0.1
        nearest = int(np.argmin(np.abs(times - (p.start + p.end) / 2)))
        assert track[nearest, OPEN] < 0.1
    a = next(p for p in speech.phonemes if strip_stress(p.phoneme) == "A:")
    inside = (times >= a.start) & (times < a.end)
    assert track[inside, OPEN].max() > 0.8
    assert track[-1, OPEN] == pytest.approx(REST.open, abs=1e-3)  # rest after speech


def test_track_shape_ranges_and_rest(speech):
    n = frame_count(speech.duration + 0.6)
    lead_in = 0.4
    shifted = speech.pad(lead_in, 0.2)
    track = mouth_track(shifted.phonemes, n)
    assert track.shape == (n, 3) and track.dtype == np.float32
    assert track[:, OPEN].min() >= 0 and track[:, OPEN].max() <= 1
    assert track[:, SPREAD].min() >= -1 and track[:, SPREAD].max() <= 1
    assert track[:, TEETH].min() >= 0 and track[:, TEETH].max() <= 1
    assert np.allclose(track[:5], np.asarray(REST), atol=1e-3)  # silence before speech
    assert track[:, OPEN].max() > 0.7 and track[:, SPREAD].min() < -0.3 and track[:, TEETH].max() > 0.8
    assert mouth_track(shifted.phonemes, 0).shape == (0, 3)
    assert np.allclose(mouth_track([], 7), np.asarray(REST))


def test_rounding_spreading_and_teeth(synth):
    def column_at(text, phoneme, column):
        speech = synth.speak(text)
        n = frame_count(speech.duration)
        track, times = mouth_track(speech.phonemes, n), _frame_times(n)
        p = max((p for p in speech.phonemes if strip_stress(p.phoneme) == phoneme), key=lambda p: p.end - p.start)
        return track[int(np.argmin(np.abs(times - (p.start + p.end) / 2))), column]

    assert column_at("who", "u:", SPREAD) < -0.5
    assert column_at("we see", "i:", SPREAD) > 0.4
    assert column_at("five", "f", TEETH) > 0.7
    assert column_at("five", "f", OPEN) < 0.15


def test_glides_and_lead():
    ph = [PhonemeEvent("aU", 0.2, 0.6, 0)]
    track = mouth_track(ph, 20, smoothing=0.0)
    times = _frame_times(20)
    inside = np.flatnonzero((times > 0.2) & (times < 0.6))
    assert track[inside[0], SPREAD] > track[inside[-1], SPREAD]  # aU rounds as it goes
    early = mouth_track(ph, 20, lead=0.08)
    assert early[5, OPEN] > mouth_track(ph, 20)[5, OPEN]  # lips move before the sound


def test_every_english_phoneme_has_a_shape(synth):
    text = (
        "The thin thing measured the vision of the beige garage at the pleasure of the church judge. "
        "Why do you sing? Yes, wet hats, red roads, cheap jeans, fur purr, our hour, boy toy, hair, "
        "ear, poor tour, cure, first verbatim contrast, certain optional preamble."
    )
    seen = set()
    for name in ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp"):
        seen |= {strip_stress(p.phoneme) for p in synth.speak(text, Voice(name)).phonemes}
    missing = sorted(p for p in seen if p not in VISEMES)
    assert not missing
    assert len(seen) > 40


def test_shape_table_is_sane():
    for phoneme in ("p", "b", "m"):
        assert viseme(phoneme).open == 0.0 and viseme_class(phoneme) == "bilabial"
    assert viseme("_").open == pytest.approx(0.05)
    assert viseme("f").teeth == 1.0 and viseme("v").teeth == 1.0
    assert viseme("u:").spread == -1.0 and viseme("w").spread == -1.0
    assert viseme("i:").spread > 0.5
    vowels = [viseme(p).open for p, (cls, _) in VISEMES.items() if cls == "vowel"]
    consonants = [viseme(p).open for p, (cls, _) in VISEMES.items() if cls not in ("vowel", "pause")]
    assert np.mean(vowels) > np.mean(consonants)
    assert max(vowels) == viseme("A:").open >= viseme("a").open > viseme("@").open
    assert viseme("'oU") == viseme("oU")  # stress marks ignored
    assert viseme_class("xyz") == "consonant" and viseme_class("ø") in ("vowel", "consonant")
    assert viseme_class("E3") == "vowel"  # unknown allophone of a known vowel


def _speak_in_worker(text: str) -> bytes:
    return Synthesizer().speak(text, SPEAKER_VOICES[1]).audio.tobytes()


def test_one_synthesizer_per_worker_process(synth):
    import multiprocessing

    texts = ["BIN BLUE AT F TWO NOW", "SET RED BY A NINE PLEASE"]
    with multiprocessing.get_context().Pool(2) as pool:
        results = pool.map(_speak_in_worker, texts)
    for text, audio in zip(texts, results):
        assert audio == synth.speak(text, SPEAKER_VOICES[1]).audio.tobytes()
