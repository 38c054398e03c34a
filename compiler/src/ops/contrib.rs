//! The `com.microsoft` transformer ops that ONNX Runtime's transformer optimizer
//! (`onnxruntime.transformers.optimizer`) and its `quantize_dynamic` write: `Attention`,
//! `QAttention`, `MultiHeadAttention`, `EmbedLayerNormalization`, `SkipLayerNormalization`,
//! `SkipSimplifiedLayerNormalization`, `BiasGelu`, `FastGelu`, `Gelu`, `QuickGelu`, `BiasAdd`,
//! and ORT's `SimplifiedLayerNormalization` (registered by ORT in the default domain).
//!
//! None of them reaches code generation: shape inference expands each into standard ops
//! (`passes::contrib`), so they run on the kernels and fusions those have. Semantics from ORT's
//! `docs/ContribOperators.md` and its CPU kernels.

use proc_macro2::TokenStream;

use super::{EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};

/// A `com.microsoft` transformer op, with its attributes.
#[derive(Debug, Clone)]
pub enum Contrib {
    /// `Attention` (float inputs) or `QAttention` (8-bit input and weights).
    Attention(AttentionAttrs),
    /// `SkipLayerNormalization` (`simplified`: `SkipSimplifiedLayerNormalization`, an RMS
    /// normalization): `norm(input + skip + bias)`.
    SkipNorm {
        /// Added to the variance.
        epsilon: f32,
        /// RMS normalization: no mean subtraction, no bias.
        simplified: bool,
    },
    /// ORT's `SimplifiedLayerNormalization`: ONNX's `RMSNormalization`.
    SimplifiedNorm {
        /// The first normalized axis.
        axis: i64,
        /// Added to the mean square.
        epsilon: f32,
    },
    /// `BiasGelu`: `gelu(x + bias)`, the exact (erf) form.
    BiasGelu,
    /// `FastGelu`: the tanh approximation of `gelu(x + bias)`, the bias optional.
    FastGelu,
    /// `Gelu`: the exact form.
    Gelu,
    /// `QuickGelu`: `x * sigmoid(alpha * x)`.
    QuickGelu {
        /// The sigmoid's slope.
        alpha: f32,
    },
    /// `BiasAdd`: `x + bias + skip`.
    BiasAdd,
    /// `EmbedLayerNormalization`: word, position and segment embeddings summed, then a
    /// layer norm; the mask's count of ones per row as `mask_index`.
    EmbedNorm {
        /// Added to the variance.
        epsilon: f32,
    },
    /// `MultiHeadAttention` over separate 3-D query, key and value.
    MultiHead(AttentionAttrs),
    /// `GroupQueryAttention`: grouped-query attention over a key/value cache that it extends
    /// by the step's rows, as ONNX Runtime's CPU kernel computes it.
    GroupQuery(GroupQueryAttrs),
    /// `RotaryEmbedding` (com.microsoft): ONNX's `RotaryEmbedding` with the position ids
    /// second and a one-element form (the first position; the rest follow it).
    Rotary {
        /// Pairs are adjacent elements (else the two halves of the rotated part).
        interleaved: bool,
        /// Heads of a 3-D input.
        num_heads: usize,
        /// Leading elements of each head that rotate (0: all).
        rotary_dim: usize,
    },
}

/// The attributes of `GroupQueryAttention` that sinter computes.
#[derive(Debug, Clone)]
pub struct GroupQueryAttrs {
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (dividing `num_heads`).
    pub kv_num_heads: usize,
    /// The scale of `Q K^T` (`1 / sqrt(head_size)` when absent).
    pub scale: Option<f32>,
    /// `softcap * tanh(scores / softcap)` before the attention bias and softmax (0: none).
    pub softcap: f32,
    /// A query at position `p` sees keys `p - window + 1 ..= p` (`None`: all before it).
    pub local_window: Option<usize>,
    /// Query and key rotate by their positions before the product (caches inputs 7, 8).
    pub do_rotary: bool,
    /// The rotation pairs adjacent elements.
    pub rotary_interleaved: bool,
    /// Queries see only keys at or before their position (else every key in the cache).
    pub causal: bool,
}

/// The attributes of `Attention` and `QAttention`.
#[derive(Debug, Clone)]
pub struct AttentionAttrs {
    /// `QAttention`: the projection is an 8-bit product with scales and zero points.
    pub quantized: bool,
    /// Heads.
    pub num_heads: usize,
    /// A causal mask: query `i` sees keys `j <= i`.
    pub unidirectional: bool,
    /// The widths of Q, K and V in the projection's output (equal thirds when absent).
    pub qkv_hidden_sizes: Option<[usize; 3]>,
    /// What masked scores get added (ORT's default -10000).
    pub mask_filter_value: f32,
    /// The scale of `Q K^T` (`1 / sqrt(head_size)` when absent).
    pub scale: Option<f32>,
}

