"""Hybrid CTC/attention beam search: exact on tiny problems, and batching does not change results."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from avsr.decoding.beam_search import BeamSearchConfig, beam_search

BLANK, EOS, VOCAB = 0, 3, 4


def ctc_sequence_log_prob(log_probs: torch.Tensor, labels: tuple[int, ...]) -> float:
    """log P(labels | x) by the CTC forward algorithm (the reference for exhaustive search)."""
    extended = [BLANK]
    for label in labels:
        extended += [label, BLANK]
    alpha = torch.full((len(extended),), -math.inf)
    alpha[0] = log_probs[0, BLANK]
    if labels:
        alpha[1] = log_probs[0, labels[0]]
    for t in range(1, log_probs.shape[0]):
        previous = alpha.clone()
        for s, label in enumerate(extended):
            terms = [previous[s]]
            if s >= 1:
                terms.append(previous[s - 1])
            if s >= 2 and label != BLANK and label != extended[s - 2]:
                terms.append(previous[s - 2])
            alpha[s] = torch.logsumexp(torch.stack(terms), 0) + log_probs[t, label]
    tail = [alpha[-1]] + ([alpha[-2]] if labels else [])
    return torch.logsumexp(torch.stack(tail), 0).item()


def random_log_probs(frames: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(frames, VOCAB, generator=generator)
    logits[:, EOS] = -1e4
    return logits.log_softmax(-1)


def test_ctc_only_search_finds_the_exhaustive_best():
    for seed in range(4):
        log_probs = random_log_probs(5, seed)
        candidates = [seq for n in range(0, 6) for seq in itertools.product((1, 2), repeat=n)]
        best = max(candidates, key=lambda seq: ctc_sequence_log_prob(log_probs, seq))
        result = beam_search(
            log_probs[None], torch.tensor([5]), None, BeamSearchConfig(beam=8, ctc_weight=1.0), BLANK, EOS
        )
        top = result[0][0]
        assert tuple(top.tokens) == best, seed
        assert math.isclose(top.score, ctc_sequence_log_prob(log_probs, best), abs_tol=1e-4)


def test_batched_equals_one_at_a_time():
    logs = [random_log_probs(6, 10), random_log_probs(4, 11), random_log_probs(5, 12)]
    padded = torch.stack([torch.cat([lp, torch.zeros(6 - len(lp), VOCAB)]) for lp in logs])
    config = BeamSearchConfig(beam=3, ctc_weight=1.0)
    together = beam_search(padded, torch.tensor([6, 4, 5]), None, config, BLANK, EOS)
    for log_probs, batched in zip(logs, together):
        alone = beam_search(log_probs[None], torch.tensor([len(log_probs)]), None, config, BLANK, EOS)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched]
        assert all(math.isclose(a.score, b.score, abs_tol=1e-5) for a, b in zip(alone, batched))


def test_hybrid_search_with_a_model_batched_equals_one_at_a_time():
    """With a (random, tiny) AVSRModel's decoder and CTC head, batching changes nothing."""
    from avsr.decoding.model_decoder import ModelStepDecoder
    from avsr.models.avsr_model import AVSRModel
    from avsr.models.config import AVSRConfig

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = AVSRModel(AVSRConfig.tiny(12)).eval()
    frames = torch.tensor([20, 14])
    video = torch.randn(2, 20, 44, 44)
    audio = torch.randn(2, 20 * 640) * 0.1
    config = BeamSearchConfig(beam=3, ctc_weight=0.3, max_length=8)
    with torch.no_grad():
        encoded, lens = model.encode(audio, frames * 640, video, frames)
        log_probs = model.ctc_log_probs(encoded)
        together = beam_search(log_probs, lens, ModelStepDecoder(model, encoded, lens, 8), config, 0, 11)
        for i in range(2):
            one_encoded, one_lens = model.encode(
                audio[i : i + 1, : frames[i] * 640],
                frames[i : i + 1] * 640,
                video[i : i + 1, : frames[i]],
                frames[i : i + 1],
            )
            alone = beam_search(
                model.ctc_log_probs(one_encoded),
                one_lens,
                ModelStepDecoder(model, one_encoded, one_lens, 8),
                config,
                0,
                11,
            )[0]
            assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
            assert all(math.isclose(a.score, b.score, abs_tol=1e-4) for a, b in zip(alone, together[i]))
            assert alone and all(0 not in h.tokens and 11 not in h.tokens for h in alone)


