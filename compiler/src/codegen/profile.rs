//! What a profiled module knows of each node at compile time (see
//! [`CodegenOptions::profile`](super::CodegenOptions::profile)): the kernel its code calls,
//! read from the emitted tokens, and estimates of its FLOPs and the bytes it moves, from the
//! shapes. Emitted as the `sinter_rt::profile::NodeInfo` table the model's clocks index.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::quote;

use crate::ir::DType;
use crate::ops::{Op, OpCx, OpDef};

/// One node's row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCost {
    /// The ONNX node name.
    pub name: String,
    /// The ONNX op type (`domain:Op` outside the default domain).
    pub op: String,
    /// The `sinter_rt` functions the node's code calls (see [`kernel_name`]).
    pub kernel: String,
    /// The node's index in the optimized graph.
    pub index: usize,
    /// Estimated arithmetic operations per call (see [`estimate_flops`]).
    pub flops: u64,
    /// Bytes of run-time inputs read (model inputs and intermediates).
    pub activation_bytes: u64,
    /// Bytes of constant inputs read.
    pub parameter_bytes: u64,
    /// Bytes of outputs written.
    pub output_bytes: u64,
}

impl NodeCost {
    /// The `sinter_rt::profile::NodeInfo` literal.
    pub fn tokens(&self) -> TokenStream {
        let (name, op, kernel) = (&self.name, &self.op, &self.kernel);
        let index = proc_macro2::Literal::usize_unsuffixed(self.index);
        let [flops, activation_bytes, parameter_bytes, output_bytes] = [
            self.flops,
            self.activation_bytes,
            self.parameter_bytes,
            self.output_bytes,
        ]
        .map(proc_macro2::Literal::u64_unsuffixed);
        quote! {
            ::sinter_rt::profile::NodeInfo {
                name: #name,
                op: #op,
                kernel: #kernel,
                index: #index,
                flops: #flops,
                activation_bytes: #activation_bytes,
                parameter_bytes: #parameter_bytes,
                output_bytes: #output_bytes,
            }
        }
    }
}

fn is_colon(tree: Option<&TokenTree>, spacing: Spacing) -> bool {
    matches!(tree, Some(TokenTree::Punct(p)) if p.as_char() == ':' && p.spacing() == spacing)
}

/// Whether `trees[at..]` starts with `::`.
fn path_sep(trees: &[TokenTree], at: usize) -> bool {
    is_colon(trees.get(at), Spacing::Joint) && is_colon(trees.get(at + 1), Spacing::Alone)
}

fn ident_at(trees: &[TokenTree], at: usize) -> Option<String> {
    match trees.get(at) {
        Some(TokenTree::Ident(ident)) => Some(ident.to_string()),
        _ => None,
    }
}

/// Collects the `::sinter_rt::...` functions called in `tokens`, in order, into `found`; the
/// arguments of a call are not searched (a closure passed to `elementwise::map` is part of
/// that kernel), everything else (loop bodies, blocks) is.
fn collect_calls(tokens: TokenStream, found: &mut Vec<String>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut at = 0;
    while at < trees.len() {
        if path_sep(&trees, at) && ident_at(&trees, at + 2).as_deref() == Some("sinter_rt") {
            let mut segments = Vec::new();
            let mut next = at + 3;
            while path_sep(&trees, next) {
                let Some(segment) = ident_at(&trees, next + 2) else {
                    break;
                };
                segments.push(segment);
                next += 3;
            }
            // A turbofish: `::<T, N>`. Kept in the name when it holds only integer literals
            // (`conv_winograd_f32_exec::<4>`, a kernel's variant), dropped when it names types.
            let mut variant = None;
            if path_sep(&trees, next)
                && matches!(trees.get(next + 2), Some(TokenTree::Punct(p)) if p.as_char() == '<')
            {
                let mut depth = 0usize;
                let mut literals = Some(Vec::new());
                next += 2;
                while let Some(tree) = trees.get(next) {
                    next += 1;
                    match tree {
                        TokenTree::Punct(p) if p.as_char() == '<' => depth += 1,
                        TokenTree::Punct(p) if p.as_char() == '>' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        TokenTree::Punct(p) if p.as_char() == ',' => {}
                        TokenTree::Literal(l) => {
                            if let Some(list) = literals.as_mut() {
                                let text = l.to_string();
                                list.push(text.trim_end_matches("usize").to_string());
                            }
                        }
                        _ => literals = None,
                    }
                }
                variant = literals.filter(|l| !l.is_empty()).map(|l| l.join(", "));
            }
            let is_fn = segments
                .last()
                .is_some_and(|s| s.starts_with(|c: char| c.is_ascii_lowercase()));
            if let (true, Some(TokenTree::Group(args))) = (is_fn, trees.get(next)) {
                if args.delimiter() == Delimiter::Parenthesis {
                    let mut path = segments.join("::");
                    if let Some(variant) = &variant {
                        path = format!("{path}::<{variant}>");
                    }
                    if !found.contains(&path) {
                        found.push(path);
                    }
                    at = next + 1;
                    continue;
                }
            }
            at = next;
            continue;
        }
        if let Some(TokenTree::Group(group)) = trees.get(at) {
            collect_calls(group.stream(), found);
        }
        at += 1;
    }
}

