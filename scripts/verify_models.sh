#!/usr/bin/env bash
# Verifies every real model of ../shared/models (silero VAD, PP-OCR cls/det in their static and
# dynamic forms, the tiny models and the onnx package's light CNNs) against ONNX Runtime's
# reference outputs, at the models README's tolerances, at -O0 and -O3.
#
#   scripts/verify_models.sh [MODELS_DIR]     (default: ../shared/models)
#
# The three real models are also bundled in tests/data/models and checked by `cargo test`;
# this script covers the rest, whose test inputs are too big to bundle.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
models=${1:-$root/../shared/models}
cases=()
for dir in "$models"/*/; do
  [ -f "$dir/model.onnx" ] && cases+=("${dir%/}")
done
for level in -O0 -O3; do
  echo "== $level"
  cargo run --release -q -p sinter --manifest-path "$root/Cargo.toml" -- \
    verify "$level" --rtol 1e-3 --atol 1e-4 --strict --cache-dir "$root/target/sinter-verify-models" "${cases[@]}"
done
