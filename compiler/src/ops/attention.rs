//! `Attention` (opset 23, 24): scaled dot-product attention over 3-D `[B, S, H * D]` or 4-D
//! `[B, H, S, D]` operands, with grouped-query heads, past key/value caches (and the present
//! outputs), boolean or additive masks (broadcast, shorter than the key sequence),
//! `is_causal`, `nonpad_kv_seqlen`, `softcap`, `scale` and the `qk_matmul_output` modes.
//!
//! Also `RotaryEmbedding` (opset 23, float32) and `LinearAttention` (opset 27, float32 and
//! float16; semantics from its ONNX function body).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Attention.html>,
//! <https://onnx.ai/onnx/operators/onnx__RotaryEmbedding.html>. Attention: float32 and float16
//! (computed in f64); bfloat16 is refused (see `infer`). Opset 25's sliding window
//! (`left_window_size`, `right_window_size`) is applied as its function body defines it.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{lit, require_dtype, rust_type, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// `Attention`.
#[derive(Debug, Clone)]
pub struct Attention {
    causal: bool,
    q_heads: Option<usize>,
    kv_heads: Option<usize>,
    qk_mode: u8,
    scale: Option<f32>,
    softcap: f32,
    left_window: i64,
    right_window: i64,
    /// Set by the `fuse_attention` pass, never parsed: the operands are strided views.
    views: Option<Box<AttentionViews>>,
}

/// Where the operands of an attention that the `fuse_attention` pass formed lie: Q, K, V and
/// the output are each a view of a buffer (its first input, its output) with element strides
/// over the batch, head and sequence axes and a contiguous head axis. The views are what the
/// written-out graph's Transpose and Reshape nodes around the products made; the kernel reads
/// and writes them in place instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionViews {
    /// The logical shapes: Q `[B, H, Sq, D]`, K `[B, H, Sk, D]`, V `[B, H, Sk, Dv]`, and the
    /// output `[B, H, Sq, Dv]`.
    pub shapes: [[usize; 4]; 4],
    /// Element strides of the batch, head and sequence axes of Q, K, V and the output.
    pub strides: [[usize; 3]; 4],
    /// The output buffer's shape.
    pub out_shape: Vec<usize>,
}

impl AttentionViews {
    /// The elements view `i` reaches: one past its largest offset.
    fn extent(&self, i: usize) -> usize {
        let (shape, strides) = (self.shapes[i], self.strides[i]);
        if shape.contains(&0) {
            return 0;
        }
        (0..3).map(|a| (shape[a] - 1) * strides[a]).sum::<usize>() + shape[3]
    }
}

/// The resolved geometry.
struct Geometry {
    three_d: bool,
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    q_seq: usize,
    kv_seq: usize,
    past: usize,
    d: usize,
    dv: usize,
}

impl Geometry {
    fn total(&self) -> usize {
        self.past + self.kv_seq
    }
    /// (batch, head, sequence) strides of a Q/K/V/Y-like operand with `heads` heads of `size`.
    fn strides(&self, heads: usize, seq: usize, size: usize) -> [usize; 3] {
        if self.three_d {
            [seq * heads * size, size, heads * size]
        } else {
            [heads * seq * size, seq * size, size]
        }
    }
}

const TYPES: &[DType] = &[DType::F32, DType::F16];

/// The query rows the fast kernel takes at a time, which sizes its scratch (mirrors
/// `sinter_rt::attention::ATTENTION_BLOCK`).
const FAST_BLOCK: usize = 32;

/// Floats of scratch `sinter_rt::attention::attention_f32_exec` needs for `tasks` (batch item,
/// query head) pairs of `q_seq` query rows over `total` keys (mirrors its
/// `attention_f32_scratch`): a block's scores, probabilities and output rows, and the keys
/// and values packed as GEMM panels of 48 columns.
fn fast_scratch(tasks: usize, q_seq: usize, total: usize, d: usize, dv: usize) -> usize {
    let block = q_seq.min(FAST_BLOCK);
    let panels = |k: usize, n: usize| n.div_ceil(48) * 48 * k;
    let slot = block * (2 * total + dv) + panels(d, total) + panels(total, dv);
    (tasks * slot).max(1)
}

impl Attention {
    /// The attention `fuse_attention` forms from a written-out graph: additive mask (when the
    /// node has one), no cache, `scale` on the scores, operands read in place through `views`.
    pub fn fused(scale: f32, views: AttentionViews) -> Self {
        Self {
            causal: false,
            q_heads: None,
            kv_heads: None,
            qk_mode: 0,
            scale: Some(scale),
            softcap: 0.0,
            left_window: -1,
            right_window: -1,
            views: Some(Box::new(views)),
        }
    }

    /// Whether the float32 kernel on the blocked GEMM (`attention_f32_exec`) computes this
    /// node: float32 operands, no cache (past inputs or present outputs), no softcap, sliding
    /// window, valid-length input or QK output. The rest runs on the f64 reference loop.
    fn fast(&self, cx: &OpCx<'_>, g: &Geometry) -> bool {
        let output = |i: usize| cx.outputs.get(i).copied().flatten().is_some();
        cx.input(0).is_ok_and(|q| q.dtype == DType::F32)
            && g.past == 0
            && (4..7).all(|i| cx.opt_input(i).is_none())
            && !(1..4).any(output)
            && self.softcap == 0.0
            && self.left_window < 0
            && self.right_window < 0
    }