impl Contrib {
    fn parse_attention(node: &NodeCx<'_>, quantized: bool) -> Result<AttentionAttrs> {
        let op = node.op_type();
        let num_heads = node.usize_or("num_heads", 0)?;
        if num_heads == 0 {
            return Err(CompileError::attribute("num_heads", "must be positive"));
        }
        if node.i64_or("do_rotary", 0)? != 0 {
            return Err(CompileError::unsupported(format!(
                "{op} with do_rotary (rotary embeddings inside attention)"
            )));
        }
        let qkv_hidden_sizes = match node.ints("qkv_hidden_sizes")? {
            None => None,
            Some(v) if v.len() == 3 && v.iter().all(|&s| s > 0) => {
                let s = |i: usize| usize::try_from(v[i]).unwrap_or(0);
                Some([s(0), s(1), s(2)])
            }
            Some(v) => {
                return Err(CompileError::attribute(
                    "qkv_hidden_sizes",
                    format!("must be three positive sizes, found {v:?}"),
                ))
            }
        };
        // Inputs past the mask: the past state, an additive attention bias, the past length.
        let (past, bias) = if quantized { (8, None) } else { (4, Some(5)) };
        if node.input_present(past) {
            return Err(CompileError::unsupported(format!(
                "{op} with a past state (key/value cache)"
            )));
        }
        if bias.is_some_and(|i| node.input_present(i)) || node.input_present(6) && !quantized {
            return Err(CompileError::unsupported(format!(
                "{op} with an attention bias or a past sequence length"
            )));
        }
        if node.output_present(1) {
            return Err(CompileError::unsupported(format!(
                "{op} with the present (key/value cache) output"
            )));
        }
        let scale = node
            .attr("scale")
            .map(|_| node.f32_or("scale", 0.0))
            .transpose()?
            .filter(|&s| s != 0.0);
        Ok(AttentionAttrs {
            quantized,
            num_heads,
            unidirectional: node.i64_or("unidirectional", 0)? != 0,
            qkv_hidden_sizes,
            mask_filter_value: node.f32_or("mask_filter_value", -10_000.0)?,
            scale,
        })
    }
}

impl Contrib {
    /// `GroupQueryAttention`'s attributes, refusing the inputs and modes sinter does not
    /// compute yet, each by name.
    fn parse_group_query(node: &NodeCx<'_>) -> Result<GroupQueryAttrs> {
        let op = node.op_type();
        let num_heads = node.usize_or("num_heads", 0)?;
        let kv_num_heads = node.usize_or("kv_num_heads", 0)?;
        if num_heads == 0 || kv_num_heads == 0 || num_heads % kv_num_heads != 0 {
            return Err(CompileError::attribute(
                "kv_num_heads",
                format!("{kv_num_heads} must be positive and divide num_heads ({num_heads})"),
            ));
        }
        let refused = [
            (9, "position_ids"),
            (11, "head_sink"),
            (12, "k_scale (a quantized cache)"),
            (13, "v_scale (a quantized cache)"),
            (14, "q_norm_weight"),
            (15, "k_norm_weight"),
            (16, "query_seqlens"),
        ];
        if let Some((_, what)) = refused.iter().find(|(i, _)| node.input_present(*i)) {
            return Err(CompileError::unsupported(format!("{op} with input {what}")));
        }
        if node.output_present(3) || node.i64_or("qk_output", 0)? != 0 {
            return Err(CompileError::unsupported(format!(
                "{op} with its output_qk output"
            )));
        }
        for (attr, what) in [
            ("smooth_softmax", "smooth_softmax"),
            (
                "sliding_window_cache",
                "a window-sized cache (sliding_window_cache)",
            ),
        ] {
            if node.i64_or(attr, 0)? != 0 {
                return Err(CompileError::unsupported(format!("{op} with {what}")));
            }
        }
        for attr in ["k_quant_type", "v_quant_type"] {
            let kind = node.string_or(attr, "NONE")?;
            if kind != "NONE" {
                return Err(CompileError::unsupported(format!(
                    "{op} with a quantized cache ({attr} {kind})"
                )));
            }
        }
        let causal = match node.i64_or("causal", 1)? {
            0 => false,
            1 => true,
            other => {
                return Err(CompileError::attribute(
                    "causal",
                    format!("must be 0 or 1, found {other}"),
                ))
            }
        };
        let local_window = match node.i64_or("local_window_size", -1)? {
            w if w <= 0 => None,
            _ if !causal => {
                return Err(CompileError::attribute(
                    "local_window_size",
                    "must be -1 when causal is 0",
                ))
            }
            w => Some(usize::try_from(w).unwrap_or(usize::MAX)),
        };
        let scale = node
            .attr("scale")
            .map(|_| node.f32_or("scale", 0.0))
            .transpose()?
            .filter(|&s| s != 0.0);
        let softcap = node.f32_or("softcap", 0.0)?;
        if !(softcap >= 0.0 && softcap.is_finite()) {
            return Err(CompileError::attribute(
                "softcap",
                format!("must be finite and not negative, found {softcap}"),
            ));
        }
        Ok(GroupQueryAttrs {
            num_heads,
            kv_num_heads,
            scale,
            softcap,
            local_window,
            do_rotary: node.i64_or("do_rotary", 0)? != 0,
            rotary_interleaved: node.i64_or("rotary_interleaved", 0)? != 0,
            causal,
        })
    }
}

