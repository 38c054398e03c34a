//! Kernel geometries: the first byte picks a kernel family, the rest steers its shapes,
//! strides, padding, dilations, zero points and values (`sinter_rt::testing`, the cases the
//! property tests run). Every kernel is checked against its reference; a panic is a mismatch
//! or an out-of-bounds access.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sinter_rt::testing::{self, Tape};

fuzz_target!(|data: &[u8]| {
    let Some((&family, rest)) = data.split_first() else {
        return;
    };
    let tape = &mut Tape(rest);
    match family % 7 {
        0 => testing::conv(tape),
        1 => testing::winograd(tape),
        2 => testing::gemm(tape),
        3 => testing::int8(tape),
        4 => testing::pool(tape),
        5 => testing::elementwise(tape),
        _ => testing::quantize(tape),
    }
});