    /// The geometry of a fused attention, whose views must fit in its operands.
    fn view_geometry(cx: &OpCx<'_>, views: &AttentionViews) -> Result<Geometry> {
        let [q, k, v, y] = views.shapes;
        if k[..2] != q[..2] || v[..3] != k[..3] || k[3] != q[3] || y != [q[0], q[1], q[2], v[3]] {
            return Err(CompileError::shape(format!(
                "fused attention views Q {q:?}, K {k:?}, V {v:?}, output {y:?} do not fit together"
            )));
        }
        for i in 0..3 {
            let operand = cx.input(i)?;
            if operand.dtype != DType::F32
                || operand.shape.iter().product::<usize>() < views.extent(i)
            {
                return Err(CompileError::shape(format!(
                    "fused attention input {i} ({}{:?}) does not hold its view {:?}",
                    operand.dtype, operand.shape, views.shapes[i]
                )));
            }
        }
        if views.out_shape.iter().product::<usize>() < views.extent(3) {
            return Err(CompileError::shape(format!(
                "fused attention output {:?} does not hold its view {y:?}",
                views.out_shape
            )));
        }
        Ok(Geometry {
            three_d: false,
            batch: q[0],
            q_heads: q[1],
            kv_heads: k[1],
            q_seq: q[2],
            kv_seq: k[2],
            past: 0,
            d: q[3],
            dv: v[3],
        })
    }

    fn geometry(&self, cx: &OpCx<'_>) -> Result<Geometry> {
        if let Some(views) = &self.views {
            return Self::view_geometry(cx, views);
        }
        let (q, k, v) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        let bad = || {
            CompileError::shape(format!(
                "Q {:?}, K {:?}, V {:?} do not fit together",
                q.shape, k.shape, v.shape
            ))
        };
        if q.shape.len() != k.shape.len() || q.shape.len() != v.shape.len() {
            return Err(bad());
        }
        let g = match q.shape.len() {
            3 => {
                let (hq, hkv) = self.q_heads.zip(self.kv_heads).ok_or_else(|| {
                    CompileError::attribute(
                        "q_num_heads",
                        "q_num_heads and kv_num_heads are required for 3-D inputs",
                    )
                })?;
                if hq == 0
                    || hkv == 0
                    || q.shape[2] % hq != 0
                    || k.shape[2] % hkv != 0
                    || v.shape[2] % hkv != 0
                {
                    return Err(bad());
                }
                Geometry {
                    three_d: true,
                    batch: q.shape[0],
                    q_heads: hq,
                    kv_heads: hkv,
                    q_seq: q.shape[1],
                    kv_seq: k.shape[1],
                    past: 0,
                    d: q.shape[2] / hq,
                    dv: v.shape[2] / hkv,
                }
            }
            4 => Geometry {
                three_d: false,
                batch: q.shape[0],
                q_heads: q.shape[1],
                kv_heads: k.shape[1],
                q_seq: q.shape[2],
                kv_seq: k.shape[2],
                past: 0,
                d: q.shape[3],
                dv: v.shape[3],
            },
            r => {
                return Err(CompileError::shape(format!(
                    "Attention operands of rank {r} (3 or 4)"
                )))
            }
        };
        let kd = if g.three_d {
            k.shape[2] / g.kv_heads
        } else {
            k.shape[3]
        };
        if k.shape[0] != g.batch
            || v.shape[0] != g.batch
            || kd != g.d
            || (g.three_d && v.shape[1] != g.kv_seq)
            || (!g.three_d && (v.shape[1] != g.kv_heads || v.shape[2] != g.kv_seq))
            || g.kv_heads == 0
            || g.q_heads % g.kv_heads != 0
        {
            return Err(bad());
        }
        let mut g = g;
        match (cx.opt_input(4), cx.opt_input(5)) {
            (Some(pk), Some(pv)) => {
                let past = pk.shape.get(2).copied().unwrap_or(0);
                if pk.shape != [g.batch, g.kv_heads, past, g.d]
                    || pv.shape != [g.batch, g.kv_heads, past, g.dv]
                {
                    return Err(CompileError::shape(format!(
                        "past_key {:?} / past_value {:?} do not fit",
                        pk.shape, pv.shape
                    )));
                }
                g.past = past;
            }
            (None, None) => {}
            _ => {
                return Err(CompileError::malformed(
                    "past_key and past_value must be given together",
                ))
            }
        }
        Ok(g)
    }

    /// Mask strides over (batch, head, query, key) and the keys it covers.
    fn mask_layout(&self, cx: &OpCx<'_>, g: &Geometry) -> Result<Option<([usize; 4], usize)>> {
        let Some(m) = cx.opt_input(3) else {
            return Ok(None);
        };
        let r = m.shape.len();
        if r == 0 || r > 4 {
            return Err(CompileError::shape(format!(
                "attn_mask of shape {:?} (rank 1 to 4)",
                m.shape
            )));
        }
        let len = m.shape[r - 1];
        if len > g.total() {
            return Err(CompileError::shape(format!(
                "attn_mask covers {len} keys, there are {}",
                g.total()
            )));
        }
        let target = [g.batch, g.q_heads, g.q_seq, len];
        let mut strides = [0usize; 4];
        let mut acc = 1;
        for i in (0..r).rev() {
            let t = target[4 - r + i];
            let n = m.shape[i];
            if n != t && n != 1 {
                return Err(CompileError::shape(format!(
                    "attn_mask {:?} does not broadcast to {target:?}",
                    m.shape
                )));
            }
            strides[4 - r + i] = if n == 1 && t != 1 { 0 } else { acc };
            acc *= n;
        }
        Ok(Some((strides, len)))
    }
}

