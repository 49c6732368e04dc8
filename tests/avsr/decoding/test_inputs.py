"""Which files a folder or a list names, and where each one's outputs go."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from avsr.decoding.inputs import collect_inputs


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_a_folder_is_walked_for_media_files_and_mirrored(tmp_path: Path) -> None:
    root = tmp_path / "talks"
    for name in ["b.mp4", "a/x.WAV", "a/deep/y.mkv", "notes.txt", ".hidden.mp4", ".cache/z.mp4"]:
        _touch(root / name)
    inputs, problems = collect_inputs([root])
    assert problems == []
    assert [str(i.name) for i in inputs] == ["b", "a/x", "a/deep/y"]  # sorted per folder, files first
    assert inputs[1].path == (root / "a" / "x.WAV").resolve()


def test_one_name_twice_is_numbered_and_a_single_file_keeps_its_stem(tmp_path: Path) -> None:
    one, two = _touch(tmp_path / "p" / "talk.mp4"), _touch(tmp_path / "q" / "talk.mp4")
    inputs, _ = collect_inputs([one, two, tmp_path / "missing.mp4"])
    assert [str(i.name) for i in inputs] == ["talk.1", "talk.2", "missing"]


def test_list_lines_are_relative_to_the_list_and_stay_inside_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _touch(root / "s1" / "a.mp4")
    _touch(tmp_path / "outside.mp4")
    os.symlink(tmp_path / "outside.mp4", root / "link.mp4")
    listing = root / "list.txt"
    listing.write_text("# my recordings\ns1/a.mp4\n\n../outside.mp4\n/etc/passwd\nlink.mp4\n")
    inputs, problems = collect_inputs([], [listing])
    assert [(str(i.name), i.path) for i in inputs] == [("s1/a", (root / "s1" / "a.mp4").resolve())]
    assert [p.split(": ")[0] for p in problems] == [f"{listing}:4", f"{listing}:5", f"{listing}:6"]
    assert all("outside" in p for p in problems), problems
    missing, problems = collect_inputs([], [tmp_path / "nolist.txt"])
    assert missing == [] and problems[0].startswith(f"{tmp_path / 'nolist.txt'}: cannot be read")


def test_a_symlink_in_a_folder_leading_out_is_not_read(tmp_path: Path) -> None:
    root = tmp_path / "talks"
    _touch(root / "in.mp4")
    os.symlink(_touch(tmp_path / "secret.mp4"), root / "out.mp4")
    inputs, problems = collect_inputs([root])
    assert [i.name for i in inputs] == [PurePosixPath("in")]
    assert len(problems) == 1 and problems[0].startswith(str(root / "out.mp4"))
