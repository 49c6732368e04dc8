"""How well two frozen feature spaces already agree, measured on paired samples before any
projector is trained, to choose an (image encoder, text encoder) pair:

* linear CKA (Freeze-Align's selection metric): similarity of the two spaces' centred Gram
  matrices, invariant to rotations and isotropic scaling of either space;
* mutual k-nearest neighbours (the Platonic Representation Hypothesis metric): how many of a
  sample's k neighbours are shared by both spaces;
* SAIL's alignment probe: a LayerNorm + Linear layer per side trained with a contrastive loss,
  scored by held-out retrieval R@10 (the score SAIL found to track downstream quality).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision_language.evaluation import retrieval_recall
from vision_language.losses import build_loss

__all__ = ["AlignmentReport", "ProbeResult", "alignment_probe", "assess_pair", "linear_cka", "mutual_knn"]


def _check_paired(x: Tensor, y: Tensor, min_rows: int = 2) -> None:
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(f"features must be 2-D (samples, dim), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.size(0) != y.size(0):
        raise ValueError(
            f"mismatched pair counts: {x.size(0)} image rows but {y.size(0)} text rows (row i of each must be the same sample)"
        )
    if x.size(0) < min_rows:
        raise ValueError(f"need at least {min_rows} paired samples, got {x.size(0)}")


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA between (n, d1) and (n, d2) features of the same n samples, in [0, 1].

    Equal to HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = X X^T, L = Y Y^T centred, but
    computed in feature space, ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred
    features, which costs O(n d^2) instead of O(n^2 d) and n^2 memory. Float64, since the three
    norms are sums of many squared terms."""
    _check_paired(x, y)
    x = x.detach().to(torch.float64)
    y = y.detach().to(torch.float64)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.t() @ x) ** 2
    denominator = torch.linalg.matrix_norm(x.t() @ x) * torch.linalg.matrix_norm(y.t() @ y)
    if float(denominator) == 0.0:
        raise ValueError("linear CKA is undefined: one of the feature sets is constant across samples")
    return float(cross / denominator)


def _knn_indices(x: Tensor, k: int, chunk_size: int = 1024) -> Tensor:
    """(n, k) indices of each row's k most cosine-similar other rows (itself excluded)."""
    x = F.normalize(x.detach().to(torch.float64), dim=-1)
    out = []
    for start in range(0, x.size(0), chunk_size):
        sims = x[start : start + chunk_size] @ x.t()
        rows = torch.arange(sims.size(0), device=x.device)
        sims[rows, rows + start] = float("-inf")
        out.append(sims.topk(k, dim=1).indices)
    return torch.cat(out)


def mutual_knn(x: Tensor, y: Tensor, k: int = 10) -> float:
    """Mean over samples of |kNN_x(i) & kNN_y(i)| / k, neighbours by cosine after L2
    normalisation (PRH). 1 when both spaces order every neighbourhood alike; k / (n - 1) expected
    for unrelated spaces."""
    _check_paired(x, y)
    if not 1 <= k < x.size(0):
        raise ValueError(f"k must be in [1, n - 1] = [1, {x.size(0) - 1}], got {k}")
    nx, ny = _knn_indices(x, k), _knn_indices(y, k)
    shared = (nx[:, :, None] == ny[:, None, :]).any(2).sum(1)
    return float(shared.double().mean() / k)


@dataclass
class ProbeResult:
    """Held-out retrieval of SAIL's linear alignment probe (recalls in percent)."""

    recall_at_10: float
    """R@10 averaged over image->text and text->image: SAIL's probe score."""
    recall_at_1: float
    recalls: dict[str, float]
    """Every held-out recall (``i2t_R@1``, ``t2i_R@10``, ...)."""
    chance_at_10: float
    """R@10 of a random ranking: 100 * min(10, n_eval) / n_eval."""
    n_train: int
    n_eval: int
    final_loss: float
    """Mean training loss over the last 10 % of steps."""


def _probe_head(in_dim: int, dim: int) -> nn.Module:
    head = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, dim))
    nn.init.xavier_uniform_(head[1].weight)  # SAIL's init: Xavier-uniform weights, zero bias
    nn.init.zeros_(head[1].bias)
    return head