class BigramDecoder:
    """A StepDecoder whose next-token log-probs depend only on the previous token (a fixed table)."""

    def __init__(self, table: dict[int, dict[int, float]]) -> None:
        self.log_probs = torch.full((VOCAB, VOCAB), -1e4)
        for previous, row in table.items():
            for token, p in row.items():
                self.log_probs[previous, token] = math.log(p)

    def start(self, rows: torch.Tensor) -> None:
        pass

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.log_probs[tokens]

    def reorder(self, index: torch.Tensor) -> None:
        pass


# <eos> (3) is also <sos>. Stopping at once is the likeliest single outcome (0.3), but "a" keeps
# going with 0.85 a step, so per token "aaaa" (then the forced <eos>) is the better transcript.
BIGRAM = {EOS: {1: 0.6, 2: 0.1, EOS: 0.3}, 1: {1: 0.85, 2: 0.05, EOS: 0.1}, 2: {1: 0.3, 2: 0.2, EOS: 0.5}}


def bigram_score(tokens: tuple[int, ...]) -> float:
    previous, total = EOS, 0.0
    for token in (*tokens, EOS):
        total += math.log(BIGRAM[previous][token])
        previous = token
    return total


def test_length_normalisation_ranks_by_score_per_token():
    lengths = torch.tensor([4])  # at most 4 tokens, then <eos> is forced
    candidates = [seq for n in range(0, 5) for seq in itertools.product((1, 2), repeat=n)]
    for lenpen in (0.0, 1.0):
        result = beam_search(
            None, lengths, BigramDecoder(BIGRAM), BeamSearchConfig(beam=4, length_normalisation=lenpen), BLANK, EOS
        )[0]
        best = max(candidates, key=lambda seq: bigram_score(seq) / (len(seq) + 1) ** lenpen)
        assert tuple(result[0].tokens) == best, lenpen
        for hyp in result:  # each ended hypothesis: its attention log-prob, normalised
            assert math.isclose(hyp.attention_score, bigram_score(tuple(hyp.tokens)), abs_tol=1e-4)
            assert math.isclose(hyp.score, hyp.attention_score / (len(hyp.tokens) + 1) ** lenpen, abs_tol=1e-4)
        assert [h.score for h in result] == sorted((h.score for h in result), reverse=True)
    assert best == (1, 1, 1, 1)  # and without normalisation the search stops at once: ()
    assert beam_search(None, lengths, BigramDecoder(BIGRAM), BeamSearchConfig(beam=4), BLANK, EOS)[0][0].tokens == []


class CountingBigramDecoder(BigramDecoder):
    steps = 0

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        return super().step(tokens)


def best_bigram_output(limit: int, bonus: float) -> tuple[float, int]:
    """(best score, its length) over every output of at most ``limit`` tokens, by dynamic
    programming: attention log-prob plus ``bonus`` per token, <eos> included."""
    best_to = {EOS: 0.0}  # best log-prob of n tokens ending in each token, n = 0
    results = []
    for n in range(limit + 1):
        results.append(
            (max(score + math.log(BIGRAM[last][EOS]) for last, score in best_to.items()) + bonus * (n + 1), n)
        )
        best_to = {
            token: max(
                score + math.log(BIGRAM[last][token]) for last, score in best_to.items() if token in BIGRAM[last]
            )
            for token in (1, 2)
        }
    return max(results)


def test_exact_search_with_a_length_bonus_is_exact_and_stops_early():
    """With a length bonus the exact rule bounds what a live hypothesis can still gain (the bonus
    of every token up to the limit): the search returns the best output there is, and stops once
    no live hypothesis can catch up instead of running to the limit."""
    limit = 30
    for bonus in (0.05, 0.3):
        decoder = CountingBigramDecoder(BIGRAM)
        config = BeamSearchConfig(beam=3, length_bonus=bonus)
        top = beam_search(None, torch.tensor([limit]), decoder, config, BLANK, EOS)[0][0]
        score, length = best_bigram_output(limit, bonus)
        assert math.isclose(top.score, score, abs_tol=1e-4) and len(top.tokens) == length, bonus
        if bonus == 0.05:  # "1 1 1 ..." loses 0.11 a token: hopeless well before the limit
            assert length == 0 and decoder.steps <= limit // 2, decoder.steps
        else:  # it gains 0.14 a token: the best output is as long as allowed
            assert length == limit and decoder.steps == limit + 1


