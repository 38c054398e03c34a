//! `Einsum` (opset 12+): any equation (explicit or implicit output, ellipsis, repeated
//! labels for diagonals, sums over labels), lowered to one strided loop nest.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Einsum.html>. float32, float64, float16 and
//! bfloat16 (accumulated in f64).

use proc_macro2::TokenStream;
use quote::quote;

use super::{
    lit, require_dtype, rust_type, usize_slice, EmitNames, NodeCx, OpCx, OpDef, TypeShape,
};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// A label: a letter, or the `k`-th axis of the broadcast ellipsis (counted from the left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Label {
    Ellipsis(usize),
    Letter(u8),
}

/// One term of the equation: letters with an optional ellipsis position.
#[derive(Debug, Clone)]
struct Term {
    before: Vec<u8>,
    /// Letters after the ellipsis, when there is one.
    after: Option<Vec<u8>>,
}

fn parse_term(text: &str) -> Result<Term> {
    let bad = |why: &str| CompileError::attribute("equation", format!("{text:?}: {why}"));
    let letters = |s: &str| -> Result<Vec<u8>> {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphabetic() {
                    Ok(b)
                } else {
                    Err(bad("labels must be letters"))
                }
            })
            .collect()
    };
    match text.split_once("...") {
        None => Ok(Term {
            before: letters(text)?,
            after: None,
        }),
        Some((a, b)) => {
            if b.contains('.') {
                return Err(bad("more than one ellipsis"));
            }
            Ok(Term {
                before: letters(a)?,
                after: Some(letters(b)?),
            })
        }
    }
}

/// `Einsum`.
#[derive(Debug, Clone)]
pub struct Einsum {
    inputs: Vec<Term>,
    /// The explicit output, if the equation has `->`.
    output: Option<Term>,
}

/// The lowered loop nest.
struct Plan {
    out_shape: Vec<usize>,
    red_shape: Vec<usize>,
    out_strides: Vec<Vec<usize>>,
    red_strides: Vec<Vec<usize>>,
}

impl Einsum {
    /// Each operand's labels, one per axis, and the ellipsis rank.
    fn labels(&self, shapes: &[&[usize]]) -> Result<(Vec<Vec<Label>>, usize)> {
        if shapes.len() != self.inputs.len() {
            return Err(CompileError::shape(format!(
                "the equation has {} operands, the node {}",
                self.inputs.len(),
                shapes.len()
            )));
        }
        let mut ell_rank = 0;
        for (t, s) in self.inputs.iter().zip(shapes) {
            let named = t.before.len() + t.after.as_ref().map_or(0, Vec::len);
            if t.after.is_some() {
                let r = s.len().checked_sub(named).ok_or_else(|| {
                    CompileError::shape(format!("operand of rank {} has {named} labels", s.len()))
                })?;
                ell_rank = ell_rank.max(r);
            } else if named != s.len() {
                return Err(CompileError::shape(format!(
                    "operand of rank {} has {named} labels",
                    s.len()
                )));
            }
        }
        let mut all = Vec::new();
        for (t, s) in self.inputs.iter().zip(shapes) {
            let mut l: Vec<Label> = t.before.iter().map(|&b| Label::Letter(b)).collect();
            if let Some(after) = &t.after {
                let r = s.len() - t.before.len() - after.len();
                l.extend((ell_rank - r..ell_rank).map(Label::Ellipsis));
                l.extend(after.iter().map(|&b| Label::Letter(b)));
            }
            all.push(l);
        }
        Ok((all, ell_rank))
    }

