"""Training configs from YAML files and ``key=value`` overrides, for every training task.

A task's config is a dataclass of fairseq2's recipe sections (``trainer``, ``optimizer``,
``lr_scheduler``, ``regime``, ``common``, ``gang``) plus its own; `load_config` merges the YAML (with
its ``base:`` files) and the overrides over the dataclass defaults, rejects unknown keys with a
close-match hint, structures the result with fairseq2's value converter and validates it. Every
problem is a one-line `TrainConfigError` naming the key.
"""

from __future__ import annotations

import copy
import difflib
import re
import typing
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import fairseq2.recipe  # noqa: F401  (first: importing fairseq2.evaluator first is a circular import in 0.8.1)
import yaml
from fairseq2.recipe.config import (
    COSINE_ANNEALING_LR,
    MYLE_LR,
    NOAM_LR,
    PASSTHROUGH_LR,
    POLYNOMIAL_DECAY_LR,
    TRI_STAGE_LR,
    AdafactorConfig,
    AdamWConfig,
    CommonSection,
    CosineAnnealingLRConfig,
    LRSchedulerSection,
    MixedPrecisionConfig,
    MyleLRConfig,
    NoamLRConfig,
    OptimizerSection,
    PolynomialDecayLRConfig,
    RegimeSection,
    TrainerSection,
    TriStageLRConfig,
)
from fairseq2.utils.structured import StandardValueConverter, StructureError
from fairseq2.utils.validation import StandardObjectValidator, ValidationError

_C = TypeVar("_C")


class TrainConfigError(ValueError):
    """A bad training configuration key or value; the message is one line naming the key."""


def default_trainer() -> TrainerSection:
    """fp32 unless asked (fairseq2 defaults to bf16 autocast; the AVSR task's ``performance``
    section turns bf16 autocast on for CUDA), gradient clipping at 5."""
    return TrainerSection(mixed_precision=MixedPrecisionConfig(mode="off"), max_grad_norm=5.0, gc_every_n_steps=None)


def default_regime(score_metric: str | None = "wer") -> RegimeSection:
    return RegimeSection(
        num_steps=1000,
        validate_every_n_steps=250,
        checkpoint_every_n_steps=250,
        publish_metrics_every_n_steps=10,
        keep_last_n_checkpoints=2,
        score_metric=score_metric,
    )


def default_optimizer(weight_decay: float) -> OptimizerSection:
    return OptimizerSection(config=AdamWConfig(lr=1e-3, betas=(0.9, 0.98), weight_decay=weight_decay))


def default_lr_scheduler(num_warmup_steps: int) -> LRSchedulerSection:
    return LRSchedulerSection(
        name=COSINE_ANNEALING_LR, config=CosineAnnealingLRConfig(num_warmup_steps=num_warmup_steps, final_lr_scale=0.05)
    )


def default_common() -> CommonSection:
    """A stable output directory (no sweep sub-directory): rerunning resumes."""
    return CommonSection(no_sweep_dir=True, cluster="none")


_OPTIMIZERS: dict[str, type] = {"adamw": AdamWConfig, "adafactor": AdafactorConfig}
_LR_SCHEDULERS: dict[str, type | None] = {
    COSINE_ANNEALING_LR: CosineAnnealingLRConfig,
    TRI_STAGE_LR: TriStageLRConfig,
    NOAM_LR: NoamLRConfig,
    MYLE_LR: MyleLRConfig,
    POLYNOMIAL_DECAY_LR: PolynomialDecayLRConfig,
    PASSTHROUGH_LR: None,
}
_COMPONENT_SECTIONS = {"optimizer": _OPTIMIZERS, "lr_scheduler": _LR_SCHEDULERS}
# Values that are free-form here and checked elsewhere (component configs); a config class adds its
# own with a FREE_FORM class attribute (e.g. the model config, checked by the model's from_dict).
_FREE_FORM = {("optimizer", "config"), ("lr_scheduler", "config")}


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=VALUE`` -> (["a", "b", "c"], VALUE parsed as YAML)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise TrainConfigError(f"override {item!r} is not KEY=VALUE (e.g. regime.num_steps=20)")
    parts = key.split(".")
    if any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
        raise TrainConfigError(f"override {item!r}: {key!r} is not a dotted key")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise TrainConfigError(f"override {item!r}: value is not YAML ({str(exc).splitlines()[0]})") from None
    return parts, value


