//! Reductions: `ReduceSum`, `ReduceMean`, `ReduceMax`, `ReduceMin`, `ReduceProd`,
//! `ReduceL1`, `ReduceL2`, `ReduceLogSum`, `ReduceLogSumExp`, `ReduceSumSquare`, `ArgMax`,
//! `ArgMin` and `TopK`.
//!
//! Spec: <https://onnx.ai/onnx/operators/> (ReduceSum-1/11/13: axes an input from 13; the other
//! reductions -1/11/13/18/20: axes an input from 18; ArgMax/ArgMin-1/11/12/13; TopK-1/10/11/24).
//! Float reductions accumulate in f64. Integer sums and products wrap; integer means are
//! computed in f64 and truncated (numpy's `mean(...).astype(dtype)`). `ReduceSum`,
//! `ReduceProd`, `ReduceMax` and `ReduceMin` on int64/int32 fold when their inputs are
//! constant.

use proc_macro2::TokenStream;
use quote::quote;

use super::movement::finish;

use super::{
    lit, normalize_axis, require_dtype, rust_type, usize_slice, EmitNames, NodeCx, OpCx, OpDef,
    TypeShape,
};
use crate::error::{CompileError, Result};
use crate::ir::{DType, Tensor};

/// Which reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceKind {
    /// Sum.
    Sum,
    /// Mean.
    Mean,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Product.
    Prod,
    /// Sum of absolute values.
    L1,
    /// Square root of the sum of squares.
    L2,
    /// Log of the sum.
    LogSum,
    /// Log of the sum of exponentials.
    LogSumExp,
    /// Sum of squares.
    SumSquare,
}

/// The `Reduce*` ops.
#[derive(Debug, Clone)]
pub struct Reduce {
    /// Which reduction.
    pub kind: ReduceKind,
    /// Keep reduced axes as size 1.
    pub keepdims: bool,
    /// Empty axes mean "no reduction" rather than "all axes".
    pub noop_with_empty_axes: bool,
    /// The `axes` attribute (when axes are not an input at this opset).
    pub attr_axes: Option<Vec<i64>>,
}

/// The reduction's layout: which input axes are reduced, and the output shape (its
/// capacity when the input's shape is only known at run time).
struct Layout {
    reduced: Vec<bool>,
    out_shape: Vec<usize>,
    /// Per output axis, whether its extent is only known at run time (empty: none is).
    out_dynamic: Vec<bool>,
}

impl Reduce {
    fn layout(&self, cx: &OpCx<'_>) -> Result<Layout> {
        let x = cx.input(0)?;
        let rank = x.shape.len();
        let axes = match (&self.attr_axes, cx.opt_input(1)) {
            (Some(a), _) => a.clone(),
            (None, Some(op)) if op.shape.contains(&0) => Vec::new(),
            (None, Some(_)) => cx.const_ints(1, "axes")?,
            (None, None) => Vec::new(),
        };
        let mut reduced = vec![axes.is_empty() && !self.noop_with_empty_axes; rank];
        for &a in &axes {
            reduced[normalize_axis(a, rank, "axis")?] = true;
        }
        let mut out_shape = Vec::new();
        let mut out_dynamic = Vec::new();
        for (a, (&d, &r)) in x.shape.iter().zip(&reduced).enumerate() {
            if !r {
                out_shape.push(d);
                out_dynamic.push(x.dynamic.get(a).copied().unwrap_or(false));
            } else if self.keepdims {
                out_shape.push(1);
                out_dynamic.push(false);
            }
        }
        if !out_dynamic.contains(&true) {
            out_dynamic.clear();
        }
        Ok(Layout {
            reduced,
            out_shape,
            out_dynamic,
        })
    }

    /// Per output axis, the input axis it comes from (a reduced axis kept as 1 included).
    pub fn kept_axes(&self, cx: &OpCx<'_>) -> Result<Vec<usize>> {
        let layout = self.layout(cx)?;
        Ok(layout
            .reduced
            .iter()
            .enumerate()
            .filter(|&(_, &r)| !r || self.keepdims)
            .map(|(a, _)| a)
            .collect())
    }

