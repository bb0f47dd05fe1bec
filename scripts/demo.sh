#!/usr/bin/env bash
# The main job: build qlib, convert the bundled Llama model to 4-bit MLX-affine, and generate text
# from the quantized model (greedy), then from the original for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
model=../shared/models/aidreams-260k
out=build/aidreams-260k-q4
build/examples/qlib-convert/qlib-convert --hf-path "$model" --out "$out" -q --q-bits 4 --q-group-size 32 --force
echo "--- 4-bit model:"
build/examples/qlib-run/qlib-run --model "$out" --prompt "The machine" -n 38 --temp 0
echo "--- original f32 model:"
build/examples/qlib-run/qlib-run --model "$model" --prompt "The machine" -n 38 --temp 0
