//! A freestanding program (no `std`, no allocator, no unwinding) that runs both models once:
//! what a microcontroller image holds, built for the host so that `size` reports its code
//! (`text`, the weights included), initialized data and `.bss` (the arenas).
//!
//! `cargo build --release --bin firmware && size target/release/firmware`
#![no_std]
#![no_main]

use core::panic::PanicInfo;

// The host's C library: the start files' `__libc_start_main` and `memset`/`memcpy` (on a
// microcontroller, its toolchain's libc or compiler-builtins' `mem` feature provides those).
#[link(name = "c")]
extern "C" {}

/// The host's precompiled `core` names an unwinding personality; this program aborts on panic
/// and never unwinds, so it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {}
}

/// The C runtime's entry point: one inference of each model on zeros; exit status 0 when both
/// return finite outputs.
#[no_mangle]
pub extern "C" fn main() -> i32 {
    let Some((cnn, vad)) = no_std_model::models() else {
        return 1;
    };
    // Zeros of each input's length (inferred from `run`'s array types).
    let image = core::array::from_fn(|_| 0.0f32);
    let logits = cnn.run(&image);
    let (audio, state) = (
        core::array::from_fn(|_| 0.0f32),
        core::array::from_fn(|_| 0.0f32),
    );
    let (prob, _) = vad.run(&audio, &state);
    if logits.iter().chain(prob).all(|v| v.is_finite()) {
        0
    } else {
        4
    }
}
