//! Throughput of the channels-last dense convolution kernel (`conv_nhwc`) on the layer shapes
//! of mobile and residual networks: stems (3 input channels, channels first in), pointwise
//! layers of little depth, and a 3x3 layer, with bias and ReLU as the models fuse them.
//!
//! Made for a machine whose speed drifts (a shared host can run a third slower for seconds at
//! a time): the shapes take turns, a few calls each per round over many rounds, and each
//! shape reports its best call and the median of its rounds' best calls, so that every shape
//! is measured in the same mix of fast and slow moments.
//!
//!     RUSTFLAGS="-C target-cpu=native" cargo run --release -p sinter-rt --features std --example conv_shapes [ROUNDS]

use sinter_rt::conv::ConvParams;
use sinter_rt::conv_nhwc::{
    conv_nhwc_f32_exec, conv_nhwc_from_nchw_f32_exec, nhwc_padded_len, nhwc_weights_len,
};
use sinter_rt::epilogue::Activation;
use sinter_rt::threads::Exec;
use std::time::Instant;

/// One layer: input channels, output channels, square input size, square kernel, stride,
/// padding, and whether the input is channels first (a network's first layer).
type Shape = (usize, usize, usize, usize, usize, usize, bool);

const SHAPES: [Shape; 10] = [
    (3, 64, 224, 3, 2, 0, true),
    (3, 32, 224, 3, 2, 1, true),
    (3, 64, 224, 7, 2, 3, true),
    (24, 48, 56, 1, 1, 0, false),
    (24, 72, 56, 1, 1, 0, false),
    (48, 48, 56, 1, 1, 0, false),
    (96, 48, 56, 1, 1, 0, false),
    (192, 48, 56, 1, 1, 0, false),
    (576, 96, 14, 1, 1, 0, false),
    (64, 64, 56, 3, 1, 1, false),
];

/// A layer's operands and output, ready to run.
struct Layer {
    p: ConvParams,
    channels_first: bool,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    padded: Vec<f32>,
    out: Vec<f32>,
    flop: f64,
}

impl Layer {
    fn new(&(c, m, hw, k, s, pad, channels_first): &Shape) -> Self {
        let o = (hw + 2 * pad - k) / s + 1;
        let p = ConvParams {
            batch: 1,
            in_channels: c,
            out_channels: m,
            groups: 1,
            input: [1, hw, hw],
            output: [1, o, o],
            kernel: [1, k, k],
            strides: [1, s, s],
            dilations: [1; 3],
            pads: [0, pad, pad],
            packed_weights: false,
        };
        Self {
            x: (0..c * hw * hw)
                .map(|i| (i % 17) as f32 * 0.1 - 0.8)
                .collect(),
            w: (0..nhwc_weights_len(&p))
                .map(|i| (i % 13) as f32 * 0.01 - 0.06)
                .collect(),
            bias: vec![0.1; m],
            padded: vec![0.0; nhwc_padded_len(&p, channels_first)],
            out: vec![0.0; o * o * m],
            flop: 2.0 * (o * o * m * c * k * k) as f64,
            p,
            channels_first,
        }
    }

    /// Seconds of one call.
    fn time(&mut self, exec: &Exec) -> f64 {
        let run = if self.channels_first {
            conv_nhwc_from_nchw_f32_exec
        } else {
            conv_nhwc_f32_exec
        };
        let start = Instant::now();
        run(
            exec,
            &self.p,
            &self.x,
            &self.w,
            Some(&self.bias),
            None,
            &mut self.padded,
            &mut self.out,
            &[Activation::Relu],
        );
        start.elapsed().as_secs_f64()
    }
}

fn main() {
    let rounds = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(40usize);
    let exec = Exec::with_threads(1);
    let mut layers: Vec<Layer> = SHAPES.iter().map(Layer::new).collect();
    // Per layer, each round's best call.
    let mut bests = vec![Vec::with_capacity(rounds); layers.len()];
    for _ in 0..rounds {
        for (layer, best) in layers.iter_mut().zip(&mut bests) {
            best.push((0..5).map(|_| layer.time(&exec)).fold(f64::MAX, f64::min));
        }
    }
    println!("1 thread, GFLOP/s: best call, and the median of {rounds} rounds' best calls");
    for ((shape, layer), best) in SHAPES.iter().zip(&layers).zip(&mut bests) {
        best.sort_by(f64::total_cmp);
        let (c, m, hw, k, s, pad, first) = *shape;
        println!(
            "C {c:>3} -> M {m:>3}, {hw:>3} x {hw:<3} k {k} s {s} pad {pad}{}: best {:>5.1}, median {:>5.1}",
            if first { " (channels first)" } else { "" },
            layer.flop / best[0] / 1e9,
            layer.flop / best[best.len() / 2] / 1e9,
        );
    }
}