impl OpDef for Contrib {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let op = node.op_type();
        Ok(match op {
            "Attention" => Contrib::Attention(Self::parse_attention(node, false)?),
            "QAttention" => Contrib::Attention(Self::parse_attention(node, true)?),
            "SkipLayerNormalization" | "SkipSimplifiedLayerNormalization" => {
                let simplified = op == "SkipSimplifiedLayerNormalization";
                if simplified && (node.output_present(1) || node.output_present(2)) {
                    return Err(CompileError::unsupported(format!(
                        "{op} with its mean or inverse deviation output"
                    )));
                }
                Contrib::SkipNorm {
                    epsilon: node.f32_or("epsilon", 1e-12)?,
                    simplified,
                }
            }
            "SimplifiedLayerNormalization" => {
                if node.output_present(1) {
                    return Err(CompileError::unsupported(format!(
                        "{op} with its inverse deviation output"
                    )));
                }
                if node.i64_or("stash_type", 1)? != 1 {
                    return Err(CompileError::unsupported(format!(
                        "{op} with stash_type other than float32"
                    )));
                }
                Contrib::SimplifiedNorm {
                    axis: node.i64_or("axis", -1)?,
                    epsilon: node.f32_or("epsilon", 1e-5)?,
                }
            }
            "BiasGelu" => Contrib::BiasGelu,
            "FastGelu" => Contrib::FastGelu,
            "Gelu" => Contrib::Gelu,
            "QuickGelu" => Contrib::QuickGelu {
                alpha: node.f32_or("alpha", 1.702)?,
            },
            "BiasAdd" => Contrib::BiasAdd,
            "EmbedLayerNormalization" => Contrib::EmbedNorm {
                epsilon: node.f32_or("epsilon", 1e-12)?,
            },
            "MultiHeadAttention" => {
                // Inputs past the mask: attention bias, past key and value, past length,
                // cache indirection; outputs past the first: present key and value, QK.
                if (5..10).any(|i| node.input_present(i)) {
                    return Err(CompileError::unsupported(format!(
                        "{op} with an attention bias or a past state"
                    )));
                }
                if (1..4).any(|i| node.output_present(i)) {
                    return Err(CompileError::unsupported(format!(
                        "{op} with its present or QK outputs"
                    )));
                }
                let num_heads = node.usize_or("num_heads", 0)?;
                if num_heads == 0 {
                    return Err(CompileError::attribute("num_heads", "must be positive"));
                }
                let scale = node
                    .attr("scale")
                    .map(|_| node.f32_or("scale", 0.0))
                    .transpose()?
                    .filter(|&s| s != 0.0);
                Contrib::MultiHead(AttentionAttrs {
                    quantized: false,
                    num_heads,
                    unidirectional: node.i64_or("unidirectional", 0)? != 0,
                    qkv_hidden_sizes: None,
                    mask_filter_value: node.f32_or("mask_filter_value", -10_000.0)?,
                    scale,
                })
            }
            "GroupQueryAttention" => Contrib::GroupQuery(Self::parse_group_query(node)?),
            "RotaryEmbedding" => {
                if node.i64_or("is_packed_batching", 0)? != 0 {
                    return Err(CompileError::unsupported(format!(
                        "{op} with is_packed_batching (ragged batches)"
                    )));
                }
                Contrib::Rotary {
                    interleaved: node.i64_or("interleaved", 0)? != 0,
                    num_heads: node.usize_or("num_heads", 0)?,
                    rotary_dim: node.usize_or("rotary_embedding_dim", 0)?,
                }
            }
            other => return Err(CompileError::unsupported(format!("com.microsoft:{other}"))),
        })
    }

    fn infer(&self, _cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        Err(CompileError::shape(
            "internal: com.microsoft ops must be expanded before shape inference",
        ))
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(CompileError::shape(
            "internal: com.microsoft ops must be expanded before code generation",
        ))
    }
}
