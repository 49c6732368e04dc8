#!/usr/bin/env bash
# The README's main command: set up what is missing, synthesise a talking-face corpus (LRS2
# layout), prepare it (mouth crops, 16 kHz audio, manifests, tokenizer), train the small recipe,
# benchmark its test split (WER per modality, clean and under babble noise) and transcribe one
# held-out video with avsr-decode next to its true transcript. About 110 minutes on 2 CPU cores.
# Rerunning resumes: finished stages are skipped, training continues from its last checkpoint.
# Output under runs/demo/ (or $AVSR_DEMO_DIR): corpus/, prepared/, train/ (model/ is what
# avsr-decode uses by default), bench/.
# Smaller and quicker (for a smoke run, not the README's numbers): AVSR_DEMO_UTTERANCES=200
# AVSR_DEMO_STEPS=60 bash scripts/demo.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=$(bash "$root/scripts/setup.sh")
out=${AVSR_DEMO_DIR:-$root/runs/demo}
utterances=${AVSR_DEMO_UTTERANCES:-2000}
speakers=${AVSR_DEMO_SPEAKERS:-20}
steps=${AVSR_DEMO_STEPS:-}
mkdir -p "$out"
start=$SECONDS
stage() { echo; echo "== $1  [$(( (SECONDS - start) / 60 )) min so far]"; }

stage "1/6 synthesise a talking-face corpus: $utterances clips, $speakers speakers (LRS2 layout)"
"$python" -m avsr.cli.synth "$out/corpus" --layout lrs2 --utterances "$utterances" --speakers "$speakers" \
  --seed 0 --check 2 --preview "$out/corpus_strip.png" --people "$out/people_strip.png"

stage "2/6 prepare it: faces, mouth crops, 16 kHz audio, manifests"
"$python" -m avsr.cli.prepare lrs2 "$out/corpus" "$out/prepared" --preview 8

stage "3/6 train the tokenizer (characters) on the training manifests"
"$python" -m avsr.cli.prepare tokenizer "$out/prepared/train.tsv" "$out/prepared/pretrain.tsv" \
  "$out/prepared/tokenizer" --kind char

stage "4/6 train the small recipe (recipes/synth/conf.yaml)"
if [[ -f "$out/train/model/model.yaml" ]]; then
  echo "already trained: $out/train/model"
else
  overrides=(dataset.path="$out/prepared" dataset.tokenizer="$out/prepared/tokenizer")
  if [[ -n "$steps" ]]; then
    overrides+=(regime.num_steps="$steps" regime.validate_every_n_steps="$steps"
      regime.checkpoint_every_n_steps="$steps" regime.publish_metrics_every_n_steps="$steps"
      lr_scheduler.config.num_warmup_steps=$((steps / 5)) "modality_schedule=[{until_step: $steps, inputs: av}]")
  fi
  "$python" -m avsr.cli.train "$root/recipes/synth/conf.yaml" "${overrides[@]}" --output-dir "$out/train"
fi

stage "5/6 benchmark the test split: WER per modality, clean and with babble noise at 0 dB"
"$python" -m avsr.cli.bench --model "$out/train/model" --manifest "$out/prepared/test.tsv" \
  --modalities a,v,av --noise babble --snr clean,0 --decoder greedy --out "$out/bench" > /dev/null

stage "6/6 transcribe a held-out video (a test speaker's clip) with avsr-decode"
held_out=$(head -n 1 "$out/corpus/test.txt")
video="$out/corpus/main/$held_out.mp4"
truth=$(sed -n 's/^Text:[[:space:]]*//p' "$out/corpus/main/$held_out.txt")
echo "avsr-decode $video --model $out/train/model"
heard=$("$python" -m avsr.cli.decode "$video" --model "$out/train/model" --quiet)
printf '  truth:       %s\n  avsr-decode: %s\n' "$truth" "$heard"

echo
echo "== WER (CER) on the test split ($out/bench/results.md; hypotheses in $out/bench/hyps/)"
cat "$out/bench/results.md"
echo
echo "done in $(( (SECONDS - start) / 60 )) min. Transcribe any video with: avsr-decode VIDEO (model: $out/train/model)"