    fn plan(&self, shapes: &[&[usize]]) -> Result<Plan> {
        let (labels, ell_rank) = self.labels(shapes)?;
        // Sizes, with 1 broadcasting (ellipsis axes) and letters required to agree.
        let mut sizes: Vec<(Label, usize)> = Vec::new();
        for (ls, s) in labels.iter().zip(shapes) {
            for (&l, &n) in ls.iter().zip(s.iter()) {
                match sizes.iter_mut().find(|(x, _)| *x == l) {
                    None => sizes.push((l, n)),
                    Some((_, m)) if *m == n || n == 1 => {}
                    Some((_, m)) if *m == 1 => *m = n,
                    Some((_, m)) => {
                        return Err(CompileError::shape(format!(
                            "label {l:?} has sizes {m} and {n}"
                        )))
                    }
                }
            }
        }
        let size_of = |l: Label| sizes.iter().find(|(x, _)| *x == l).map(|&(_, n)| n);
        let out_labels: Vec<Label> = match &self.output {
            Some(t) => {
                // Ellipsis axes the output omits are summed away.
                let mut v: Vec<Label> = t.before.iter().map(|&b| Label::Letter(b)).collect();
                if let Some(after) = &t.after {
                    v.extend((0..ell_rank).map(Label::Ellipsis));
                    v.extend(after.iter().map(|&b| Label::Letter(b)));
                }
                for (i, l) in v.iter().enumerate() {
                    if v[..i].contains(l) {
                        return Err(CompileError::attribute(
                            "equation",
                            "the output repeats a label",
                        ));
                    }
                    if size_of(*l).is_none() {
                        return Err(CompileError::attribute(
                            "equation",
                            format!("output label {l:?} is in no operand"),
                        ));
                    }
                }
                v
            }
            None => {
                let mut v: Vec<Label> = (0..ell_rank).map(Label::Ellipsis).collect();
                let mut letters: Vec<u8> = Vec::new();
                for ls in &labels {
                    for l in ls {
                        if let Label::Letter(b) = l {
                            letters.push(*b);
                        }
                    }
                }
                let mut once: Vec<u8> = letters
                    .iter()
                    .copied()
                    .filter(|b| letters.iter().filter(|c| *c == b).count() == 1)
                    .collect();
                once.sort_unstable();
                v.extend(once.into_iter().map(Label::Letter));
                v
            }
        };
        let red_labels: Vec<Label> = sizes
            .iter()
            .map(|&(l, _)| l)
            .filter(|l| !out_labels.contains(l))
            .collect();
        let strides_for = |which: &[Label]| -> Vec<Vec<usize>> {
            labels
                .iter()
                .zip(shapes)
                .map(|(ls, s)| {
                    let mut dense = vec![0usize; s.len()];
                    let mut acc = 1;
                    for i in (0..s.len()).rev() {
                        dense[i] = acc;
                        acc *= s[i];
                    }
                    which
                        .iter()
                        .map(|l| {
                            ls.iter()
                                .zip(s.iter())
                                .zip(&dense)
                                .filter(|((x, &n), _)| *x == l && n != 1)
                                .map(|(_, &d)| d)
                                .sum()
                        })
                        .collect()
                })
                .collect()
        };
        let dims = |which: &[Label]| -> Vec<usize> {
            which.iter().map(|&l| size_of(l).unwrap_or(1)).collect()
        };
        if out_labels.len() > 16 || red_labels.len() > 16 || shapes.len() > 8 {
            return Err(CompileError::unsupported(
                "Einsum with more than 16 output or summed labels, or 8 operands",
            ));
        }
        Ok(Plan {
            out_shape: dims(&out_labels),
            red_shape: dims(&red_labels),
            out_strides: strides_for(&out_labels),
            red_strides: strides_for(&red_labels),
        })
    }
}

const TYPES: &[DType] = &[DType::F32, DType::F64, DType::F16, DType::BF16];

impl OpDef for Einsum {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        let eq: String = node
            .string_or("equation", "")?
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l.to_string(), Some(r.to_string())),
            None => (eq.clone(), None),
        };
        let inputs = lhs.split(',').map(parse_term).collect::<Result<Vec<_>>>()?;
        let output = rhs.as_deref().map(parse_term).transpose()?;
        Ok(Self { inputs, output })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let first = cx.input(0)?;
        require_dtype(first.dtype, TYPES, "Inputs")?;
        let mut shapes = Vec::new();
        for i in 0..cx.inputs.len() {
            let x = cx.input(i)?;
            if x.dtype != first.dtype {
                return Err(CompileError::shape("Einsum operands differ in type"));
            }
            shapes.push(x.shape);
        }
        let plan = self.plan(&shapes)?;
        Ok(vec![TypeShape::new(first.dtype, plan.out_shape)])
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let dtype = cx.input(0)?.dtype;
        let shapes = (0..cx.inputs.len())
            .map(|i| cx.input(i).map(|x| x.shape))
            .collect::<Result<Vec<_>>>()?;
        let plan = self.plan(&shapes)?;
        let out_shape = usize_slice(&plan.out_shape);
        let red_shape = usize_slice(&plan.red_shape);
        let out_strides = plan.out_strides.iter().map(|s| usize_slice(s));
        let red_strides = plan.red_strides.iter().map(|s| usize_slice(s));
        let inputs: Vec<_> = (0..cx.inputs.len()).map(|i| names.input(i)).collect();
        let o0 = names.output(0);
        let t = rust_type(dtype);
        let (load, store) = match dtype {
            DType::F32 => (quote!(|v: f32| f64::from(v)), quote!(|v: f64| v as f32)),
            DType::F16 => (
                quote!(|v: u16| f64::from(::sinter_rt::half::f16_to_f32(v))),
                quote!(|v: f64| ::sinter_rt::half::f32_to_f16(v as f32)),
            ),
            DType::BF16 => (
                quote!(|v: u16| f64::from(::sinter_rt::half::bf16_to_f32(v))),
                quote!(|v: f64| ::sinter_rt::half::f32_to_bf16(v as f32)),
            ),
            _ => (quote!(|v: f64| v), quote!(|v: f64| v)),
        };
        let n = lit(cx.inputs.len());
        Ok(quote! {
            const PARAMS: ::sinter_rt::einsum::EinsumParams<'static> = ::sinter_rt::einsum::EinsumParams {
                out_shape: #out_shape,
                red_shape: #red_shape,
                out_strides: &[#(#out_strides),*],
                red_strides: &[#(#red_strides),*],
            };
            let inputs: [&[#t]; #n] = [#(#inputs),*];
            ::sinter_rt::einsum::einsum(&PARAMS, &inputs, #o0, #load, #store);
        })
    }
}
