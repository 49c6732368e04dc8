"""CTC decoding pieces: greedy decoding and the CTC prefix scorer of joint CTC/attention search.

The prefix scorer keeps, for every hypothesis in the search, the forward variables of its prefix
(log-probabilities of having emitted the prefix by frame t, ending in a non-blank or a blank) and
scores all candidate next tokens of all hypotheses at once: one loop over frames, everything else
vectorised over (hypotheses x candidates). The algorithm is Watanabe et al.'s (2017) CTC prefix
score, as used in ESPnet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

NEG_INF = float("-inf")


def greedy_ctc(log_probs: Tensor, lengths: Tensor, blank_id: int = 0) -> list[list[int]]:
    """Best path per utterance: argmax per frame, repeats merged, blanks removed.

    ``log_probs`` (B, T, V), ``lengths`` (B,) valid frames.
    """
    best = log_probs.argmax(dim=-1).cpu()
    results = []
    for row, length in zip(best, lengths.tolist()):
        path = row[:length]
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        tokens = path[keep]
        results.append(tokens[tokens != blank_id].tolist())
    return results


@dataclass
class CTCPrefixState:
    """Forward variables of N hypotheses: (T, N) log-probs of the prefix ending non-blank / blank,
    plus each prefix's last token (-1 for the empty prefix) and its CTC prefix score so far."""

    r_nonblank: Tensor  # (T, N)
    r_blank: Tensor  # (T, N)
    last: Tensor  # (N,) int64
    score: Tensor  # (N,) log-prob of the prefix (the previous step's prefix score)

    def select(self, index: Tensor) -> CTCPrefixState:
        return CTCPrefixState(self.r_nonblank[:, index], self.r_blank[:, index], self.last[index], self.score[index])


