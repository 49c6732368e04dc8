"""Gathering rows across the processes of a multi-process run (DDP), for contrastive losses whose
negatives should come from every rank. Single process: the tensors pass through unchanged."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_across_ranks(x: Tensor) -> Tensor:
    """All-gather ``x`` along dim 0 (every rank the same size), in rank order; differentiable:
    the gradient flows back to each rank's own slice (summed over ranks). Single process: ``x``."""
    if rank_and_world()[1] == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


@torch.no_grad()
def gather_rows(x: Tensor) -> Tensor:
    """All-gather ``x`` along dim 0 without gradient, in rank order; the ranks may hold different
    numbers of rows (a last, shorter batch). Single process: ``x``."""
    world = rank_and_world()[1]
    if world == 1:
        return x
    counts = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([x.size(0)], device=x.device))
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.size(0)] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(count.item())] for part, count in zip(parts, counts)], dim=0)


__all__ = ["gather_across_ranks", "gather_rows", "rank_and_world"]
