#!/usr/bin/env bash
# sinter-rt's unit tests under Miri (nightly; `rustup +nightly component add miri`): the arena
# and its borrow checks, the thread pool (Miri also looks for data races), the static-model
# cell, the run-time shape plans, quantization (the random layouts with SINTER_PROPTEST_CASES
# cases), casts, half floats and the float8/float4 formats, the misc, reduction, loss,
# custom-op, einsum, ML, signal, sampling and resize kernels, and the bigger kernels whose
# tests shrink under `cfg(miri)` (small shapes, strided sweeps, fixed cases of a few thousand
# multiply-adds; the native run is unchanged): shapes and transposes, elementwise broadcasting,
# softmax, normalizations, the vector math functions, n-bit products, quantized ops,
# attention, GEMM and the convolutions (channels first and last, Winograd, the fused
# convolution-pool and depthwise-pointwise passes; `conv::` also
# matches `int8::conv::`). Under Miri no CPU feature is detected, so every kernel takes its
# portable path. Each module runs for seconds to about three minutes; `pool::` is left out (its
# tests compare NaN bits, which Miri randomizes) and so is the rest of `int8::` (too slow);
# RELIABILITY.md says which module takes how long.
#
#   scripts/miri.sh [extra libtest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
export SINTER_PROPTEST_CASES=${SINTER_PROPTEST_CASES:-4}
# proptest reads the clock and the OS's randomness; its failure files live on disk.
export MIRIFLAGS=${MIRIFLAGS:-"-Zmiri-disable-isolation"}
for module in arena:: threads:: static_model:: dynamic:: quant:: cast:: half:: misc:: reduce:: \
  lowp:: loss:: custom:: einsum:: ml:: signal:: sample:: resize:: shape:: elementwise:: \
  softmax:: norm:: math:: nbits:: qlinear:: attention:: gemm:: conv:: conv_nhwc:: \
  conv_winograd:: conv_pool:: conv_dw_pw::; do
  echo "== $module"
  cargo +nightly miri test -q -p sinter-rt --features std --lib -- "$module" "$@"
done