/// The kernel a node's emitted code runs: the `sinter_rt` functions it calls, without the
/// crate prefix, in order and once each, joined with ` + ` (`elementwise::broadcast_copy +
/// gemm::gemm_f32_act_exec`), with a turbofish of integers that picks a variant kept
/// (`conv_winograd::conv_winograd_f32_exec::<4>`); `inline` when it calls none (a loop of its
/// own).
pub fn kernel_name(body: &TokenStream) -> String {
    let mut found = Vec::new();
    collect_calls(body.clone(), &mut found);
    if found.is_empty() {
        "inline".to_string()
    } else {
        found.join(" + ")
    }
}

fn elements(shape: &[usize]) -> u64 {
    shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64))
}

/// `2 * elements * per_element`, saturating.
fn macs(outputs: u64, per_output: u64) -> u64 {
    outputs.saturating_mul(per_output).saturating_mul(2)
}

/// Products of the weight dims after the first: the multiply-adds per output element of a
/// convolution (`C/group * kernel`) or per input element of a transposed one.
fn per_weight_row(weight: &[usize]) -> u64 {
    weight.get(1..).map_or(0, elements)
}

/// Estimated arithmetic operations of one call of a node: `2*M*N*K` for products,
/// `2 * outputs * C/group * kernel` for convolutions, `2 * steps * batch * (W + R)` for
/// recurrent cells and `2 * Skv * (Q + Y)` for attention; one per output element for
/// elementwise ops, normalizations, softmax, resizing and quantization, one per input element
/// for reductions and global pooling, `outputs * kernel` for windowed pooling; 0 for data
/// movement and what is not estimated (Einsum, control flow, indexing).
pub fn estimate_flops(op: &Op, op_type: &str, cx: &OpCx<'_>) -> u64 {
    let shape_in = |i: usize| cx.opt_input(i).map_or(&[][..], |o| o.shape);
    let out0 = cx
        .outputs
        .first()
        .copied()
        .flatten()
        .map_or(0, |o| elements(o.shape));
    let in0 = elements(shape_in(0));
    // Depth of a product whose A is input 0 (`[..., M, K]`).
    let depth = || shape_in(0).last().map_or(0, |&k| k as u64);
    let conv_weight = |packed: &Option<Vec<usize>>, input: usize| -> Vec<usize> {
        packed.clone().unwrap_or_else(|| shape_in(input).to_vec())
    };
    match op {
        Op::Conv(conv) => macs(out0, per_weight_row(&conv_weight(&conv.packed_from, 1))),
        Op::ConcatConv(fused) => {
            // Each convolution's outputs (the pixels times its channels) by its depth.
            let pixels = cx
                .outputs
                .first()
                .copied()
                .flatten()
                .map_or(0, |o| elements(&o.shape[..o.shape.len().saturating_sub(1)]));
            let mut first = 0;
            let mut total = 0u64;
            for (conv, &arity) in fused.parts.iter().zip(&fused.arity) {
                let weight = conv_weight(&conv.packed_from, first + 1);
                let channels = weight.first().map_or(0, |&m| m as u64);
                total = total.saturating_add(macs(
                    pixels.saturating_mul(channels),
                    per_weight_row(&weight),
                ));
                first += arity;
            }
            total
        }
        Op::ConvMaxPool(fused) => {
            // The convolution's multiply-adds, then one comparison per pooled tap.
            let conv_out = fused
                .conv
                .infer(cx)
                .ok()
                .and_then(|o| o.first().map(|y| elements(&y.shape)))
                .unwrap_or(0);
            let taps = fused.pool.window.kernel.as_deref().map_or(0, elements);
            macs(
                conv_out,
                per_weight_row(&conv_weight(&fused.conv.packed_from, 1)),
            )
            .saturating_add(out0.saturating_mul(taps))
        }
        Op::DepthwisePointwise(fused) => {
            // Per output pixel, the depthwise layer's C x taps and the 1x1 layer's M x C.
            let pw = conv_weight(&fused.pw.packed_from, 3);
            let dw = conv_weight(&fused.dw.packed_from, 1);
            let m = pw.first().map_or(1, |&m| m.max(1) as u64);
            let pixels = out0 / m;
            let c = pw.get(1).map_or(0, |&c| c as u64);
            // With the expansion, its K x C per pixel of its output, the depthwise input.
            let expand = fused.expand.as_ref().map_or(0, |ex| {
                let w = conv_weight(&ex.packed_from, 3);
                macs(in0.saturating_mul(w.first().map_or(0, |&c| c as u64)), 1)
            });
            macs(pixels.saturating_mul(c), per_weight_row(&dw))
                .saturating_add(macs(out0, per_weight_row(&pw)))
                .saturating_add(expand)
        }
        Op::ExpandDepthwise(fused) => {
            // Per expanded pixel the expansion's K x C; per output element the depthwise taps.
            let c = conv_weight(&fused.expand.packed_from, 1)
                .first()
                .map_or(0, |&c| c as u64);
            macs(in0.saturating_mul(c), 1).saturating_add(macs(
                out0,
                per_weight_row(&conv_weight(&fused.dw.packed_from, 3)),
            ))
        }
        Op::ConvInteger(conv) => macs(
            out0,
            per_weight_row(&conv_weight(&conv.conv.packed_from, 1)),
        ),
        Op::QLinearConv(conv) => macs(
            out0,
            per_weight_row(&conv_weight(&conv.conv.packed_from, 3)),
        ),
        Op::DeformConv(_) => macs(out0, per_weight_row(shape_in(1))),
        Op::ConvTranspose(_) => macs(in0, per_weight_row(shape_in(1))),
        Op::Int8Product(product) => match &product.shape {
            crate::ops::int8::Int8Shape::MatMul { k, .. } => macs(out0, *k as u64),
            crate::ops::int8::Int8Shape::Conv(conv)
            | crate::ops::int8::Int8Shape::ConvChannelsLast(conv)
            | crate::ops::int8::Int8Shape::DepthwiseChannelsLast(conv)
            | crate::ops::int8::Int8Shape::ConvFromChannelsFirst(conv) => {
                macs(out0, per_weight_row(&conv_weight(&conv.packed_from, 3)))
            }
        },
        Op::Gemm(gemm) => {
            let a = shape_in(0);
            let k = match (gemm.trans_a, a) {
                (true, [k, _]) => *k,
                (_, [.., k]) => *k,
                _ => 0,
            };
            macs(out0, k as u64)
        }
        Op::MatMul(_)
        | Op::MatMulInteger(_)
        | Op::QLinearMatMul(_)
        | Op::QGemm(_)
        | Op::MatMulNBits(_)
        | Op::QuantMatMulToFloat(_) => macs(out0, depth()),
        Op::Recurrent(_) => {
            // X: [steps, batch, input] (or batch first); W: [dirs, gates * hidden, input];
            // R: [dirs, gates * hidden, hidden].
            let input = shape_in(0).last().map_or(0, |&n| n as u64);
            let steps_batch = in0.checked_div(input).unwrap_or(0);
            let weights = elements(shape_in(1)).saturating_add(elements(shape_in(2)));
            macs(steps_batch, weights)
        }
        Op::Int8Recurrent(rec) => {
            // The same products with packed weights: per step and batch row,
            // `dirs * gates * hidden * (input + hidden)` multiply-adds.
            let input = shape_in(0).last().map_or(0, |&n| n as u64);
            let steps_batch = in0.checked_div(input).unwrap_or(0);
            let weights = (rec.layer.directions() * rec.layer.gates() * rec.hidden) as u64
                * (input + rec.hidden as u64);
            macs(steps_batch, weights)
        }
        Op::Attention(_) => {
            // Q K^T and P V: 2 * Skv * (Q elements + Y elements); K is [B, Skv, H*D] or
            // [B, H, Skv, D], a past key [B, H, P, D].
            let seq = |shape: &[usize]| match shape {
                [_, s, _] | [_, _, s, _] => *s as u64,
                _ => 0,
            };
            let kv = seq(shape_in(1)).saturating_add(seq(shape_in(4)));
            macs(kv, in0.saturating_add(out0))
        }
        Op::Binary(_)
        | Op::Unary(_)
        | Op::Where(_)
        | Op::Clip(_)
        | Op::SwiGlu(_)
        | Op::BatchNorm(_)
        | Op::ConcatAffine(_)
        | Op::Softmax(_)
        | Op::LayerNorm(_)
        | Op::GroupNorm(_)
        | Op::Mvn(_)
        | Op::LpNorm(_)
        | Op::Lrn(_)
        | Op::Resize(_)
        | Op::QuantLinear(_)
        | Op::DynamicQuantize(_)
        | Op::RotaryEmbedding(_) => out0,
        Op::Variadic(_) => {
            let inputs = cx.inputs.iter().flatten().count() as u64;
            out0.saturating_mul(inputs.saturating_sub(1).max(1))
        }
        Op::Pool(pool) => {
            let window = pool.window.kernel.as_deref().map_or(1, elements);
            out0.saturating_mul(window)
        }
        Op::GlobalPool(_) | Op::Reduce(_) | Op::ArgReduce(_) => in0,
        // Ops newer than this table (the com.microsoft QLinear family) by name.
        _ if op_type.starts_with("com.microsoft:QLinear") => out0,
        _ => 0,
    }
}

