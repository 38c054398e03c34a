//! `NonMaxSuppression` (opset 10..=11): its output shape depends on the input values, so it
//! is folded at compile time when boxes, scores and thresholds are constants; otherwise it
//! reports them as operands that must be known at compile time.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__NonMaxSuppression.html>. float32 boxes and
//! scores; corner (`[y1, x1, y2, x2]`, either diagonal) or center (`center_point_box`)
//! boxes; boxes with IoU strictly above the threshold are suppressed.

use proc_macro2::TokenStream;

use super::{EmitNames, NodeCx, OpCx, OpDef, TypeShape};
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{DType, Tensor};

/// `NonMaxSuppression`, folded.
#[derive(Debug, Clone)]
pub struct Nms {
    /// `center_point_box`: boxes are `[x_center, y_center, width, height]`.
    pub flag: bool,
}

fn not_constant(i: usize) -> CompileError {
    CompileError::new(ErrorKind::NotConstant(format!(
        "NonMaxSuppression input {i} (the output shape depends on input values)"
    )))
}

impl Nms {
    fn nms(&self, cx: &OpCx<'_>) -> Result<Vec<Tensor>> {
        let boxes = cx.input(0)?;
        let scores = cx.input(1)?;
        let (bt, st) = (
            boxes.constant.ok_or_else(|| not_constant(0))?,
            scores.constant.ok_or_else(|| not_constant(1))?,
        );
        if bt.dtype != DType::F32 || st.dtype != DType::F32 {
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
        let max_out = match cx.opt_input(2) {
            Some(_) => cx
                .const_ints(2, "max_output_boxes_per_class")?
                .first()
                .copied()
                .unwrap_or(0),
            None => 0,
        };
        let max_out = usize::try_from(max_out.max(0)).unwrap_or(usize::MAX);
        let float_in = |i: usize| -> Option<f32> {
            cx.opt_input(i)
                .and_then(|o| o.constant)
                .and_then(|t| t.to_f64s().first().map(|&v| v as f32))
        };
        let iou_th = float_in(3).unwrap_or(0.0);
        let score_th = float_in(4);
        let bv = bt.as_f32().unwrap_or_default();
        let sv = st.as_f32().unwrap_or_default();
        let corners = |i: usize| -> [f32; 4] {
            let p = &bv[i * 4..i * 4 + 4];
            if self.flag {
                let (xc, yc, w, h) = (p[0], p[1], p[2], p[3]);
                [yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0]
            } else {
                [
                    p[0].min(p[2]),
                    p[1].min(p[3]),
                    p[0].max(p[2]),
                    p[1].max(p[3]),
                ]
            }
        };
        let suppress = |a: [f32; 4], bx: [f32; 4]| -> bool {
            let iy = (a[2].min(bx[2]) - a[0].max(bx[0])).max(0.0);
            let ix = (a[3].min(bx[3]) - a[1].max(bx[1])).max(0.0);
            let inter = iy * ix;
            if inter <= 0.0 {
                return false;
            }
            let area_a = (a[2] - a[0]) * (a[3] - a[1]);
            let area_b = (bx[2] - bx[0]) * (bx[3] - bx[1]);
            let union = area_a + area_b - inter;
            if area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
                return false;
            }
            inter / union > iou_th
        };
        let mut out: Vec<i64> = Vec::new();
        let mut rows = 0;
        for bi in 0..b {
            for ci in 0..c {
                let s = &sv[(bi * c + ci) * n..(bi * c + ci + 1) * n];
                let mut cand: Vec<usize> = (0..n)
                    .filter(|&i| score_th.is_none_or(|t| s[i] > t))
                    .collect();
                cand.sort_by(|&x, &y| s[y].total_cmp(&s[x]).then(x.cmp(&y)));
                let mut picked: Vec<usize> = Vec::new();
                for i in cand {
                    if picked.len() >= max_out {
                        break;
                    }
                    let bx = corners(bi * n + i);
                    if picked.iter().all(|&p| !suppress(corners(bi * n + p), bx)) {
                        picked.push(i);
                    }
                }
                for p in picked {
                    for v in [bi, ci, p] {
                        out.push(i64::try_from(v).unwrap_or(i64::MAX));
                    }
                    rows += 1;
                }
            }
        }
        Ok(vec![Tensor::from_i64(vec![rows, 3], &out)])
    }
}

impl OpDef for Nms {
    fn parse(node: &NodeCx<'_>) -> Result<Self> {
        Ok(Self {
            flag: node.i64_or("center_point_box", 0)? != 0,
        })
    }

    fn infer(&self, cx: &OpCx<'_>) -> Result<Vec<TypeShape>> {
        for (i, o) in cx.inputs.iter().enumerate() {
            if o.is_some_and(|o| o.constant.is_none()) {
                return Err(not_constant(i));
            }
        }
        Ok(self
            .nms(cx)?
            .iter()
            .map(|t| TypeShape::new(t.dtype, t.shape.clone()))
            .collect())
    }

    fn eval(&self, cx: &OpCx<'_>) -> Option<Result<Vec<Tensor>>> {
        Some(self.nms(cx))
    }

    fn emit(&self, _cx: &OpCx<'_>, _names: &mut EmitNames) -> Result<TokenStream> {
        Err(not_constant(0))
    }
}
