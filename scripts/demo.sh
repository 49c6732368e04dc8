#!/usr/bin/env bash
# The main job on the embedded default: set up what is missing, synthesise a small LRS2-layout
# corpus, check its lip sync, and print what was made. Rerunning resumes (nothing is redone).
# Later stages (train, decode, WER table) join this script as the toolkit grows.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=$(bash "$root/scripts/setup.sh")
out=${AVSR_DEMO_DIR:-$root/runs/demo}
mkdir -p "$out"
"$python" -m avsr.cli.synth "$out/corpus" --layout lrs2 --utterances 200 --speakers 10 --seed 0 \
  --check 2 --preview "$out/corpus_strip.png" "$@"
