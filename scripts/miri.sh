#!/usr/bin/env bash
# sinter-rt's unit tests under Miri (nightly; `rustup +nightly component add miri`), for the
# modules whose tests finish in Miri's interpreter in seconds: the arena and its borrow checks,
# the thread pool (Miri also looks for data races), the static-model cell, the run-time shape
# plans, quantization (the random layouts with SINTER_PROPTEST_CASES cases), casts, half
# floats and the float8/float4 formats, the misc, reduction, loss, custom-op, einsum, ML,
# signal, sampling and resize kernels. Under Miri no CPU feature is detected, so every
# kernel takes its portable path. The other modules' tests (big convolutions, GEMMs and sweeps
# of 200 000 values) run for more than five minutes each under Miri; RELIABILITY.md says which.
#
#   scripts/miri.sh [extra libtest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
export SINTER_PROPTEST_CASES=${SINTER_PROPTEST_CASES:-4}
# proptest reads the clock and the OS's randomness; its failure files live on disk.
export MIRIFLAGS=${MIRIFLAGS:-"-Zmiri-disable-isolation"}
for module in arena:: threads:: static_model:: dynamic:: quant:: cast:: half:: misc:: reduce:: \
  lowp:: loss:: custom:: einsum:: ml:: signal:: sample:: resize::; do
  echo "== $module"
  cargo +nightly miri test -q -p sinter-rt --features std --lib -- "$module" "$@"
done
