//! The `ai.onnx.ml` ops: `Binarizer` (opset 1), `ArrayFeatureExtractor` (opset 1) and
//! `TreeEnsemble` (opset 5; its trees become constant tables that `sinter_rt::ml` walks at
//! run time).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx_aionnxml_Binarizer.html>,
//! <https://onnx.ai/onnx/operators/onnx_aionnxml_ArrayFeatureExtractor.html>,
//! <https://onnx.ai/onnx/operators/onnx_aionnxml_TreeEnsemble.html>.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{f32_lit, lit, require_dtype, rust_type, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// An f64 literal that round-trips exactly (infinities and NaN as constants).
fn f64_lit(v: f64) -> TokenStream {
    if v.is_nan() {
        quote!(f64::NAN)
    } else if v == f64::INFINITY {
        quote!(f64::INFINITY)
    } else if v == f64::NEG_INFINITY {
        quote!(f64::NEG_INFINITY)
    } else {
        let l = Literal::f64_suffixed(v);
        quote!(#l)
    }
}

/// `Binarizer`: `y = 1` where `x > threshold`, else `0` (NaN gives 0), in the input's type.
#[derive(Debug, Clone)]
pub struct Binarizer {
    /// The threshold.
    pub threshold: f32,
}

impl OpDef for Binarizer {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            threshold: node.f32_or("threshold", 0.0)?,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        require_dtype(
            x.dtype,
            &[DType::F32, DType::F64, DType::I32, DType::I64],
            "input",
        )?;
        Ok(vec![TypeShape::new(x.dtype, x.shape.to_vec())])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let t = rust_type(x.dtype);
        let (i0, o0) = (names.input(0), names.output(0));
        let test = match x.dtype {
            DType::F32 => {
                let th = f32_lit(self.threshold);
                quote!(x > #th)
            }
            DType::F64 => {
                let th = f64_lit(f64::from(self.threshold));
                quote!(x > #th)
            }
            // Integers compare exactly in f64 up to 2^53, and the threshold is an f32.
            _ => {
                let th = f64_lit(f64::from(self.threshold));
                quote!((x as f64) > #th)
            }
        };
        let (one, zero) = if x.dtype.is_float() {
            (quote!(1.0), quote!(0.0))
        } else {
            (quote!(1), quote!(0))
        };
        Ok(
            quote!(::sinter_rt::elementwise::map(#i0, #o0, |x: #t| if #test { #one } else { #zero });),
        )
    }
}

/// `ArrayFeatureExtractor`: gathers the last axis of `x` at the given indices (all of them,
/// flattened); a 1-D `x` gives a `[1, k]` output. Out-of-range indices give zeros.
#[derive(Debug, Clone)]
pub struct ArrayFeatureExtractor;

impl OpDef for ArrayFeatureExtractor {
    fn parse(_node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self)
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (x, y) = (cx.input(0)?, cx.input(1)?);
        require_dtype(
            x.dtype,
            &[DType::F32, DType::F64, DType::I32, DType::I64],
            "input",
        )?;
        require_dtype(y.dtype, &[DType::I64], "indices")?;
        let k = y.shape.iter().product::<usize>();
        let shape = match x.shape {
            [] => {
                return Err(CompileError::shape(
                    "ArrayFeatureExtractor needs an input of rank 1 or more, found a scalar",
                ))
            }
            [_] => vec![1, k],
            [lead @ .., _] => lead.iter().copied().chain([k]).collect(),
        };
        Ok(vec![TypeShape::new(x.dtype, shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let dim = x.shape.last().copied().unwrap_or(1);
        let outer = lit(x.shape.iter().product::<usize>() / dim.max(1));
        let dim = lit(dim);
        let (i0, i1, o0) = (names.input(0), names.input(1), names.output(0));
        Ok(quote!(::sinter_rt::shape::gather(#i0, #i1, #o0, #outer, #dim, 1);))
    }
}

/// `TreeEnsemble` (opset 5): the validated trees as the tables of `sinter_rt::ml::Trees`.
#[derive(Debug, Clone)]
pub struct TreeEnsemble {
    features: Vec<u32>,
    modes: Vec<u8>,
    splits: Vec<f64>,
    children: Vec<[u32; 2]>,
    members: Vec<[u32; 2]>,
    member_values: Vec<f64>,
    leaf_targets: Vec<u32>,
    leaf_weights: Vec<f64>,
    roots: Vec<u32>,
    /// The element type of the splits and weights (the input's).
    dtype: DType,
    n_targets: usize,
    /// `Average`, `Sum`, `Min` or `Max`.
    aggregate: &'static str,
    /// `None`, `Softmax`, `Logistic` or `SoftmaxZero`.
    post: &'static str,
}

/// An index attribute entry as `u32`, below `bound`.
fn index(v: i64, bound: usize, what: &str) -> Result<u32> {
    usize::try_from(v)
        .ok()
        .filter(|&i| i < bound)
        .and_then(|i| u32::try_from(i).ok())
        .filter(|&i| i < ml_leaf_bit())
        .ok_or_else(|| {
            CompileError::attribute(what, format!("index {v} is out of range 0..{bound}"))
        })
}

/// `sinter_rt::ml::LEAF`.
const fn ml_leaf_bit() -> u32 {
    1 << 31
}

impl OpDef for TreeEnsemble {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let ints = |name: &str| -> Result<Vec<i64>> {
            node.ints(name)?
                .ok_or_else(|| CompileError::attribute(name, "required attribute is missing"))
        };
        let tensor = |name: &str| -> Result<crate::ir::Tensor> {
            node.tensor(name)?
                .ok_or_else(|| CompileError::attribute(name, "required attribute is missing"))
        };
        let featureids = ints("nodes_featureids")?;
        let truenodeids = ints("nodes_truenodeids")?;
        let falsenodeids = ints("nodes_falsenodeids")?;
        let trueleafs = ints("nodes_trueleafs")?;
        let falseleafs = ints("nodes_falseleafs")?;
        let leaf_targetids = ints("leaf_targetids")?;
        let tree_roots = ints("tree_roots")?;
        let modes_t = tensor("nodes_modes")?;
        let splits_t = tensor("nodes_splits")?;
        let weights_t = tensor("leaf_weights")?;
        let missing = node
            .ints("nodes_missing_value_tracks_true")?
            .unwrap_or_default();
        let membership = node.tensor("membership_values")?;
        let n = featureids.len();
        let n_leaves = leaf_targetids.len();
        let check_len = |name: &str, len: usize, want: usize| -> Result<()> {
            if len == want {
                Ok(())
            } else {
                Err(CompileError::attribute(
                    name,
                    format!("expected {want} entries (one per node or leaf), found {len}"),
                ))
            }
        };
        check_len("nodes_truenodeids", truenodeids.len(), n)?;
        check_len("nodes_falsenodeids", falsenodeids.len(), n)?;
        check_len("nodes_trueleafs", trueleafs.len(), n)?;
        check_len("nodes_falseleafs", falseleafs.len(), n)?;
        check_len("nodes_modes", modes_t.len(), n)?;
        check_len("nodes_splits", splits_t.len(), n)?;
        check_len("leaf_weights", weights_t.len(), n_leaves)?;
        if !missing.is_empty() {
            check_len("nodes_missing_value_tracks_true", missing.len(), n)?;
        }
        if !matches!(splits_t.dtype, DType::F32 | DType::F64) {
            return Err(CompileError::unsupported(format!(
                "TreeEnsemble with {} splits",
                splits_t.dtype
            )));
        }
        if weights_t.dtype != splits_t.dtype {
            return Err(CompileError::attribute(
                "leaf_weights",
                format!(
                    "expected {} like nodes_splits, found {}",
                    splits_t.dtype, weights_t.dtype
                ),
            ));
        }
        let n_targets = node.usize_or("n_targets", 0)?;
        if node.attr("n_targets").is_none() {
            return Err(CompileError::attribute(
                "n_targets",
                "required attribute is missing",
            ));
        }
        let aggregate = match node.i64_or("aggregate_function", 1)? {
            0 => "Average",
            1 => "Sum",
            2 => "Min",
            3 => "Max",
            v => {
                return Err(CompileError::attribute(
                    "aggregate_function",
                    format!("expected 0..=3, found {v}"),
                ))
            }
        };
        let post = match node.i64_or("post_transform", 0)? {
            0 => "None",
            1 => "Softmax",
            2 => "Logistic",
            3 => "SoftmaxZero",
            4 => {
                return Err(CompileError::unsupported(
                    "TreeEnsemble post_transform PROBIT",
                ))
            }
            v => {
                return Err(CompileError::attribute(
                    "post_transform",
                    format!("expected 0..=4, found {v}"),
                ))
            }
        };
        let raw_modes = modes_t.to_i64s().ok_or_else(|| {
            CompileError::attribute("nodes_modes", "expected a uint8 tensor".to_string())
        })?;
        let mut modes = Vec::with_capacity(n);
        for (i, &m) in raw_modes.iter().enumerate() {
            let m = u8::try_from(m).ok().filter(|&m| m <= 6).ok_or_else(|| {
                CompileError::attribute("nodes_modes", format!("expected 0..=6, found {m}"))
            })?;
            let tracks_true = missing.get(i).is_some_and(|&v| v != 0);
            modes.push(if tracks_true { m | 0x80 } else { m });
        }
        // Member sets, NaN-delimited, in the order of the MEMBER nodes.
        let member_list = membership.map(|t| t.to_f64s()).unwrap_or_default();
        let mut sets = member_list.split(|v| v.is_nan());
        let mut member_values = Vec::new();
        let mut members = Vec::with_capacity(n);
        for &m in &modes {
            if m & 0x7f == 6 {
                let set = sets.next().ok_or_else(|| {
                    CompileError::attribute(
                        "membership_values",
                        "fewer NaN-delimited sets than BRANCH_MEMBER nodes",
                    )
                })?;
                let start = u32::try_from(member_values.len())
                    .map_err(|_| CompileError::attribute("membership_values", "too many"))?;
                member_values.extend_from_slice(set);
                let end = u32::try_from(member_values.len())
                    .map_err(|_| CompileError::attribute("membership_values", "too many"))?;
                members.push([start, end]);
            } else {
                members.push([0, 0]);
            }
        }
        let features = featureids
            .iter()
            .map(|&f| {
                u32::try_from(f).map_err(|_| {
                    CompileError::attribute("nodes_featureids", format!("invalid feature id {f}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let child = |id: i64, leaf: i64, what: &str| -> Result<u32> {
            if leaf != 0 {
                Ok(index(id, n_leaves, what)? | ml_leaf_bit())
            } else {
                index(id, n, what)
            }
        };
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            children.push([
                child(truenodeids[i], trueleafs[i], "nodes_truenodeids")?,
                child(falsenodeids[i], falseleafs[i], "nodes_falsenodeids")?,
            ]);
        }
        let leaf_targets = leaf_targetids
            .iter()
            .map(|&t| index(t, n_targets, "leaf_targetids"))
            .collect::<Result<Vec<_>>>()?;
        let roots = tree_roots
            .iter()
            .map(|&r| index(r, n, "tree_roots"))
            .collect::<Result<Vec<_>>>()?;
        check_acyclic(&children, &roots)?;
        Ok(Self {
            features,
            modes,
            splits: splits_t.to_f64s(),
            children,
            members,
            member_values,
            leaf_targets,
            leaf_weights: weights_t.to_f64s(),
            roots,
            dtype: splits_t.dtype,
            n_targets,
            aggregate,
            post,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let x = cx.input(0)?;
        if x.dtype != self.dtype {
            return Err(CompileError::shape(format!(
                "the input is {} but the splits are {}",
                x.dtype, self.dtype
            )));
        }
        let (rows, n_features) = match x.shape {
            [r, f] => (*r, *f),
            [f] => (1, *f),
            s => {
                return Err(CompileError::shape(format!(
                    "TreeEnsemble input must be [N, F], found {s:?}"
                )))
            }
        };
        if let Some(&f) = self.features.iter().find(|&&f| f as usize >= n_features) {
            return Err(CompileError::shape(format!(
                "a node reads feature {f}, the input has {n_features}"
            )));
        }
        Ok(vec![TypeShape::new(x.dtype, vec![rows, self.n_targets])])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let x = cx.input(0).ok()?;
        let n_features = x.shape.last().copied()?;
        Some(TypeShape::new(
            DType::F64,
            vec![n_features + self.n_targets],
        ))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let x = cx.input(0)?;
        let n_features = lit(x.shape.last().copied().unwrap_or(0));
        let u32s = |v: &[u32]| {
            let items = v.iter().map(|&i| Literal::u32_suffixed(i));
            quote!(&[#(#items),*])
        };
        let pairs = |v: &[[u32; 2]]| {
            let items = v.iter().map(|[a, b]| {
                let (a, b) = (Literal::u32_suffixed(*a), Literal::u32_suffixed(*b));
                quote!([#a, #b])
            });
            quote!(&[#(#items),*])
        };
        let f64s = |v: &[f64]| {
            let items = v.iter().map(|&x| f64_lit(x));
            quote!(&[#(#items),*])
        };
        let features = u32s(&self.features);
        let modes = self.modes.iter().map(|&m| Literal::u8_suffixed(m));
        let splits = f64s(&self.splits);
        let children = pairs(&self.children);
        let members = pairs(&self.members);
        let member_values = f64s(&self.member_values);
        let leaf_targets = u32s(&self.leaf_targets);
        let leaf_weights = f64s(&self.leaf_weights);
        let roots = u32s(&self.roots);
        let aggregate = quote::format_ident!("{}", self.aggregate);
        let post = quote::format_ident!("{}", self.post);
        let (t, init, store) = match self.dtype {
            DType::F64 => (quote!(f64), f64::MAX, quote!(|v: f64| v)),
            _ => (quote!(f32), f64::from(f32::MAX), quote!(|v: f64| v as f32)),
        };
        let init = match self.aggregate {
            "Min" => f64_lit(init),
            "Max" => f64_lit(-init),
            _ => quote!(0.0f64),
        };
        let (i0, o0, scratch) = (names.input(0), names.output(0), names.scratch());
        Ok(quote! {{
            const TREES: ::sinter_rt::ml::Trees<'static> = ::sinter_rt::ml::Trees {
                features: #features,
                modes: &[#(#modes),*],
                splits: #splits,
                children: #children,
                members: #members,
                member_values: #member_values,
                leaf_targets: #leaf_targets,
                leaf_weights: #leaf_weights,
                roots: #roots,
            };
            let (row, scores) = #scratch.split_at_mut(#n_features);
            ::sinter_rt::ml::tree_ensemble(#i0, #o0, row, &TREES,
                ::sinter_rt::ml::Aggregate::#aggregate, #init,
                ::sinter_rt::ml::PostTransform::#post, |v: #t| v as f64, #store, scores);
        }})
    }
}

/// Rejects trees whose branches loop back (the run-time walk would not end).
fn check_acyclic(children: &[[u32; 2]], roots: &[u32]) -> Result<()> {
    // 0: unseen, 1: on the current path, 2: done.
    let mut state = vec![0u8; children.len()];
    for &root in roots {
        let mut stack: Vec<(usize, usize)> = vec![(root as usize, 0)];
        while let Some(top) = stack.last_mut() {
            let (node, k) = *top;
            top.1 += 1;
            if k == 0 {
                if state.get(node) == Some(&2) {
                    stack.pop();
                    continue;
                }
                if let Some(s) = state.get_mut(node) {
                    *s = 1;
                }
            }
            let Some(&succ) = children.get(node).and_then(|c| c.get(k)) else {
                if let Some(s) = state.get_mut(node) {
                    *s = 2;
                }
                stack.pop();
                continue;
            };
            if succ & ml_leaf_bit() != 0 {
                continue;
            }
            let s = succ as usize;
            match state.get(s) {
                Some(1) => {
                    return Err(CompileError::attribute(
                        "nodes_truenodeids",
                        format!("the trees have a cycle through node {s}"),
                    ))
                }
                Some(0) => stack.push((s, 0)),
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_in_the_trees_are_rejected() {
        let leaf = ml_leaf_bit();
        // Node 1 is shared by two paths (a DAG): fine.
        assert!(check_acyclic(&[[1, 1], [leaf, leaf | 1]], &[0]).is_ok());
        // Node 1 leads back to node 0.
        assert!(check_acyclic(&[[1, leaf], [0, leaf]], &[0]).is_err());
        // A node that is its own child.
        assert!(check_acyclic(&[[leaf, 0]], &[0]).is_err());
    }

    #[test]
    fn indices_are_bounded() {
        assert_eq!(index(2, 3, "x").ok(), Some(2));
        assert!(index(3, 3, "x").is_err());
        assert!(index(-1, 3, "x").is_err());
    }
}
