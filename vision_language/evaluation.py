"""Zero-shot classification and image-text retrieval scores over embeddings (CLIP_benchmark/SAIL
conventions): cosine similarity, accuracies and recalls in percent.

Similarities are computed a block of query rows at a time, so a 25k x 5k retrieval or a
50k x 1k classification stays within a few hundred MB.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "class_text_embeddings",
    "per_class_accuracy",
    "retrieval_recall",
    "zero_shot_accuracy",
    "zero_shot_predictions",
]

DEFAULT_CHUNK = 1024


def _as_matrix(x: Tensor, name: str) -> Tensor:
    if x.dim() != 2 or x.size(0) == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (rows, dim) tensor, got shape {tuple(x.shape)}")
    return F.normalize(x.float(), dim=-1)


def _check_dims(a: Tensor, b: Tensor, a_name: str, b_name: str) -> None:
    if a.size(1) != b.size(1):
        raise ValueError(
            f"{a_name} has dimension {a.size(1)} but {b_name} has {b.size(1)}: project both into one space first"
        )


def class_text_embeddings(per_class_prompt_embeddings: list[Tensor]) -> Tensor:
    """(C, D) class embeddings: each class's prompt embeddings (P_c, D) are L2-normalised,
    averaged and re-normalised (CLIP/SAIL prompt ensembling), so every prompt weighs the same
    and the classes are compared by cosine. A 1-D tensor counts as a single prompt."""
    if len(per_class_prompt_embeddings) == 0:
        raise ValueError("no classes given")
    classes = []
    for c, prompts in enumerate(per_class_prompt_embeddings):
        prompts = prompts.unsqueeze(0) if prompts.dim() == 1 else prompts
        if prompts.dim() != 2 or prompts.size(0) == 0:
            raise ValueError(f"class {c}: expected (prompts, dim) embeddings, got shape {tuple(prompts.shape)}")
        classes.append(F.normalize(F.normalize(prompts.float(), dim=-1).mean(0), dim=-1))
    dims = {int(c.numel()) for c in classes}
    if len(dims) != 1:
        raise ValueError(f"classes have prompt embeddings of different dimensions: {sorted(dims)}")
    return torch.stack(classes)


def _topk_classes(image_emb: Tensor, class_emb: Tensor, k: int, chunk_size: int) -> Tensor:
    """(N, k) class indices by decreasing cosine similarity."""
    images = _as_matrix(image_emb, "image_emb")
    classes = _as_matrix(class_emb, "class_emb")
    _check_dims(images, classes, "image_emb", "class_emb")
    k = min(k, classes.size(0))
    out = [(block @ classes.t()).topk(k, dim=1).indices for block in images.split(chunk_size)]
    return torch.cat(out)


def zero_shot_predictions(image_emb: Tensor, class_emb: Tensor, *, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """(N,) index of the class embedding closest (cosine) to each image."""
    return _topk_classes(image_emb, class_emb, 1, chunk_size)[:, 0]


def _labels_tensor(labels: Sequence[int] | Tensor, n: int, num_classes: int, device: torch.device) -> Tensor:
    labels = torch.as_tensor(labels, dtype=torch.long, device=device).flatten()
    if labels.numel() != n:
        raise ValueError(f"{labels.numel()} labels for {n} images")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(labels.min())}, {int(labels.max())}]")
    return labels


def per_class_accuracy(predictions: Tensor, labels: Sequence[int] | Tensor, num_classes: int) -> Tensor:
    """(num_classes,) top-1 accuracy in percent of each class's images; NaN for a class with no
    image (so an unbalanced test set can be read class by class, or averaged with nanmean)."""
    labels = _labels_tensor(labels, predictions.numel(), num_classes, predictions.device)
    correct = (predictions.flatten() == labels).double()
    totals = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.zeros(num_classes, dtype=torch.float64, device=labels.device).index_add_(0, labels, correct)
    return torch.where(totals > 0, 100.0 * hits / totals.clamp(min=1), torch.full_like(totals, float("nan")))


def zero_shot_accuracy(
    image_emb: Tensor,
    class_emb: Tensor,
    labels: Sequence[int] | Tensor,
    topk: Sequence[int] = (1, 5),
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """Top-k accuracies in percent (keys ``top1``, ``top5``, ...) and ``mean_per_class``, the
    top-1 accuracy averaged over the classes that have images (balanced accuracy). A k above the
    number of classes counts every image as correct, as CLIP_benchmark does."""
    if not topk or min(topk) < 1:
        raise ValueError(f"topk must be a non-empty list of integers >= 1, got {tuple(topk)}")
    ranked = _topk_classes(image_emb, class_emb, max(topk), chunk_size)
    labels = _labels_tensor(labels, ranked.size(0), class_emb.size(0), ranked.device)
    hits = ranked == labels[:, None]
    result = {f"top{k}": 100.0 * float(hits[:, :k].any(1).double().mean()) for k in topk}
    result["mean_per_class"] = float(per_class_accuracy(ranked[:, 0], labels, class_emb.size(0)).nanmean())
    return result


def _caption_owner(
    caption_image: Sequence[int] | Tensor, num_texts: int, num_images: int, device: torch.device
) -> Tensor:
    owner = torch.as_tensor(caption_image, dtype=torch.long, device=device).flatten()
    if owner.numel() != num_texts:
        raise ValueError(
            f"caption_image has {owner.numel()} entries for {num_texts} text embeddings (one image index per caption)"
        )
    if int(owner.min()) < 0 or int(owner.max()) >= num_images:
        raise ValueError(
            f"caption_image must index the {num_images} images, got range [{int(owner.min())}, {int(owner.max())}]"
        )
    missing = torch.bincount(owner, minlength=num_images) == 0
    if bool(missing.any()):
        raise ValueError(
            f"{int(missing.sum())} image(s) have no caption (first: {int(missing.nonzero()[0])}): image->text recall is undefined for them"
        )
    return owner


def retrieval_recall(
    image_emb: Tensor,
    text_emb: Tensor,
    caption_image: Sequence[int] | Tensor,
    ks: Sequence[int] = (1, 5, 10),
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """Recall@k in percent both ways. ``caption_image[j]`` is the image of caption j (COCO: five
    captions per image). Image->text: an image succeeds if ANY of its captions ranks in the top k;
    text->image: a caption succeeds if its image does. Keys ``i2t_R@k``, ``t2i_R@k`` and
    ``mean_R`` (mean of all of them). A negative that ties with the positive counts as ranked
    above it, so collapsed embeddings score chance, not 100 %."""
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty list of integers >= 1, got {tuple(ks)}")
    images = _as_matrix(image_emb, "image_emb")
    texts = _as_matrix(text_emb, "text_emb")
    _check_dims(images, texts, "image_emb", "text_emb")
    owner = _caption_owner(caption_image, texts.size(0), images.size(0), images.device)

    # Image->text: rank of an image's best caption = negatives scoring at least as high.
    i2t_rank = []
    for start in range(0, images.size(0), chunk_size):
        block = images[start : start + chunk_size] @ texts.t()
        positive = owner[None, :] == torch.arange(start, start + block.size(0), device=block.device)[:, None]
        best = block.masked_fill(~positive, float("-inf")).amax(1, keepdim=True)
        i2t_rank.append(((block >= best) & ~positive).sum(1))
    # Text->image: each caption has one image; rank = other images scoring at least as high.
    t2i_rank = []
    for start in range(0, texts.size(0), chunk_size):
        block = texts[start : start + chunk_size] @ images.t()
        own = owner[start : start + block.size(0)]
        score = block.gather(1, own[:, None])
        t2i_rank.append((block >= score).sum(1) - 1)

    result: dict[str, float] = {}
    for name, ranks in (("i2t", torch.cat(i2t_rank)), ("t2i", torch.cat(t2i_rank))):
        for k in ks:
            result[f"{name}_R@{k}"] = 100.0 * float((ranks < k).double().mean())
    result["mean_R"] = sum(result.values()) / len(result)
    return result
