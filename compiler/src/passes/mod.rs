//! The pass pipeline: each pass is a `Graph -> Graph` function in its own file, listed here
//! in order with the lowest [`OptLevel`] that runs it.

mod bind_dims;
mod calibration;
mod channels_last;
mod contrib;
mod eliminate_common;
mod eliminate_dead;
mod fold_conv_affine;
mod fuse_activation;
mod fuse_attention;
mod fuse_concat_conv;
mod fuse_concat_norm;
mod fuse_conv_bn;
mod fuse_conv_pool;
mod fuse_dw_pw;
mod fuse_gelu;
mod fuse_hardswish;
mod fuse_layer_norm;
mod fuse_matmul_add;
mod fuse_qdq;
mod fuse_residual;
mod fuse_silu;
mod fuse_transpose_matmul;
mod group_query;
mod infer_shapes;
mod lower_int8;
mod pack_weights;
mod pattern;
mod quantize;
mod quantize_recurrent;
mod quantize_static;
mod remove_noops;
mod resolve_ops;
mod simplify_transpose;
#[cfg(test)]
mod testing;
mod value_range;

pub use bind_dims::bind_dims;
pub use calibration::{u8_params, Calibration, CalibrationMethod, RangeStats};
pub use channels_last::channels_last;
pub use eliminate_common::eliminate_common;
pub use eliminate_dead::eliminate_dead;
pub use fold_conv_affine::fold_conv_affine;
pub use fuse_activation::fuse_activation;
pub use fuse_attention::fuse_attention;
pub use fuse_concat_conv::fuse_concat_conv;
pub use fuse_concat_norm::fuse_concat_norm;
pub use fuse_conv_bn::fuse_conv_bn;
pub use fuse_conv_pool::fuse_conv_pool;
pub use fuse_dw_pw::fuse_dw_pw;
pub use fuse_gelu::fuse_gelu;
pub use fuse_hardswish::fuse_hardswish;
pub use fuse_layer_norm::fuse_layer_norm;
pub use fuse_matmul_add::fuse_matmul_add;
pub use fuse_qdq::fuse_qdq;
pub use fuse_residual::fuse_residual;
pub use fuse_silu::fuse_silu;
pub use fuse_transpose_matmul::fuse_transpose_matmul;
pub use infer_shapes::{infer_shapes, op_cx as infer_shapes_cx};
pub use lower_int8::lower_int8;
pub use pack_weights::pack_weights;
pub use quantize::{float_reason, quantize, Quantize};
pub use quantize_static::probe_values;
pub use remove_noops::remove_noops;
pub use resolve_ops::{resolve_ops, unsupported_ops};
pub use simplify_transpose::simplify_transpose;

use std::collections::BTreeMap;

use crate::error::Result;
use crate::ir::Graph;

/// How hard the compiler optimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum OptLevel {
    /// Only what compilation needs: resolving ops, binding dims, shape inference with the
    /// constant folding it requires.
    O0,
    /// Plus dead-node removal.
    O1,
    /// Plus rewrites: no-op removal, transpose/reshape chain simplification, written-out
    /// SiLU, GELU, LayerNormalization and hard-swish recognized, Conv + BatchNormalization
    /// folded into weights, Conv + activation chains, MatMul + Add into Gemm, common
    /// subexpressions merged, convolution weights pre-packed for the GEMM, QDQ groups fused
    /// into the integer ops ONNX Runtime fuses them into.
    O2,
    /// Everything.
    #[default]
    O3,
}

impl OptLevel {
    /// Parses `0` to `3`.
    pub fn from_number(n: u8) -> Option<OptLevel> {
        Some(match n {
            0 => OptLevel::O0,
            1 => OptLevel::O1,
            2 => OptLevel::O2,
            3 => OptLevel::O3,
            _ => return None,
        })
    }
}

