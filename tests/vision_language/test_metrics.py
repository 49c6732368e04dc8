"""vision_language losses, alignment metrics and evaluation scores on constructed cases whose
answers are known: identical/rotated/shuffled spaces, hand-computed losses, a two-process gather
run against the single-process loss, and tiny classification and retrieval sets."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn

from vision_language.alignment import alignment_probe, assess_pair, linear_cka, mutual_knn
from vision_language.evaluation import (
    class_text_embeddings,
    per_class_accuracy,
    retrieval_recall,
    zero_shot_accuracy,
    zero_shot_predictions,
)
from vision_language.losses import InfoNCELoss, SigmoidLoss, build_loss, gather_across_ranks

pytestmark = pytest.mark.usefixtures("one_thread")


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _rotation(d: int, seed: int) -> Tensor:
    q, r = torch.linalg.qr(_randn(d, d, seed=seed, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


# ---------------------------------------------------------------------------------------------
# Linear CKA and mutual kNN


def test_cka_identity_rotation_and_scaling_score_one():
    x = _randn(300, 24, seed=1, dtype=torch.float64)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, 3.7 * x @ _rotation(24, 2)) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x.float(), x.float() @ _rotation(24, 3).float()) == pytest.approx(1.0, abs=1e-6)


def test_cka_feature_form_equals_gram_form():
    x = _randn(150, 20, seed=4, dtype=torch.float64) + 2.0  # an offset: centring matters
    y = x @ _randn(20, 30, seed=5, dtype=torch.float64) + 0.8 * _randn(150, 30, seed=6, dtype=torch.float64)
    n = x.size(0)
    h = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n
    gram_x, gram_y = h @ (x @ x.t()) @ h, h @ (y @ y.t()) @ h
    gram = float((gram_x * gram_y).sum() / torch.sqrt((gram_x * gram_x).sum() * (gram_y * gram_y).sum()))
    assert 0.1 < gram < 0.99
    assert linear_cka(x, y) == pytest.approx(gram, rel=1e-10)
    assert linear_cka(x.float(), y.float()) == pytest.approx(gram, rel=1e-5)


def test_cka_of_unrelated_features_is_near_zero():
    x = _randn(2000, 32, seed=7)
    assert linear_cka(x, _randn(2000, 32, seed=8)) < 0.1
    shuffled = (x @ _rotation(32, 9).float())[torch.randperm(2000, generator=torch.Generator().manual_seed(10))]
    assert linear_cka(x, shuffled) < 0.1


def test_cka_rejects_bad_shapes():
    with pytest.raises(ValueError, match="mismatched pair counts"):
        linear_cka(torch.randn(10, 4), torch.randn(11, 4))
    with pytest.raises(ValueError, match="2-D"):
        linear_cka(torch.randn(10), torch.randn(10))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(torch.ones(10, 4), torch.randn(10, 4))


def test_mutual_knn_identity_and_rotation_score_one():
    x = _randn(400, 16, seed=11, dtype=torch.float64)
    assert mutual_knn(x, x, k=10) == 1.0
    assert mutual_knn(x, 0.3 * x @ _rotation(16, 12), k=10) == 1.0
    assert mutual_knn(x, x[:, :8], k=5) < 1.0  # a different space really does score lower


def test_mutual_knn_of_shuffled_pairs_is_near_chance():
    n, k = 1000, 10
    x = _randn(n, 16, seed=13)
    y = (x @ _rotation(16, 14).float())[torch.randperm(n, generator=torch.Generator().manual_seed(15))]
    assert mutual_knn(x, y, k=k) == pytest.approx(k / (n - 1), abs=0.01)
    with pytest.raises(ValueError, match="k must be"):
        mutual_knn(x, y, k=n)
    with pytest.raises(ValueError, match="mismatched pair counts"):
        mutual_knn(x, y[:-1], k=k)


# ---------------------------------------------------------------------------------------------
# SAIL's alignment probe and the report


def _linearly_related(n: int = 1000, seed: int = 20) -> tuple[Tensor, Tensor]:
    x = _randn(n, 32, seed=seed)
    y = x @ (_randn(32, 24, seed=seed + 1) / math.sqrt(32)) + 0.05 * _randn(n, 24, seed=seed + 2)
    return x, y


def test_probe_separates_related_from_shuffled_pairs():
    x, y = _linearly_related()
    related = alignment_probe(x, y, dim=64, steps=150)
    assert (related.n_train, related.n_eval) == (800, 200)
    assert related.chance_at_10 == pytest.approx(5.0)
    assert related.recall_at_10 > 90.0 and related.recall_at_1 > 50.0
    assert set(related.recalls) == {"i2t_R@1", "i2t_R@10", "t2i_R@1", "t2i_R@10", "mean_R"}
    shuffled = alignment_probe(
        x, y[torch.randperm(1000, generator=torch.Generator().manual_seed(0))], dim=64, steps=150
    )
    assert shuffled.recall_at_10 < 3 * shuffled.chance_at_10


def test_probe_is_deterministic_and_leaves_the_global_rng_alone():
    x, y = _linearly_related(200, seed=30)
    state = torch.random.get_rng_state()
    first = alignment_probe(x, y, dim=16, steps=20, batch_size=64, seed=3, loss="infonce")
    assert torch.equal(state, torch.random.get_rng_state())
    assert alignment_probe(x, y, dim=16, steps=20, batch_size=64, seed=3, loss="infonce") == first
    with pytest.raises(ValueError, match="mismatched pair counts"):
        alignment_probe(x, y[:-1])


def test_assess_pair_reports_scores_and_chance_levels():
    x, y = _linearly_related(300, seed=40)
    report = assess_pair(x, y, k=5, dim=16, steps=30, batch_size=64)
    assert report.n == 300 and report.k == 5
    assert report.mutual_knn_chance == pytest.approx(5 / 299)
    assert report.cka == pytest.approx(linear_cka(x, y)) and report.mutual_knn == pytest.approx(mutual_knn(x, y, 5))
    assert report.probe is not None and report.probe_r_at_10 == report.probe.recall_at_10
    assert report.probe_chance_r_at_10 == pytest.approx(100 * 10 / 60)
    assert report.as_dict()["probe"]["n_eval"] == 60
    bare = assess_pair(x, y, probe=False)
    assert bare.probe is None and bare.probe_r_at_10 is None and bare.k == 10


# ---------------------------------------------------------------------------------------------
# Losses


def _direct_infonce(image: Tensor, text: Tensor, temperature: float) -> float:
    image, text = F.normalize(image, dim=-1).tolist(), F.normalize(text, dim=-1).tolist()
    b = len(image)
    sim = [[sum(p * q for p, q in zip(image[i], text[j])) / temperature for j in range(b)] for i in range(b)]
    i2t = sum(math.log(sum(math.exp(s) for s in sim[i])) - sim[i][i] for i in range(b)) / b
    t2i = sum(math.log(sum(math.exp(sim[i][j]) for i in range(b))) - sim[j][j] for j in range(b)) / b
    return 0.5 * (i2t + t2i)


def _direct_sigmoid(image: Tensor, text: Tensor, scale: float, bias: float, *, per_batch: bool = False) -> float:
    image, text = F.normalize(image, dim=-1).tolist(), F.normalize(text, dim=-1).tolist()
    b, total = len(image), 0.0
    for i in range(b):
        for j in range(b):
            label = 1.0 if i == j else -1.0
            logit = scale * sum(p * q for p, q in zip(image[i], text[j])) + bias
            total += math.log1p(math.exp(-label * logit))
    return total / b if per_batch else total / b**2


def test_infonce_equals_direct_computation_and_clamps_temperature():
    image, text = _randn(3, 4, seed=50), _randn(3, 4, seed=51)
    loss = InfoNCELoss()
    assert loss.temperature.item() == pytest.approx(0.07)
    assert loss(image, text).item() == pytest.approx(_direct_infonce(image, text, 0.07), rel=1e-5)
    with torch.no_grad():
        loss.temperature.fill_(2.0)
    assert loss(image, text).item() == pytest.approx(_direct_infonce(image, text, 0.5), rel=1e-5)
    assert loss.temperature.item() == 0.5
    with torch.no_grad():
        loss.temperature.fill_(1e-6)
    loss(image, text)
    assert loss.temperature.item() == pytest.approx(0.001)


def test_infonce_falls_when_pairs_are_aligned_and_learns_its_temperature():
    image = _randn(32, 16, seed=52)
    loss = build_loss("infonce")
    aligned = loss(image, image + 0.05 * _randn(32, 16, seed=53))
    shuffled = loss(image, _randn(32, 16, seed=54))
    assert aligned.item() < 0.05 < 1.0 < shuffled.item()
    shuffled.backward()
    assert loss.temperature.grad is not None and float(loss.temperature.grad) != 0.0


def test_sigmoid_loss_equals_direct_loop():
    image, text, extra = _randn(4, 5, seed=60), _randn(4, 5, seed=61), _randn(4, 5, seed=62)
    loss = SigmoidLoss()
    assert loss.scale == pytest.approx(20.0) and loss.bias.item() == -10.0
    assert loss(image, text).item() == pytest.approx(_direct_sigmoid(image, text, 20.0, -10.0), rel=1e-5)
    both = 0.5 * (_direct_sigmoid(image, text, 20.0, -10.0) + _direct_sigmoid(image, extra, 20.0, -10.0))
    assert loss(image, text, extra).item() == pytest.approx(both, rel=1e-5)
    paper = build_loss("sigmoid", init_scale=10.0, init_bias=-3.0, reduction="sum_over_batch")
    assert paper(image, text).item() == pytest.approx(
        _direct_sigmoid(image, text, 10.0, -3.0, per_batch=True), rel=1e-5
    )
    aligned = loss(image, image + 0.01 * _randn(4, 5, seed=63))
    assert aligned.item() < loss(image, text).item()


def test_sigmoid_scale_is_clamped_to_between_1_and_100():
    image, text = _randn(4, 5, seed=64), _randn(4, 5, seed=65)
    loss = SigmoidLoss()
    with torch.no_grad():
        loss.log_scale.fill_(10.0)
    assert loss(image, text).item() == pytest.approx(_direct_sigmoid(image, text, 100.0, -10.0), rel=1e-5)
    assert loss.log_scale.item() == pytest.approx(math.log(100.0)) and loss.scale == pytest.approx(100.0)
    with torch.no_grad():
        loss.log_scale.fill_(-3.0)
    assert loss(image, text).item() == pytest.approx(_direct_sigmoid(image, text, 1.0, -10.0), rel=1e-5)
    assert loss.log_scale.item() == 0.0


def test_losses_reject_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        InfoNCELoss()(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="extra_text_emb"):
        SigmoidLoss()(torch.randn(4, 3), torch.randn(4, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match="unknown loss kind"):
        build_loss("triplet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction"):
        SigmoidLoss(reduction="sum")  # type: ignore[arg-type]


def test_gather_is_the_identity_in_a_single_process():
    x = torch.randn(3, 2)
    assert gather_across_ranks(x) is x


# ---------------------------------------------------------------------------------------------
# Gathering across two processes (gloo, CPU)

WORLD, LOCAL_BATCH, DIM = 2, 4, 6
GATHER_CASES = [
    ("infonce", {}, False),
    ("sigmoid", {}, False),
    ("sigmoid", {"reduction": "sum_over_batch", "init_scale": 5.0, "init_bias": -2.0}, False),
    ("sigmoid", {}, True),  # multi-positive: an extra caption per image
]


class _Aligner(nn.Module):
    """A linear projector per side and the loss: the module DDP wraps (loss parameters inside)."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.image, self.text, self.loss = nn.Linear(DIM, 3), nn.Linear(DIM, 3), loss

    def forward(self, image: Tensor, text: Tensor, extra: Tensor | None) -> Tensor:
        return self.loss(self.image(image), self.text(text), *([] if extra is None else [self.text(extra)]))


