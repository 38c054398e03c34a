//! Throughput of the channels-last convolution kernels (`conv_nhwc`) on the layer shapes of
//! mobile and residual networks: stems (3 input channels, channels first in), pointwise layers
//! of little depth, a 3x3 layer, and depthwise layers, with bias and ReLU as the models fuse
//! them.
//!
//! Made for a machine whose speed drifts (a shared host can run a third slower for seconds at
//! a time): the shapes take turns, a few calls each per round over many rounds, and each
//! shape reports its best call and the median of its rounds' best calls, so that every shape
//! is measured in the same mix of fast and slow moments.
//!
//!     RUSTFLAGS="-C target-cpu=native" cargo run --release -p sinter-rt --features std --example conv_shapes [ROUNDS [FILTER]]

use sinter_rt::conv::ConvParams;
use sinter_rt::conv_dw_pw::{
    depthwise_pointwise_nhwc_f32_exec, depthwise_pointwise_scratch_len, LayerOperands,
};
use sinter_rt::conv_nhwc::{
    conv_nhwc_f32_exec, conv_nhwc_from_nchw_f32_exec, depthwise_nhwc_f32_exec,
    depthwise_nhwc_weights_len, nhwc_padded_len, nhwc_weights_len,
};
use sinter_rt::conv_pool::{conv_max_pool_nhwc_f32_exec, conv_max_pool_scratch_len};
use sinter_rt::epilogue::Activation;
use sinter_rt::pool::PoolParams;
use sinter_rt::threads::Exec;
use std::time::Instant;

/// How a layer runs.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Dense, channels-first input (a network's first layer).
    Stem,
    /// Dense, channels last.
    Dense,
    /// Depthwise (as many groups as channels), channels last.
    Depthwise,
    /// Depthwise, then a 1x1 layer from its channels to the output channels, in one pass
    /// (`conv_dw_pw`, as an inverted-residual block ends).
    DepthwisePointwise,
    /// A stem (as [`Kind::Stem`]), then a 3x3 stride-2 max pool of its output, in one pass
    /// (`conv_pool`, SqueezeNet's and ResNet's first layers).
    StemMaxPool,
}

/// One layer: input channels, output channels, square input size, square kernel, stride,
/// padding, and how it runs.
type Shape = (usize, usize, usize, usize, usize, usize, Kind);

const SHAPES: [Shape; 33] = [
    (3, 64, 224, 3, 2, 0, Kind::Stem),
    (3, 64, 224, 3, 2, 0, Kind::StemMaxPool),
    (3, 32, 224, 3, 2, 1, Kind::Stem),
    (3, 64, 224, 7, 2, 3, Kind::Stem),
    (32, 16, 112, 1, 1, 0, Kind::Dense),
    (16, 48, 112, 1, 1, 0, Kind::Dense),
    (24, 48, 56, 1, 1, 0, Kind::Dense),
    (24, 72, 56, 1, 1, 0, Kind::Dense),
    (48, 48, 56, 1, 1, 0, Kind::Dense),
    (96, 48, 56, 1, 1, 0, Kind::Dense),
    (192, 48, 56, 1, 1, 0, Kind::Dense),
    (576, 96, 14, 1, 1, 0, Kind::Dense),
    (64, 256, 56, 1, 1, 0, Kind::Dense),
    (64, 64, 56, 1, 1, 0, Kind::Dense),
    (64, 48, 56, 1, 1, 0, Kind::Dense),
    (64, 96, 56, 1, 1, 0, Kind::Dense),
    (256, 64, 56, 1, 1, 0, Kind::Dense),
    (64, 64, 56, 3, 1, 1, Kind::Dense),
    (32, 32, 112, 3, 1, 1, Kind::Depthwise),
    (96, 96, 112, 3, 2, 1, Kind::Depthwise),
    (144, 144, 56, 3, 1, 1, Kind::Depthwise),
    (240, 240, 28, 5, 1, 2, Kind::Depthwise),
    (32, 16, 112, 3, 1, 1, Kind::DepthwisePointwise),
    (144, 24, 56, 3, 1, 1, Kind::DepthwisePointwise),
    // MnasNet's 56 x 56 blocks: the pair fused, and its two layers apart.
    (72, 24, 56, 3, 1, 1, Kind::DepthwisePointwise),
    (72, 72, 56, 3, 1, 1, Kind::Depthwise),
    (72, 24, 56, 1, 1, 0, Kind::Dense),
    // Its 14 x 14 blocks (5x5).
    (480, 80, 14, 5, 1, 2, Kind::DepthwisePointwise),
    (480, 480, 14, 5, 1, 2, Kind::Depthwise),
    (480, 80, 14, 1, 1, 0, Kind::Dense),
    // Its 28 x 28 -> 14 x 14 block (5x5, stride 2).
    (240, 80, 28, 5, 2, 2, Kind::DepthwisePointwise),
    (240, 240, 28, 5, 2, 2, Kind::Depthwise),
    (240, 80, 14, 1, 1, 0, Kind::Dense),
];

