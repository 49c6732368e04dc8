"""CTC forced alignment against an exhaustive search, and word timings from aligned tokens."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from avsr.data.tokenizers.char import seed_char_tokenizer
from avsr.decoding.alignment import AlignmentError, TokenSpan, forced_align, word_timings


def _collapse(path: tuple[int, ...], blank: int) -> list[int]:
    out, prev = [], None
    for p in path:
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return out


@pytest.mark.parametrize("tokens", [[1, 2], [2, 2], [1, 2, 1], [3]])
def test_forced_alignment_is_the_best_path(tokens):
    torch.manual_seed(len(tokens) * 7 + tokens[0])
    frames, vocab = 6, 4
    log_probs = torch.log_softmax(torch.randn(frames, vocab), dim=-1)
    best_score, best_path = float("-inf"), None
    for path in itertools.product(range(vocab), repeat=frames):  # every path of 6 frames
        if _collapse(path, 0) == tokens:
            score = float(sum(log_probs[t, p] for t, p in enumerate(path)))
            if score > best_score:
                best_score, best_path = score, path
    spans = forced_align(log_probs, tokens, blank_id=0)
    assert [s.token for s in spans] == tokens
    # The spans rebuild exactly the best path: tokens inside them, blanks elsewhere.
    rebuilt = [0] * frames
    for s in spans:
        assert 0 <= s.start < s.end <= frames
        rebuilt[s.start : s.end] = [s.token] * (s.end - s.start)
    assert tuple(rebuilt) == best_path
    assert sum(s.score for s in spans) + sum(
        float(log_probs[t, 0]) for t in range(frames) if rebuilt[t] == 0
    ) == pytest.approx(best_score, abs=1e-5)


def test_alignment_that_cannot_fit():
    log_probs = torch.log_softmax(torch.randn(2, 4), dim=-1)
    with pytest.raises(AlignmentError, match="do not fit"):
        forced_align(log_probs, [1, 1], blank_id=0)  # a repeat needs a blank between: 3 frames
    assert forced_align(log_probs, [], blank_id=0) == []


def test_word_timings_group_tokens_at_spaces():
    tok = seed_char_tokenizer()
    ids = tok.encode("HI YOU")
    space = ids[2]
    spans = [TokenSpan(t, 2 * i, 2 * i + 1, -0.5) for i, t in enumerate(ids)]
    words = word_timings(spans, tok.piece_text, frame_seconds=0.04, offset=10.0)
    assert [w.word for w in words] == ["HI", "YOU"]
    assert words[0].start == pytest.approx(10.0) and words[0].end == pytest.approx(10.0 + 3 * 0.04)
    assert words[1].start == pytest.approx(10.0 + 6 * 0.04) and words[1].end == pytest.approx(10.0 + 11 * 0.04)
    assert words[0].score == pytest.approx(-0.5)
    assert tok.piece_text(space) == " " and tok.piece_text(0) == ""


# ---------------------------------------------------------------------------------------- segments
from avsr.decoding.segment import Segment, SegmentConfig, find_pauses, plan_segments  # noqa: E402


def _speech_with_pauses(seconds_of_speech: list[float], pause: float) -> tuple[np.ndarray, list[float]]:
    rng = np.random.default_rng(0)
    parts, pause_centres, t = [], [], 0.0
    for i, s in enumerate(seconds_of_speech):
        parts.append(0.3 * rng.standard_normal(int(s * 16000)).astype(np.float32))
        t += s
        if i < len(seconds_of_speech) - 1:
            parts.append(0.001 * rng.standard_normal(int(pause * 16000)).astype(np.float32))
            pause_centres.append(t + pause / 2)
            t += pause
    return np.concatenate(parts), pause_centres


def test_long_audio_is_cut_inside_pauses():
    audio, centres = _speech_with_pauses([7.0, 6.0, 8.0, 5.0], pause=0.6)
    frames = len(audio) // 640
    config = SegmentConfig(max_seconds=12.0)
    assert len(find_pauses(audio, config)) == 3
    segments = plan_segments(frames, audio, config)
    assert all(s.end - s.start <= 300 for s in segments)
    assert segments[0].start == 0 and segments[-1].end == frames
    for a, b in zip(segments, segments[1:]):
        assert a.end == b.start == a.keep_end == b.keep_start  # no overlap needed
        assert min(abs(a.end / 25 - c) for c in centres) < 0.3  # the cut is in a pause


def test_pieces_between_pauses_are_joined_up_to_the_target_length():
    audio, centres = _speech_with_pauses([2.0, 2.0, 2.0, 2.0], pause=0.6)  # four 2 s sentences, 9.8 s
    frames = len(audio) // 640
    pairs = plan_segments(frames, audio, SegmentConfig(target_seconds=5.0))
    assert len(pairs) == 2  # two sentences each: 4.9 s
    assert abs(pairs[0].end / 25 - centres[1]) < 0.3
    singles = plan_segments(frames, audio, SegmentConfig(target_seconds=3.0))
    assert len(singles) == 4
    for segment, centre in zip(singles, centres):
        assert abs(segment.end / 25 - centre) < 0.3
    assert plan_segments(frames, audio, SegmentConfig(target_seconds=10.0)) == [Segment(0, frames, 0, frames)]


def test_without_pauses_windows_overlap_and_ownership_tiles_the_input():
    frames = 1000  # 40 s, no audio to find pauses in (lip reading)
    segments = plan_segments(frames, None, SegmentConfig(max_seconds=12.0, overlap_seconds=1.0))
    assert all(s.end - s.start <= 300 for s in segments)
    owned = [f for s in segments for f in range(s.keep_start, s.keep_end)]
    assert owned == list(range(frames))
    for a, b in zip(segments, segments[1:]):
        assert a.end - b.start == 25  # one second of overlap
        assert b.start < a.keep_end < a.end
    assert plan_segments(100, None, SegmentConfig()) == [Segment(0, 100, 0, 100)]  # short: one piece
