//! `NonMaxSuppression` (opset 10..=11): how many boxes it selects depends on the input
//! values, so its output `[selected, 3]` has a run-time extent. Its capacity comes from the
//! graph: `batch * classes * min(boxes, max_output_boxes_per_class)` when that input is a
//! constant, `batch * classes * boxes` otherwise. `sinter_rt::dynamic::non_max_suppression`
//! computes it, with every operand (thresholds included) read at run time.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__NonMaxSuppression.html>. float32 boxes and
//! scores; corner (`[y1, x1, y2, x2]`, either diagonal) or center (`center_point_box`)
//! boxes; boxes with IoU strictly above the threshold are suppressed.

use proc_macro2::TokenStream;
use quote::quote;

use super::{lit, EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, Result};
use crate::ir::DType;

/// `NonMaxSuppression`.
#[derive(Debug, Clone)]
pub struct Nms {
    /// `center_point_box`: boxes are `[x_center, y_center, width, height]`.
    pub flag: bool,
}

impl Nms {
    /// Batches, classes, boxes, and the most boxes kept per class.
    fn layout(&self, cx: &OpCx<'_>) -> Result<(usize, usize, usize, usize)> {
        let boxes = cx.input(0)?;
        let scores = cx.input(1)?;
        if boxes.dtype != DType::F32 || scores.dtype != DType::F32 {
            return Err(CompileError::unsupported(
                "NonMaxSuppression of non-float32 boxes",
            ));
        }
        let (b, n) = match boxes.shape {
            [b, n, 4] => (*b, *n),
            _ => return Err(CompileError::shape("boxes must be [batch, boxes, 4]")),
        };
        let c = match scores.shape {
            [sb, c, sn] if *sb == b && *sn == n => *c,
            _ => {
                return Err(CompileError::shape(
                    "scores must be [batch, classes, boxes]",
                ))
            }
        };
        let per_class = match cx.opt_input(2) {
            Some(o) if o.constant.is_some() => {
                let m = cx
                    .const_ints(2, "max_output_boxes_per_class")?
                    .first()
                    .copied()
                    .unwrap_or(0);
                usize::try_from(m.max(0)).unwrap_or(usize::MAX).min(n)
            }
            Some(_) => n,
            None => 0,
        };
        Ok((b, c, n, per_class))
    }
}

impl OpDef for Nms {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            flag: node.i64_or("center_point_box", 0)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        let (b, c, _, per_class) = self.layout(cx)?;
        for (i, what) in [(3, "iou_threshold"), (4, "score_threshold")] {
            if cx.opt_input(i).is_some_and(|o| o.dtype != DType::F32) {
                return Err(CompileError::unsupported(format!(
                    "NonMaxSuppression {what} that is not float32"
                )));
            }
        }
        Ok(vec![TypeShape::dynamic(
            DType::I64,
            vec![b * c * per_class, 3],
            vec![true, false],
        )])
    }

    fn scratch(&self, cx: &OpCx<'_>) -> Option<TypeShape> {
        let (_, _, n, _) = self.layout(cx).ok()?;
        Some(TypeShape::new(DType::I64, vec![2 * n]))
    }

    fn emit(&self, cx: &OpCx<'_>, names: &mut EmitNames) -> Result<TokenStream> {
        let (b, c, n, per_class) = self.layout(cx)?;
        let (boxes, scores, out) = (names.input(0), names.input(1), names.output(0));
        let per_class = match cx.opt_input(2) {
            Some(o) if o.constant.is_none() => {
                let m = names.input(2);
                let n = lit(n);
                // Negative counts keep nothing, counts beyond the boxes keep them all.
                quote!((#m.first().copied().unwrap_or(0).max(0) as u64).min(#n as u64) as usize)
            }
            _ => {
                let m = lit(per_class);
                quote!(#m)
            }
        };
        let iou = match cx.opt_input(3) {
            Some(_) => {
                let v = names.input(3);
                quote!(#v.first().copied().unwrap_or(0.0))
            }
            None => quote!(0.0),
        };
        let score = match cx.opt_input(4) {
            Some(_) => {
                let v = names.input(4);
                quote!(#v.first().copied())
            }
            None => quote!(None),
        };
        let (order, os0) = (names.scratch(), names.out_shape(0));
        let (b, c, n, center) = (lit(b), lit(c), lit(n), self.flag);
        Ok(quote! {
            let rows = ::sinter_rt::dynamic::non_max_suppression(
                #boxes, #scores, #b, #c, #n, #per_class, #iou, #score, #center, #order, #out,
            );
            let #os0 = [rows, 3];
        })
    }
}
