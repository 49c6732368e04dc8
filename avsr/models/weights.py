"""Weights from files into modules, strictly: our safetensors, PyTorch checkpoints (read
weights-only), and foreign front-end weights mapped by key prefix (`load_frontend_weights`).
A file that does not fit is one `WeightsError` line naming it (`avsr.nn.state`'s report)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from safetensors import safe_open
from torch import Tensor, nn

from avsr.nn.state import name_list, state_problems


class WeightsError(RuntimeError):
    """Weights do not fit a model (missing/unexpected keys, shapes) or a file is not usable."""


def _read_safetensors(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(f"{os.fspath(path)}: unreadable safetensors file ({exc})") from None


@dataclass
class LoadReport:
    """What ``load_frontend_weights`` did. ``left_at_init``: target keys not loaded (allowed);
    ``unused``: source keys not used, with the reason; ``ignored``: source keys skipped silently."""

    source: str
    loaded: list[str] = field(default_factory=list)
    left_at_init: dict[str, str] = field(default_factory=dict)
    unused: dict[str, str] = field(default_factory=dict)
    ignored: int = 0

    def summary(self) -> str:
        parts = [f"{self.source}: loaded {len(self.loaded)} tensors"]
        if self.left_at_init:
            by_reason: dict[str, list[str]] = {}
            for k, r in self.left_at_init.items():
                by_reason.setdefault(r, []).append(k)
            for r, ks in by_reason.items():
                parts.append(f"left at initialisation: {name_list(ks, 4)} ({r})")
        if self.unused:
            by_reason = {}
            for k, r in self.unused.items():
                by_reason.setdefault(r, []).append(k)
            for r, ks in by_reason.items():
                parts.append(f"unused from the file: {name_list(ks, 4)} ({r})")
        if self.ignored:
            parts.append(f"{self.ignored} other key(s) ignored")
        return "; ".join(parts)


def weights_only_problem(exc: BaseException) -> str:
    """What torch's weights-only loader refused or could not read, in a few words.

    torch's own message advises re-running with ``weights_only=False``, which would run code from
    the file: that advice is never passed on."""
    text = " ".join(str(exc).split())
    match = re.search(r"GLOBAL (\S+)", text)
    if match:
        return f"it needs {match.group(1).rstrip('.')}, which torch's weights_only unpickler blocks"
    match = re.search(r"(Trying to call reduce for unrecognized function [^.]*|Can only [^.]*)", text)
    if match:
        return match.group(1)
    match = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    if match:
        return f"not a pickle of tensors: {match.group(1).strip() or 'unreadable'}"
    text = re.sub(r"Weights only load failed\..*?trusted source\.", "", text).strip()
    return text[:300] or type(exc).__name__


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A flat ``name -> tensor`` dict from safetensors, or from a PyTorch checkpoint loaded with
    ``torch.load(weights_only=True)`` (``state_dict``/``model``/``module`` sub-dicts are unwrapped)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such file")
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{path}: cannot be read as a weights-only PyTorch checkpoint ({weights_only_problem(exc)})"
        ) from None
    for key in ("state_dict", "model", "module"):
        if (
            isinstance(obj, dict)
            and isinstance(obj.get(key), dict)
            and obj[key]
            and all(isinstance(v, Tensor) for v in obj[key].values())
        ):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: holds no state dict")
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise WeightsError(f"{path}: holds no tensors")
    return state


def load_frontend_weights(
    model_part: nn.Module,
    path: str | os.PathLike[str] | Mapping[str, Tensor],
    prefix_map: Mapping[str, str],
    *,
    allow_missing: Iterable[str] = (),
    missing_reason: str = "not in the source checkpoint",
    unused_reasons: Mapping[str, str] | None = None,
    ignore_prefixes: Iterable[str] = (),
    ignore_unmapped: bool = False,
) -> LoadReport:
    """Copy weights into ``model_part`` through a prefix map, strictly.

    Each source key is renamed by the longest ``prefix_map`` entry it starts with
    (``{"module.encoder_q.layer1.": "trunk.layer1."}``; ``{"": ""}`` maps all). Errors (one line,
    naming the file) when: a target key is not supplied unless it starts with one of
    ``allow_missing``; a mapped key does not exist in ``model_part``; a shape differs; a source key
    is not mapped and is not explained by ``unused_reasons`` (prefix -> reason), not under
    ``ignore_prefixes`` and ``ignore_unmapped`` is false. Returns a ``LoadReport``.
    """
    source = "<state dict>" if isinstance(path, Mapping) else os.fspath(path)
    state = dict(path) if isinstance(path, Mapping) else read_state_dict(path)
    unused_reasons = dict(unused_reasons or {})
    ignore_prefixes = tuple(ignore_prefixes)
    allow_missing = tuple(allow_missing)
    prefixes = sorted(prefix_map, key=len, reverse=True)
    report = LoadReport(source)
    mapped: dict[str, Tensor] = {}
    unexplained: list[str] = []
    for key, tensor in state.items():
        hit = next((p for p in prefixes if key.startswith(p)), None)
        if hit is not None:
            mapped[prefix_map[hit] + key[len(hit) :]] = tensor
            continue
        reason = next((r for p, r in unused_reasons.items() if key.startswith(p)), None)
        if reason is not None:
            report.unused[key] = reason
        elif ignore_unmapped or key.startswith(ignore_prefixes):
            report.ignored += 1
        else:
            unexplained.append(key)
    own = model_part.state_dict()
    needed = {k: v for k, v in own.items() if k in mapped or not k.startswith(allow_missing)}
    problems = state_problems(
        needed, mapped, missing="key(s) of the model not in the file", unexpected="mapped key(s) the model lacks"
    )
    if unexplained:
        problems.append(f"{len(unexplained)} key(s) of the file not mapped: {name_list(unexplained)}")
    if problems:
        raise WeightsError(f"{source}: " + "; ".join(problems))
    with torch.no_grad():
        for k, t in mapped.items():
            own[k].copy_(t.to(dtype=own[k].dtype))
    report.loaded = sorted(mapped)
    report.left_at_init = {k: missing_reason for k in own if k not in mapped}
    return report


__all__ = ["LoadReport", "WeightsError", "load_frontend_weights", "read_state_dict"]