/// What passes may read besides the graph.
#[derive(Debug, Clone, Default)]
pub struct PassCx {
    /// User-bound symbolic dims.
    pub dims: BTreeMap<String, usize>,
    /// Symbolic dims given an upper bound instead of a value (`--dim 'N<=8'`): the model
    /// compiles for the bound and takes the actual size at run time.
    pub bounds: BTreeMap<String, crate::ir::DimBound>,
    /// Symbolic dims tied to another (`--dim 'total=past+1'`): the other's name and the
    /// offset added to its size.
    pub related: BTreeMap<String, (String, usize)>,
    /// Concrete input shapes (from test data), which bind symbolic dims directly.
    pub input_shapes: Option<Vec<Vec<usize>>>,
    /// The optimization level.
    pub opt_level: OptLevel,
    /// Graph inputs turned into constants (`--const NAME=VALUE`): the values, one number to
    /// fill the whole input or one per element.
    pub consts: BTreeMap<String, Vec<f64>>,
    /// Graph inputs turned into constants with exact tensors (their shape must match).
    pub const_tensors: BTreeMap<String, crate::ir::Tensor>,
    /// Whether the compiler quantizes products (`--quantize`).
    pub quantize: Quantize,
    /// Node names `--quantize` leaves in float32.
    pub quantize_exclude: Vec<String>,
    /// Activation ranges for `--quantize static`.
    pub calibration: Option<std::sync::Arc<Calibration>>,
    /// Ops the user runs with their own Rust code (`Builder::custom_op`): nodes they cover
    /// compile to calls of the declared type instead of being unsupported.
    pub custom_ops: Vec<std::sync::Arc<crate::ops::custom::CustomOpDecl>>,
    /// The calibration compile of `--quantize static`: instead of quantizing, the values that
    /// need ranges become graph outputs (see [`probe_values`]).
    pub probe: bool,
}

/// One pass of the pipeline.
pub struct PassInfo {
    /// Its name, as `sinter inspect --passes` prints it.
    pub name: &'static str,
    /// The lowest level that runs it.
    pub min_level: OptLevel,
    /// The pass.
    pub run: fn(Graph, &PassCx) -> Result<Graph>,
}