fn conversions(dtype: DType) -> (TokenStream, TokenStream) {
    match dtype {
        DType::F16 => (
            quote!(|v: u16| f64::from(::sinter_rt::half::f16_to_f32(v))),
            quote!(|v: f64| ::sinter_rt::half::f32_to_f16(v as f32)),
        ),
        DType::BF16 => (
            quote!(|v: u16| f64::from(::sinter_rt::half::bf16_to_f32(v))),
            quote!(|v: f64| ::sinter_rt::half::f32_to_bf16(v as f32)),
        ),
        _ => (quote!(|v: f32| f64::from(v)), quote!(|v: f64| v as f32)),
    }
}

impl OpDef for Attention {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let heads = |name: &str| -> Result<Option<usize>> {
            node.i64_opt(name)?
                .map(|v| {
                    usize::try_from(v)
                        .map_err(|_| CompileError::attribute(name, "must be positive"))
                })
                .transpose()
        };
        let qk_mode = match node.i64_or("qk_matmul_output_mode", 0)? {
            m @ 0..=3 => m as u8,
            other => {
                return Err(CompileError::attribute(
                    "qk_matmul_output_mode",
                    format!("must be 0 to 3, found {other}"),
                ))
            }
        };
        let scale = match node.attr("scale") {
            Some(_) => Some(node.f32_or("scale", 1.0)?),
            None => None,
        };
        Ok(Self {
            causal: node.i64_or("is_causal", 0)? != 0,
            q_heads: heads("q_num_heads")?,
            kv_heads: heads("kv_num_heads")?,
            qk_mode,
            scale,
            softcap: node.f32_or("softcap", 0.0)?,
            left_window: node.i64_or("left_window_size", -1)?,
            right_window: node.i64_or("right_window_size", -1)?,
            views: None,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let q = cx.input(0)?;
        if q.dtype == DType::BF16 {
            return Err(CompileError::unsupported(
                "bfloat16 Attention: computed in f64 it differs from a bfloat16-stepwise reference by 1-2 bf16 ulp, beyond the usual tolerances",
            ));
        }
        require_dtype(q.dtype, TYPES, "Q")?;
        for i in [1, 2, 4, 5] {
            if let Some(op) = cx.opt_input(i) {
                if op.dtype != q.dtype {
                    return Err(CompileError::shape(format!(
                        "input {i} is {}, Q is {}",
                        op.dtype, q.dtype
                    )));
                }
            }
        }
        if let Some(m) = cx.opt_input(3) {
            if m.dtype != DType::Bool && m.dtype != q.dtype {
                return Err(CompileError::unsupported(format!(
                    "attn_mask of type {} with Q of type {}",
                    m.dtype, q.dtype
                )));
            }
        }
        let g = self.geometry(cx)?;
        self.mask_layout(cx, &g)?;
        if let Some(n) = cx.opt_input(6) {
            if n.dtype != DType::I64 || n.shape != [g.batch] {
                return Err(CompileError::shape(format!(
                    "nonpad_kv_seqlen must be int64[{}], found {}{:?}",
                    g.batch, n.dtype, n.shape
                )));
            }
        }
        let t = g.total();
        let y = if let Some(views) = &self.views {
            views.out_shape.clone()
        } else if g.three_d {
            vec![g.batch, g.q_seq, g.q_heads * g.dv]
        } else {
            vec![g.batch, g.q_heads, g.q_seq, g.dv]
        };
        Ok(vec![
            TypeShape::new(q.dtype, y),
            TypeShape::new(q.dtype, vec![g.batch, g.kv_heads, t, g.d]),
            TypeShape::new(q.dtype, vec![g.batch, g.kv_heads, t, g.dv]),
            TypeShape::new(q.dtype, vec![g.batch, g.q_heads, g.q_seq, t]),
        ])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let g = self.geometry(cx).ok()?;
        if self.fast(cx, &g) {
            let floats = fast_scratch(g.batch * g.q_heads, g.q_seq, g.total(), g.d, g.dv);
            return Some(TypeShape::new(DType::F32, vec![floats]));
        }
        Some(TypeShape::new(DType::F64, vec![g.total().max(1)]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let q = cx.input(0)?;
        let g = self.geometry(cx)?;
        let (mask_strides, mask_len) = self.mask_layout(cx, &g)?.unwrap_or(([0; 4], 0));
        let three = |s: [usize; 3]| {
            let items = s.iter().map(|&v| lit(v));
            quote!([#(#items),*])
        };
        let [qs, ks, vs, ys] = match &self.views {
            Some(views) => views.strides,
            None => [
                g.strides(g.q_heads, g.q_seq, g.d),
                g.strides(g.kv_heads, g.kv_seq, g.d),
                g.strides(g.kv_heads, g.kv_seq, g.dv),
                g.strides(g.q_heads, g.q_seq, g.dv),
            ],
        };
        let [qs, ks, vs, ys] = [qs, ks, vs, ys].map(three);
        let ms = mask_strides.iter().map(|&v| lit(v));
        let scale = f64::from(self.scale.unwrap_or(0.0));
        let scale = if self.scale.is_some() {
            scale
        } else {
            1.0 / (g.d.max(1) as f64).sqrt()
        };
        if !scale.is_finite() || !self.softcap.is_finite() {
            return Err(CompileError::attribute("scale", "must be finite"));
        }
        let scale = Literal::f64_suffixed(scale);
        let softcap = Literal::f64_suffixed(f64::from(self.softcap));
        let (b, hq, hkv, sq, skv, past, d, dv, ml) = (
            lit(g.batch),
            lit(g.q_heads),
            lit(g.kv_heads),
            lit(g.q_seq),
            lit(g.kv_seq),
            lit(g.past),
            lit(g.d),
            lit(g.dv),
            lit(mask_len),
        );
        let (causal, mode) = (self.causal, self.qk_mode);
        let (left, right) = (self.left_window, self.right_window);
        let t = rust_type(q.dtype);
        let (load, store) = conversions(q.dtype);
        let (i0, i1, i2) = (names.input(0), names.input(1), names.input(2));
        let (mask, past_k, past_v, nonpad) = (
            names.opt_input(cx, 3),
            names.opt_input(cx, 4),
            names.opt_input(cx, 5),
            names.opt_input(cx, 6),
        );
        let (mask_type, mask_load) = match cx.opt_input(3).map(|m| m.dtype) {
            Some(DType::Bool) => (
                quote!(u8),
                quote!(|m: u8| if m != 0 { 0.0 } else { f64::NEG_INFINITY }),
            ),
            _ => (t.clone(), load.clone()),
        };
        let opt_out = |i: usize| {
            if cx.outputs.get(i).copied().flatten().is_some() {
                let o = names.output(i);
                quote!(Some(#o))
            } else {
                quote!(None)
            }
        };
        let (pk, pv, qk) = (opt_out(1), opt_out(2), opt_out(3));
        let o0 = names.output(0);
        let scratch = names.scratch();
        let params = quote! {
            const PARAMS: ::sinter_rt::attention::AttentionParams = ::sinter_rt::attention::AttentionParams {
                batch: #b, q_heads: #hq, kv_heads: #hkv, q_seq: #sq, kv_seq: #skv, past_seq: #past,
                head_size: #d, v_head_size: #dv,
                q_strides: #qs, k_strides: #ks, v_strides: #vs, y_strides: #ys,
                mask_strides: [#(#ms),*], mask_len: #ml,
                scale: #scale, softcap: #softcap, causal: #causal, qk_mode: #mode,
                left_window: #left, right_window: #right,
            };
        };
        if self.fast(cx, &g) {
            let exec = names.exec();
            let mask_load = match cx.opt_input(3).map(|m| m.dtype) {
                Some(DType::Bool) => {
                    quote!(|m: u8| if m != 0 { 0.0 } else { f32::NEG_INFINITY })
                }
                _ => quote!(|m: f32| m),
            };
            return Ok(quote! {
                #params
                ::sinter_rt::attention::attention_f32_exec::<#mask_type>(#exec, &PARAMS, #i0, #i1, #i2, #mask, #mask_load, #o0, #scratch);
            });
        }
        Ok(quote! {
            #params
            let inputs = ::sinter_rt::attention::AttentionInputs::<#t, #mask_type> {
                q: #i0, k: #i1, v: #i2, mask: #mask,
                past_key: #past_k, past_value: #past_v, nonpad: #nonpad,
            };
            let mut outputs = ::sinter_rt::attention::AttentionOutputs {
                y: #o0, present_key: #pk, present_value: #pv, qk: #qk,
            };
            ::sinter_rt::attention::attention(&PARAMS, &inputs, &mut outputs, #scratch, #load, #store, #mask_load);
        })
    }
}

/// `RotaryEmbedding` (opset 23): rotary position embeddings over 3-D `[B, S, H * D]` or 4-D
/// `[B, H, S, D]` input, half-split or interleaved pairs, partial `rotary_embedding_dim`,
/// caches indexed by `position_ids` (or given per position).
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    interleaved: bool,
    num_heads: usize,
    rotary_dim: usize,
}

impl RotaryEmbedding {
    /// (batch, seq, heads, head size, rotary dim, strides, cache width).
    #[allow(clippy::type_complexity, reason = "a private geometry tuple")]
    fn layout(
        &self,
        cx: &OpCx<'_>,
    ) -> Result<(usize, usize, usize, usize, usize, [usize; 3], usize)> {
        let x = cx.input(0)?;
        let (cos, sin) = (cx.input(1)?, cx.input(2)?);
        let (b, s, h, d, strides) = match x.shape {
            &[b, s, hidden] => {
                let h = self.num_heads;
                if h == 0 || hidden % h != 0 {
                    return Err(CompileError::attribute(
                        "num_heads",
                        format!("must divide the hidden size {hidden} of 3-D input"),
                    ));
                }
                let d = hidden / h;
                (b, s, h, d, [s * hidden, d, hidden])
            }
            &[b, h, s, d] => (b, s, h, d, [h * s * d, s * d, d]),
            other => {
                return Err(CompileError::shape(format!(
                    "input of shape {other:?} (rank 3 or 4)"
                )))
            }
        };
        let rot = if self.rotary_dim == 0 {
            d
        } else {
            self.rotary_dim
        };
        if rot > d || rot % 2 != 0 {
            return Err(CompileError::attribute(
                "rotary_embedding_dim",
                format!("{rot} must be even and at most the head size {d}"),
            ));
        }
        if cos.shape != sin.shape || cos.shape.len() < 2 {
            return Err(CompileError::shape(format!(
                "cos_cache {:?} and sin_cache {:?} must match",
                cos.shape, sin.shape
            )));
        }
        let width = cos.shape[cos.shape.len() - 1];
        if width < rot / 2 {
            return Err(CompileError::shape(format!(
                "cache rows of {width} values, rotation needs {}",
                rot / 2
            )));
        }
        match cx.opt_input(3) {
            Some(ids) => {
                if ids.dtype != DType::I64 || ids.shape != [b, s] || cos.shape.len() != 2 {
                    return Err(CompileError::shape(format!(
                        "position_ids {}{:?} with caches {:?}",
                        ids.dtype, ids.shape, cos.shape
                    )));
                }
            }
            None => {
                if cos.shape != [b, s, width] {
                    return Err(CompileError::shape(format!(
                        "without position_ids the caches must be [{b}, {s}, _], found {:?}",
                        cos.shape
                    )));
                }
            }
        }
        Ok((b, s, h, d, rot, strides, width))
    }
}

impl OpDef for RotaryEmbedding {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            interleaved: node.i64_or("interleaved", 0)? != 0,
            num_heads: node.usize_or("num_heads", 0)?,
            rotary_dim: node.usize_or("rotary_embedding_dim", 0)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "input")?;
        for i in [1, 2] {
            require_dtype(cx.input(i)?.dtype, &[DType::F32], "cache")?;
        }
        self.layout(cx)?;
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (b, s, h, d, rot, strides, width) = self.layout(cx)?;
        let strides = strides.iter().map(|&v| lit(v));
        let (b, s, h, d, rot, width) = (lit(b), lit(s), lit(h), lit(d), lit(rot), lit(width));
        let interleaved = self.interleaved;
        let (i0, i1, i2, o0) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.output(0),
        );
        let ids = if cx.opt_input(3).is_some() {
            let v = names.input(3);
            quote!(Some(#v))
        } else {
            quote!(None)
        };
        Ok(quote! {
            const PARAMS: ::sinter_rt::attention::RotaryParams = ::sinter_rt::attention::RotaryParams {
                batch: #b, seq: #s, heads: #h, head_size: #d, rotary_dim: #rot,
                strides: [#(#strides),*], interleaved: #interleaved, cache_width: #width,
            };
            ::sinter_rt::attention::rotary_embedding_f32(&PARAMS, #i0, #i1, #i2, #ids, #o0);
        })
    }
}

/// `sinter::KvCache`, made by the expansion of ONNX Runtime's `GroupQueryAttention`: the
/// present key or value cache `[B, heads, present, head]` from the past one (input 0,
/// optional, `[B, heads, past, head]`), the step's rows (input 1, `[B, S, heads * head]`) and
/// `seqlens_k` (input 2, int32 `[B]`), as `sinter_rt::attention::kv_cache_update_f32`
/// places them. Lengths the caches cannot hold stop the run with an error.
#[derive(Debug, Clone)]
pub struct KvCache {
    heads: usize,
    present: usize,
}

impl KvCache {
    /// The update of a cache of `heads` heads to `present` rows.
    pub fn new(heads: usize, present: usize) -> Self {
        Self { heads, present }
    }

    /// (batch, head size, past rows, new rows).
    fn layout(&self, cx: &OpCx<'_>) -> Result<(usize, usize, usize, usize)> {
        let new = cx.input(1)?;
        let lens = cx.input(2)?;
        let &[b, s, width] = new.shape else {
            return Err(CompileError::shape(format!(
                "new rows {:?} are not [batch, sequence, heads * head size]",
                new.shape
            )));
        };
        if self.heads == 0 || width % self.heads != 0 {
            return Err(CompileError::attribute(
                "heads",
                format!("{} heads do not divide a width of {width}", self.heads),
            ));
        }
        let d = width / self.heads;
        let past = match cx.opt_input(0) {
            Some(p) if p.shape.len() == 4 && p.shape[..2] == [b, self.heads] && p.shape[3] == d => {
                p.shape[2]
            }
            Some(p) => {
                return Err(CompileError::shape(format!(
                    "past cache {:?} is not [{b}, {}, _, {d}]",
                    p.shape, self.heads
                )))
            }
            None => 0,
        };
        if lens.dtype != DType::I32 || lens.shape != [b] {
            return Err(CompileError::shape(format!(
                "seqlens_k {}{:?} is not int32 [{b}]",
                lens.dtype, lens.shape
            )));
        }
        Ok((b, d, past, s))
    }
}

impl OpDef for KvCache {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        super::internal_op(node)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let new = cx.input(1)?;
        require_dtype(new.dtype, &[DType::F32], "new rows")?;
        if let Some(p) = cx.opt_input(0) {
            require_dtype(p.dtype, &[DType::F32], "past cache")?;
        }
        let (b, d, _, _) = self.layout(cx)?;
        Ok(vec![TypeShape::new(
            DType::F32,
            vec![b, self.heads, self.present, d],
        )])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (b, d, past, s) = self.layout(cx)?;
        let (b, d, past, s) = (lit(b), lit(d), lit(past), lit(s));
        let (heads, present) = (lit(self.heads), lit(self.present));
        let old = if cx.opt_input(0).is_some() {
            let v = names.input(0);
            quote!(#v)
        } else {
            quote!(&[])
        };
        let (new, lens, out) = (names.input(1), names.input(2), names.output(0));
        let update = names.check(quote!(::sinter_rt::attention::kv_cache_update_f32(
            &PARAMS, #old, #new, #lens, #out
        )));
        Ok(quote! {
            const PARAMS: ::sinter_rt::attention::KvCacheParams = ::sinter_rt::attention::KvCacheParams {
                batch: #b, heads: #heads, head_size: #d, past: #past, seq: #s, present: #present,
            };
            #update;
        })
    }
}

/// `sinter::GroupQueryAttention`, the attention of ONNX Runtime's `GroupQueryAttention`
/// after its cache update (its expansion makes it): query `[B, S, heads * head]` (input 0)
/// over the present caches `[B, kv_heads, present, head]` (inputs 1, 2), each batch entry
/// over the `seqlens_k[b] + 1` rows it holds (input 3, int32 `[B]`), with an optional bias
/// `[B or 1, heads or 1, S, present]` (input 4); output `[B, S, heads * head]`. Computed by
/// `sinter_rt::attention::group_query_attention_f32`.
#[derive(Debug, Clone)]
pub struct GroupQueryCore {
    q_heads: usize,
    kv_heads: usize,
    scale: Option<f32>,
    softcap: f32,
    window: usize,
    causal: bool,
}

impl GroupQueryCore {
    /// The attention of `q_heads` query heads over `kv_heads` cached ones: `scale` (default
    /// `1 / sqrt(head)`), `softcap` (0: none), a local `window` (0: none), causal or not.
    pub fn new(
        [q_heads, kv_heads]: [usize; 2],
        scale: Option<f32>,
        softcap: f32,
        window: usize,
        causal: bool,
    ) -> Self {
        Self {
            q_heads,
            kv_heads,
            scale,
            softcap,
            window,
            causal,
        }
    }

    /// (batch, rows, head size, present rows, bias strides).
    fn layout(&self, cx: &OpCx<'_>) -> Result<(usize, usize, usize, usize, [usize; 3])> {
        let (q, k, v, lens) = (cx.input(0)?, cx.input(1)?, cx.input(2)?, cx.input(3)?);
        let (n, nk) = (self.q_heads, self.kv_heads);
        let &[b, s, width] = q.shape else {
            return Err(CompileError::shape(format!(
                "query {:?} is not [batch, sequence, heads * head]",
                q.shape
            )));
        };
        if n == 0 || nk == 0 || n % nk != 0 || width % n != 0 {
            return Err(CompileError::attribute(
                "heads",
                format!("{n} query / {nk} key-value heads do not fit a width of {width}"),
            ));
        }
        let d = width / n;
        let c = k.shape.get(2).copied().unwrap_or(0);
        if k.shape != [b, nk, c, d] || v.shape != k.shape {
            return Err(CompileError::shape(format!(
                "present caches {:?} / {:?} are not [{b}, {nk}, _, {d}]",
                k.shape, v.shape
            )));
        }
        if lens.dtype != DType::I32 || lens.shape != [b] {
            return Err(CompileError::shape(format!(
                "seqlens_k {}{:?} is not int32 [{b}]",
                lens.dtype, lens.shape
            )));
        }
        let strides = match cx.opt_input(4) {
            None => [0; 3],
            Some(bias) => match *bias.shape {
                [bb, bn, bs, bc]
                    if (bb == 1 || bb == b) && (bn == 1 || bn == n) && bs == s && bc == c =>
                {
                    let step = |len: usize, stride: usize| if len == 1 { 0 } else { stride };
                    [step(bb, bn * s * c), step(bn, s * c), c]
                }
                _ => {
                    return Err(CompileError::shape(format!(
                        "attention bias {:?} is not [{b} or 1, {n} or 1, {s}, {c}]",
                        bias.shape
                    )))
                }
            },
        };
        Ok((b, s, d, c, strides))
    }
}

impl OpDef for GroupQueryCore {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        super::internal_op(node)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        for i in [0, 1, 2, 4] {
            if let Some(x) = cx.opt_input(i) {
                require_dtype(x.dtype, &[DType::F32], "operand")?;
            }
        }
        self.layout(cx)?;
        Ok(vec![TypeShape::new(
            DType::F32,
            cx.input(0)?.shape.to_vec(),
        )])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        // Mirrors `sinter_rt::attention::group_query_scratch`: the blocked attention's
        // scratch for one batch entry over every present row.
        let (_, s, d, c, _) = self.layout(cx).ok()?;
        let floats = fast_scratch(self.q_heads, s, c, d, d);
        Some(TypeShape::new(DType::F32, vec![floats]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (b, s, d, c, strides) = self.layout(cx)?;
        let scale = self.scale.unwrap_or(1.0 / (d.max(1) as f32).sqrt());
        if !scale.is_finite() || !self.softcap.is_finite() {
            return Err(CompileError::attribute("scale", "must be finite"));
        }
        let (scale, softcap) = (
            Literal::f32_suffixed(scale),
            Literal::f32_suffixed(self.softcap),
        );
        let (b, s, d, c, n, nk, window) = (
            lit(b),
            lit(s),
            lit(d),
            lit(c),
            lit(self.q_heads),
            lit(self.kv_heads),
            lit(self.window),
        );
        let strides = strides.iter().map(|&v| lit(v));
        let causal = self.causal;
        let (i0, i1, i2, i3) = (
            names.input(0),
            names.input(1),
            names.input(2),
            names.input(3),
        );
        let bias = names.opt_input(cx, 4);
        let (o0, exec, scratch) = (names.output(0), names.exec(), names.scratch());
        let run = names.check(quote!(::sinter_rt::attention::group_query_attention_f32(
            #exec, &PARAMS, #i0, #i1, #i2, #i3, #bias, #o0, #scratch
        )));
        Ok(quote! {
            const PARAMS: ::sinter_rt::attention::GroupQueryParams = ::sinter_rt::attention::GroupQueryParams {
                batch: #b, q_heads: #n, kv_heads: #nk, seq: #s, head_size: #d, present: #c,
                scale: #scale, softcap: #softcap, window: #window, causal: #causal,
                bias_strides: [#(#strides),*],
            };
            #run;
        })
    }
}

/// `LinearAttention` (opset 27, as its ONNX function body defines it): recurrent linear
/// attention over 3-D `[B, S, H * D]` operands with update rule `linear`, `gated`, `delta`
/// or `gated_delta` (default), optional `past_state`, `decay` (per head or per key row),
/// `beta` (per head or shared), grouped-query heads and `scale`.
#[derive(Debug, Clone)]
pub struct LinearAttention {
    q_heads: usize,
    kv_heads: usize,
    gated: bool,
    delta: bool,
    scale: Option<f32>,
}

/// The resolved layout: (B, S, dk, dv, decay width, beta width).
type LinearLayout = (usize, usize, usize, usize, usize, usize);

impl LinearAttention {
    fn layout(&self, cx: &OpCx<'_>) -> Result<LinearLayout> {
        let (q, k, v) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        let (hq, hkv) = (self.q_heads, self.kv_heads);
        let (&[b, s, qw], &[kb, ks, kw], &[vb, vs, vw]) = (q.shape, k.shape, v.shape) else {
            return Err(CompileError::unsupported(
                "LinearAttention with operands other than 3-D [B, S, H * D]",
            ));
        };
        if hq == 0 || hkv == 0 || hq % hkv != 0 || qw % hq != 0 || vw % hkv != 0 {
            return Err(CompileError::attribute(
                "q_num_heads",
                format!(
                    "{hq} / {hkv} heads do not fit Q {:?}, V {:?}",
                    q.shape, v.shape
                ),
            ));
        }
        let (dk, dv) = (qw / hq, vw / hkv);
        if (kb, ks, kw) != (b, s, hkv * dk) || (vb, vs) != (b, s) {
            return Err(CompileError::shape(format!(
                "key {:?} / value {:?} do not fit query {:?}",
                k.shape, v.shape, q.shape
            )));
        }
        if let Some(past) = cx.opt_input(3) {
            if past.shape != [b, hkv, dk, dv] {
                return Err(CompileError::shape(format!(
                    "past_state {:?} is not [{b}, {hkv}, {dk}, {dv}]",
                    past.shape
                )));
            }
        }
        let decay_width = match cx.opt_input(4) {
            Some(d) if d.shape == [b, s, hkv * dk] => dk,
            Some(d) if d.shape == [b, s, hkv] => 1,
            Some(d) => {
                return Err(CompileError::shape(format!(
                    "decay {:?} is neither [{b}, {s}, {}] nor [{b}, {s}, {hkv}]",
                    d.shape,
                    hkv * dk
                )))
            }
            None => 1,
        };
        let beta_width = match cx.opt_input(5) {
            Some(be) if be.shape == [b, s, hkv] => hkv,
            Some(be) if be.shape == [b, s, 1] => 1,
            Some(be) => {
                return Err(CompileError::shape(format!(
                    "beta {:?} is neither [{b}, {s}, {hkv}] nor [{b}, {s}, 1]",
                    be.shape
                )))
            }
            None => 1,
        };
        Ok((b, s, dk, dv, decay_width, beta_width))
    }
}

impl OpDef for LinearAttention {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let (gated, delta) = match node.string_or("update_rule", "gated_delta")?.as_str() {
            "linear" => (false, false),
            "gated" => (true, false),
            "delta" => (false, true),
            "gated_delta" => (true, true),
            other => {
                return Err(CompileError::attribute(
                    "update_rule",
                    format!("unknown rule {other:?}"),
                ))
            }
        };
        let scale = match node.attr("scale") {
            Some(_) => Some(node.f32_or("scale", 1.0)?),
            None => None,
        };
        Ok(Self {
            q_heads: node.usize_or("q_num_heads", 0)?,
            kv_heads: node.usize_or("kv_num_heads", 0)?,
            gated,
            delta,
            scale,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let q = cx.input(0)?;
        require_dtype(q.dtype, TYPES, "query")?;
        for i in 1..6 {
            if let Some(op) = cx.opt_input(i) {
                if op.dtype != q.dtype {
                    return Err(CompileError::shape(format!(
                        "input {i} is {}, query is {}",
                        op.dtype, q.dtype
                    )));
                }
            }
        }
        let (b, s, dk, dv, _, _) = self.layout(cx)?;
        Ok(vec![
            TypeShape::new(q.dtype, vec![b, s, self.q_heads * dv]),
            TypeShape::new(q.dtype, vec![b, self.kv_heads, dk, dv]),
        ])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let (b, _, dk, dv, _, _) = self.layout(cx).ok()?;
        Some(TypeShape::new(
            DType::F64,
            vec![b * self.kv_heads * dk * dv + dv],
        ))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let dtype = cx.input(0)?.dtype;
        let (b, s, dk, dv, dw, bw) = self.layout(cx)?;
        let scale = match self.scale {
            Some(v) => f64::from(v),
            None => 1.0 / (dk.max(1) as f64).sqrt(),
        };
        if !scale.is_finite() {
            return Err(CompileError::attribute("scale", "must be finite"));
        }
        let scale = Literal::f64_suffixed(scale);
        let (b, s, hq, hkv, dk, dv, dw, bw) = (
            lit(b),
            lit(s),
            lit(self.q_heads),
            lit(self.kv_heads),
            lit(dk),
            lit(dv),
            lit(dw),
            lit(bw),
        );
        let (gated, delta) = (self.gated, self.delta);
        let (load, store) = conversions(dtype);
        let (i0, i1, i2) = (names.input(0), names.input(1), names.input(2));
        let opt = |i: usize, names: &mut EmitNames| {
            if cx.opt_input(i).is_some() {
                let v = names.input(i);
                quote!(Some(#v))
            } else {
                quote!(None)
            }
        };
        let (past, decay, beta) = (opt(3, names), opt(4, names), opt(5, names));
        let present = if cx.outputs.get(1).copied().flatten().is_some() {
            let o1 = names.output(1);
            quote!(Some(#o1))
        } else {
            quote!(None)
        };
        let o0 = names.output(0);
        let scratch = names.scratch();
        Ok(quote! {
            const PARAMS: ::sinter_rt::attention::LinearAttentionParams = ::sinter_rt::attention::LinearAttentionParams {
                batch: #b, seq: #s, q_heads: #hq, kv_heads: #hkv, dk: #dk, dv: #dv,
                scale: #scale, gated: #gated, delta: #delta, decay_width: #dw, beta_width: #bw,
            };
            ::sinter_rt::attention::linear_attention(&PARAMS, (#i0, #i1, #i2), #past, #decay, #beta,
                #o0, #present, #scratch, #load, #store);
        })
    }
}

/// `FlexAttention` (`ai.onnx.preview`, opset 1): attention with optional `score_mod` and
/// `prob_mod` subgraphs. Shape inference expands it into primitive ops (as its function body
/// does) with the subgraphs inlined, so it never reaches code generation.
///
/// Spec: <https://onnx.ai/onnx/operators/onnx_aionnxpreview_FlexAttention.html>.
#[derive(Debug, Clone)]
pub struct FlexAttention {
    /// The scale of `Q K^T`; `1 / sqrt(head_size)` when absent.
    pub scale: Option<f32>,
    /// Modifies the scores before the softmax.
    pub score_mod: Option<Box<crate::onnx::proto::GraphProto>>,
    /// Modifies the probabilities after the softmax.
    pub prob_mod: Option<Box<crate::onnx::proto::GraphProto>>,
    /// The type the softmax is computed in, when given.
    pub softmax_precision: Option<DType>,
}

impl OpDef for FlexAttention {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let graph = |name: &str| node.attr(name).and_then(|a| a.g.clone()).map(Box::new);
        let softmax_precision = match node.i64_opt("softmax_precision")? {
            None => None,
            Some(code) => {
                let dtype = i32::try_from(code)
                    .ok()
                    .and_then(DType::from_onnx)
                    .filter(|d| matches!(d, DType::F32 | DType::F64))
                    .ok_or_else(|| {
                        CompileError::unsupported(format!(
                            "FlexAttention softmax_precision {code} (float and double are)"
                        ))
                    })?;
                Some(dtype)
            }
        };
        if node.n_inputs() != 3 {
            return Err(CompileError::malformed(format!(
                "FlexAttention takes 3 inputs, found {}",
                node.n_inputs()
            )));
        }
        Ok(Self {
            scale: node
                .attr("scale")
                .map(|_| node.f32_or("scale", 1.0))
                .transpose()?,
            score_mod: graph("score_mod"),
            prob_mod: graph("prob_mod"),
            softmax_precision,
        })
    }

    fn infer(&self, _cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        Err(CompileError::shape(
            "internal: FlexAttention must be expanded before shape inference",
        ))
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(CompileError::shape(
            "internal: FlexAttention must be expanded before code generation",
        ))
    }
}
