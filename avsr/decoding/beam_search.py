"""Batched hybrid CTC/attention beam search.

All hypotheses of all utterances form one flat batch of B x beam rows, so every step is one
decoder call and one vectorised CTC prefix scoring for the whole batch. The score of a
hypothesis is (1 - ctc_weight) * attention log-prob + ctc_weight * CTC prefix log-prob +
length_bonus * length (+ lm_weight * a language model's log-prob, shallow fusion, when a ``lm``
is given); with ``length_normalisation`` p > 0, ended hypotheses are ranked by that
score / (tokens + 1) ** p, fairseq's ``lenpen`` (AV-HuBERT decodes with p = 1). Candidates are
pre-selected by the attention scores (ESPnet's "pre-beam") unless the search is CTC-only.
Hypotheses that choose <eos> leave the beam for the ended list. A model without a CTC head
(``ctc_log_probs=None``) is searched on its attention scores alone.

Two semantics (``BeamSearchConfig.semantics``, rules in ``SEMANTICS``):

- ``exact`` (our models' default): <eos> is a candidate when the pre-beam holds it; a hypothesis
  that reaches the maximum length is given a scored <eos>; an utterance stops when no live
  hypothesis could still beat the best ended one, whatever it adds (a bound: the best hypothesis
  is the one running to the maximum length would find).
- ``espnet``: what ESPnet's BatchBeamSearch (auto_avsr's decoder) does, so a converted auto_avsr
  model gives auto_avsr's n-best: the CTC prefix scorer always scores <eos>, the pre-beam is the
  decoder's top int(1.5 x beam) over the whole vocabulary (the blank included, then never chosen),
  hypotheses still live at the maximum length end there unscored, and an utterance stops by
  ESPnet's end detection (the best hypotheses that ended 2, 3 and 4 tokens ago are all e^-10 below
  the best ended) when the maximum length is the encoder frames (ESPnet's maxlenratio = 0; a
  ``max_length`` is its maxlenratio < 0, which turns end detection off). Checked against
  auto_avsr's own search by tests/avsr/decoding/test_search_parity.py. Not reproduced, on purpose: ESPnet's
  -1e10 for "impossible" (we use -inf, so such hypotheses die instead of trailing the n-best), a
  maximum length above the encoder frames (clamped to them), and the blank as an output token of
  a search without CTC (never emitted here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import torch
from torch import Tensor

from avsr.decoding.ctc import CTCPrefixScorer

NEG_INF = float("-inf")

Semantics = Literal["exact", "espnet"]
SEMANTICS_NAMES: tuple[str, ...] = get_args(Semantics)


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
    semantics: Semantics = "exact"  # see the module docstring
    lm_weight: float = 0.0  # shallow fusion: this times the language model's log-prob (with beam_search's lm)

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ValueError("beam must be at least 1")
        if self.length_normalisation < 0:
            raise ValueError("length_normalisation must be at least 0")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError("ctc_weight must be in [0, 1]")
        if self.lm_weight < 0:
            raise ValueError("lm_weight must be at least 0")
        if self.semantics not in SEMANTICS_NAMES:
            raise ValueError(f"search semantics must be one of {', '.join(SEMANTICS_NAMES)}, got {self.semantics!r}")


#: The settings a model folder may recommend for its search (model.yaml ``extra.decoding``; other
#: keys there are notes), with their types and the values used when neither the user nor the model
#: chooses (avsr-decode, avsr-bench).
SEARCH_DEFAULTS: dict[str, Any] = {"beam": 10, "ctc_weight": 0.3, "length_normalisation": 0.0, "semantics": "exact"}
_SETTING_TYPES: dict[str, tuple[type, str]] = {
    "beam": (int, "an integer"),
    "ctc_weight": (float, "a number"),
    "length_normalisation": (float, "a number"),
    "semantics": (str, "a string"),
}


def recommended_settings(recorded: Any) -> dict[str, Any]:
    """The search settings of ``SEARCH_DEFAULTS`` that a model's ``decoding`` mapping records,
    checked (ValueError, one line, for a value of the wrong type or out of range)."""
    if not isinstance(recorded, Mapping):
        return {}
    settings = {}
    for name, (kind, described) in _SETTING_TYPES.items():
        if name not in recorded:
            continue
        value = recorded[name]
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
            raise ValueError(f"decoding.{name} must be {described}, got {value!r}")
        settings[name] = kind(value)
    BeamSearchConfig(**settings)  # ranges
    return settings


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float
    """The search's score; for an ended hypothesis under length normalisation, the normalised one."""
    ctc_score: float = 0.0
    attention_score: float = 0.0