#: Sections whose class depends on their ``kind`` (tagged unions, e.g. `avsr.models.config.AudioConfig`):
#: an override that names another kind replaces the section; it does not merge into the options of
#: the kind it overrides (an fbank front-end has no conv strides). On the command line,
#: ``model.config.audio.kind=fbank`` empties the section first: give the kind before its options.
TAGGED_UNIONS = frozenset({("model", "config", "audio")})


def deep_merge(base: Any, update: Any, path: tuple[str, ...] = ()) -> Any:
    """``update`` over ``base``, mappings merged key by key; ``path`` is where ``base`` sits in a
    training config (for `TAGGED_UNIONS`)."""
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        if path in TAGGED_UNIONS and update.get("kind", base.get("kind")) != base.get("kind"):
            return copy.deepcopy(dict(update))
        out = dict(base)
        for k, v in update.items():
            out[k] = deep_merge(base.get(k), v, (*path, str(k))) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(update)


def _set_path(tree: MutableMapping[str, Any], parts: Sequence[str], value: Any) -> None:
    node = tree
    for p in parts[:-1]:
        child = node.get(p)
        if not isinstance(child, MutableMapping):
            child = {}
            node[p] = child
        node = child
    node[parts[-1]] = value


def _field_types(kls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(kls)
    return {f.name: hints[f.name] for f in fields(kls) if f.init}


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass a type hint refers to (also through ``X | None``), else None."""
    if is_dataclass(tp) and isinstance(tp, type):
        return tp
    for arg in typing.get_args(tp):
        if is_dataclass(arg) and isinstance(arg, type):
            return arg
    return None


def _check_keys(
    tree: Any, kls: type, path: tuple[str, ...], free_form: frozenset[tuple[str, ...]] = frozenset()
) -> None:
    """Unknown keys anywhere in ``tree`` (a dict for dataclass ``kls``) -> TrainConfigError."""
    if not isinstance(tree, Mapping):
        return
    known = _field_types(kls)
    for key, value in tree.items():
        where = ".".join((*path, str(key)))
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {'.'.join((*path, close[0]))}?)" if close else f" (known: {', '.join(known)})"
            raise TrainConfigError(f"unknown config key {where}{hint}")
        if (*path, key) in _FREE_FORM | free_form or (
            len(path) == 1 and path[0] in _COMPONENT_SECTIONS and key == "config"
        ):
            continue
        sub = _dataclass_in(known[key])
        if sub is not None and isinstance(value, Mapping):
            _check_keys(value, sub, (*path, str(key)), free_form)
        elif isinstance(value, list):
            item_type = typing.get_args(known[key])
            sub_item = _dataclass_in(item_type[0]) if item_type else None
            if sub_item is not None:
                for i, entry in enumerate(value):
                    _check_keys(entry, sub_item, (*path, f"{key}[{i}]"), free_form)


def _structure_message(exc: BaseException) -> tuple[str, str]:
    """(dotted path, leaf reason) from fairseq2's chain of StructureErrors."""
    path: list[str] = []
    leaf = str(exc)
    current: BaseException | None = exc
    while current is not None:
        text = str(current)
        m = re.match(r"^`(\w+)` field cannot be structured\.$", text)
        if m:
            path.append(m.group(1))
        m = re.match(r"^Element at index (\d+) cannot be structured\.$", text)
        if m and path:
            path[-1] += f"[{m.group(1)}]"
        leaf = text
        current = current.__cause__
    leaf = re.sub(r"`obj` cannot be parsed as `<class '(\w+)'>`\.", r"expected \1", leaf)
    leaf = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], leaf)
    return ".".join(path), leaf


def _lookup(tree: Any, dotted: str) -> Any:
    node = tree
    for part in re.split(r"\.", dotted):
        m = re.match(r"^(\w+)(?:\[(\d+)\])?$", part)
        if not m or not isinstance(node, Mapping):
            return None
        node = node.get(m.group(1))
        if m.group(2) is not None:
            node = node[int(m.group(2))] if isinstance(node, list) and int(m.group(2)) < len(node) else None
    return node


def _structure(value: Any, kls: type, where: str = "") -> Any:
    try:
        return StandardValueConverter().structure(value, kls)
    except (StructureError, ValueError, TypeError) as exc:
        dotted, leaf = _structure_message(exc)
        full = ".".join(p for p in (where, dotted) if p)
        got = _lookup(value, dotted) if dotted else value
        raise TrainConfigError(f"bad value for {full or 'config'}: {got!r} ({leaf})") from None


