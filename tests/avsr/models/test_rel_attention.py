"""The fused relative-position attention computes what fairseq2's by-hand one computes."""

from __future__ import annotations

import pytest
import torch
from fairseq2.models.transformer import AttentionBiasCache, IdentityBias
from fairseq2.models.transformer.sdpa.relative import RelativePositionalEncoding, RelativePositionSDPA
from fairseq2.nn import BatchLayout

from avsr.models.rel_attention import RelativeAttention

TOLERANCE = 1e-5  # float32: the two differ only in summation order


@pytest.mark.parametrize("fused", [False, True])
def test_equal_to_fairseq2_with_padding_outputs_and_gradients(fused):
    torch.manual_seed(0)
    reference = RelativePositionSDPA(32, 4, RelativePositionalEncoding(32, 64), IdentityBias())
    ours = RelativeAttention(32, 4, RelativePositionalEncoding(32, 64), IdentityBias())
    ours.load_state_dict(reference.state_dict(), strict=True)  # same parameters, same keys
    ours.fused = fused
    q, k, v = (torch.randn(3, 9, 4, 8) for _ in range(3))
    layout = BatchLayout.of(q, [9, 6, 2])
    results = []
    for module in (reference, ours):
        inputs = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out, _ = module(inputs[0], layout, inputs[1], layout, inputs[2], AttentionBiasCache())
        valid = (torch.arange(9)[None, :] < torch.tensor([9, 6, 2])[:, None])[:, :, None, None]
        (out * valid).square().sum().backward()
        results.append([out * valid, *(t.grad for t in inputs), module.u_bias.grad, module.r_proj.weight.grad])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=TOLERANCE)


def test_weights_asked_for_take_the_by_hand_path():
    module = RelativeAttention(16, 2, RelativePositionalEncoding(16, 16), IdentityBias())
    module.fused = True
    q = torch.randn(1, 5, 2, 8)
    out, weights = module(q, BatchLayout.of(q), q, BatchLayout.of(q), q, AttentionBiasCache(), needs_weights=True)
    assert weights is not None and weights.shape == (1, 2, 5, 5) and out.shape == q.shape