# ----------------------------------------------------------------------------------- stopping
END_DETECT_BACK = (2, 3, 4)  # ESPnet's lengths i, i-1, i-2 of yseq, which counts <sos> and <eos>
END_DETECT_MARGIN = -10.0  # ESPnet's D_end = log(1 * exp(-10))


def _bound_stop(ended: list[Hypothesis], live_best: float, step: int, limit: int, config: BeamSearchConfig) -> bool:
    """Exact: even the best live hypothesis cannot overtake the best ended one. Attention and CTC
    increments are log-probs (<= 0), so after step ``step`` (live hypotheses hold step + 1 tokens)
    the most it can gain is the length bonus of the limit - step tokens still to come (<eos>
    included); normalised, that is divided by the (tokens + 1) ** p that helps it most."""
    if not ended:
        return False
    raw = live_best + config.length_bonus * (limit - step)
    if config.length_normalisation > 0:
        tokens = limit if raw < 0 else step + 1
        raw /= (tokens + 1) ** config.length_normalisation
    return raw < max(h.score for h in ended)


def _espnet_end_detect(
    ended: list[Hypothesis], live_best: float, step: int, limit: int, config: BeamSearchConfig
) -> bool:
    """ESPnet's end detection (Watanabe et al. 2017, eq. 50) after loop index ``step``: for each of
    the hypotheses that ended 2, 3 and 4 tokens ago, the best is e^-10 below the best ended. Only
    with the default maximum length (ESPnet's maxlenratio = 0)."""
    if config.max_length is not None or not ended:
        return False
    best = max(h.score for h in ended)
    for back in END_DETECT_BACK:
        at_length = [h.score for h in ended if len(h.tokens) == step - back]
        if not at_length or max(at_length) - best >= END_DETECT_MARGIN:
            return False
    return True


StopRule = Callable[[list[Hypothesis], float, int, int, BeamSearchConfig], bool]


@dataclass(frozen=True)
class SearchRules:
    """What a semantics decides (the module docstring says why each one differs)."""

    always_offer_eos: bool  # <eos> is a candidate of every hypothesis, pre-beam or not
    pre_beam_over_blank: bool  # the pre-beam ranks the whole vocabulary, the blank included
    score_final_eos: bool  # at the maximum length, the <eos> is scored (else appended unscored)
    stop: StopRule


SEMANTICS: dict[str, SearchRules] = {
    "exact": SearchRules(always_offer_eos=False, pre_beam_over_blank=False, score_final_eos=True, stop=_bound_stop),
    "espnet": SearchRules(
        always_offer_eos=True, pre_beam_over_blank=True, score_final_eos=False, stop=_espnet_end_detect
    ),
}


# --------------------------------------------------------------------------------- candidates
def _pre_beam_size(config: BeamSearchConfig, rules: SearchRules, vocab: int, ctc_scored: bool) -> int | None:
    """How many attention-best tokens each hypothesis offers; None: the whole vocabulary."""
    if rules.pre_beam_over_blank:  # ESPnet: int(ratio * beam), only when CTC is scored and it is below the vocabulary
        size = int(config.pre_beam_ratio * config.beam)
        return size if ctc_scored and size < vocab else None
    return min(vocab - 1, max(config.beam, int(config.pre_beam_ratio * config.beam)))