def read_config_file(p: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """A YAML config as a dict, with its ``base:`` file(s) (relative to it) merged underneath."""
    if p.resolve() in seen:
        raise TrainConfigError(f"{p}: 'base' files include each other")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrainConfigError(f"{p}: cannot read config ({exc.strerror or exc})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TrainConfigError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, Mapping):
        raise TrainConfigError(f"{p}: expected a mapping of config sections, got {type(loaded).__name__}")
    loaded = dict(loaded)
    bases = loaded.pop("base", None)
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else list(bases or []):
        if not isinstance(base, str):
            raise TrainConfigError(f"{p}: 'base' must be a file name or a list of them")
        merged = deep_merge(merged, read_config_file(p.parent / base, (*seen, p.resolve())))
    return deep_merge(merged, loaded)


def read_user_tree(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML file at ``path`` (with its ``base:`` files) updated by ``KEY=VALUE`` overrides."""
    user: dict[str, Any] = {}
    if path is not None:
        user = read_config_file(Path(path), ())
    for item in overrides:
        parts, value = parse_override(item)
        section = tuple(parts[:-1])
        if section in TAGGED_UNIONS and parts[-1] == "kind":
            node = user
            for p in section:
                node = node.get(p) if isinstance(node, Mapping) else None
            if isinstance(node, Mapping) and node.get("kind") != value:
                _set_path(user, list(section), {})  # another kind: the section's old options do not apply
        _set_path(user, parts, value)
    return user


def load_config(kls: type[_C], user: Mapping[str, Any]) -> _C:
    """``kls()``'s defaults updated by ``user`` (from `read_user_tree`), structured and validated.

    Component sections (``optimizer``, ``lr_scheduler``) take their ``config`` defaults from the
    component named in ``name``. Fields listed in ``kls.FREE_FORM`` (tuples of keys) are taken as
    they are, for the task to check.
    """
    converter = StandardValueConverter()
    defaults = converter.unstructure(kls())
    _check_keys(user, kls, (), frozenset(getattr(kls, "FREE_FORM", ())))
    merged = deep_merge(defaults, user)
    for section, registry in _COMPONENT_SECTIONS.items():
        if section not in merged:
            continue
        sec_user = user.get(section) or {}
        name = merged[section]["name"]
        if name not in registry:
            raise TrainConfigError(f"bad value for {section}.name: {name!r} (one of {', '.join(registry)})")
        if isinstance(sec_user, Mapping) and "name" in sec_user and sec_user["name"] != defaults[section]["name"]:
            merged[section]["config"] = copy.deepcopy(sec_user.get("config") or {})
    config = _structure(merged, kls)
    for section, registry in _COMPONENT_SECTIONS.items():
        sec = getattr(config, section, None)
        if sec is None:
            continue
        component = registry[sec.name]
        if component is None:
            sec.config = None
            continue
        raw = merged[section].get("config") or {}
        if isinstance(raw, Mapping):
            _check_keys(raw, component, (section, "config"))
        sec.config = _structure(raw, component, f"{section}.config")
    try:
        StandardObjectValidator().validate(config)
    except ValidationError as exc:
        raise TrainConfigError(f"invalid config: {' '.join(str(exc).split())}") from None
    scheduler = getattr(getattr(config, "lr_scheduler", None), "config", None)
    regime = getattr(config, "regime", None)
    if (
        isinstance(scheduler, CosineAnnealingLRConfig)
        and scheduler.cycle_len is None
        and regime is not None
        and regime.num_steps is not None
    ):
        if regime.num_steps <= scheduler.num_warmup_steps:  # fairseq2 0.8.1 divides by zero then
            raise TrainConfigError(
                f"lr_scheduler.config.num_warmup_steps ({scheduler.num_warmup_steps}) must be below regime.num_steps ({regime.num_steps})"
            )
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain YAML-safe dict of a training config (paths and dtypes as strings)."""
    return _stringify(StandardValueConverter().unstructure(config))


def _stringify(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _stringify(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_stringify(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


__all__ = [
    "TrainConfigError",
    "config_to_dict",
    "deep_merge",
    "default_common",
    "default_lr_scheduler",
    "default_optimizer",
    "default_regime",
    "default_trainer",
    "load_config",
    "parse_override",
    "read_config_file",
    "read_user_tree",
]