def _check_gather_case(rank: int, kind: str, options: dict, multi_positive: bool) -> None:
    from torch.nn.parallel import DistributedDataParallel

    n = WORLD * LOCAL_BATCH
    image, text, extra = (_randn(n, DIM, seed=70 + s) for s in range(3))
    extra = extra if multi_positive else None
    local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    args = [] if extra is None else [extra]
    reference_loss = build_loss(kind, gather=False, **options)

    # Embedding level: one process on the whole batch against this rank's half with gathering.
    full = [t.clone().requires_grad_() for t in (image, text, *args)]
    whole = reference_loss(*full)
    whole.backward()
    mine = [t[local].clone().requires_grad_() for t in (image, text, *args)]
    share = build_loss(kind, gather=True, **options)(*mine)
    share.backward()
    summed = share.detach().clone()
    dist.all_reduce(summed)
    assert torch.allclose(summed / WORLD, whole.detach(), rtol=1e-5, atol=1e-6), (
        kind,
        float(summed / WORLD),
        float(whole),
    )
    for part, reference in zip(mine, full):  # all_gather's backward sums the ranks' gradients
        assert torch.allclose(part.grad, WORLD * reference.grad[local], rtol=1e-4, atol=1e-6), kind

    # Parameter level: DDP's averaging turns that into exactly the single-process gradient.
    torch.manual_seed(0)
    single = _Aligner(build_loss(kind, gather=False, **options))
    ddp = DistributedDataParallel(_Aligner(build_loss(kind, gather=True, **options)))
    ddp.module.load_state_dict(single.state_dict())
    single(image, text, extra).backward()
    ddp(image[local], text[local], None if extra is None else extra[local]).backward()
    for (name, p_single), p_ddp in zip(single.named_parameters(), ddp.module.parameters()):
        assert torch.allclose(p_ddp.grad, p_single.grad, rtol=1e-4, atol=1e-6), (kind, name, p_ddp.grad, p_single.grad)


