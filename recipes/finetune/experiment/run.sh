#!/usr/bin/env bash
# Does starting from a "published" model help on a small new corpus? The fine-tuning path of
# docs/finetune.md, measured at toy scale on two synthetic corpora of different people:
#   1. corpus A (800 clips, 12 people) and corpus B (300 clips, 8 other people: avsr-synth
#      --distinct-from A), both prepared, one character tokenizer (A's);
#   2. auto_avsr's speech recognition architecture at CPU size (auto_avsr_small.yaml) trained on A: the
#      published model; written in auto_avsr's own checkpoint layout (avsr-convert --to auto_avsr)
#      and converted back (avsr-convert auto_avsr), as a user would receive it;
#   3. on B, the same recipe and steps from that folder (model.init, a lower learning rate) and
#      from random initialisation; and the A model on B as it is (no fine-tuning);
#   4. avsr-bench on B's test split (people in neither training set): clean and babble at 0 dB;
#      the validation-WER curves of both B runs in OUT/finetune_curves.png.
#
#   bash recipes/finetune/experiment/run.sh [OUT=runs/ft17]
# Environment: STEPS_A (1500), STEPS_B (500). Rerunning resumes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
here="$root/recipes/finetune/experiment"
python=$(bash "$root/scripts/setup.sh")
out=${1:-runs/ft17}
steps_a=${STEPS_A:-1500}
steps_b=${STEPS_B:-500}
mkdir -p "$out"

"$python" -m avsr.cli.synth "$out/corpus_a" --layout lrs2 --utterances 800 --speakers 12 --seed 1 --quiet
"$python" -m avsr.cli.synth "$out/corpus_b" --layout lrs2 --utterances 300 --speakers 8 --seed 2 \
  --distinct-from "$out/corpus_a" --quiet
for c in a b; do
  [[ -f $out/prepared_$c/test.tsv ]] || "$python" -m avsr.cli.prepare lrs2 "$out/corpus_$c" "$out/prepared_$c" --quiet
done
tok="$out/prepared_a/tokenizer"
[[ -d $tok ]] || "$python" -m avsr.cli.prepare tokenizer "$out/prepared_a/train.tsv" "$out/prepared_a/pretrain.tsv" "$tok" --kind char

train() {  # train NAME CORPUS STEPS [overrides...]
  local name=$1 corpus=$2 steps=$3
  shift 3
  [[ -f $out/$name/model/model.yaml ]] && return
  "$python" -m avsr.cli.train "$here/auto_avsr_small.yaml" dataset.path="$out/prepared_$corpus" dataset.tokenizer="$tok" \
    regime.num_steps="$steps" regime.validate_every_n_steps=$((steps / 4)) "$@" --output-dir "$out/$name"
}
train a a "$steps_a"
"$python" -m avsr.cli.convert --to auto_avsr "$out/a/model" "$out/a_auto_avsr.pth"
[[ -f $out/published/model.yaml ]] || "$python" -m avsr.cli.convert auto_avsr "$out/a_auto_avsr.pth" "$out/published" \
  --tokenizer "$tok" --modality a
train b_finetuned b "$steps_b" model.init="$out/published" optimizer.config.lr=0.0005 lr_scheduler.config.num_warmup_steps=50
train b_scratch b "$steps_b"

for model in published b_finetuned b_scratch; do
  dir="$out/$model"; [[ $model != published ]] && dir="$out/$model/model"
  # one search for all three (a converted auto_avsr folder would otherwise bring auto_avsr's beam 40)
  "$python" -m avsr.cli.bench --model "$dir" --manifest "$out/prepared_b/test.tsv" --modalities a \
    --noise babble --snr clean,0 --beam 10 --ctc-weight 0.3 --search-semantics exact --out "$out/bench_$model" > /dev/null
done
"$python" -m avsr.eval.curves "$out/b_scratch" "$out/b_finetuned" --labels "random init" "fine-tuned from A" \
  --metric "Word Error Rate (WER)" --category valid/audio --out "$out/finetune_curves.png"
for model in published b_finetuned b_scratch; do
  echo "== $model: WER (CER) on corpus B's test split ($out/bench_$model/results.md)"
  cat "$out/bench_$model/results.md"
done