/// A layer's operands and output, ready to run.
struct Layer {
    p: ConvParams,
    /// With [`Kind::DepthwisePointwise`]: the depthwise layer (`p` is then the 1x1 one), its
    /// weights and bias.
    dw: Option<(ConvParams, Vec<f32>, Vec<f32>)>,
    /// With [`Kind::StemMaxPool`]: the pooling.
    pool: Option<PoolParams>,
    kind: Kind,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    padded: Vec<f32>,
    out: Vec<f32>,
    flop: f64,
}

impl Layer {
    fn new(&(c, m, hw, k, s, pad, kind): &Shape) -> Self {
        let channels_first = matches!(kind, Kind::Stem | Kind::StemMaxPool);
        let o = (hw + 2 * pad - k) / s + 1;
        let geometry = |c: usize, m: usize, groups: usize, input: usize, k: usize| ConvParams {
            batch: 1,
            in_channels: c,
            out_channels: m,
            groups,
            input: [1, input, input],
            output: [1, o, o],
            kernel: [1, k, k],
            strides: [1, if k == 1 { 1 } else { s }, if k == 1 { 1 } else { s }],
            dilations: [1; 3],
            pads: [0, pad, pad],
            packed_weights: false,
        };
        let values = |len: usize, m: usize| -> Vec<f32> {
            (0..len).map(|i| (i % m) as f32 * 0.01 - 0.06).collect()
        };
        let (p, dw, flop) = match kind {
            Kind::DepthwisePointwise => {
                let dw = geometry(c, c, c, hw, k);
                let mut pw = geometry(c, m, 1, o, 1);
                pw.pads = [0; 3];
                let flop = 2.0 * (o * o * c * (k * k + m)) as f64;
                let dw_w = values(depthwise_nhwc_weights_len(&dw), 13);
                (pw, Some((dw, dw_w, vec![0.1; c])), flop)
            }
            Kind::Depthwise => (
                geometry(c, c, c, hw, k),
                None,
                2.0 * (o * o * c * k * k) as f64,
            ),
            _ => (
                geometry(c, m, 1, hw, k),
                None,
                2.0 * (o * o * m * c * k * k) as f64,
            ),
        };
        // SqueezeNet's pooling: 3x3 stride 2, ceil mode.
        let pool = (kind == Kind::StemMaxPool).then(|| {
            let po = (o - 3).div_ceil(2) + 1;
            PoolParams {
                planes: 1,
                input: [1, o, o],
                output: [1, po, po],
                kernel: [1, 3, 3],
                strides: [1, 2, 2],
                dilations: [1; 3],
                pads_begin: [0; 3],
                pads_end: [0; 3],
            }
        });
        let scratch = match (&dw, &pool) {
            (Some((dw, ..)), _) => depthwise_pointwise_scratch_len(dw),
            (None, Some(pool)) => conv_max_pool_scratch_len(&p, pool, channels_first),
            (None, None) => nhwc_padded_len(&p, channels_first),
        };
        Self {
            x: (0..c * hw * hw)
                .map(|i| (i % 17) as f32 * 0.1 - 0.8)
                .collect(),
            w: values(
                if kind == Kind::Depthwise {
                    depthwise_nhwc_weights_len(&p)
                } else {
                    nhwc_weights_len(&p)
                },
                13,
            ),
            bias: vec![0.1; m],
            padded: vec![0.0; scratch],
            out: vec![0.0; o * o * m],
            flop,
            p,
            dw,
            pool,
            kind,
        }
    }

