"""One transcript file per input and format under an output folder (``avsr-decode --out-dir``).

``OUT/<name>.txt`` (the text), ``.json`` (segments, words, times, scores, the model),
``.srt`` and ``.vtt`` (subtitles), where ``<name>`` mirrors the input's place
(`avsr.decoding.inputs`). Each file is written atomically, so an input whose files all exist is
finished: a rerun skips it.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from avsr.media.atomic import atomic_path
from avsr.media.paths import inside

OUTPUT_FORMATS = ("txt", "json", "srt", "vtt")


def decode_document(model: str, results) -> dict:
    """What ``avsr-decode --json`` prints for ``results`` (``FileResult`` s) decoded by ``model``;
    avsr-serve's ``POST /transcribe`` answers the same document."""
    return {"model": model, "files": [result.to_dict() for result in results]}


def output_paths(out_dir: Path, name: PurePosixPath, formats: tuple[str, ...]) -> dict[str, Path]:
    """Where an input of this ``name`` writes each format (inside ``out_dir``, or OutsideRootError)."""
    return {kind: inside(out_dir, f"{name}.{kind}", follow_links=False) for kind in formats}


def finished(paths: dict[str, Path]) -> bool:
    return all(path.is_file() for path in paths.values())


def write_outputs(result, paths: dict[str, Path], model: str) -> None:
    """Write ``result`` (a ``FileResult``) in every format of ``paths``; the JSON names ``model``."""
    from avsr.decoding.subtitles import result_subtitles  # torch: not at import (the CLI's start)

    render = {
        "txt": lambda: result.text + "\n",
        "json": lambda: json.dumps({"model": model, **result.to_dict()}, indent=1) + "\n",
        "srt": lambda: result_subtitles(result, "srt"),
        "vtt": lambda: result_subtitles(result, "vtt"),
    }
    for kind, path in paths.items():  # only the formats asked for are rendered
        with atomic_path(path) as temp:
            Path(temp).write_text(render[kind](), encoding="utf-8")


__all__ = ["OUTPUT_FORMATS", "decode_document", "finished", "output_paths", "write_outputs"]
