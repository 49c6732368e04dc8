#!/usr/bin/env bash
# Make (or reuse) the environment avsr runs in, then print the path of its python.
#
# The torch wheels fairseq2 needs weigh about 7 GB, so the virtual environment lives outside the
# checkout (default ~/.cache/avsr/venv, override with AVSR_VENV) and is reused by every clone on
# this machine. Dependencies are reinstalled only when pyproject.toml changes; the checkout itself
# is always (re)installed in editable mode, which takes seconds.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${AVSR_VENV:-$HOME/.cache/avsr/venv}

log() { echo "[avsr setup] $*" >&2; }

# fairseq2's native library loads the system libsndfile.
# (grep reads the whole list: with -q it would stop early, ldconfig would die of SIGPIPE and
# pipefail would report the library missing on every run)
if ! { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep 'libsndfile\.so\.1' >/dev/null; then
  log "installing libsndfile1 (fairseq2 needs it)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libsndfile1 >&2
fi

if [ ! -x "$venv/bin/python" ]; then
  python=""
  for candidate in ${AVSR_PYTHON:-} python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))'; then
      python=$candidate
      break
    fi
  done
  [ -n "$python" ] || { log "need Python 3.10-3.12 (fairseq2 0.8.1 has no wheels for others)"; exit 1; }
  log "creating $venv with $python"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip setuptools wheel >&2
fi

stamp="$venv/.avsr-deps-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "installing dependencies (first time: several GB, several minutes)"
  "$venv/bin/pip" install -q -e "$root[test]" >&2
  rm -f "$venv"/.avsr-deps-*
  touch "$stamp"
else
  # setuptools warns about every editable install; show its output only when the install fails
  pip_log=$(mktemp)
  if ! "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$root" >"$pip_log" 2>&1; then
    cat "$pip_log" >&2
    rm -f "$pip_log"
    exit 1
  fi
  rm -f "$pip_log"
fi
echo "$venv/bin/python"