def test_a_zero_ctc_weight_is_the_attention_only_search():
    """CTC weight 0 ignores the CTC scores, also where CTC gives a prefix no chance (log 0):
    0 x -inf must not turn a hypothesis into NaN."""
    log_probs = random_log_probs(2, 5)  # two frames: "1 1" (needs three) has CTC probability 0
    config = BeamSearchConfig(beam=3, ctc_weight=0.0)
    lengths = torch.tensor([2])
    with_ctc = beam_search(log_probs[None], lengths, BigramDecoder(BIGRAM), config, BLANK, EOS)[0]
    without = beam_search(None, lengths, BigramDecoder(BIGRAM), config, BLANK, EOS)[0]
    assert [h.tokens for h in with_ctc] == [h.tokens for h in without]
    assert [h.score for h in with_ctc] == pytest.approx([h.score for h in without])


# ---------------------------------------------------------------------- language-model fusion
def toy_lm(forbid: int | None = None, seed: int = 0):
    """A real TokenLM over this file's 4 ids (random weights); ``forbid``: a token it gives no chance."""
    from avsr.models.lm import TokenLM, TokenLMConfig

    torch.manual_seed(seed)
    lm = TokenLM(TokenLMConfig(vocab_size=VOCAB, model_dim=8, layers=1, heads=2, ffn_dim=16, dropout=0.0)).eval()
    if forbid is not None:
        with torch.no_grad():
            lm.output.bias[forbid] = -1e9
    return lm


def test_lm_fusion_with_weight_zero_is_the_search_without_it():
    from avsr.decoding.lm_decoder import LMStepDecoder

    log_probs, lengths = torch.stack([random_log_probs(6, 1), random_log_probs(6, 2)]), torch.tensor([6, 4])
    config = BeamSearchConfig(beam=3, ctc_weight=0.3)
    plain = beam_search(log_probs, lengths, BigramDecoder(BIGRAM), config, BLANK, EOS)
    fused = beam_search(
        log_probs, lengths, BigramDecoder(BIGRAM), config, BLANK, EOS, lm=LMStepDecoder(toy_lm(forbid=1))
    )
    assert [[(h.tokens, h.score) for h in n] for n in fused] == [[(h.tokens, h.score) for h in n] for n in plain]


def test_an_lm_that_forbids_a_token_removes_it_from_the_output():
    from avsr.decoding.lm_decoder import LMStepDecoder

    lengths = torch.tensor([4])
    config = BeamSearchConfig(beam=3, ctc_weight=0.0, lm_weight=0.5, length_bonus=1.0)
    without = beam_search(None, lengths, BigramDecoder(BIGRAM), config, BLANK, EOS)[0]
    assert 1 in without[0].tokens  # the bigram decoder likes "a" (1)
    for n, hyp in enumerate(
        beam_search(None, lengths, BigramDecoder(BIGRAM), config, BLANK, EOS, lm=LMStepDecoder(toy_lm(forbid=1)))[0]
    ):
        assert 1 not in hyp.tokens, (n, hyp.tokens)


def test_lm_steps_equal_the_lm_on_the_whole_prefix_and_follow_reordering():
    from avsr.decoding.lm_decoder import LMStepDecoder

    lm = toy_lm(seed=3)
    steps = LMStepDecoder(lm)
    steps.start(torch.arange(2))
    first = steps.step(torch.tensor([EOS, EOS]))
    steps.reorder(torch.tensor([1, 1]))
    second = steps.step(torch.tensor([1, 2]))
    with torch.no_grad():
        whole = lm(torch.tensor([[EOS, 1], [EOS, 2]]))
    assert torch.allclose(first, whole[:, 0], atol=1e-6) and torch.allclose(second, whole[:, 1], atol=1e-6)
