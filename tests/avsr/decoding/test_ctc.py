"""CTC decoding: greedy best path, and the prefix scorer against a brute-force sum over alignments."""

from __future__ import annotations

import itertools
import math

import torch

from avsr.decoding.ctc import CTCPrefixScorer, greedy_ctc

BLANK, EOS = 0, 3  # vocabulary: blank, a, b, eos (eos never emitted by CTC)


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out, previous = [], None
    for token in path:
        if token != previous and token != BLANK:
            out.append(token)
        previous = token
    return tuple(out)


def brute_force(log_probs: torch.Tensor, prefix: tuple[int, ...], whole: bool) -> float:
    """log P(CTC output starts with / equals ``prefix``), summing every alignment."""
    frames, vocab = log_probs.shape
    total = []
    for path in itertools.product(range(vocab - 1), repeat=frames):  # eos never emitted
        output = collapse(path)
        if (output == prefix) if whole else (output[: len(prefix)] == prefix):
            total.append(sum(log_probs[t, s].item() for t, s in enumerate(path)))
    return torch.logsumexp(torch.tensor(total), 0).item() if total else -math.inf


def random_log_probs(frames: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(frames, 4, generator=generator)
    logits[:, EOS] = -1e4
    return logits.log_softmax(-1)


def extend(scorer, state, utterance, prefix_tokens):
    for token in prefix_tokens:
        candidates = torch.tensor([[token]])
        scores, r_nb, r_b = scorer.score(state, utterance, candidates)
        state = scorer.advance(state, torch.tensor([0]), torch.tensor([0]), torch.tensor([token]), scores, r_nb, r_b)
    return state


def test_prefix_scores_match_brute_force():
    log_probs = random_log_probs(6, seed=0)
    scorer = CTCPrefixScorer(log_probs[None], torch.tensor([6]), BLANK, EOS)
    utterance = torch.tensor([0])
    for prefix in [(), (1,), (2,), (1, 1), (1, 2), (2, 1, 2)]:
        state = extend(scorer, scorer.initial_state(utterance), utterance, prefix)
        scores, _, _ = scorer.score(state, utterance, torch.tensor([[1, 2, EOS]]))
        for column, token in enumerate((1, 2)):
            expected = brute_force(log_probs, prefix + (token,), whole=False)
            assert math.isclose(scores[0, column].item(), expected, rel_tol=1e-4, abs_tol=1e-4), (prefix, token)
        expected_eos = brute_force(log_probs, prefix, whole=True)
        assert math.isclose(scores[0, 2].item(), expected_eos, rel_tol=1e-4, abs_tol=1e-4), (prefix, "eos")


def test_batched_rows_with_different_lengths_match_single():
    """Hypotheses of several utterances (padded to the longest) score as each alone."""
    long, short = random_log_probs(7, seed=1), random_log_probs(5, seed=2)
    padded = torch.stack([long, torch.cat([short, torch.zeros(2, 4)])])
    batch = CTCPrefixScorer(padded, torch.tensor([7, 5]), BLANK, EOS)
    utterance = torch.tensor([0, 1, 1])
    state = batch.initial_state(utterance)
    candidates = torch.tensor([[1, 2, EOS], [1, 2, EOS], [2, 1, EOS]])
    scores, _, _ = batch.score(state, utterance, candidates)
    for row, (log_probs, column_tokens) in enumerate([(long, (1, 2)), (short, (1, 2)), (short, (2, 1))]):
        for column, token in enumerate(column_tokens):
            expected = brute_force(log_probs, (token,), whole=False)
            assert math.isclose(scores[row, column].item(), expected, rel_tol=1e-4, abs_tol=1e-4)
        assert math.isclose(scores[row, 2].item(), brute_force(log_probs, (), whole=True), rel_tol=1e-4, abs_tol=1e-4)


def test_greedy_ctc_merges_repeats_and_drops_blanks():
    path = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 0, 0]])
    log_probs = torch.nn.functional.one_hot(path, 4).float().log()
    assert greedy_ctc(log_probs, torch.tensor([9])) == [[1, 1, 2]]
    assert greedy_ctc(log_probs, torch.tensor([5])) == [[1, 1]]
