#!/usr/bin/env bash
# Does a language model help a recogniser trained on a small labelled set? Shallow fusion
# (avsr-bench --lm) of a token LM (recipes/lm/synth.yaml) trained on text the recogniser never heard:
#
#   bash recipes/lm/experiment/run.sh open [OUT=runs/lm_open]
#       avsr-synth's open vocabulary (random sentences of 480 news words): a 400-clip corpus of 8
#       people, an audio recogniser (auto_avsr's ASR architecture at CPU size, recipes/finetune/
#       experiment/auto_avsr_small.yaml) trained 2,000 steps on its 260 training clips, and an LM on
#       20,000 sentences drawn from the same vocabulary (text only: no recording of them exists):
#       d=128, 3 layers, no dropout (the text is unbounded), lr 0.003 on a cosine over 3,800 steps,
#       stopped at 1,500 (perplexity 2.5 per character by then; the text's floor is 2.26).
#   bash recipes/lm/experiment/run.sh grid [OUT=runs/ft17]
#       the fine-tuning experiment's GRID corpora (recipes/finetune/experiment/run.sh): the LM on
#       corpus A's transcripts, the recognisers of corpus B (from scratch, and fine-tuned from A).
#
# For each recogniser the LM weight is picked on the validation split (clean) among 0, 0.2, ...,
# 1.2, then the length bonus (a score per output token; fusion makes long outputs cost more) among
# 0, 0.5, 1, 2, for the search without the LM and with it at its weight. Then avsr-bench on the test
# split (people in no training set), clean and babble at 0 dB, without and with the LM as picked.
# Prints a Markdown table. Environment: LM_STEPS (1500).
# Rerunning reuses what exists.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
python=$(bash "$root/scripts/setup.sh")
mode=${1:-open}
steps=${LM_STEPS:-1500}

case $mode in
  open)
    out=${2:-runs/lm_open}
    mkdir -p "$out"
    "$python" -m avsr.cli.synth "$out/corpus" --layout lrs2 --vocabulary open --utterances 400 --speakers 8 --seed 3 --quiet
    [[ -f $out/prepared/test.tsv ]] || "$python" -m avsr.cli.prepare lrs2 "$out/corpus" "$out/prepared" --quiet
    tok="$out/prepared/tokenizer"
    [[ -d $tok ]] || "$python" -m avsr.cli.prepare tokenizer "$out/prepared/train.tsv" "$out/prepared/pretrain.tsv" "$tok" --kind char
    [[ -f $out/asr/model/model.yaml ]] || "$python" -m avsr.cli.train "$root/recipes/finetune/experiment/auto_avsr_small.yaml" \
      dataset.path="$out/prepared" dataset.tokenizer="$tok" regime.num_steps=2000 regime.validate_every_n_steps=500 \
      --output-dir "$out/asr" --no-rich > "$out/asr.log" 2>&1
    [[ -f $out/lm_text.txt ]] || "$python" -c "
import sys, numpy as np
from avsr.data.synth.text import SentenceSampler
rng, sampler = np.random.default_rng(7), SentenceSampler('open')
open(sys.argv[1], 'w').write(''.join(' '.join(sampler.sentence(rng)) + '\n' for _ in range(20000)))" "$out/lm_text.txt"
    lm_args=(dataset.path=null "dataset.text_files=[$out/lm_text.txt]" model.config.model_dim=128 model.config.layers=3
      model.config.heads=4 model.config.ffn_dim=512 model.config.dropout=0.0 optimizer.config.lr=0.003
      lr_scheduler.config.num_warmup_steps=200 lr_scheduler.config.cycle_len=3800)
    prepared="$out/prepared" models=(asr)
    ;;
  grid)
    out=${2:-runs/ft17}
    [[ -f $out/b_scratch/model/model.yaml && -f $out/b_finetuned/model/model.yaml ]] ||
      bash "$root/recipes/finetune/experiment/run.sh" "$out"
    tok="$out/prepared_a/tokenizer"
    lm_args=(dataset.path="$out/prepared_a")
    prepared="$out/prepared_b" models=(b_scratch b_finetuned)
    ;;
  *) echo "run.sh: the first argument is open or grid, not $mode" >&2; exit 2 ;;