    /// Seconds of one call.
    fn time(&mut self, exec: &Exec) -> f64 {
        let acts = [Activation::Relu];
        let start = Instant::now();
        if let Some((dw, dw_w, dw_bias)) = &self.dw {
            let layer = |w, bias| LayerOperands {
                w,
                bias: Some(bias),
                acts: &acts,
            };
            depthwise_pointwise_nhwc_f32_exec(
                exec,
                dw,
                layer(dw_w, dw_bias),
                &self.p,
                layer(&self.w, &self.bias),
                &self.x,
                None,
                &mut self.padded,
                &mut self.out,
            );
            return start.elapsed().as_secs_f64();
        }
        if let Some(pool) = &self.pool {
            conv_max_pool_nhwc_f32_exec(
                exec,
                &self.p,
                pool,
                (&self.x, true),
                &self.w,
                Some(&self.bias),
                &mut self.padded,
                &mut self.out,
                &acts,
            );
            return start.elapsed().as_secs_f64();
        }
        if self.kind == Kind::Depthwise {
            depthwise_nhwc_f32_exec(
                exec,
                &self.p,
                &self.x,
                &self.w,
                Some(&self.bias),
                None,
                &mut self.out,
                &acts,
            );
            return start.elapsed().as_secs_f64();
        }
        let run = if self.kind == Kind::Stem {
            conv_nhwc_from_nchw_f32_exec
        } else {
            conv_nhwc_f32_exec
        };
        run(
            exec,
            &self.p,
            &self.x,
            &self.w,
            Some(&self.bias),
            None,
            &mut self.padded,
            &mut self.out,
            &acts,
        );
        start.elapsed().as_secs_f64()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds = args.next().and_then(|r| r.parse().ok()).unwrap_or(40usize);
    // Only the shapes whose label holds this text (all without it).
    let filter = args.next().unwrap_or_default();
    let exec = Exec::with_threads(1);
    let shapes: Vec<(Shape, String)> = SHAPES
        .iter()
        .map(|shape| (*shape, label(shape)))
        .filter(|(_, label)| label.contains(&filter))
        .collect();
    let mut layers: Vec<Layer> = shapes.iter().map(|(shape, _)| Layer::new(shape)).collect();
    // Per layer, each round's best call.
    let mut bests = vec![Vec::with_capacity(rounds); layers.len()];
    for _ in 0..rounds {
        for (layer, best) in layers.iter_mut().zip(&mut bests) {
            best.push((0..5).map(|_| layer.time(&exec)).fold(f64::MAX, f64::min));
        }
    }
    println!("1 thread, GFLOP/s: best call, and the median of {rounds} rounds' best calls");
    for (((_, label), layer), best) in shapes.iter().zip(&layers).zip(&mut bests) {
        best.sort_by(f64::total_cmp);
        println!(
            "{label}: best {:>5.1}, median {:>5.1} ({:.0} us)",
            layer.flop / best[0] / 1e9,
            layer.flop / best[best.len() / 2] / 1e9,
            best[0] * 1e6,
        );
    }
}

/// How a shape is printed (and filtered).
fn label(&(c, m, hw, k, s, pad, kind): &Shape) -> String {
    format!(
        "C {c:>3} -> M {m:>3}, {hw:>3} x {hw:<3} k {k} s {s} pad {pad}{}",
        match kind {
            Kind::Stem => " (channels first)",
            Kind::Dense => "",
            Kind::Depthwise => " (depthwise)",
            Kind::DepthwisePointwise => " (depthwise, then 1x1 to M)",
            Kind::StemMaxPool => " (channels first, then 3x3 s2 max pool)",
        }
    )
}