class CTCPrefixScorer:
    """CTC prefix scores for hypotheses over one batch of encoder outputs.

    ``log_probs`` (B, T, V) and ``lengths`` (B,). Hypotheses are rows of a flat batch of size N;
    ``utterance`` (N,) says which utterance each row belongs to, so B utterances x beam hypotheses
    are scored together. Frames past an utterance's length are ignored.
    """

    def __init__(self, log_probs: Tensor, lengths: Tensor, blank_id: int, eos_id: int) -> None:
        self.log_probs = log_probs.float()
        self.blank = self.log_probs[:, :, blank_id]  # (B, T)
        self.lengths = lengths.to(log_probs.device)
        self.blank_id = blank_id
        self.eos_id = eos_id
        self.max_frames = log_probs.shape[1]

    def initial_state(self, utterance: Tensor) -> CTCPrefixState:
        """The empty prefix: only blanks so far."""
        blank = self.log_probs[utterance, :, self.blank_id].transpose(0, 1)  # (T, N)
        blank = self._mask_beyond_length(blank, utterance)
        r_blank = torch.cumsum(blank, dim=0)
        r_nonblank = torch.full_like(r_blank, NEG_INF)
        last = torch.full((len(utterance),), -1, dtype=torch.long, device=r_blank.device)
        return CTCPrefixState(r_nonblank, r_blank, last, torch.zeros(len(utterance), device=r_blank.device))

    def _mask_beyond_length(self, values: Tensor, utterance: Tensor) -> Tensor:
        """Frames past the end contribute log 1 = 0 (they are never reached)."""
        frames = torch.arange(values.shape[0], device=values.device)[:, None]
        valid = frames < self.lengths[utterance][None, :]
        return torch.where(valid, values, torch.zeros_like(values))

    def score(
        self, state: CTCPrefixState, utterance: Tensor, candidates: Tensor, prefix_length: int = 0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Prefix log-probs of every (hypothesis, candidate) extension.

        ``candidates`` (N, K) token ids; ``prefix_length``: a lower bound on the hypotheses' length
        (the search step), which lets the recursion skip the frames where nothing can happen yet.
        Returns (prefix scores (N, K), r_nonblank (T, N, K), r_blank (T, N, K)); the score
        *increment* for the search is ``scores - state.score[:, None]``. A candidate equal to
        ``eos_id`` gets the probability that the whole output is the prefix.

        Values at frames past an utterance's length are left as they come (never read: scores sum
        over valid frames only and the end of sentence reads the last valid frame).
        """
        frames, count = self.max_frames, len(utterance)
        # only the candidates' columns: (N, K, T) -> (T, N, K), never the whole (N, T, V)
        x_cand = self.log_probs[utterance[:, None], :, candidates].permute(2, 0, 1)
        x_blank = self.blank[utterance].transpose(0, 1)[:, :, None]  # (T, N, 1)
        lengths = self.lengths[utterance]
        valid = (torch.arange(frames, device=x_cand.device)[:, None] < lengths[None, :])[:, :, None]  # (T, N, 1)

        # phi_t: the prefix's probability at t, in a state from which the candidate may start.
        prefix_total = torch.logaddexp(state.r_nonblank, state.r_blank)  # (T, N)
        same_as_last = candidates == state.last[:, None]  # (N, K)
        phi = torch.where(same_as_last[None], state.r_blank[:, :, None], prefix_total[:, :, None])  # (T, N, K)

        # One buffer (T, 3, N, K) holds, per frame, [r_nonblank, phi, r_blank], so that a frame of
        # the recursion is two tensor operations:
        #   [r_nonblank, r_blank][t] = logaddexp(r_nonblank[t-1], [phi, r_blank][t-1]) + [x_cand, x_blank][t]
        count_k = candidates.shape[1]
        forward = torch.full((frames, 3, count, count_k), NEG_INF, device=x_cand.device)
        forward[:, 1] = phi
        emitted = torch.stack([x_cand, x_blank.expand_as(x_cand)], dim=1)  # (T, 2, N, K)
        empty = (state.last == -1)[:, None].expand_as(candidates)
        forward[0, 0] = torch.where(empty, x_cand[0], torch.full_like(x_cand[0], NEG_INF))
        # A prefix of L tokens plus the candidate needs L + 1 frames: before frame L both forward
        # variables are still -inf, so the recursion starts there.
        for t in range(max(1, prefix_length), frames):
            torch.add(torch.logaddexp(forward[t - 1, 0:1], forward[t - 1, 1:3]), emitted[t], out=forward[t, 0::2])
        r_nonblank, r_blank = forward[:, 0], forward[:, 2]

        # psi: sum over the frame at which the candidate is first emitted.
        start = torch.cat([x_cand[:1].masked_fill(~empty[None], NEG_INF), phi[:-1] + x_cand[1:]], dim=0)
        start = start.masked_fill(~valid, NEG_INF)
        scores = torch.logsumexp(start, dim=0)  # (N, K)

        # eos: the prefix is the whole output.
        last_frame = (lengths - 1).clamp(min=0)
        final = prefix_total[last_frame, torch.arange(count, device=x_cand.device)]  # (N,)
        scores = torch.where(candidates == self.eos_id, final[:, None].expand_as(scores), scores)
        return scores, r_nonblank, r_blank

    @staticmethod
    def advance(
        state: CTCPrefixState,
        hypothesis: Tensor,
        candidate_index: Tensor,
        tokens: Tensor,
        scores: Tensor,
        r_nonblank: Tensor,
        r_blank: Tensor,
    ) -> CTCPrefixState:
        """The states of the extended hypotheses chosen by the search.

        ``hypothesis`` (M,) rows of the previous state, ``candidate_index`` (M,) column in the
        candidates, ``tokens`` (M,) the chosen token ids.
        """
        return CTCPrefixState(
            r_nonblank[:, hypothesis, candidate_index],
            r_blank[:, hypothesis, candidate_index],
            tokens,
            scores[hypothesis, candidate_index],
        )
