#!/usr/bin/env bash
# Does self-supervised pretraining help lip reading with few labels? On a synthetic LRW-layout
# corpus: MoCo v2 on the training clips (labels unused), then word classification on a 10% labelled
# share, once from the MoCo front-end and once from random initialisation, same steps and data
# order; prints both validation-accuracy curves and writes OUT/lrw_init_curves.png.
#
#   bash recipes/lrw/compare_init.sh [OUT=runs/lrw]
# Environment: LRW_CLIPS (2000), LRW_WORDS (20), LABELLED (0.1), MOCO_STEPS (1000), WORD_STEPS (1000),
# SEED (the recipe's; another seed draws another labelled share, initialisation and data order, and
# writes OUT/words_{scratch,moco}_seedSEED; MoCo is shared).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=$(bash "$root/scripts/setup.sh")
out=${1:-runs/lrw}
clips=${LRW_CLIPS:-2000}
words=${LRW_WORDS:-20}
labelled=${LABELLED:-0.1}
moco_steps=${MOCO_STEPS:-1000}
word_steps=${WORD_STEPS:-1000}
seed_args=() suffix=""
if [[ -n ${SEED:-} ]]; then seed_args=(common.seed="$SEED") suffix="_seed$SEED"; fi

"$python" -m avsr.cli.synth "$out/corpus" --layout lrw --utterances "$clips" --words "$words" --speakers 20 --seed 0
"$python" -m avsr.cli.prepare lrw "$out/corpus" "$out/prepared"
# a queue of about a fifth of the clips: with more, most clips' own stale keys are negatives
"$python" -m avsr.cli.train "$root/recipes/lrw/moco.yaml" dataset.path="$out/prepared" \
  regime.num_steps="$moco_steps" model.config.moco.queue_size=256 --output-dir "$out/moco"
for init in scratch moco; do
  extra=()
  [[ $init == moco ]] && extra=(model.init_frontend="$out/moco/model")
  "$python" -m avsr.cli.train "$root/recipes/lrw/conf.yaml" dataset.path="$out/prepared" \
    dataset.labelled_fraction="$labelled" regime.num_steps="$word_steps" "${extra[@]}" "${seed_args[@]}" \
    --output-dir "$out/words_$init$suffix"
done
"$python" -m avsr.eval.curves "$out/words_scratch$suffix" "$out/words_moco$suffix" --labels "random init" "MoCo init" \
  --metric Accuracy --out "$out/lrw_init_curves$suffix.png"
