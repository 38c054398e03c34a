//! Throughput of the activation kernels (nanoseconds per element, a 4096-float buffer in
//! cache), of the channels-last poolings on the shapes of Inception-v3, SqueezeNet and
//! DenseNet, and of layer normalization on the rows of ConvNeXt, Swin and BERT (microseconds
//! per call, best of many), on one core.
//!
//!     RUSTFLAGS="-C target-cpu=native" cargo run --release -p sinter-rt --features std \
//!         --example activations_and_pools

use sinter_rt::epilogue::Activation;
use sinter_rt::norm::{row_norm_f32, Affine};
use sinter_rt::pool::{avg_pool_nhwc_f32, max_pool_nhwc_f32, PoolKind, PoolParams};
use std::time::Instant;

/// The best of `runs` timings of `f`, in seconds.
fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

/// A square 2-D pooling of `side` pixels, `kernel` x `kernel`, with `stride` and `pad`.
fn pooling(side: usize, kernel: usize, stride: usize, pad: usize) -> PoolParams {
    let out = (side + 2 * pad - kernel) / stride + 1;
    PoolParams {
        planes: 1,
        input: [1, side, side],
        output: [1, out, out],
        kernel: [1, kernel, kernel],
        strides: [1, stride, stride],
        dilations: [1; 3],
        pads_begin: [0, pad, pad],
        pads_end: [0, pad, pad],
    }
}

fn main() {
    let n = 4096;
    let src: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 2000) as f32 * 0.005 - 5.0)
        .collect();
    let mut v = src.clone();
    let copy = best(20_000, || v.copy_from_slice(&src));
    println!("activations, ns per element (inputs in [-5, 5], in cache):");
    for (name, act) in [
        ("sigmoid", Activation::Sigmoid),
        ("swish", Activation::Swish(1.0)),
        ("tanh", Activation::Tanh),
        ("gelu", Activation::Gelu),
        ("gelu_tanh", Activation::GeluTanh),
    ] {
        let t = best(20_000, || {
            v.copy_from_slice(&src);
            act.apply_slice(&mut v);
        });
        println!("  {name:<10} {:.3}", (t - copy) * 1e9 / n as f64);
    }
    println!("channels-last pooling, us per call:");
    for (what, side, c, kernel, stride, pad) in [
        ("avg 3x3/1, Inception 35x35x192", 35, 192, 3, 1, 1),
        ("avg 3x3/1, Inception 17x17x768", 17, 768, 3, 1, 1),
        ("avg 2x2/2, DenseNet 56x56x128", 56, 128, 2, 2, 0),
        ("max 3x3/2, stem 112x112x64", 112, 64, 3, 2, 1),
        ("max 3x3/2, SqueezeNet 55x55x128", 55, 128, 3, 2, 0),
        ("max 3x3/2, Inception 35x35x288", 35, 288, 3, 2, 0),
        ("max 3x3/2, in L1 15x15x64", 15, 64, 3, 2, 0),
    ] {
        let p = pooling(side, kernel, stride, pad);
        let x: Vec<f32> = (0..side * side * c)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 5.0)
            .collect();
        let mut out = vec![0.0; p.output.iter().product::<usize>() * c];
        let t = if what.starts_with("avg") {
            best(300, || {
                avg_pool_nhwc_f32(&p, PoolKind::AverageIncludePad, c, &x, &mut out)
            })
        } else {
            best(300, || max_pool_nhwc_f32(&p, c, &x, &mut out))
        };
        println!("  {what:<34} {:.1}", t * 1e6);
    }
    println!("layer normalization (scale and bias), us per call:");
    for (what, rows, inner) in [
        ("ConvNeXt-T 56x56, 96 wide", 3136, 96),
        ("ConvNeXt-T 28x28, 192 wide", 784, 192),
        ("BERT-base, 128 x 768", 128, 768),
    ] {
        let x: Vec<f32> = (0..rows * inner)
            .map(|i| ((i * 37) % 101) as f32 * 0.01 - 0.5)
            .collect();
        let (scale, bias) = (vec![1.1; inner], vec![0.1; inner]);
        let affine = Affine::PerElement {
            scale: &scale,
            bias: Some(&bias),
        };
        let mut out = vec![0.0; rows * inner];
        let t = best(300, || {
            row_norm_f32(&x, &mut out, rows, inner, 1e-6, false, affine, None, None)
        });
        println!("  {what:<34} {:.1}", t * 1e6);
    }
}