def alignment_probe(
    image_feats: Tensor,
    text_feats: Tensor,
    *,
    dim: int = 256,
    steps: int = 300,
    batch_size: int = 256,
    lr: float = 1e-3,
    loss: Literal["sigmoid", "infonce"] = "sigmoid",
    seed: int = 0,
    eval_fraction: float = 0.2,
) -> ProbeResult:
    """SAIL's alignment probe on paired features: a LayerNorm + Linear(d -> ``dim``) per side is
    trained with a contrastive loss on a random (1 - ``eval_fraction``) of the pairs (AdamW), then
    scored by retrieval on the rest. The projector is too weak to create alignment, so the score
    says how linearly compatible the two spaces already are. The seed fixes the split, the
    initialisation and the batches; the global random state is left untouched."""
    _check_paired(image_feats, text_feats, min_rows=4)
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    if dim < 1 or steps < 1 or batch_size < 2:
        raise ValueError(f"need dim >= 1, steps >= 1 and batch_size >= 2, got {dim}, {steps}, {batch_size}")
    n = image_feats.size(0)
    n_eval = min(max(2, round(n * eval_fraction)), n - 2)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    images = image_feats.detach().float().cpu()
    texts = text_feats.detach().float().cpu()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        image_head, text_head = _probe_head(images.size(1), dim), _probe_head(texts.size(1), dim)
    criterion = build_loss(loss, gather=False)
    params = [*image_head.parameters(), *text_head.parameters(), *criterion.parameters()]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    batch = min(batch_size, train_idx.numel())
    tail = max(1, steps // 10)
    losses: list[float] = []
    permutation, cursor = torch.randperm(train_idx.numel(), generator=generator), 0
    for _ in range(steps):
        if cursor + batch > permutation.numel():  # a new epoch: reshuffle, never a short batch
            permutation, cursor = torch.randperm(train_idx.numel(), generator=generator), 0
        rows = train_idx[permutation[cursor : cursor + batch]]
        cursor += batch
        value = criterion(image_head(images[rows]), text_head(texts[rows]))
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        losses.append(float(value.detach()))

    with torch.no_grad():
        recalls = retrieval_recall(
            image_head(images[eval_idx]), text_head(texts[eval_idx]), torch.arange(n_eval), ks=(1, 10)
        )
    return ProbeResult(
        recall_at_10=0.5 * (recalls["i2t_R@10"] + recalls["t2i_R@10"]),
        recall_at_1=0.5 * (recalls["i2t_R@1"] + recalls["t2i_R@1"]),
        recalls=recalls,
        chance_at_10=100.0 * min(10, n_eval) / n_eval,
        n_train=int(train_idx.numel()),
        n_eval=n_eval,
        final_loss=sum(losses[-tail:]) / tail,
    )


@dataclass
class AlignmentReport:
    """Every pre-training alignment score of one encoder pair, with the chance level of each."""

    n: int
    cka: float
    mutual_knn: float
    k: int
    mutual_knn_chance: float
    """k / (n - 1): expected mutual kNN of two unrelated spaces."""
    probe_r_at_10: float | None = None
    probe_r_at_1: float | None = None
    probe_chance_r_at_10: float | None = None
    probe: ProbeResult | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def assess_pair(
    image_feats: Tensor, text_feats: Tensor, *, k: int = 10, probe: bool = True, **probe_options: Any
) -> AlignmentReport:
    """CKA, mutual kNN and (with ``probe``) SAIL's probe for paired features of one encoder pair;
    ``probe_options`` go to :func:`alignment_probe`."""
    _check_paired(image_feats, text_feats)
    report = AlignmentReport(
        n=image_feats.size(0),
        cka=linear_cka(image_feats, text_feats),
        mutual_knn=mutual_knn(image_feats, text_feats, k=k),
        k=k,
        mutual_knn_chance=k / (image_feats.size(0) - 1),
    )
    if probe:
        result = alignment_probe(image_feats, text_feats, **probe_options)
        report.probe, report.probe_r_at_10, report.probe_r_at_1 = result, result.recall_at_10, result.recall_at_1
        report.probe_chance_r_at_10 = result.chance_at_10
    return report
