#!/usr/bin/env bash
# vision_language end to end on the synthetic world, on the CPU: fetch ImageNet MobileNetV2
# (scripts/fetch_mobilenet_v2.sh), synthesise the world (held-out colour-shape combinations),
# rank encoder pairs (vl-align), cache features and train the projectors (vl-train), then
# zero-shot classification of the held-out combinations and retrieval on the test split (vl-eval),
# for the trained projectors and for the same projectors untrained (the unaligned baseline).
# Output under runs/vl/ (or $VL_DEMO_DIR). Rerunning resumes and skips finished stages.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=$(bash "$root/scripts/setup.sh")
out=${VL_DEMO_DIR:-runs/vl}
images=${VL_DEMO_IMAGES:-3000}
weights=$(PYTHON="$python" bash "$root/scripts/fetch_mobilenet_v2.sh")
common=(data.train="$out/world/train.tsv" data.valid="$out/world/val.tsv" data.cache_dir="$out/cache" encoders.image.path="$weights")

echo "== 1/4 the synthetic world: $images images"
[[ -f $out/world/world.json ]] || "$python" -m vision_language.cli.synth "$out/world" --images "$images" --seed 0

echo "== 2/4 vl-align: which image encoder fits the text encoder?"
"$python" -m vision_language.cli.align "$root/recipes/vl/align_synth.yaml" pairs="$out/world/train.tsv" \
  cache_dir="$out/cache" --out "$out/align" --quiet

echo "== 3/4 vl-train: projectors on cached features"
[[ -f $out/synth/model/model.yaml ]] || "$python" -m vision_language.cli.train "$root/recipes/vl/synth.yaml" "${common[@]}" \
  --output-dir "$out/synth" --no-rich

echo "== 4/4 vl-eval: zero-shot on held-out combinations, retrieval on the test split"
for variant in trained untrained; do
  extra=()
  [[ $variant == untrained ]] && extra=(--untrained)
  echo "-- $variant projectors"
  "$python" -m vision_language.cli.eval --model "$out/synth/model" --zero-shot "$out/world/zero_shot" --templates synth \
    --pairs "$out/world/test.tsv" --cache-dir "$out/cache" --quiet "${extra[@]}"
done
