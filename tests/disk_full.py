"""Run a command whose output folder fills up, then again with room: the disk-full tests' harness.

Where this process may mount file systems (root, as on these machines), the folder is a small tmpfs
in a private mount namespace (``unshare --mount``), so the kernel itself answers ENOSPC and nothing
outlives the run; elsewhere the file-size limit RLIMIT_FSIZE makes the kernel refuse the same
writes (EFBIG). Either way the error comes from the real write path (FFmpeg's, Python's).

Run as a script (inside the namespace) it prints one JSON object: each run's exit code and
stderr, and the temporary files found after it.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path


def _temporary_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith(".partial"))


def can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d; s=$?; rmdir $d; exit $s",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


def full_then_room(command: list[str], folder: Path, sizes: list[int], mode: str) -> list[dict]:
    """Run ``command`` once per size in ``sizes`` (bytes of room in ``folder``), then once with
    room. Returns one dict per run: ``rc``, ``stderr``, ``stdout``, ``temporary`` (files left)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = [sys.executable, __file__, mode, str(folder), ",".join(map(str, sizes)), "--", *command]
    if mode == "tmpfs":
        script = ["unshare", "--mount", *script]
    done = subprocess.run(script, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"disk-full harness failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _run(mode: str, folder: Path, size: int | None, command: list[str]) -> dict:
    def limit() -> None:
        if mode == "fsize" and size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    if mode == "tmpfs":
        room = f"size={size}" if size is not None else "size=1g"
        subprocess.run(["mount", "-o", f"remount,{room}", str(folder)], check=True)
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit)
    return {
        "size": size,
        "rc": done.returncode,
        "stderr": done.stderr,
        "stdout": done.stdout,
        "temporary": _temporary_files(folder),
    }


def main(argv: list[str]) -> None:
    mode, folder, sizes = argv[0], Path(argv[1]), [int(s) for s in argv[2].split(",")]
    command = argv[argv.index("--") + 1 :]
    if mode == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(folder)], check=True)
    runs = [_run(mode, folder, size, command) for size in sizes]
    runs.append(_run(mode, folder, None, command))
    print(json.dumps(runs))


if __name__ == "__main__":
    main(sys.argv[1:])