def _gather_worker(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        for kind, options, multi_positive in GATHER_CASES:
            _check_gather_case(rank, kind, options, multi_positive)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_losses_match_one_process_on_the_whole_batch():
    """Each rank scores its 4 rows against the 8 gathered columns (positives at rank * 4 + i);
    the ranks' mean loss is the single-process loss on all 8 pairs, each rank's embedding
    gradient is 2x its slice of the single-process gradient, and DDP's averaging over the 2
    ranks gives the projector and the loss parameters the single-process gradient."""
    mp.spawn(_gather_worker, args=(_free_port(),), nprocs=WORLD, join=True)


# ---------------------------------------------------------------------------------------------
# Zero-shot classification and retrieval


def _zero_shot_case() -> tuple[Tensor, Tensor, list[int]]:
    classes = class_text_embeddings(
        [
            torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),  # two prompts: mean of normalised, renormalised
            torch.tensor([[0.0, 0.0, 3.0]]),
            torch.tensor([0.0, 1.0, 0.0]),  # a single prompt as a 1-D tensor
        ]
    )
    images = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.1], [0.0, 0.1, 1.0], [1.0, 0.0, 0.9]])
    return images, classes, [0, 2, 1, 0]


def test_class_text_embeddings_average_normalised_prompts():
    _, classes, _ = _zero_shot_case()
    s = 1 / math.sqrt(2)
    assert torch.allclose(classes, torch.tensor([[s, s, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="different dimensions"):
        class_text_embeddings([torch.ones(2, 3), torch.ones(1, 4)])


def test_zero_shot_accuracy_on_a_hand_built_case():
    images, classes, labels = _zero_shot_case()
    # Image 3 is closer to class 1 (cos .67) than to class 0 (cos .53): the only miss at top-1.
    assert zero_shot_predictions(images, classes).tolist() == [0, 2, 1, 1]
    scores = zero_shot_accuracy(images, classes, labels, topk=(1, 2, 5), chunk_size=3)
    assert scores == pytest.approx({"top1": 75.0, "top2": 100.0, "top5": 100.0, "mean_per_class": 250 / 3})
    per_class = per_class_accuracy(zero_shot_predictions(images, classes), labels, num_classes=4)
    assert per_class[:3].tolist() == [50.0, 100.0, 100.0] and math.isnan(float(per_class[3]))
    with pytest.raises(ValueError, match="3 labels for 4 images"):
        zero_shot_accuracy(images, classes, labels[:3])
    with pytest.raises(ValueError, match="dimension"):
        zero_shot_predictions(images, torch.ones(2, 5))


def test_retrieval_recall_on_a_hand_built_case_with_several_captions_per_image():
    images = torch.eye(3)
    texts = torch.tensor(
        [
            [1.0, 0.0, 0.0],  # image 0
            [0.0, 1.0, 0.2],  # image 0 (but nearest image 1): image 0 still succeeds through caption 0
            [0.9, 0.1, 0.0],  # image 1: image 0 beats it
            [0.0, 0.0, 1.0],  # image 1: image 2 beats it, image 0 ties (counted as beating it)
            [0.0, 0.2, 1.0],  # image 2
        ]
    )
    owner = [0, 0, 1, 1, 2]
    # i2t ranks: image 0 -> 0; image 1 -> 2 (captions 1 and 4 above caption 2); image 2 -> 1 (caption 3)
    # t2i ranks: 0, 2, 1, 2, 0
    recall = retrieval_recall(images, texts, owner, ks=(1, 2, 3), chunk_size=2)
    expected = {
        "i2t_R@1": 100 / 3,
        "i2t_R@2": 200 / 3,
        "i2t_R@3": 100.0,
        "t2i_R@1": 40.0,
        "t2i_R@2": 60.0,
        "t2i_R@3": 100.0,
    }
    expected["mean_R"] = sum(expected.values()) / 6
    assert recall == pytest.approx(expected)
    assert retrieval_recall(images, texts, torch.tensor(owner), ks=(1, 2, 3)) == pytest.approx(expected)


def test_retrieval_recall_is_independent_of_chunking_and_perfect_when_aligned():
    images, texts = _randn(50, 8, seed=80), _randn(120, 8, seed=81)
    owner = torch.arange(120) % 50
    assert retrieval_recall(images, texts, owner, chunk_size=7) == retrieval_recall(images, texts, owner)
    aligned = retrieval_recall(images, images[owner] + 0.01 * texts, owner)
    assert aligned == pytest.approx({key: 100.0 for key in aligned})
    collapsed = retrieval_recall(torch.ones(5, 2), torch.ones(5, 2), torch.arange(5))
    assert collapsed["i2t_R@1"] == 0.0 and collapsed["t2i_R@5"] == 100.0


def test_retrieval_recall_rejects_bad_captions():
    images, texts = torch.randn(3, 4), torch.randn(4, 4)
    with pytest.raises(ValueError, match="3 entries for 4 text"):
        retrieval_recall(images, texts, [0, 1, 2])
    with pytest.raises(ValueError, match="no caption"):
        retrieval_recall(images, texts, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="must index"):
        retrieval_recall(images, texts, [0, 1, 2, 3])
