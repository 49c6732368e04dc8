"""Batched hybrid CTC/attention beam search.

All hypotheses of all utterances form one flat batch of B x beam rows, so every step is one
decoder call and one vectorised CTC prefix scoring for the whole batch. The score of a
hypothesis is (1 - ctc_weight) * attention log-prob + ctc_weight * CTC prefix log-prob +
length_bonus * length; with ``length_normalisation`` p > 0, ended hypotheses are ranked by that
score / (tokens + 1) ** p, fairseq's ``lenpen`` (AV-HuBERT decodes with p = 1); candidates are pre-selected by the attention scores (ESPnet's "pre-beam")
unless the search is CTC-only. Hypotheses that choose <eos> leave the beam for the ended list; an
utterance stops when no live hypothesis is left, when the best ended one can no longer be beaten
(ESPnet's end detection when a length bonus makes scores non-monotone; under length normalisation,
when even the longest output allowed could not lift a live hypothesis above it), or at `max_length`.
A model without a CTC head (``ctc_log_probs=None``) is searched on its attention scores alone.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from avsr.decoding.ctc import CTCPrefixScorer

NEG_INF = float("-inf")


class StepDecoder(Protocol):
    """An attention decoder driven one token at a time over the flat hypothesis batch."""

    def start(self, rows: Tensor) -> None:
        """Begin decoding; ``rows`` (N,) says which utterance each hypothesis row attends to."""

    def step(self, tokens: Tensor) -> Tensor:
        """Log-probs (N, V) of the next token given the previous tokens (N,) of each row."""

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` (in that order) for the next step."""


@dataclass(frozen=True)
class BeamSearchConfig:
    beam: int = 5
    ctc_weight: float = 0.1
    length_bonus: float = 0.0  # added per output token (ESPnet's "penalty"); > 0 favours longer outputs
    max_length: int | None = None  # tokens; None: the number of encoder frames
    pre_beam_ratio: float = 1.5
    length_normalisation: float = 0.0  # fairseq's lenpen: ended scores / (tokens + 1) ** this; 0: raw scores

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ValueError("beam must be at least 1")
        if self.length_normalisation < 0:
            raise ValueError("length_normalisation must be at least 0")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError("ctc_weight must be in [0, 1]")


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float
    """The search's score; for an ended hypothesis under length normalisation, the normalised one."""
    ctc_score: float = 0.0
    attention_score: float = 0.0


END_DETECT_LENGTHS = 3
END_DETECT_MARGIN = math.log(1e-10)


def _end_detected(ended: list[Hypothesis], length: int) -> bool:
    """ESPnet's end detection: for each of the last few output lengths, the best hypothesis that
    ended at that length is far below the best ended overall."""
    if not ended:
        return False
    best = max(h.score for h in ended)
    hopeless = 0
    for back in range(END_DETECT_LENGTHS):
        at_length = [h.score for h in ended if len(h.tokens) == length - back]
        if at_length and max(at_length) - best < END_DETECT_MARGIN:
            hopeless += 1
    return hopeless == END_DETECT_LENGTHS


def _emit_mask(vocab: int, blank_id: int, device: torch.device) -> Tensor:
    emit = torch.ones(vocab, dtype=torch.bool, device=device)
    emit[blank_id] = False  # the blank is CTC's, never an output token
    return emit


