//! `run()` allocates nothing: a counting global allocator around repeated runs of the bundled
//! models (compiled by the macro and by build.rs) sees zero allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller's contract is forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

sinter_rt::include_onnx!("tests/data/tiny_mlp/model.onnx", dims(N = 4));

// Custom ops are direct calls of the user's types on views built on the stack.
#[path = "../examples/custom_op/ops.rs"]
mod ops;
sinter_rt::include_onnx!(
    "tests/data/custom_op/model.onnx",
    custom_ops(
        "com.example:ScaledTanh" = crate::ops::ScaledTanh => [like(0)],
        "com.example:ArgMaxRows" = crate::ops::ArgMaxRows => [i64[1]],
    )
);

#[test]
fn run_allocates_nothing() {
    let mut mlp = tiny_mlp::Model::new();
    let mut cnn = sinter_examples::tiny_cnn::Model::new();
    let x_mlp = [0.25f32; 4 * 64];
    let x_cnn = vec![0.5f32; 3 * 32 * 32];
    let x_cnn: &[f32; 3 * 32 * 32] = x_cnn.as_slice().try_into().expect("length");
    let mut custom = custom_op::Model::new();
    let x_custom = [0.5f32; 16];
    // Warm up once (nothing should allocate, but lazily initialized runtime state such as
    // CPU feature detection may run here).
    std::hint::black_box(mlp.run(&x_mlp));
    std::hint::black_box(cnn.run(x_cnn));
    std::hint::black_box(custom.run(&x_custom));
    // The counter sees allocations (so a zero below means something).
    let probe_before = ALLOCATIONS.load(Ordering::SeqCst);
    std::hint::black_box(Vec::<u8>::with_capacity(16));
    assert!(
        ALLOCATIONS.load(Ordering::SeqCst) > probe_before,
        "the counting allocator is not installed"
    );

    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..50 {
        std::hint::black_box(mlp.run(std::hint::black_box(&x_mlp)));
        std::hint::black_box(cnn.run(std::hint::black_box(x_cnn)));
        std::hint::black_box(custom.run(std::hint::black_box(&x_custom)));
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(
        after - before,
        0,
        "run() allocated {} times over 150 runs",
        after - before
    );
}
