#!/usr/bin/env bash
# Does starting from a "published" model help on a small new corpus? The fine-tuning path of
# docs/finetune.md, measured at toy scale on two synthetic corpora of different people (results:
# docs/experiments/finetune.md):
#   1. corpus A (800 clips, 12 people) and corpus B (300 clips, 8 other people: avsr-synth
#      --distinct-from A), both prepared, one character tokenizer (A's);
#   2. a published architecture at CPU size trained on A (ARCH=auto_avsr: auto_avsr's speech
#      recognition model, auto_avsr_small.yaml, written in auto_avsr's own checkpoint layout with
#      avsr-convert --to auto_avsr and converted back, as a user would receive it; ARCH=avhubert:
#      AV-HuBERT's seq2seq model, avhubert_small.yaml, attention-only, its exported folder);
#   3. on B, the same recipe and steps from that folder (model.init, a lower learning rate) and
#      from random initialisation; and the A model on B as it is (no fine-tuning);
#   4. avsr-bench on B's test split (people in neither training set): clean and babble at 0 dB;
#      the validation-WER curves of both B runs in OUT/<arch>_finetune_curves.png.
#
#   [ARCH=auto_avsr|avhubert] bash recipes/finetune/experiment/run.sh [OUT=runs/ft17]
# Environment: STEPS_A (1500), STEPS_B (500). Rerunning resumes. Outputs of ARCH=avhubert carry
# the prefix avhubert_.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
here="$root/recipes/finetune/experiment"
python=$(bash "$root/scripts/setup.sh")
out=${1:-runs/ft17}
arch=${ARCH:-auto_avsr}
steps_a=${STEPS_A:-1500}
steps_b=${STEPS_B:-500}
case $arch in
  auto_avsr) p="" ;;
  avhubert) p="avhubert_" ;;
  *) echo "run.sh: ARCH must be auto_avsr or avhubert, not $arch" >&2; exit 2 ;;
esac
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
  "$python" -m avsr.cli.train "$here/${arch}_small.yaml" dataset.path="$out/prepared_$corpus" dataset.tokenizer="$tok" \
    regime.num_steps="$steps" regime.validate_every_n_steps=$((steps / 4)) "$@" --output-dir "$out/$name"
}
train "${p}a" a "$steps_a"
published="$out/${p}published"
if [[ $arch == auto_avsr ]]; then
  "$python" -m avsr.cli.convert --to auto_avsr "$out/a/model" "$out/a_auto_avsr.pth"
  [[ -f $published/model.yaml ]] || "$python" -m avsr.cli.convert auto_avsr "$out/a_auto_avsr.pth" "$published" \
    --tokenizer "$tok" --modality a
else
  published="$out/${p}a/model"
fi
train "${p}b_finetuned" b "$steps_b" model.init="$published" optimizer.config.lr=0.0005 lr_scheduler.config.num_warmup_steps=50
train "${p}b_scratch" b "$steps_b"

models=("$published" "$out/${p}b_finetuned/model" "$out/${p}b_scratch/model")
names=("${p}published" "${p}b_finetuned" "${p}b_scratch")
for i in 0 1 2; do
  # one search for all (a converted auto_avsr folder would otherwise bring auto_avsr's beam 40)
  "$python" -m avsr.cli.bench --model "${models[$i]}" --manifest "$out/prepared_b/test.tsv" --modalities a \
    --noise babble --snr clean,0 --beam 10 --ctc-weight 0.3 --search-semantics exact --out "$out/bench_${names[$i]}" > /dev/null
done
"$python" -m avsr.eval.curves "$out/${p}b_scratch" "$out/${p}b_finetuned" --labels "random init" "fine-tuned from A" \
  --metric "Word Error Rate (WER)" --category valid --out "$out/${p}finetune_curves.png"
for name in "${names[@]}"; do
  echo "== $name: WER (CER) on corpus B's test split ($out/bench_$name/results.md)"
  cat "$out/bench_$name/results.md"
done
