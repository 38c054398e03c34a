#!/usr/bin/env bash
# A libFuzzer campaign on one target of fuzz/ (cargo-fuzz on the nightly toolchain): seeds its
# corpus from tests/data, then runs RUNS executions. `load` and `kernels` run under
# AddressSanitizer; `compile` without a sanitizer by default (the compiler crate is
# `#![forbid(unsafe_code)]`, and ASan made it 10x slower); SANITIZER=address overrides it.
#
#   scripts/fuzz.sh load|compile|kernels [RUNS] [extra libFuzzer flags...]
#
# Needs `cargo install cargo-fuzz` and a nightly toolchain. Crashes land in
# fuzz/artifacts/TARGET/; a fixed one goes to tests/data/fuzz_regressions/ (load and compile)
# or becomes a fixed case of the kernel's unit tests (kernels). RELIABILITY.md records the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh load|compile|kernels [RUNS] [libFuzzer flags]}
runs=${2:-1000000}
shift $(($# < 2 ? $# : 2))
corpus=fuzz/corpus/$target
mkdir -p "$corpus"
build_flags=()
case $target in
  load)
    # The small models as files: the loader's seeds.
    find tests/data -name '*.onnx' -size -64k | while read -r f; do
      cp "$f" "$corpus/$(printf '%s' "$f" | md5sum | cut -c1-16)"
    done
    ;;
  compile)
    sanitizer=${SANITIZER:-none}
    # One input per seed model, unmutated: the model's index as four little-endian bytes.
    for i in $(seq 0 2047); do
      printf "$(printf '\\x%02x\\x%02x\\x00\\x00' $((i & 255)) $((i >> 8)))" > "$corpus/seed$i"
    done
    ;;
  kernels)
    # One input per kernel family: its smallest case.
    for f in 0 1 2 3 4 5 6; do printf "\\x0$f" > "$corpus/family$f"; done
    # Without the comparison hooks: they took 73% of the time in the scalar references' loops
    # (perf, session 17), and every byte of the tape maps to a valid geometry, so there is no
    # comparison for them to solve. 3-4x the executions per second.
    build_flags=(--no-trace-compares)
    ;;
  *)
    echo "unknown target $target (load, compile or kernels)" >&2
    exit 2
    ;;
esac
sanitizer=${sanitizer:-${SANITIZER:-address}}
# One build folder per sanitizer, so that campaigns with and without one can run side by side.
exec cargo +nightly fuzz run -O -s "$sanitizer" "${build_flags[@]}" --target-dir "fuzz/target/$sanitizer" "$target" "$corpus" -- -runs="$runs" -rss_limit_mb=4096 \
  -print_final_stats=1 "$@"
