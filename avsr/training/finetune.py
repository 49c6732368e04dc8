"""Fine-tuning controls (the ``finetune`` section of an avsr-train config): parts frozen until a
step, layer-wise learning-rate decay and a lower rate for pretrained parts.

The rates become fairseq2 optimizer parameter groups (``optimizer.config.groups``, one per part,
the most specific name first, since fairseq2 gives a parameter to the first group that matches it).
A part ``d`` levels below the top trains at ``lr * layer_decay ** d``. The levels, bottom to top:
the front-ends; each per-modality encoder's input projection, then its layers one by one; the
fusion (and the absent-modality embeddings); the joint encoder's layers; the CTC head and the
decoder at the top (as in BEiT/ELECTRA-style decay, the output side moves most). Every part except
the output layers and the absent embeddings (what a new tokenizer or a new option starts fresh)
is also scaled by ``pretrained_lr_scale``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from avsr.models.config import FREEZABLE, AVSRConfig
from avsr.models.vocabulary import TOKEN_ROWS


class FinetuneConfigError(ValueError):
    """A bad ``finetune`` setting; the message is one line."""


@dataclass(kw_only=True)
class FreezeUntil:
    modules: list[str]
    """Parts of the model (audio_frontend, visual_frontend, audio_encoder, video_encoder, fusion,
    encoder, ctc_head, decoder): no gradient and eval mode (BatchNorm statistics kept) ..."""
    until_step: int
    """... up to and including this step."""


@dataclass(kw_only=True)
class FinetuneSection:
    freeze: list[FreezeUntil] = field(default_factory=list)
    """E.g. ``[{modules: [visual_frontend, audio_frontend], until_step: 1000}]``."""
    layer_decay: float = 1.0
    """Layer-wise learning-rate decay per level below the top (1: none; 0.8 is common)."""
    pretrained_lr_scale: float = 1.0
    """Learning-rate factor for every part but the output layers and absent embeddings."""


def check_finetune(section: FinetuneSection) -> None:
    for stage in section.freeze:
        for name in stage.modules:
            if name not in FREEZABLE:
                raise FinetuneConfigError(f"finetune.freeze: {name!r} is not one of {', '.join(FREEZABLE)}")
        if stage.until_step < 1:
            raise FinetuneConfigError(f"finetune.freeze: until_step must be >= 1, got {stage.until_step}")
    for key in ("layer_decay", "pretrained_lr_scale"):
        value = getattr(section, key)
        if not 0.0 < value <= 1.0:
            raise FinetuneConfigError(f"finetune.{key}: must be in (0, 1], got {value!r}")


def frozen_at(section: FinetuneSection, step: int) -> frozenset[str]:
    """The parts ``freeze`` holds at ``step`` (1-based, as fairseq2 counts)."""
    return frozenset(name for stage in section.freeze if step <= stage.until_step for name in stage.modules)


def part_levels(config: AVSRConfig) -> tuple[list[tuple[str, int]], int]:
    """(parameter-name prefix, level) for every part, and the top level (the CTC head and decoder)."""
    levels: list[tuple[str, int]] = [("audio_frontend.", 0), ("visual_frontend.", 0)]
    deepest = 0
    for name, branch, encoder in (
        ("audio_encoder", config.audio, config.audio_encoder),
        ("video_encoder", config.visual, config.video_encoder),
    ):
        if branch is None:
            continue
        levels.append((f"{name}.proj.", 1))
        levels += [(f"{name}.layers.layers.{i}.", 2 + i) for i in range(encoder.layers)]
        levels.append((f"{name}.", 2 + encoder.layers))  # its final norm
        deepest = max(deepest, 2 + encoder.layers)
    fusion = deepest + 1
    levels += [("fusion.", fusion), ("absent_audio", fusion), ("absent_video", fusion)]
    top = fusion + 1
    if config.encoder is not None:
        levels += [(f"encoder.layers.layers.{i}.", fusion + 1 + i) for i in range(config.encoder.layers)]
        levels.append(("encoder.", fusion + 1 + config.encoder.layers))
        top = fusion + 2 + config.encoder.layers
    levels += [("ctc_head.", top), ("decoder.", top)]
    return levels, top


def _output_prefixes() -> list[str]:
    return sorted({key.rsplit(".", 1)[0] + "." for key in TOKEN_ROWS}) + ["absent_audio", "absent_video"]


def parameter_groups(
    config: AVSRConfig, section: FinetuneSection, lr: float, names: Iterable[str] | None = None
) -> list[dict[str, object]]:
    """``{"params": regex, "lr": rate}`` per part, most specific first; empty when neither rate
    setting is used. With the model's parameter ``names``, parts that hold none get no group.
    (DDP's ``module.`` prefix is allowed in the names.)"""
    if section.layer_decay == 1.0 and section.pretrained_lr_scale == 1.0:
        return []
    levels, top = part_levels(config)
    outputs = _output_prefixes()
    rows = [
        (
            prefix,
            lr * section.layer_decay ** (top - level) * (1.0 if prefix in outputs else section.pretrained_lr_scale),
        )
        for prefix, level in levels
    ]
    placed = {prefix for prefix, _ in levels}
    rows += [
        (prefix, lr) for prefix in outputs if prefix not in placed
    ]  # the decoder's embedding and output: top, fresh
    rows.sort(key=lambda row: -len(row[0]))
    if names is not None:  # keep a part only if some parameter would land in its group
        names = list(names)
        claimed: set[str] = set()
        kept = []
        for prefix, rate in rows:
            mine = {n for n in names if n.startswith(prefix) and n not in claimed}
            if mine:
                claimed |= mine
                kept.append((prefix, rate))
        rows = kept
    return [{"params": r"(module\.)?" + re.escape(prefix), "lr": rate} for prefix, rate in rows]


def rates_by_name(groups: Iterable[dict[str, object]], names: Iterable[str], lr: float) -> dict[str, float]:
    """Which rate each parameter name gets from ``groups`` (first match, else ``lr``), as fairseq2
    assigns them: for reports and tests."""
    groups = list(groups)
    out = {}
    for name in names:
        out[name] = next((float(g["lr"]) for g in groups if re.match(str(g["params"]), name)), lr)  # type: ignore[arg-type]
    return out


__all__ = [
    "FinetuneConfigError",
    "FinetuneSection",
    "FreezeUntil",
    "check_finetune",
    "frozen_at",
    "parameter_groups",
    "part_levels",
    "rates_by_name",
]
