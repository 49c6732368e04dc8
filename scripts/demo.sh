#!/usr/bin/env bash
# The main job on the embedded default: set up what is missing, synthesise a small LRS2-layout
# corpus, prepare it (mouth crops, 16 kHz audio, manifests) and train its tokenizer, printing what
# each step made. Rerunning resumes: nothing finished is redone.
# Later stages (train, decode, WER table) join this script as the toolkit grows.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=$(bash "$root/scripts/setup.sh")
out=${AVSR_DEMO_DIR:-$root/runs/demo}
mkdir -p "$out"

echo "== 1. synthesise a talking-face corpus (LRS2 layout)"
"$python" -m avsr.cli.synth "$out/corpus" --layout lrs2 --utterances 200 --speakers 10 --seed 0 \
  --check 2 --preview "$out/corpus_strip.png"

echo "== 2. prepare it: faces, mouth crops, audio, manifests"
"$python" -m avsr.cli.prepare lrs2 "$out/corpus" "$out/prepared" --preview 8

echo "== 3. train the tokenizer (characters) on the training manifests"
"$python" -m avsr.cli.prepare tokenizer "$out/prepared/train.tsv" "$out/prepared/pretrain.tsv" \
  "$out/prepared/tokenizer" --kind char
