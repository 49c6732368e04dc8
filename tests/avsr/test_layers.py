"""The package's layers depend only downwards: media, face, nn (and the small shared modules) ->
data -> models -> decoding -> training -> eval -> cli. Every import counts, also one inside a
function or under TYPE_CHECKING: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import avsr

LAYERS = {
    "media": 0,
    "face": 0,
    "nn": 0,
    "parallel": 0,
    "console": 0,
    "data": 1,
    "models": 2,
    "decoding": 3,
    "training": 4,
    "eval": 5,
    "cli": 6,
    "serve": 6,  # avsr-serve's web page: a command's front end, beside cli
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "avsr" and parts[1] in LAYERS else None


def _imports(path: Path, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return found


def upward_imports() -> list[str]:
    root = Path(avsr.__file__).parent
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("avsr", *path.relative_to(root).with_suffix("").parts))
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        own = _layer(module)
        if own is None:
            continue
        for target in sorted(_imports(path, package)):
            other = _layer(target)
            if other is not None and LAYERS[other] > LAYERS[own]:
                problems.append(f"{module} ({own}) imports {target} ({other})")
    return problems


def test_no_layer_imports_a_higher_one():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The walker itself: a lazy import inside a function is found."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from avsr.cli.common import add_search_arguments\n")
    assert "avsr.cli.common" in _imports(path, "avsr.data")
