//! Kernel geometries: the first byte picks a kernel family, the rest steers its shapes,
//! strides, padding, dilations, zero points and values (`sinter_rt::testing`, the cases the
//! property tests run). Every kernel is checked against its reference; a panic is a mismatch
//! or an out-of-bounds access.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sinter_rt::testing::run(data));
