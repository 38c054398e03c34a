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

#[test]
fn run_allocates_nothing() {
    let mut mlp = tiny_mlp::Model::new();
    let mut cnn = sinter_examples::tiny_cnn::Model::new();
    let x_mlp = [0.25f32; 4 * 64];
    let x_cnn = vec![0.5f32; 3 * 32 * 32];
    let x_cnn: &[f32; 3 * 32 * 32] = x_cnn.as_slice().try_into().expect("length");
    // Warm up once (nothing should allocate, but lazily initialized runtime state such as
    // CPU feature detection may run here).
    std::hint::black_box(mlp.run(&x_mlp));
    std::hint::black_box(cnn.run(x_cnn));
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
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(
        after - before,
        0,
        "run() allocated {} times over 100 runs",
        after - before
    );
}
