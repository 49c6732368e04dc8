"""Word timings: a CTC forced alignment (Viterbi) of a decoded token sequence to the encoder frames.

The best single CTC path that collapses to exactly the given tokens gives each token a run of
frames; the tokens are grouped into words by their text (a word starts at a token whose text
begins with a space), and a word spans its first token's first frame to its last token's last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

NEG_INF = float("-inf")


@dataclass(frozen=True)
class TokenSpan:
    token: int
    start: int  # first frame
    end: int  # one past the last frame
    score: float  # summed log-probability of the token over its frames


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float  # seconds
    end: float
    score: float  # mean per-frame log-probability of the word's tokens


class AlignmentError(ValueError):
    """The tokens cannot be aligned to the frames (too many for the frames, with repeats)."""


def forced_align(log_probs: Tensor, tokens: Sequence[int], blank_id: int = 0) -> list[TokenSpan]:
    """Viterbi alignment of ``tokens`` to ``log_probs`` (T, V) of one utterance.

    States are the CTC label sequence with blanks between and around the tokens (2L + 1 of them);
    a path may skip a blank between two different tokens. Raises :class:`AlignmentError` if no
    path fits (fewer frames than tokens plus the blanks that repeated tokens need).
    """
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must be (T, V), got shape {tuple(log_probs.shape)}")
    frames = log_probs.size(0)
    tokens = [int(t) for t in tokens]
    if not tokens:
        return []
    lp = log_probs.detach().float().cpu()
    labels = torch.full((2 * len(tokens) + 1,), blank_id, dtype=torch.long)
    labels[1::2] = torch.tensor(tokens, dtype=torch.long)
    states = labels.numel()
    # A skip from s-2 to s is allowed when s is a token that differs from the token at s-2.
    can_skip = torch.zeros(states, dtype=torch.bool)
    can_skip[3::2] = labels[3::2] != labels[1:-2:2]
    emit = lp[:, labels]  # (T, S)
    score = torch.full((states,), NEG_INF)
    score[0] = emit[0, 0]
    score[1] = emit[0, 1]
    back = torch.zeros(frames, states, dtype=torch.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, frames):
        stay = score
        step = torch.cat([torch.tensor([NEG_INF]), score[:-1]])
        skip = torch.cat([torch.tensor([NEG_INF, NEG_INF]), score[:-2]]).masked_fill(~can_skip, NEG_INF)
        options = torch.stack([stay, step, skip])  # (3, S)
        best, choice = options.max(dim=0)
        back[t] = choice.to(torch.int8)
        score = best + emit[t]
    final = score[-1] if states == 1 else torch.maximum(score[-1], score[-2])
    if not torch.isfinite(final):
        raise AlignmentError(f"{len(tokens)} tokens do not fit in {frames} frames")
    state = states - 1 if states == 1 or score[-1] >= score[-2] else states - 2
    path = [0] * frames
    for t in range(frames - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    spans: list[TokenSpan] = []
    for index in range(len(tokens)):
        where = [t for t, s in enumerate(path) if s == 2 * index + 1]
        start, end = where[0], where[-1] + 1
        spans.append(TokenSpan(tokens[index], start, end, float(emit[start:end, 2 * index + 1].sum())))
    return spans


def word_timings(
    spans: Sequence[TokenSpan], piece_text, frame_seconds: float = 0.04, offset: float = 0.0
) -> list[WordTiming]:
    """Group aligned tokens into words. ``piece_text(token) -> str`` is the tokenizer's
    :meth:`~avsr.data.tokenizers.base.Tokenizer.piece_text`; times are ``offset + frame * frame_seconds``."""
    words: list[WordTiming] = []
    text, first, last, scores, frames = "", None, None, 0.0, 0

    def close() -> None:
        if text.strip() and first is not None and last is not None:
            words.append(
                WordTiming(
                    text.strip(),
                    offset + first.start * frame_seconds,
                    offset + last.end * frame_seconds,
                    scores / max(frames, 1),
                )
            )

    for span in spans:
        piece = piece_text(span.token)
        if not piece:  # a token with no text (unknown): neither a letter nor a break
            continue
        if not piece.strip():  # a word break token
            close()
            text, first, last, scores, frames = "", None, None, 0.0, 0
            continue
        if piece[0].isspace() and text:
            close()
            text, first, last, scores, frames = "", None, None, 0.0, 0
        text += piece.strip() if not text else piece
        first = first or span
        last = span
        scores += span.score
        frames += span.end - span.start
    close()
    return words


__all__ = ["AlignmentError", "TokenSpan", "WordTiming", "forced_align", "word_timings"]
