//! Assorted ops: `BitCast` (opset 26), `CumProd` (opset 26), `Det` (opset 11..=22) and
//! `CenterCropPad` (opset 18).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__BitCast.html>,
//! <https://onnx.ai/onnx/operators/onnx__CumProd.html>,
//! <https://onnx.ai/onnx/operators/onnx__Det.html>,
//! <https://onnx.ai/onnx/operators/onnx__CenterCropPad.html>.

use proc_macro2::TokenStream;
use quote::quote;

use super::{lit, require_dtype, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// `Det` of the trailing two axes.
#[derive(Debug, Clone)]
pub struct Det;

impl OpDef for Det {
    fn parse(_node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::F32], "input")?;
        let r = x.shape.len();
        if r < 2 || x.shape[r - 1] != x.shape[r - 2] {
            return Err(CompileError::shape(format!(
                "Det needs square matrices, found {:?}",
                x.shape
            )));
        }
        Ok(vec![TypeShape::new(x.dtype, x.shape[..r - 2].to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let r = x.shape.len();
        let n = x.shape.get(r.wrapping_sub(1)).copied().unwrap_or(1);
        let batch: usize = x.shape.iter().take(r.saturating_sub(2)).product();
        let (i0, o0) = (names.input(0), names.output(0));
        let (batch, n) = (lit(batch), lit(n));
        Ok(quote!(::sinter_rt::misc::det_f32(#i0, #o0, #batch, #n);))
    }
}

/// `TfIdfVectorizer` over integer tokens (`pool_int64s`), opset 9.
/// Spec: <https://onnx.ai/onnx/operators/onnx__TfIdfVectorizer.html>.
#[derive(Debug, Clone)]
pub struct TfIdf {
    /// `[min_gram_length, max_gram_length, max_skip_count]`.
    pub lengths: [usize; 3],
    /// `Tf`, `Idf` or `TfIdf`.
    pub mode: &'static str,
    /// The token pool.
    pub pool: Vec<i64>,
    /// `[n, offset, output index]` per pool n-gram.
    pub grams: Vec<[usize; 3]>,
    /// Output length.
    pub out_len: usize,
}

impl OpDef for TfIdf {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let mode = match node.string_or("mode", "TF")?.as_str() {
            "TF" => "Tf",
            "IDF" => "Idf",
            "TFIDF" => "TfIdf",
            m => {
                return Err(CompileError::attribute(
                    "mode",
                    format!("unknown mode {m:?}"),
                ))
            }
        };
        if node.attr("weights").is_some() && mode != "Tf" {
            return Err(CompileError::unsupported("TfIdfVectorizer with weights"));
        }
        if node.attr("pool_strings").is_some() {
            return Err(CompileError::unsupported("TfIdfVectorizer over strings"));
        }
        let lengths = [
            node.usize_or("min_gram_length", 1)?,
            node.usize_or("max_gram_length", 1)?,
            node.usize_or("max_skip_count", 0)?,
        ];
        let pool = node.ints("pool_int64s")?.unwrap_or_default();
        let counts = node.ints("ngram_counts")?.unwrap_or_default();
        let indexes = node.ints("ngram_indexes")?.unwrap_or_default();
        let bad = |m: &str| CompileError::attribute("ngram_counts", m.to_string());
        let mut grams = Vec::new();
        for (g, &start) in counts.iter().enumerate() {
            let n = g + 1;
            let start = usize::try_from(start).map_err(|_| bad("negative offset"))?;
            let end = match counts.get(g + 1) {
                Some(&e) => usize::try_from(e).map_err(|_| bad("negative offset"))?,
                None => pool.len(),
            };
            if start > end || end > pool.len() || (end - start) % n != 0 {
                return Err(bad("offsets do not split the pool into n-grams"));
            }
            let mut off = start;
            while off < end {
                grams.push([n, off, 0]);
                off += n;
            }
        }
        if indexes.len() != grams.len() {
            return Err(CompileError::attribute(
                "ngram_indexes",
                "one index per pool n-gram expected",
            ));
        }
        for (g, &i) in grams.iter_mut().zip(&indexes) {
            g[2] = usize::try_from(i)
                .map_err(|_| CompileError::attribute("ngram_indexes", "negative index"))?;
        }
        let out_len = grams.iter().map(|g| g[2] + 1).max().unwrap_or(0);
        if lengths[0] == 0 || lengths[0] > lengths[1] {
            return Err(CompileError::attribute(
                "min_gram_length",
                "must be in 1..=max_gram_length",
            ));
        }
        Ok(Self {
            lengths,
            mode,
            pool,
            grams,
            out_len,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(x.dtype, &[DType::I32, DType::I64], "input")?;
        let out = match x.shape {
            [_] => vec![self.out_len],
            [b, _] => vec![*b, self.out_len],
            s => {
                return Err(CompileError::shape(format!(
                    "TfIdfVectorizer input must be 1-D or 2-D, found {s:?}"
                )))
            }
        };
        Ok(vec![TypeShape::new(DType::F32, out)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let (rows, len) = match x.shape {
            [n] => (1, *n),
            [b, n] => (*b, *n),
            _ => return Err(CompileError::shape("TfIdfVectorizer input rank")),
        };
        let (rows, len) = (lit(rows), lit(len));
        let lengths = self.lengths.map(lit);
        let pool = self
            .pool
            .iter()
            .map(|&v| proc_macro2::Literal::i64_suffixed(v));
        let grams = self.grams.iter().map(|g| {
            let g = g.map(lit);
            quote!([#(#g),*])
        });
        let mode = quote::format_ident!("{}", self.mode);
        let (i0, o0) = (names.input(0), names.output(0));
        Ok(
            quote!(::sinter_rt::misc::tfidf(#i0, #o0, #rows, #len, [#(#lengths),*],
            &[#(#pool),*], &[#(#grams),*], ::sinter_rt::misc::TfIdfMode::#mode);),
        )
    }
}
