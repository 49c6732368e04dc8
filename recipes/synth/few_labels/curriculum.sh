#!/usr/bin/env bash
# The seed paper's whole visual curriculum in the few-label experiment: MoCo v2 on the clips of a
# separate synthetic LRW-layout corpus (other people than the LRS2 corpus's, by dlib's recogniser:
# nobody of its test split is seen), word classification on all of that corpus's word labels starting from MoCo, then
# run.sh's few-label AVSR run from wav2vec 2.0 and this visual front-end; avsr-bench as in run.sh.
#
#   bash recipes/synth/few_labels/curriculum.sh [OUT=runs/few_labels]
# Needs run.sh's wav2vec 2.0 stage (OUT/wav2vec2) and the demo's prepared corpus (PREPARED).
# Environment: LRW_SEED (7), LABELLED (0.1), STEPS (3000), WORDS_INIT (moco; random: word
# classification from random initialisation, written to OUT/lrw/words_scratch and OUT/curriculum_no_moco).
# Rerunning resumes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
here="$root/recipes/synth/few_labels"
python=$(bash "$root/scripts/setup.sh")
out=${1:-runs/few_labels}
prepared=${PREPARED:-runs/demo/prepared}
lrw="$out/lrw"
# Held-out clips of the training people too, where the corpus has them: the lip-reading gap
# between people seen in training and people never seen.
seen=(); [[ -f $prepared/test_seen.tsv ]] && seen=(--manifest "$prepared/test_seen.tsv")
words="$lrw/words" run="$out/curriculum" words_init=(model.init_frontend="$lrw/moco/model")
if [[ ${WORDS_INIT:-moco} == random ]]; then words="$lrw/words_scratch" run="$out/curriculum_no_moco" words_init=(); fi
if [[ ! -f $out/wav2vec2/model/wav2vec2.safetensors ]]; then
  echo "curriculum.sh: no $out/wav2vec2/model/wav2vec2.safetensors; run recipes/synth/few_labels/run.sh first" >&2
  exit 2
fi

# Other people than the sentence corpus's (dlib's recogniser, at least 0.6 from each of them): the
# lip reader meets the sentence corpus's test speakers for the first time in its test.
"$python" -m avsr.cli.synth "$lrw/corpus" --layout lrw --utterances 2000 --words 20 --speakers 20 --seed "${LRW_SEED:-7}" \
  --distinct-from "$(dirname "$prepared")/corpus" --check 1
"$python" -m avsr.cli.prepare lrw "$lrw/corpus" "$lrw/prepared"
if [[ ${#words_init[@]} -gt 0 ]]; then
  "$python" -m avsr.cli.train "$root/recipes/lrw/moco.yaml" dataset.path="$lrw/prepared" \
    model.config.moco.queue_size=256 --output-dir "$lrw/moco"
fi
"$python" -m avsr.cli.train "$root/recipes/lrw/conf.yaml" dataset.path="$lrw/prepared" "${words_init[@]}" --output-dir "$words"
"$python" -m avsr.cli.train "$here/pretrained.yaml" dataset.path="$prepared" dataset.tokenizer="$prepared/tokenizer" \
  dataset.labelled_fraction="${LABELLED:-0.1}" regime.num_steps="${STEPS:-3000}" \
  model.pretrained.audio="$out/wav2vec2/model/wav2vec2.safetensors" model.pretrained.visual="$words/model/frontend.safetensors" \
  --output-dir "$run"
"$python" -m avsr.cli.bench --model "$run/model" --manifest "$prepared/test.tsv" "${seen[@]}" \
  --modalities a,v,av --noise babble --snr clean,0 --out "$run/bench" > /dev/null
echo "== $run (wav2vec 2.0; LRW words from ${WORDS_INIT:-moco}): WER (CER) on the test split ($run/bench/results.md)"
cat "$run/bench/results.md"