    /// The reduction's start value, fold and finish closures for elements of `dtype`;
    /// `n` is the number of elements reduced per output, as an f64 expression (for means).
    fn closures(&self, x_dtype: DType, n: &TokenStream) -> (TokenStream, TokenStream, TokenStream) {
        let t = rust_type(x_dtype);
        let float = x_dtype.is_float();
        let rt = quote!(::sinter_rt::reduce);
        let (init, fold, finish) = if float && self.kind == ReduceKind::LogSumExp {
            // A running (max, scaled sum) pair: no overflow for large inputs.
            let w = widen_f64(x_dtype);
            let narrow = match x_dtype {
                DType::F16 => quote!(::sinter_rt::cast::f64_to_f16),
                DType::BF16 => quote!(::sinter_rt::cast::f64_to_bf16),
                _ => quote!((|a: f64| a as #t)),
            };
            (
                quote!((f64::NEG_INFINITY, 0.0f64)),
                quote!(|a: (f64, f64), v: #t| #rt::log_sum_exp_step(a, #w(v))),
                quote!(|a: (f64, f64)| #narrow(#rt::log_sum_exp_finish(a))),
            )
        } else if float {
            // Every float reduction accumulates in f64: `w` widens an element, `narrow`
            // rounds the result once to the element type.
            let w = widen_f64(x_dtype);
            let narrow = match x_dtype {
                DType::F16 => quote!(::sinter_rt::cast::f64_to_f16),
                DType::BF16 => quote!(::sinter_rt::cast::f64_to_bf16),
                _ => quote!((|a: f64| a as #t)),
            };
            let fold = match self.kind {
                ReduceKind::Max => quote!(|a: f64, v: #t| {
                    let v = #w(v);
                    if v > a || v.is_nan() { v } else { a }
                }),
                ReduceKind::Min => quote!(|a: f64, v: #t| {
                    let v = #w(v);
                    if v < a || v.is_nan() { v } else { a }
                }),
                ReduceKind::Prod => quote!(|a: f64, v: #t| a * #w(v)),
                ReduceKind::L1 => quote!(|a: f64, v: #t| a + #w(v).abs()),
                ReduceKind::L2 | ReduceKind::SumSquare => {
                    quote!(|a: f64, v: #t| { let v = #w(v); a + v * v })
                }
                _ => quote!(|a: f64, v: #t| a + #w(v)),
            };
            let finish = match self.kind {
                ReduceKind::Mean => quote!(|a: f64| #narrow(a / #n)),
                ReduceKind::L2 => quote!(|a: f64| #narrow(#rt::sqrt_f64(a))),
                ReduceKind::LogSum => quote!(|a: f64| #narrow(#rt::ln_f64(a))),
                _ => quote!(|a: f64| #narrow(a)),
            };
            let init = match self.kind {
                ReduceKind::Prod => quote!(1.0f64),
                ReduceKind::Max => quote!(f64::NEG_INFINITY),
                ReduceKind::Min => quote!(f64::INFINITY),
                _ => quote!(0.0f64),
            };
            (init, fold, finish)
        } else {
            match self.kind {
                ReduceKind::Max => (
                    quote!(<#t>::MIN),
                    quote!(|a: #t, v: #t| if v > a { v } else { a }),
                    quote!(|a: #t| a),
                ),
                ReduceKind::Min => (
                    if x_dtype == DType::Bool {
                        quote!(1u8)
                    } else {
                        quote!(<#t>::MAX)
                    },
                    quote!(|a: #t, v: #t| if v < a { v } else { a }),
                    quote!(|a: #t| a),
                ),
                ReduceKind::Mean => {
                    // numpy's mean of integers: in float64, truncated back to the type.
                    (
                        quote!(0.0f64),
                        quote!(|a: f64, v: #t| a + v as f64),
                        quote!(|a: f64| (a / #n) as #t),
                    )
                }
                kind => {
                    let fold = match kind {
                        ReduceKind::Prod => quote!(|a: #t, v: #t| a.wrapping_mul(v)),
                        ReduceKind::L1 => {
                            quote!(|a: #t, v: #t| a.wrapping_add(v.wrapping_abs()))
                        }
                        ReduceKind::SumSquare => {
                            quote!(|a: #t, v: #t| a.wrapping_add(v.wrapping_mul(v)))
                        }
                        _ => quote!(|a: #t, v: #t| a.wrapping_add(v)),
                    };
                    let fold =
                        if matches!(x_dtype, DType::U8 | DType::U16 | DType::U32 | DType::U64)
                            && kind == ReduceKind::L1
                        {
                            quote!(|a: #t, v: #t| a.wrapping_add(v))
                        } else {
                            fold
                        };
                    let finish = quote!(|a: #t| a);
                    let init = if kind == ReduceKind::Prod {
                        quote!(1 as #t)
                    } else {
                        quote!(0 as #t)
                    };
                    (init, fold, finish)
                }
            }
        };
        (init, fold, finish)
    }

    /// The reduction of an input whose shape is only known at run time: the kept and
    /// reduced axes' extents and strides, the count and the output shape computed from it.
    fn emit_run_time(
        &self,
        cx: &OpCx<'_>,
        names: &mut EmitNames,
        layout: &Layout,
    ) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (capacity, dtype) = (x.shape, x.dtype);
        let rank = capacity.len();
        let is0 = names.in_shape(cx, 0);
        let (i0, o0) = (names.input(0), names.output(0));
        let axes = |reduced: bool| -> Vec<proc_macro2::Literal> {
            (0..rank)
                .filter(|&a| layout.reduced[a] == reduced)
                .map(lit)
                .collect()
        };
        let (kept, red) = (axes(false), axes(true));
        let out_dims = (0..rank).filter_map(|a| {
            let d = lit(a);
            match (layout.reduced[a], self.keepdims) {
                (false, _) => Some(quote!(reduce_shape[#d])),
                (true, true) => Some(quote!(1usize)),
                (true, false) => None,
            }
        });
        let out_shape = if layout.out_dynamic.is_empty() {
            TokenStream::new()
        } else {
            let os0 = names.out_shape(0);
            quote!(let #os0 = [#(#out_dims),*];)
        };
        let rank_lit = lit(rank);
        let prelude = quote! {
            let reduce_shape: [usize; #rank_lit] = #is0;
            #out_shape
        };
        // The vector kernel when the reduced axes of more than one element are one run (the
        // capacity's size-1 axes are 1 at run time too).
        let big: Vec<usize> = (0..rank)
            .filter(|&a| layout.reduced[a] && capacity[a] != 1)
            .collect();
        if let (Some(&lo), Some(&hi), Some(_)) = (
            big.first(),
            big.last(),
            self.f32_kernel_dims(dtype, capacity, &layout.reduced),
        ) {
            let (lo, hi1, kind) = (lit(lo), lit(hi + 1), self.f32_kernel_kind());
            return Ok(quote! {
                #prelude
                let reduce_dims: (usize, usize, usize) = (
                    reduce_shape[..#lo].iter().product(),
                    reduce_shape[#lo..#hi1].iter().product(),
                    reduce_shape[#hi1..].iter().product(),
                );
                ::sinter_rt::reduce::reduce_f32(#i0, #o0, reduce_dims, ::sinter_rt::reduce::F32Reduce::#kind);
            });
        }
        let (init, fold, finish) = self.closures(dtype, &quote!((reduce_count as f64)));
        // Only a mean divides by the count.
        let count = if self.kind == ReduceKind::Mean {
            quote!(let reduce_count: usize = [#(reduce_shape[#red]),*].iter().product();)
        } else {
            TokenStream::new()
        };
        Ok(quote! {
            #prelude
            let mut reduce_strides = [1usize; #rank_lit];
            for a in (1..#rank_lit).rev() {
                reduce_strides[a - 1] = reduce_strides[a] * reduce_shape[a];
            }
            #count
            ::sinter_rt::reduce::reduce(
                #i0,
                #o0,
                &[#(reduce_shape[#kept]),*],
                &[#(reduce_strides[#kept]),*],
                &[#(reduce_shape[#red]),*],
                &[#(reduce_strides[#red]),*],
                #init,
                #fold,
                #finish,
            );
        })
    }

    /// The `(outer, count, inner)` view `sinter_rt::reduce::reduce_f32` takes, for a float32
    /// reduction it runs whose reduced axes, size-1 axes aside, are one contiguous run of
    /// `shape`; `None` otherwise (the generic kernel runs).
    fn f32_kernel_dims(
        &self,
        dtype: DType,
        shape: &[usize],
        reduced: &[bool],
    ) -> Option<TokenStream> {
        let vector = matches!(
            self.kind,
            ReduceKind::Sum
                | ReduceKind::Mean
                | ReduceKind::SumSquare
                | ReduceKind::L1
                | ReduceKind::L2
                | ReduceKind::Max
                | ReduceKind::Min
        );
        let (outer, count, inner) =
            contiguous_run(shape, reduced).filter(|_| vector && dtype == DType::F32)?;
        Some(quote!((#outer, #count, #inner)))
    }

    /// The `sinter_rt::reduce::F32Reduce` variant of a reduction [`Self::f32_kernel_dims`]
    /// accepts.
    fn f32_kernel_kind(&self) -> proc_macro2::Ident {
        let name = match self.kind {
            ReduceKind::Sum => "Sum",
            ReduceKind::Mean => "Mean",
            ReduceKind::SumSquare => "SumSquare",
            ReduceKind::L1 => "L1",
            ReduceKind::L2 => "L2",
            ReduceKind::Max => "Max",
            _ => "Min",
        };
        proc_macro2::Ident::new(name, proc_macro2::Span::call_site())
    }
}

/// `shape` as `(outer, count, inner)` with `count` the product of the reduced axes, when
/// those (size-1 axes aside) are one contiguous run; `None` otherwise.
fn contiguous_run(shape: &[usize], reduced: &[bool]) -> Option<(usize, usize, usize)> {
    let axes: Vec<(usize, bool)> = shape
        .iter()
        .zip(reduced)
        .filter(|&(&d, _)| d != 1)
        .map(|(&d, &r)| (d, r))
        .collect();
    let first = axes.iter().position(|&(_, r)| r).unwrap_or(axes.len());
    let end = first + axes[first..].iter().take_while(|&&(_, r)| r).count();
    if axes[end..].iter().any(|&(_, r)| r) {
        return None;
    }
    let product = |a: &[(usize, bool)]| a.iter().map(|&(d, _)| d).product::<usize>();
    Some((
        product(&axes[..first]),
        product(&axes[first..end]),
        product(&axes[end..]),
    ))
}

const REDUCE_TYPES: &[DType] = &[
    DType::F32,
    DType::F64,
    DType::F16,
    DType::BF16,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::Bool,
];

impl OpDef for Reduce {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let kind = match node.op_type() {
            "ReduceSum" => ReduceKind::Sum,
            "ReduceMean" => ReduceKind::Mean,
            "ReduceMax" => ReduceKind::Max,
            "ReduceMin" => ReduceKind::Min,
            "ReduceProd" => ReduceKind::Prod,
            "ReduceL1" => ReduceKind::L1,
            "ReduceL2" => ReduceKind::L2,
            "ReduceLogSum" => ReduceKind::LogSum,
            "ReduceLogSumExp" => ReduceKind::LogSumExp,
            _ => ReduceKind::SumSquare,
        };
        let axes_input = if kind == ReduceKind::Sum {
            node.opset() >= 13
        } else {
            node.opset() >= 18
        };
        Ok(Self {
            kind,
            keepdims: node.i64_or("keepdims", 1)? != 0,
            noop_with_empty_axes: node.i64_or("noop_with_empty_axes", 0)? != 0,
            attr_axes: if axes_input {
                None
            } else {
                Some(node.ints("axes")?.unwrap_or_default())
            },
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, REDUCE_TYPES, "input")?;
        let float = x.dtype.is_float();
        let ok = match self.kind {
            ReduceKind::Max | ReduceKind::Min => true,
            ReduceKind::L2 | ReduceKind::LogSum | ReduceKind::LogSumExp => float,
            _ => x.dtype != DType::Bool,
        };
        if !ok {
            return Err(CompileError::unsupported(format!(
                "{:?} reduction of {}",
                self.kind, x.dtype
            )));
        }
        let layout = self.layout(cx)?;
        Ok(vec![TypeShape::dynamic(
            x.dtype,
            layout.out_shape,
            layout.out_dynamic,
        )])
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        // The layout is computed from the run-time shape (the axes stay constants).
        true
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        let x = cx.input(0).ok()?;
        let t = x.constant?;
        let int_kind = matches!(
            self.kind,
            ReduceKind::Sum | ReduceKind::Prod | ReduceKind::Max | ReduceKind::Min
        );
        if !matches!(x.dtype, DType::I64 | DType::I32) || !int_kind {
            return None;
        }
        let layout = match self.layout(cx) {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        let values = t.to_i64s()?;
        let rank = x.shape.len();
        // Output coordinates of each input element, flattened.
        let kept: Vec<usize> = (0..rank).filter(|&a| !layout.reduced[a]).collect();
        let n_out: usize = kept.iter().map(|&a| x.shape[a]).product();
        let prod = self.kind == ReduceKind::Prod;
        let init = match (self.kind, x.dtype) {
            (ReduceKind::Prod, _) => 1,
            (ReduceKind::Max, DType::I32) => i64::from(i32::MIN),
            (ReduceKind::Max, _) => i64::MIN,
            (ReduceKind::Min, DType::I32) => i64::from(i32::MAX),
            (ReduceKind::Min, _) => i64::MAX,
            _ => 0,
        };
        let mut out = vec![init; n_out];
        for (i, &v) in values.iter().enumerate() {
            let mut rem = i;
            let mut coords = vec![0; rank];
            for a in (0..rank).rev() {
                coords[a] = rem % x.shape[a].max(1);
                rem /= x.shape[a].max(1);
            }
            let o = kept.iter().fold(0, |acc, &a| acc * x.shape[a] + coords[a]);
            if let Some(slot) = out.get_mut(o) {
                *slot = match self.kind {
                    _ if prod => slot.wrapping_mul(v),
                    ReduceKind::Max => (*slot).max(v),
                    ReduceKind::Min => (*slot).min(v),
                    _ => slot.wrapping_add(v),
                };
            }
        }
        Some(Ok(vec![if x.dtype == DType::I32 {
            // Wrapping in i64 then truncating equals wrapping in i32.
            let v: Vec<i32> = out.iter().map(|&v| v as i32).collect();
            Tensor::from_i32(layout.out_shape, &v)
        } else {
            Tensor::from_i64(layout.out_shape, &out)
        }]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let code = (|| -> Result<TokenStream> {
            let x = cx.input(0)?;
            let layout = self.layout(cx)?;
            if x.is_dynamic() {
                return self.emit_run_time(cx, names, &layout);
            }
            let n_out: usize = layout.out_shape.iter().product();
            if n_out == 0 {
                return Ok(TokenStream::new());
            }
            let mut st = vec![1usize; x.shape.len()];
            for a in (0..x.shape.len().saturating_sub(1)).rev() {
                st[a] = st[a + 1] * x.shape[a + 1];
            }
            let (mut ks, mut kst, mut rs, mut rst) = (vec![], vec![], vec![], vec![]);
            for (a, &r) in layout.reduced.iter().enumerate() {
                if r {
                    rs.push(x.shape[a]);
                    rst.push(st[a]);
                } else {
                    ks.push(x.shape[a]);
                    kst.push(st[a]);
                }
            }
            let count: usize = rs.iter().product();
            if let Some(dims) = self.f32_kernel_dims(x.dtype, x.shape, &layout.reduced) {
                let (i0, o0, kind) = (names.input(0), names.output(0), self.f32_kernel_kind());
                return Ok(quote!(::sinter_rt::reduce::reduce_f32(
                    #i0, #o0, #dims, ::sinter_rt::reduce::F32Reduce::#kind
                );));
            }
            let n = proc_macro2::Literal::f64_suffixed(count as f64);
            let n = quote!(#n);
            let rt = quote!(::sinter_rt::reduce);
            let (init, fold, finish) = self.closures(x.dtype, &n);
            let (ks, kst, rs, rst) = (
                usize_slice(&ks),
                usize_slice(&kst),
                usize_slice(&rs),
                usize_slice(&rst),
            );
            let (i0, o0) = (names.input(0), names.output(0));
            Ok(quote!(#rt::reduce(#i0, #o0, #ks, #kst, #rs, #rst, #init, #fold, #finish);))
        })()?;
        finish(cx, names, code)
    }
}

/// A function-like expression widening one stored element of a float type to f64.
fn widen_f64(dtype: DType) -> TokenStream {
    match dtype {
        DType::F16 => quote!((|v: u16| f64::from(::sinter_rt::half::f16_to_f32(v)))),
        DType::BF16 => quote!((|v: u16| f64::from(::sinter_rt::half::bf16_to_f32(v)))),
        DType::F32 => quote!(f64::from),
        _ => quote!((|v: f64| v)),
    }
}

/// A function-like expression giving a comparable value of one stored element: 16-bit floats
/// widen to f32, every other type is itself.
pub(super) fn comparable(dtype: DType) -> TokenStream {
    let t = rust_type(dtype);
    match dtype {
        DType::F16 => quote!(::sinter_rt::half::f16_to_f32),
        DType::BF16 => quote!(::sinter_rt::half::bf16_to_f32),
        _ => quote!((|v: #t| v)),
    }
}

/// `ArgMax` and `ArgMin`.
#[derive(Debug, Clone)]
pub struct ArgReduce {
    /// `ArgMax` rather than `ArgMin`.
    pub max: bool,
    /// The axis.
    pub axis: i64,
    /// Keep the axis as size 1.
    pub keepdims: bool,
    /// Ties go to the last index.
    pub select_last_index: bool,
}

impl OpDef for ArgReduce {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            max: node.op_type() == "ArgMax",
            axis: node.i64_or("axis", 0)?,
            keepdims: node.i64_or("keepdims", 1)? != 0,
            select_last_index: node.i64_or("select_last_index", 0)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &REDUCE_TYPES[..12], "input")?;
        let axis = normalize_axis(self.axis, x.shape.len(), "axis")?;
        if x.shape[axis] == 0 {
            return Err(CompileError::shape("ArgMax/ArgMin over an empty axis"));
        }
        let mut shape = x.shape.to_vec();
        let mut dynamic = x.dynamic.to_vec();
        if self.keepdims {
            shape[axis] = 1;
            if let Some(d) = dynamic.get_mut(axis) {
                *d = false;
            }
        } else {
            shape.remove(axis);
            if axis < dynamic.len() {
                dynamic.remove(axis);
            }
        }
        if !dynamic.contains(&true) {
            dynamic.clear();
        }
        Ok(vec![TypeShape::dynamic(DType::I64, shape, dynamic)])
    }

    fn dynamic_inputs(&self, _cx: &OpCx<'_>) -> bool {
        // `[outer, n, inner]` around the axis is computed from the run-time shape.
        true
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let code = (|| -> Result<TokenStream> {
            let x = cx.input(0)?;
            let axis = normalize_axis(self.axis, x.shape.len(), "axis")?;
            let (prelude, outer, n, inner) = if x.is_dynamic() {
                // The layout from the run-time shape; an axis empty at run time is an error.
                let is0 = names.in_shape(cx, 0);
                let (a, a1) = (lit(axis), lit(axis + 1));
                let empty = names.check(quote!(if #is0[#a] == 0 {
                    Err("ArgMax/ArgMin over an axis that is empty at run time")
                } else {
                    Ok(())
                }));
                let out_shape = cx.output(0)?;
                let shape = if out_shape.is_dynamic() {
                    let os0 = names.out_shape(0);
                    let dims = (0..x.shape.len()).filter_map(|d| {
                        let dl = lit(d);
                        match (d == axis, self.keepdims) {
                            (false, _) => Some(quote!(#is0[#dl])),
                            (true, true) => Some(quote!(1usize)),
                            (true, false) => None,
                        }
                    });
                    quote!(let #os0 = [#(#dims),*];)
                } else {
                    TokenStream::new()
                };
                (
                    quote! {
                        #empty;
                        #shape
                    },
                    quote!(#is0[..#a].iter().product::<usize>()),
                    quote!(#is0[#a]),
                    quote!(#is0[#a1..].iter().product::<usize>()),
                )
            } else {
                let (outer, n, inner) = (
                    lit(x.shape[..axis].iter().product()),
                    lit(x.shape[axis]),
                    lit(x.shape[axis + 1..].iter().product()),
                );
                (
                    TokenStream::new(),
                    quote!(#outer),
                    quote!(#n),
                    quote!(#inner),
                )
            };
            let t = rust_type(x.dtype);
            let c = comparable(x.dtype);
            let better = if self.max {
                quote!(|a: #t, b: #t| #c(a) > #c(b))
            } else {
                quote!(|a: #t, b: #t| #c(a) < #c(b))
            };
            let last = self.select_last_index;
            let (i0, o0) = (names.input(0), names.output(0));
            Ok(quote! {
                #prelude
                ::sinter_rt::reduce::arg_reduce(#i0, #o0, #outer, #n, #inner, #last, #better);
            })
        })()?;
        finish(cx, names, code)
    }
}

/// `TopK` (k an attribute before opset 10, a constant input from 10; ties by lower index).
#[derive(Debug, Clone)]
pub struct TopK {
    /// The axis.
    pub axis: i64,
    /// Largest rather than smallest.
    pub largest: bool,
    /// The `k` attribute (opset < 10).
    pub attr_k: Option<i64>,
}

impl TopK {
    /// The axis, k, and the output shape; k and the shape are the capacity (the whole axis)
    /// when k is only known at run time.
    fn layout(&self, cx: &OpCx<'_>) -> Result<(usize, usize, Vec<usize>)> {
        let x = cx.input(0)?;
        let axis = normalize_axis(self.axis, x.shape.len(), "axis")?;
        if self.run_time_k(cx) {
            return Ok((axis, x.shape[axis], x.shape.to_vec()));
        }
        let k = match self.attr_k {
            Some(k) => k,
            None => cx
                .const_ints(1, "k")?
                .first()
                .copied()
                .ok_or_else(|| CompileError::shape("empty k"))?,
        };
        let k = usize::try_from(k)
            .ok()
            .filter(|&k| k <= x.shape[axis])
            .ok_or_else(|| CompileError::shape(format!("k {k} out of range")))?;
        let mut shape = x.shape.to_vec();
        shape[axis] = k;
        Ok((axis, k, shape))
    }

    /// Whether k is an input only known at run time.
    fn run_time_k(&self, cx: &OpCx<'_>) -> bool {
        self.attr_k.is_none() && cx.opt_input(1).is_some_and(|k| k.constant.is_none())
    }
}

impl OpDef for TopK {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            axis: node.i64_or("axis", -1)?,
            largest: node.i64_or("largest", 1)? != 0,
            attr_k: if node.opset() < 10 {
                Some(
                    node.i64_opt("k")?
                        .ok_or_else(|| CompileError::attribute("k", "required"))?,
                )
            } else {
                None
            },
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &REDUCE_TYPES[..12], "input")?;
        let (axis, _, shape) = self.layout(cx)?;
        if self.run_time_k(cx) {
            let dynamic: Vec<bool> = (0..shape.len()).map(|a| a == axis).collect();
            return Ok(vec![
                TypeShape::dynamic(x.dtype, shape.clone(), dynamic.clone()),
                TypeShape::dynamic(DType::I64, shape, dynamic),
            ]);
        }
        Ok(vec![
            TypeShape::new(x.dtype, shape.clone()),
            TypeShape::new(DType::I64, shape),
        ])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let x = cx.input(0).ok()?;
        let axis = normalize_axis(self.axis, x.shape.len(), "axis").ok()?;
        Some(TypeShape::new(DType::I64, vec![x.shape[axis]]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let code = (|| -> Result<TokenStream> {
            let x = cx.input(0)?;
            let (axis, k, _) = self.layout(cx)?;
            let outer = lit(x.shape[..axis].iter().product());
            let n = lit(x.shape[axis]);
            let inner = lit(x.shape[axis + 1..].iter().product());
            let t = rust_type(x.dtype);
            // NaN ranks as the largest value, as in numpy's sort.
            let c = comparable(x.dtype);
            let before = match (self.largest, x.dtype.is_float()) {
                (true, true) => quote!(|a: #t, b: #t| {
                    let (a, b) = (#c(a), #c(b));
                    a > b || (a.is_nan() && !b.is_nan())
                }),
                (false, true) => quote!(|a: #t, b: #t| {
                    let (a, b) = (#c(a), #c(b));
                    a < b || (b.is_nan() && !a.is_nan())
                }),
                (true, false) => quote!(|a: #t, b: #t| a > b),
                (false, false) => quote!(|a: #t, b: #t| a < b),
            };
            let mut pre = TokenStream::new();
            let kl = if self.run_time_k(cx) {
                let i1 = names.input(1);
                let k = names.check(quote!(::sinter_rt::dynamic::count_at_most(
                    #i1.first().copied().unwrap_or(-1),
                    #n,
                    "k is negative or larger than the axis"
                )));
                let shape = super::shape_with_extent(x.shape, axis, &quote!(k));
                let (os0, os1) = (names.out_shape(0), names.out_shape(1));
                pre = quote! {
                    let k = #k;
                    let #os0 = #shape;
                    let #os1 = #os0;
                };
                quote!(k)
            } else {
                let kl = lit(k);
                quote!(#kl)
            };
            if !cx.outputs.first().is_some_and(Option::is_some)
                || !cx.outputs.get(1).is_some_and(Option::is_some)
            {
                return Err(CompileError::unsupported(
                    "TopK with one of its outputs unused",
                ));
            }
            let (i0, o0, o1) = (names.input(0), names.output(0), names.output(1));
            let sc = names.scratch();
            Ok(quote! {
                #pre
                ::sinter_rt::reduce::top_k_scratch(#i0, #o0, #o1, #outer, #n, #inner, #kl, #sc, #before);
            })
        })()?;
        finish(cx, names, code)
    }
}

#[cfg(test)]
mod tests {
    use super::contiguous_run;

    #[test]
    fn reduced_axes_as_one_run() {
        // NHWC spatial axes, size-1 axes skipped, the last axis, and a split run.
        let (t, f) = (true, false);
        assert_eq!(
            contiguous_run(&[1, 7, 7, 64], &[f, t, t, f]),
            Some((1, 49, 64))
        );
        assert_eq!(
            contiguous_run(&[2, 1, 5, 3], &[f, f, t, t]),
            Some((2, 15, 1))
        );
        assert_eq!(contiguous_run(&[4, 1, 6], &[f, t, f]), Some((24, 1, 1)));
        assert_eq!(contiguous_run(&[4, 5, 6], &[t, f, t]), None);
        assert_eq!(contiguous_run(&[4, 5, 6], &[f, f, f]), Some((120, 1, 1)));
    }
}