def beam_search(
    ctc_log_probs: Tensor | None,
    lengths: Tensor,
    decoder: StepDecoder | None,
    config: BeamSearchConfig,
    blank_id: int,
    eos_id: int,
) -> list[list[Hypothesis]]:
    """N-best lists (best first, at most ``beam`` each) for a batch of B utterances.

    ``ctc_log_probs`` (B, T, V) and ``lengths`` (B,) come from the encoder; ``decoder`` may be None
    only for a CTC-only search (``ctc_weight == 1``). ``ctc_log_probs=None`` (a model without a
    CTC head): attention-only search, ``config.ctc_weight`` is ignored; ``blank_id`` is then
    just an id that is never emitted (e.g. the padding symbol).
    """
    if ctc_log_probs is None:
        if decoder is None:
            raise ValueError("an attention decoder is needed when there are no CTC scores")
    elif decoder is None and config.ctc_weight < 1.0:
        raise ValueError("an attention decoder is needed unless ctc_weight is 1")
    device = ctc_log_probs.device if ctc_log_probs is not None else lengths.device
    batch = lengths.size(0)
    beam = config.beam
    rows = torch.arange(batch, device=device).repeat_interleave(beam)  # utterance of each row
    scorer = ctc_state = None
    if ctc_log_probs is not None:
        scorer = CTCPrefixScorer(ctc_log_probs, lengths, blank_id, eos_id)
        ctc_state = scorer.initial_state(rows)
    # Only the first row of each utterance is alive at the start (all rows share the empty prefix).
    scores = torch.full((batch * beam,), NEG_INF, device=device)
    scores[::beam] = 0.0
    ctc_totals = torch.zeros(batch * beam, device=device)
    att_totals = torch.zeros(batch * beam, device=device)
    tokens: list[list[int]] = [[] for _ in range(batch * beam)]
    last = torch.full((batch * beam,), eos_id, dtype=torch.long, device=device)  # <sos> = <eos>
    ended: list[list[Hypothesis]] = [[] for _ in range(batch)]
    unfinished: list[Hypothesis | None] = [None] * batch  # best live hypothesis while none has ended
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    # Each utterance's own limit (its frames, or config.max_length if smaller), so that a batch
    # decodes every utterance exactly as it would be decoded alone.
    limits = lengths.to(device=device, dtype=torch.long).clamp(min=1)
    if config.max_length:
        limits = limits.clamp(max=config.max_length)
    max_length = int(limits.max())
    weight = config.ctc_weight if scorer is not None else 0.0
    if decoder is not None:
        decoder.start(rows)
    emit: Tensor | None = None

    for step in range(max_length + 1):
        if decoder is not None and weight < 1.0:
            att = decoder.step(last).float()  # (N, V)
            if emit is None:
                emit = _emit_mask(att.size(1), blank_id, device)
            vocab = att.size(1)
            pre_beam = min(vocab - 1, max(beam, int(config.pre_beam_ratio * beam)))
            candidates = att.masked_fill(~emit, NEG_INF).topk(pre_beam, dim=-1).indices
        else:
            if decoder is not None:
                decoder.step(last)  # keep its state in step even when its scores are unused
            assert ctc_log_probs is not None
            vocab = ctc_log_probs.size(-1)
            if emit is None:
                emit = _emit_mask(vocab, blank_id, device)
            att = torch.zeros(len(last), vocab, device=device)
            candidates = torch.arange(vocab, device=device)[emit].expand(len(last), -1)
        forced = limits[rows] == step  # out of room: these rows' hypotheses must end here
        if bool(forced.any()):
            candidates = candidates.masked_fill(forced[:, None], eos_id)
        if scorer is not None:
            assert ctc_state is not None
            ctc_scores, r_nonblank, r_blank = scorer.score(ctc_state, rows, candidates, prefix_length=step)
            ctc_increment = ctc_scores - ctc_state.score[:, None]
        else:
            ctc_increment = torch.zeros(candidates.shape, device=device)
        att_increment = torch.gather(att, 1, candidates)
        total = (
            scores[:, None]
            + (1.0 - weight) * att_increment
            + weight * ctc_increment
            + config.length_bonus
        )
        total = total.masked_fill(done[rows][:, None], NEG_INF)
        if bool(forced.any()):  # one <eos> per forced row, not one per candidate column
            total[:, 1:] = total[:, 1:].masked_fill(forced[:, None], NEG_INF)
        per_utterance = total.view(batch, -1)  # (B, beam * K)
        width = candidates.shape[1]
        best_scores, best_flat = per_utterance.topk(beam, dim=-1)
        chosen_rows = (best_flat // width) + torch.arange(batch, device=device)[:, None] * beam  # (B, k)
        chosen_cols = best_flat % width
        chosen_tokens = candidates[chosen_rows, chosen_cols]

        # beam * width >= beam, so every utterance gets exactly `beam` rows (dead ones at -inf).
        flat_rows, flat_cols, flat_tokens = chosen_rows.flatten(), chosen_cols.flatten(), chosen_tokens.flatten()
        flat_scores = best_scores.flatten()
        new_ctc = ctc_totals[flat_rows] + ctc_increment[flat_rows, flat_cols]
        new_att = att_totals[flat_rows] + att_increment[flat_rows, flat_cols]

        # Hypotheses that chose <eos> end here; their rows go dead.
        is_end = (flat_tokens == eos_id) & torch.isfinite(flat_scores)
        for row in torch.nonzero(is_end).flatten().tolist():
            utterance = row // beam
            ended_tokens = list(tokens[int(flat_rows[row])])
            score = float(flat_scores[row]) / (len(ended_tokens) + 1) ** config.length_normalisation
            ended[utterance].append(Hypothesis(ended_tokens, score, float(new_ctc[row]), float(new_att[row])))
        flat_scores = flat_scores.masked_fill(is_end, NEG_INF)

        tokens = [tokens[int(r)] + [int(t)] for r, t in zip(flat_rows.tolist(), flat_tokens.tolist())]
        if scorer is not None:
            ctc_state = scorer.advance(ctc_state, flat_rows, flat_cols, flat_tokens, ctc_scores, r_nonblank, r_blank)
        scores, ctc_totals, att_totals, last = flat_scores, new_ctc, new_att, flat_tokens
        if decoder is not None:
            decoder.reorder(flat_rows)

        live_best, live_arg = scores.view(batch, beam).max(dim=-1)
        for utterance in range(batch):
            if done[utterance]:
                continue
            if not ended[utterance] and torch.isfinite(live_best[utterance]):
                row = utterance * beam + int(live_arg[utterance])
                unfinished[utterance] = Hypothesis(list(tokens[row]), float(scores[row]), float(ctc_totals[row]), float(att_totals[row]))
            finished = ended[utterance]
            best_ended = max((h.score for h in finished), default=NEG_INF)
            no_live = not torch.isfinite(live_best[utterance])
            # Without a length bonus raw scores only fall, so a live hypothesis below the best ended
            # one can never overtake it; normalised, the most it can reach is its raw score spread
            # over the longest output allowed. With a bonus, ESPnet's end detection decides.
            if config.length_bonus > 0:
                beaten = _end_detected(finished, step + 1)
            else:
                longest = float(limits[utterance]) + 1.0
                reachable = float(live_best[utterance]) / longest**config.length_normalisation
                beaten = reachable < best_ended
            if no_live or beaten:
                done[utterance] = True
        if bool(done.all()):
            break

    # An utterance whose every hypothesis died before <eos> could be scored (e.g. a prefix CTC cannot
    # fit in the frames) returns its longest-lived best hypothesis rather than nothing.
    return [
        sorted(hyps, key=lambda h: h.score, reverse=True)[:beam] if hyps else [h for h in (fallback,) if h is not None]
        for hyps, fallback in zip(ended, unfinished)
    ]
