#!/usr/bin/env bash
# Set up what is missing, then run the whole test suite (extra arguments go to pytest).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=$(bash "$root/scripts/setup.sh")
# avsr-serve's browser test drives the system's chromium (playwright, with no browser download);
# installed here, not by setup.sh, so that using avsr never pulls a browser in
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "[avsr test] installing chromium (the avsr-serve page's browser test)" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  { $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium; } >&2 ||
    echo "[avsr test] could not install chromium: the browser test will be skipped" >&2
fi
cd "$root"
set +e
"$python" -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$code"
