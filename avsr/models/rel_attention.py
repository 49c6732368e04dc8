"""Relative-position self-attention (Transformer-XL / ESPnet's conformer) with a fused path.

fairseq2's `RelativePositionSDPA` computes ``softmax(((q + u) k^T + shift((q + v) r^T)) / sqrt(d)) V``
by hand: it materialises the (B, H, T, T) weights in float32 for the softmax and again for the
backward. `RelativeAttention` is that module (same parameters and state-dict keys: ``u_bias``,
``v_bias``, ``r_proj``; the same position table), with a second way to finish: the position term
``shift((q + v) r^T) / sqrt(d)`` plus the padding bias goes to
``torch.nn.functional.scaled_dot_product_attention`` as its additive mask, which on a GPU runs
the fused (memory-efficient) kernel. The results are equal within rounding
(``tests/avsr/models/test_rel_attention.py``), so a checkpoint trained either way loads into the
other.

``fused``: None means on for CUDA inputs (`avsr.nn.switches.switch_on`); set by the model from
``AVSRConfig.kernels.sdpa``.
"""

from __future__ import annotations

import torch.nn.functional as F
from fairseq2.models.transformer.attention_bias import AttentionBiasCache, maybe_get_attention_bias_tensor
from fairseq2.models.transformer.sdpa.relative import RelativePositionSDPA
from fairseq2.nn import BatchLayout
from torch import Tensor

from avsr.nn.switches import switch_on


class RelativeAttention(RelativePositionSDPA):  # type: ignore[misc]  # fairseq2 marks it final; only forward differs
    """fairseq2's relative-position SDPA, finished by the fused SDPA kernel when ``fused``."""

    fused: bool | None = None

    def forward(
        self,
        q: Tensor,
        q_layout: BatchLayout,
        k: Tensor,
        k_layout: BatchLayout,
        v: Tensor,
        bias_cache: AttentionBiasCache,
        *,
        needs_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """q, k, v (B, T, H, d) -> (attention (B, T, H, d), weights (B, H, T, T) when asked)."""
        if needs_weights or q_layout.packed or k_layout.packed or not switch_on(self.fused, q.device):
            return super().forward(q, q_layout, k, k_layout, v, bias_cache, needs_weights=needs_weights)
        bias = maybe_get_attention_bias_tensor(self.bias, q, q_layout, k_layout, bias_cache)  # (B|1, 1|H, T, T)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, d)
        r = self._compute_r(k, batch_size=q.size(0))  # (B, H, 2T-1, d)
        position = self._shift_bd((q + self.v_bias.unsqueeze(1)) @ r.transpose(-1, -2)) * q.size(-1) ** -0.5
        if bias is not None:
            position = position + bias
        query = q + self.u_bias.unsqueeze(1)
        out = F.scaled_dot_product_attention(query, k, v, attn_mask=position)
        return out.transpose(1, 2), None


__all__ = ["RelativeAttention"]
