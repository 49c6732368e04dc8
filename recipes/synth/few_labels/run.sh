#!/usr/bin/env bash
# The seed paper's thesis at toy scale: does self-supervised pretraining of the front-ends help
# audio-visual recognition when labels are few? On the README demo's synthetic LRS2 corpus:
#   1. wav2vec 2.0 on the training audio and MoCo v2 on the training mouth crops, transcripts unread;
#   2. the AVSR model on a seeded 10% of the labelled utterances, once from those front-ends
#      (pretrained.yaml) and once from random initialisation (scratch.yaml): same data, steps, seed;
#   3. avsr-bench on the test split (unseen speakers) and test_seen (held-out clips of training
#      speakers, where the corpus has them): a, v, av, clean and 0 dB babble, both runs,
#      and both validation-WER curves in OUT/few_labels_curves.png.
#
#   bash recipes/synth/few_labels/run.sh [OUT=runs/few_labels]
# Needs the demo's prepared corpus (bash scripts/demo.sh, or its first stages): PREPARED
# (runs/demo/prepared). Environment: LABELLED (0.1), STEPS (3000). Rerunning resumes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
here="$root/recipes/synth/few_labels"
python=$(bash "$root/scripts/setup.sh")
out=${1:-runs/few_labels}
prepared=${PREPARED:-runs/demo/prepared}
labelled=${LABELLED:-0.1}
steps=${STEPS:-3000}
if [[ ! -f $prepared/train.tsv || ! -d $prepared/tokenizer ]]; then
  echo "run.sh: $prepared has no prepared corpus with a tokenizer; run bash scripts/demo.sh first" >&2
  exit 2
fi
data=(dataset.path="$prepared")
# Held-out clips of the training people too, where the corpus has them: the lip-reading gap
# between people seen in training and people never seen.
seen=(); [[ -f $prepared/test_seen.tsv ]] && seen=(--manifest "$prepared/test_seen.tsv")

"$python" -m avsr.cli.train "$here/wav2vec2.yaml" "${data[@]}" --output-dir "$out/wav2vec2"
"$python" -m avsr.cli.train "$here/moco.yaml" "${data[@]}" --output-dir "$out/moco"
for init in scratch pretrained; do
  extra=()
  [[ $init == pretrained ]] && extra=(model.pretrained.audio="$out/wav2vec2/model/wav2vec2.safetensors"
                                      model.pretrained.visual="$out/moco/model/frontend.safetensors")
  "$python" -m avsr.cli.train "$here/$init.yaml" "${data[@]}" dataset.tokenizer="$prepared/tokenizer" \
    dataset.labelled_fraction="$labelled" regime.num_steps="$steps" "${extra[@]}" --output-dir "$out/$init"
  "$python" -m avsr.cli.bench --model "$out/$init/model" --manifest "$prepared/test.tsv" "${seen[@]}" \
    --modalities a,v,av --noise babble --snr clean,0 --out "$out/$init/bench" > /dev/null
done
"$python" -m avsr.eval.curves "$out/scratch" "$out/pretrained" --labels "random init" "self-supervised init" \
  --metric "Word Error Rate (WER)" --category valid/av --out "$out/few_labels_curves.png"
for init in scratch pretrained; do
  echo "== $init: WER (CER) on the test split, hybrid beam search ($out/$init/bench/results.md)"
  cat "$out/$init/bench/results.md"
done