def _candidates(
    att: Tensor | None,
    vocab: int,
    config: BeamSearchConfig,
    rules: SearchRules,
    blank_id: int,
    eos_id: int,
    ctc_scored: bool,
    rows: int,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """(candidate token ids (N, K), usable (N, K)) of every hypothesis row: the attention pre-beam
    (plus <eos> when the rules offer it and CTC scores it), or every emittable token when ``att``
    is None (CTC-only) or there is no pre-beam. The blank and a repeated <eos> are never usable."""
    size = _pre_beam_size(config, rules, vocab, ctc_scored) if att is not None else None
    if size is None:
        tokens = torch.arange(vocab, device=device)
        tokens = tokens[tokens != blank_id].expand(rows, -1)
        return tokens, torch.ones(tokens.shape, dtype=torch.bool, device=device)
    assert att is not None
    ranked = att if rules.pre_beam_over_blank else att.index_fill(1, torch.tensor([blank_id], device=device), NEG_INF)
    tokens = ranked.topk(size, dim=-1).indices
    usable = tokens != blank_id
    if rules.always_offer_eos and ctc_scored:  # ESPnet's CTC prefix scorer always scores <eos>
        eos = torch.full((rows, 1), eos_id, dtype=tokens.dtype, device=device)
        usable = torch.cat([usable, ~(tokens == eos_id).any(dim=1, keepdim=True)], dim=1)
        tokens = torch.cat([tokens, eos], dim=1)
    return tokens, usable


# ------------------------------------------------------------------------------------- search
def beam_search(
    ctc_log_probs: Tensor | None,
    lengths: Tensor,
    decoder: StepDecoder | None,
    config: BeamSearchConfig,
    blank_id: int,
    eos_id: int,
    lm: StepDecoder | None = None,
) -> list[list[Hypothesis]]:
    """N-best lists (best first, at most ``beam`` each) for a batch of B utterances.

    ``ctc_log_probs`` (B, T, V) and ``lengths`` (B,) come from the encoder; ``decoder`` may be None
    only for a CTC-only search (``ctc_weight == 1``). ``ctc_log_probs=None`` (a model without a
    CTC head): attention-only search, ``config.ctc_weight`` is ignored; ``blank_id`` is then
    just an id that is never emitted (e.g. the padding symbol). ``lm``: a token language model
    over the same ids (`avsr.decoding.lm_decoder.LMStepDecoder`), fused with ``config.lm_weight``
    on the candidates the pre-beam (attention scores) offers; weight 0 leaves it unused.
    """
    if ctc_log_probs is None:
        if decoder is None:
            raise ValueError("an attention decoder is needed when there are no CTC scores")
    elif decoder is None and config.ctc_weight < 1.0:
        raise ValueError("an attention decoder is needed unless ctc_weight is 1")
    rules = SEMANTICS[config.semantics]
    device = ctc_log_probs.device if ctc_log_probs is not None else lengths.device
    batch = lengths.size(0)
    beam = config.beam
    rows = torch.arange(batch, device=device).repeat_interleave(beam)  # utterance of each row
    weight = config.ctc_weight if ctc_log_probs is not None else 0.0
    scorer = ctc_state = None
    if weight > 0:  # a zero weight: the CTC scores are not needed (and 0 x -inf would be NaN)
        assert ctc_log_probs is not None
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
    if decoder is not None:
        decoder.start(rows)
    if config.lm_weight == 0:
        lm = None
    if lm is not None:
        lm.start(rows)
    vocab = ctc_log_probs.size(-1) if ctc_log_probs is not None else None

    for step in range(max_length + 1):
        att: Tensor | None = None
        if decoder is not None:
            att = decoder.step(last).float()  # (N, V); kept in step even when its scores are unused
            vocab = att.size(1)
            if weight >= 1.0:
                att = None
        assert vocab is not None
        candidates, usable = _candidates(
            att, vocab, config, rules, blank_id, eos_id, scorer is not None, len(last), device
        )
        if att is None:
            att = torch.zeros(len(last), vocab, device=device)
        # Exact: out of room, these rows' hypotheses must end here with a scored <eos> (one
        # candidate). ESPnet ends them after the step that reaches the limit (below).
        forced = limits[rows] == step
        if bool(forced.any()):
            candidates = candidates.masked_fill(forced[:, None], eos_id)
            usable = usable & ~forced[:, None]
            usable[:, 0] |= forced
        if scorer is not None:
            assert ctc_state is not None
            ctc_scores, r_nonblank, r_blank = scorer.score(ctc_state, rows, candidates, prefix_length=step)
            ctc_increment = ctc_scores - ctc_state.score[:, None]
        else:
            ctc_increment = torch.zeros(candidates.shape, device=device)
        att_increment = torch.gather(att, 1, candidates)
        total = scores[:, None] + (1.0 - weight) * att_increment + weight * ctc_increment + config.length_bonus
        if lm is not None:
            total = total + config.lm_weight * torch.gather(lm.step(last).float(), 1, candidates)
        total = total.masked_fill(~usable | done[rows][:, None], NEG_INF)
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
        tokens_before = [tokens[int(r)] for r in flat_rows.tolist()]
        tokens = [t + [int(k)] for t, k in zip(tokens_before, flat_tokens.tolist())]

        # Hypotheses that chose <eos> end here, and under ESPnet's rules every live one of an
        # utterance whose limit this step reached ends as it is; their rows go dead.
        alive = torch.isfinite(flat_scores)
        is_eos = (flat_tokens == eos_id) & alive
        at_limit = (
            alive & ~is_eos & (limits[rows] == step + 1) if not rules.score_final_eos else torch.zeros_like(alive)
        )
        for row in torch.nonzero(is_eos | at_limit).flatten().tolist():
            ended_tokens = list(tokens_before[row] if is_eos[row] else tokens[row])
            score = float(flat_scores[row]) / (len(ended_tokens) + 1) ** config.length_normalisation
            ended[row // beam].append(Hypothesis(ended_tokens, score, float(new_ctc[row]), float(new_att[row])))
        flat_scores = flat_scores.masked_fill(is_eos | at_limit, NEG_INF)

        if scorer is not None:
            ctc_state = scorer.advance(ctc_state, flat_rows, flat_cols, flat_tokens, ctc_scores, r_nonblank, r_blank)
        scores, ctc_totals, att_totals, last = flat_scores, new_ctc, new_att, flat_tokens
        if decoder is not None:
            decoder.reorder(flat_rows)
        if lm is not None:
            lm.reorder(flat_rows)

        live_best, live_arg = scores.view(batch, beam).max(dim=-1)
        for utterance in range(batch):
            if done[utterance]:
                continue
            live = float(live_best[utterance])
            if not ended[utterance] and math.isfinite(live):
                row = utterance * beam + int(live_arg[utterance])
                unfinished[utterance] = Hypothesis(
                    list(tokens[row]), float(scores[row]), float(ctc_totals[row]), float(att_totals[row])
                )
            if not math.isfinite(live) or rules.stop(ended[utterance], live, step, int(limits[utterance]), config):
                done[utterance] = True
        if bool(done.all()):
            break

    # An utterance whose every hypothesis died before <eos> could be scored (e.g. a prefix CTC cannot
    # fit in the frames) returns its longest-lived best hypothesis rather than nothing.
    return [
        sorted(hyps, key=lambda h: h.score, reverse=True)[:beam] if hyps else [h for h in (fallback,) if h is not None]
        for hyps, fallback in zip(ended, unfinished)
    ]