/// Bytes of one value of `dtype` and `shape` (one byte an element for the narrow types, as
/// the arena stores them).
pub fn value_bytes(dtype: DType, shape: &[usize]) -> u64 {
    elements(shape).saturating_mul(dtype.size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_the_outer_calls_in_order() {
        let body = quote! {
            const PARAMS: ::sinter_rt::conv::ConvParams = ::sinter_rt::conv::ConvParams { batch: 1 };
            ::sinter_rt::elementwise::broadcast_copy(i2, &[0, 1], o0, &[1, 10]);
            for k in 0..3 {
                ::sinter_rt::gemm::gemm_f32_act_exec(exec, ::sinter_rt::gemm::Strides { rows: 1, cols: 1 }, &[::sinter_rt::epilogue::Activation::Relu]);
            }
            ::sinter_rt::elementwise::map(i0, o0, |x| ::sinter_rt::math::exp_f32(x));
            ::sinter_rt::elementwise::broadcast_copy(i2, &[0, 1], o0, &[1, 10]);
            let _ = ::sinter_rt::elem::as_array::<f32, 10>(o0);
            let a = ::sinter_rt::epilogue::Activation::LeakyRelu(0.1);
            ::sinter_rt::conv_winograd::conv_winograd_f32_exec::<4usize>(exec, &PARAMS);
        };
        assert_eq!(
            kernel_name(&body),
            "elementwise::broadcast_copy + gemm::gemm_f32_act_exec + elementwise::map + \
             elem::as_array + conv_winograd::conv_winograd_f32_exec::<4>"
        );
        assert_eq!(
            kernel_name(&quote!(for i in 0..4 {
                o0[i] = i0[i] + 1.0;
            })),
            "inline"
        );
    }

    #[test]
    fn product_and_elementwise_estimates() {
        use crate::ops::{OpCx, Operand};
        let operand = |shape: &'static [usize]| {
            Some(Operand {
                range: None,
                syms: &[],
                dynamic: &[],
                dtype: DType::F32,
                shape,
                constant: None,
            })
        };
        let cx = OpCx {
            inputs: vec![operand(&[2, 3, 8]), operand(&[8, 5])],
            outputs: vec![operand(&[2, 3, 5])],
        };
        let matmul = Op::MatMul(crate::ops::gemm::MatMul::default());
        assert_eq!(estimate_flops(&matmul, "MatMul", &cx), 2 * 30 * 8);
        let gemm = Op::Gemm(crate::ops::gemm::Gemm {
            trans_a: true,
            ..crate::ops::gemm::Gemm::product()
        });
        let cx2 = OpCx {
            inputs: vec![operand(&[8, 3]), operand(&[8, 5])],
            outputs: vec![operand(&[3, 5])],
        };
        assert_eq!(estimate_flops(&gemm, "Gemm", &cx2), 2 * 15 * 8);
        assert_eq!(value_bytes(DType::F32, &[2, 3, 5]), 120);
        assert_eq!(value_bytes(DType::U8, &[0, 3]), 0);
    }
}