/// The passes, in order.
pub const PASSES: &[PassInfo] = &[
    PassInfo {
        name: "resolve_ops",
        min_level: OptLevel::O0,
        run: resolve_ops,
    },
    PassInfo {
        name: "bind_dims",
        min_level: OptLevel::O0,
        run: bind_dims,
    },
    PassInfo {
        name: "infer_shapes",
        min_level: OptLevel::O0,
        run: infer_shapes,
    },
    PassInfo {
        name: "eliminate_dead",
        min_level: OptLevel::O1,
        run: eliminate_dead,
    },
    PassInfo {
        name: "remove_noops",
        min_level: OptLevel::O2,
        run: remove_noops,
    },
    PassInfo {
        name: "simplify_transpose",
        min_level: OptLevel::O2,
        run: simplify_transpose,
    },
    PassInfo {
        name: "fuse_silu",
        min_level: OptLevel::O2,
        run: fuse_silu,
    },
    PassInfo {
        name: "fuse_gelu",
        min_level: OptLevel::O2,
        run: fuse_gelu,
    },
    PassInfo {
        name: "fuse_layer_norm",
        min_level: OptLevel::O2,
        run: fuse_layer_norm,
    },
    PassInfo {
        name: "fuse_conv_bn",
        min_level: OptLevel::O2,
        run: fuse_conv_bn,
    },
    PassInfo {
        name: "fold_conv_affine",
        min_level: OptLevel::O2,
        run: fold_conv_affine,
    },
    PassInfo {
        name: "fuse_hardswish",
        min_level: OptLevel::O2,
        run: fuse_hardswish,
    },
    PassInfo {
        name: "fuse_matmul_add",
        min_level: OptLevel::O2,
        run: fuse_matmul_add,
    },
    PassInfo {
        name: "fuse_transpose_matmul",
        min_level: OptLevel::O2,
        run: fuse_transpose_matmul,
    },
    // After the Transpose folds into `Q x K^T`: torch's scaled attention reads K in place.
    PassInfo {
        name: "fuse_attention",
        min_level: OptLevel::O2,
        run: fuse_attention,
    },
    PassInfo {
        name: "fuse_residual",
        min_level: OptLevel::O2,
        run: fuse_residual,
    },
    PassInfo {
        name: "fuse_activation",
        min_level: OptLevel::O2,
        run: fuse_activation,
    },
    // Late: merging repeats gives values more readers, which would stop the fusions above.
    PassInfo {
        name: "eliminate_common",
        min_level: OptLevel::O2,
        run: eliminate_common,
    },
    // Rewrites that read a value further up a chain leave the chain's start unread.
    PassInfo {
        name: "eliminate_dead",
        min_level: OptLevel::O2,
        run: eliminate_dead,
    },
    // After the fusions (bias, residual and activations ride on the product), before packing.
    PassInfo {
        name: "quantize",
        min_level: OptLevel::O0,
        run: quantize,
    },
    // Last: it changes the layout of weights that the passes above rewrite or merge.
    PassInfo {
        name: "pack_weights",
        min_level: OptLevel::O2,
        run: pack_weights,
    },
    // QDQ groups around elementwise, pooling, concat and softmax ops become the integer ops
    // ONNX Runtime fuses them into; the products' groups are `lower_int8`'s.
    PassInfo {
        name: "fuse_qdq",
        min_level: OptLevel::O2,
        run: fuse_qdq,
    },
    // Every level: the contrib products have no other kernel (below -O2 only they lower).
    PassInfo {
        name: "lower_int8",
        min_level: OptLevel::O0,
        run: lower_int8,
    },
    // The activations after the products `lower_int8` made join their epilogues.
    PassInfo {
        name: "fuse_activation",
        min_level: OptLevel::O2,
        run: fuse_activation,
    },
    // Last: the products' epilogues are final; convolutions (float and 8-bit) go channels
    // last, 3x3 ones by Winograd at -O3.
    PassInfo {
        name: "channels_last",
        min_level: OptLevel::O2,
        run: channels_last,
    },
    // After the layout is final (the normalization's channel axis must be the concatenation's).
    PassInfo {
        name: "fuse_concat_norm",
        min_level: OptLevel::O2,
        run: fuse_concat_norm,
    },
    // The stems' max pools into the convolutions they alone read (rows pooled from cache).
    PassInfo {
        name: "fuse_conv_pool",
        min_level: OptLevel::O2,
        run: fuse_conv_pool,
    },
    // The pointwise layers into the depthwise ones they alone read (rows read from cache).
    PassInfo {
        name: "fuse_dw_pw",
        min_level: OptLevel::O2,
        run: fuse_dw_pw,
    },
    // Then the Concats of convolutions' outputs left: the convolutions write in place.
    PassInfo {
        name: "fuse_concat_conv",
        min_level: OptLevel::O2,
        run: fuse_concat_conv,
    },
    // Fusions leave dead values behind; the planner ignores values no node produces.
];

/// Node counts before and after one pass.
#[derive(Debug, Clone)]
pub struct PassStat {
    /// The pass.
    pub name: &'static str,
    /// Nodes before.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
}

/// Runs every pass enabled at `cx.opt_level`.
pub fn run_passes(mut graph: Graph, cx: &PassCx) -> Result<(Graph, Vec<PassStat>)> {
    let mut stats = Vec::new();
    for pass in PASSES.iter().filter(|p| p.min_level <= cx.opt_level) {
        let nodes_before = graph.nodes.len();
        graph = (pass.run)(graph, cx)?;
        stats.push(PassStat {
            name: pass.name,
            nodes_before,
            nodes_after: graph.nodes.len(),
        });
    }
    Ok((graph, stats))
}