esac
lm="$out/lm"
[[ -f $lm/model/model.yaml ]] || "$python" -m avsr.cli.train "$root/recipes/lm/synth.yaml" "${lm_args[@]}" \
  dataset.tokenizer="$tok" regime.num_steps="$steps" --output-dir "$lm" --no-rich > "$out/lm.log" 2>&1

bench() {  # bench MODEL MANIFEST OUT SNRS [flags...]
  local model=$1 manifest=$2 dir=$3 snrs=$4
  shift 4
  [[ -f $dir/results.json ]] || "$python" -m avsr.cli.bench --model "$model" --manifest "$manifest" --modalities a \
    --noise babble --snr "$snrs" --beam 10 --ctc-weight 0.3 --search-semantics exact --quiet --out "$dir" "$@" > /dev/null 2>&1
}
wer() {  # wer RESULTS_JSON NOISE -> WER % (CER %)
  "$python" -c "import json,sys; r=[x for x in json.load(open(sys.argv[1]))['results'] if x['noise']==sys.argv[2]][0]; print(f\"{100*r['wer']:.1f} ({100*r['cer']:.1f})\")" "$1" "$2"
}
val_wer() {  # val_wer TAG [flags...] -> the validation split's WER (clean), benched once per TAG
  local dir="$out/lm_bench/${name}_val_$1"
  shift
  bench "$model" "$prepared/val.tsv" "$dir" clean "$@"
  "$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['wer'])" "$dir/results.json"
}
lower() { "$python" -c "import sys; sys.exit(0 if sys.argv[2] == '' or float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }
lm_flags() { [[ $1 == 0 ]] || echo "--lm $lm/model --lm-weight $1"; }

echo "| model | no LM: length bonus | LM weight, length bonus | clean, no LM | clean, LM | babble 0 dB, no LM | babble 0 dB, LM |"
echo "|---|---|---|---|---|---|---|"
for name in "${models[@]}"; do
  model="$out/$name/model"
  w_best=0 w_wer=
  for w in 0 0.2 0.4 0.6 0.8 1.0 1.2; do
    # shellcheck disable=SC2046
    v=$(val_wer "w$w" $(lm_flags "$w"))
    if lower "$v" "$w_wer"; then w_best=$w w_wer=$v; fi
  done
  for pair in "0 nolm" "$w_best lm"; do  # the length bonus of each, tuned at its weight
    read -r w tag <<< "$pair"
    b_best=0 b_wer=$(val_wer "w$w" $(lm_flags "$w"))
    for b in 0.5 1 2; do
      # shellcheck disable=SC2046
      v=$(val_wer "w${w}_b$b" $(lm_flags "$w") --length-bonus "$b")
      if lower "$v" "$b_wer"; then b_best=$b b_wer=$v; fi
    done
    printf -v "bonus_$tag" %s "$b_best"
  done
  no="$out/lm_bench/${name}_test_w0_b$bonus_nolm" yes="$out/lm_bench/${name}_test_w${w_best}_b$bonus_lm"
  bench "$model" "$prepared/test.tsv" "$no" clean,0 --length-bonus "$bonus_nolm"
  # shellcheck disable=SC2046
  bench "$model" "$prepared/test.tsv" "$yes" clean,0 $(lm_flags "$w_best") --length-bonus "$bonus_lm"
  echo "| $name | $bonus_nolm | $w_best, $bonus_lm | $(wer "$no/results.json" clean) | $(wer "$yes/results.json" clean) | $(wer "$no/results.json" babble) | $(wer "$yes/results.json" babble) |"
done
