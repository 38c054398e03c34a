//! Throughput of the channels-last product kernel (`conv_nhwc::gemm_rows_f32_exec`, what a
//! MatMul or Gemm with constant weights runs) on a transformer's projection shapes, with the
//! weights hot (the same matrix every call, in cache) and cold (a new copy each call, from
//! memory: in a model every weight matrix is read once per run).
//!
//!     cargo run --release -p sinter-rt --features std --example products [THREADS]

use sinter_rt::conv_nhwc::{gemm_rows_f32_exec, PANEL};
use sinter_rt::threads::Exec;
use std::time::Instant;

/// Weights `k x n` packed as the kernel reads them: panels of 16 columns, each `k` rows deep.
fn pack(k: usize, n: usize, seed: usize) -> Vec<f32> {
    let mut w = vec![0.0; n.div_ceil(PANEL) * PANEL * k];
    for j in 0..n {
        for p in 0..k {
            w[((j / PANEL) * k + p) * PANEL + j % PANEL] =
                ((p * 7 + j * 3 + seed) % 11) as f32 * 0.01;
        }
    }
    w
}

/// 64-byte aligned copies, as the generated code's weights blob holds them.
fn aligned(copies: &[Vec<f32>]) -> (Vec<f32>, usize) {
    let len = copies[0].len();
    let mut all = vec![0.0f32; copies.len() * len + 16];
    let skip = all.as_ptr().align_offset(64);
    for (c, w) in copies.iter().enumerate() {
        all[skip + c * len..][..len].copy_from_slice(w);
    }
    (all, skip)
}

/// The core's f32 FMA peak in GFLOP/s: 24 independent chains of AVX-512 FMAs in registers.
#[cfg(target_arch = "x86_64")]
fn peak() -> Option<f64> {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f")]
    fn chains(steps: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); 24];
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..steps {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(a, *x, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for x in acc {
            sum = _mm512_add_ps(sum, x);
        }
        _mm512_reduce_add_ps(sum)
    }
    if !std::is_x86_feature_detected!("avx512f") {
        return None;
    }
    let steps = 20_000_000;
    let t = Instant::now();
    // SAFETY: AVX-512F was detected just above.
    std::hint::black_box(unsafe { chains(steps) });
    Some((steps * 24 * 32) as f64 / t.elapsed().as_secs_f64() / 1e9)
}

#[cfg(not(target_arch = "x86_64"))]
fn peak() -> Option<f64> {
    None
}

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let exec = Exec::with_threads(threads);
    if let Some(peak) = peak() {
        println!("one core's AVX-512 FMA peak: {peak:.0} GFLOP/s");
    }
    println!("{threads} thread(s), GFLOP/s, best of 3");
    // ViT-B/16 (197 tokens) and BERT-base (128 tokens) projections: QKV, output, MLP up, down;
    for (m, n, k) in [
        (197, 2304, 768),
        (197, 768, 768),
        (197, 3072, 768),
        (197, 768, 3072),
        (128, 768, 768),
        // SqueezeNet's classifier: a 1x1 layer, 512 -> 1000 channels on 13 x 13 pixels.
        (169, 1000, 512),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
        // Enough copies to pass through well over any cache.
        let copies = (300 << 20) / (4 * k * n) + 2;
        let (weights, skip) = aligned(&(0..copies).map(|c| pack(k, n, c)).collect::<Vec<_>>());
        let len = n.div_ceil(PANEL) * PANEL * k;
        let mut out = vec![0.0; m * n];
        let flop = 2.0 * (m * n * k) as f64 * copies as f64;
        let mut rate = |cold: bool| {
            (0..3)
                .map(|_| {
                    let t = Instant::now();
                    for c in 0..copies {
                        let w = &weights[skip + if cold { c * len } else { 0 }..][..len];
                        gemm_rows_f32_exec(&exec, (m, n, k), &a, w, None, None, &mut out, &[]);
                    }
                    flop / t.elapsed().as_secs_f64() / 1e9
                })
                .fold(0.0, f64::max)
        };
        let (hot, cold) = (rate(false), rate(true));
        println!("{m} x {k} x {n}: hot {hot:.0}, cold {cold:.0}");
    }
}
