//! Packs constant convolution weights ahead of time into the panels the GEMM microkernel
//! reads (`sinter_rt::conv::ConvParams::packed_weights`): per group, the
//! `M/group x C/group * kernel` weight matrix in panels of 8 rows, each panel stored k-major
//! with its 8 rows interleaved and zero rows padding the last one. The GEMM then reads the
//! weights where they lie instead of repacking them on every run.
//!
//! Depthwise convolutions (a direct kernel reads them) and products too small for the blocked
//! GEMM (at most 8 output pixels, which the narrow GEMM path reads in place, or fewer than
//! 3 output channels) keep their weights as they are. The pass runs
//! after every pass that rewrites convolution weights.
//!
//! The constant B of a float32 Gemm (2-D MatMuls are Gemms by now: `fuse_matmul_add`) is
//! packed the same way into panels of 48 columns (`sinter_rt::gemm::gemm_packed_b_exec`) when
//! the product runs on the blocked GEMM (at least 3 rows and more than 8 columns).

use super::pattern::add_constant;
use super::PassCx;
use crate::error::Result;
use crate::ir::{DType, Graph, Tensor};
use crate::ops::Op;

/// Rows of a packed panel: the AVX-512 microkernel's tile height.
const PANEL_ROWS: usize = 8;

/// Packs the weights of every convolution that runs on the blocked GEMM.
pub fn pack_weights(mut graph: Graph, _cx: &PassCx) -> Result<Graph> {
    // Convolutions sharing one weight value (merged by `eliminate_common`) share its panels.
    let mut packed_of: std::collections::HashMap<(crate::ir::ValueId, usize), crate::ir::ValueId> =
        std::collections::HashMap::new();
    for index in 0..graph.nodes.len() {
        let node = &graph.nodes[index];
        let Some(Op::Conv(conv)) = &node.op else {
            continue;
        };
        if conv.packed_from.is_some() {
            continue;
        }
        let (Some(Some(x)), Some(Some(w)), Some(Some(y))) = (
            node.inputs.first().copied(),
            node.inputs.get(1).copied(),
            node.outputs.first().copied(),
        ) else {
            continue;
        };
        let (x, w_value, y) = (graph.value(x), graph.value(w), graph.value(y));
        let (Some(x_shape), Some(w_shape), Some(y_shape)) = (&x.shape, &w_value.shape, &y.shape)
        else {
            continue;
        };
        let Some(weights) = w_value.constant.as_ref().and_then(Tensor::as_f32) else {
            continue;
        };
        let group = conv.group;
        let (cin, cout) = (x_shape[1], w_shape[0]);
        let depthwise = group == cin && group == cout;
        let pixels: usize = y_shape[2..].iter().product();
        let cout_g = cout / group.max(1);
        if x.dtype != Some(DType::F32)
            || depthwise
            || cout_g < 3
            || pixels <= 8
            || cout % group.max(1) != 0
            || weights.len() % cout.max(1) != 0
        {
            continue;
        }
        let original = w_shape.clone();
        let id = match packed_of.get(&(w, group)) {
            Some(&id) => id,
            None => {
                let packed = pack(&weights, group, cout_g, weights.len() / cout);
                let k = weights.len() / cout;
                let panels = cout_g.div_ceil(PANEL_ROWS);
                let name = format!("{}/packed", w_value.name);
                let id = add_constant(
                    &mut graph,
                    name,
                    Tensor::from_f32(vec![group, panels * PANEL_ROWS, k], &packed),
                );
                packed_of.insert((w, group), id);
                id
            }
        };
        let node = &mut graph.nodes[index];
        node.inputs[1] = Some(id);
        if let Some(Op::Conv(conv)) = &mut node.op {
            conv.packed_from = Some(original);
        }
    }
    pack_products(&mut graph);
    Ok(graph)
}

/// Columns of a packed B panel (`sinter_rt::gemm::PACKED_B_COLUMNS`).
const B_PANEL: usize = 48;

/// Columns of a panel of the channels-last kernel (`sinter_rt::conv_nhwc::PANEL`), which runs
/// the products whose A it reads by rows (`sinter_rt::conv_nhwc::gemm_rows_f32_exec`).
const ROW_PANEL: usize = 16;

/// Packs the constant B of every float32 Gemm that runs on the blocked GEMM.
fn pack_products(graph: &mut Graph) {
    let mut packed_of: std::collections::HashMap<
        (crate::ir::ValueId, bool, bool),
        crate::ir::ValueId,
    > = std::collections::HashMap::new();
    for index in 0..graph.nodes.len() {
        let node = &graph.nodes[index];
        let gemm = match &node.op {
            Some(Op::Gemm(gemm)) if gemm.packed_b.is_none() => gemm.clone(),
            _ => continue,
        };
        let (Some(Some(a)), Some(Some(b))) =
            (node.inputs.first().copied(), node.inputs.get(1).copied())
        else {
            continue;
        };
        let (a_value, b_value) = (graph.value(a), graph.value(b));
        let (Some(a_shape), Some(b_shape)) = (&a_value.shape, &b_value.shape) else {
            continue;
        };
        let Some(weights) = b_value.constant.as_ref().and_then(Tensor::as_f32) else {
            continue;
        };
        if a_value.dtype != Some(DType::F32) {
            continue;
        }
        let Ok((m, n, k)) = gemm.dims_of(a_shape, b_shape) else {
            continue;
        };
        // The blocked GEMM's products only (the smaller ones read B where it lies), and the
        // channels-last kernel's (below), which takes one-row products too.
        if m == 0 || n <= 8 || k == 0 {
            continue;
        }
        let original = b_shape.clone();
        // The channels-last kernel reads A's rows where they lie and takes C as a bias or
        // residual in its epilogue: A by rows, alpha and beta 1, C of [N], [1, N] or [M, N].
        let c_fits = match node.inputs.get(2).copied().flatten() {
            None => true,
            Some(c) => {
                let shape = graph.value(c).shape.clone().unwrap_or_default();
                gemm.beta == 1.0 && (shape == [n] || shape == [1, n] || shape == [m, n] && m > 1)
            }
        };
        let rows = !gemm.trans_a && gemm.alpha == 1.0 && c_fits;
        // One- and two-row products (batch-1 classifier heads) gain from packed panels when
        // the weights are big enough to be read from memory; small ones read B where it lies.
        if m < 3 && (!rows || n < 64) {
            continue;
        }
        let panel = if rows { ROW_PANEL } else { B_PANEL };
        let id = match packed_of.get(&(b, gemm.trans_b, rows)) {
            Some(&id) => id,
            None => {
                let panels = pack_b(&weights, k, n, gemm.trans_b, panel);
                let name = format!("{}/packed", b_value.name);
                let shape = vec![n.div_ceil(panel), k, panel];
                let id = add_constant(graph, name, Tensor::from_f32(shape, &panels));
                packed_of.insert((b, gemm.trans_b, rows), id);
                id
            }
        };
        let node = &mut graph.nodes[index];
        node.inputs[1] = Some(id);
        node.op = Some(Op::Gemm(crate::ops::gemm::Gemm {
            packed_b: Some(original),
            row_panels: rows,
            ..gemm
        }));
    }
}

/// B (`[k, n]`, or `[n, k]` if `transposed`) as panels of `panel` columns: element `(p, j)`
/// at `((j / panel) * k + p) * panel + j % panel`, zero past column `n`.
fn pack_b(b: &[f32], k: usize, n: usize, transposed: bool, panel: usize) -> Vec<f32> {
    let mut out = vec![0.0; n.div_ceil(panel) * panel * k];
    for p in 0..k {
        for j in 0..n {
            let v = if transposed {
                b[j * k + p]
            } else {
                b[p * n + j]
            };
            out[((j / panel) * k + p) * panel + j % panel] = v;
        }
    }
    out
}

/// `w: [group * cout_g, k]` (row-major) as panels: element `(i, p)` of group `g` at
/// `((g * panels + i / 8) * k + p) * 8 + i % 8`.
fn pack(w: &[f32], group: usize, cout_g: usize, k: usize) -> Vec<f32> {
    let panels = cout_g.div_ceil(PANEL_ROWS);
    let mut out = vec![0.0; group * panels * PANEL_ROWS * k];
    for g in 0..group {
        for i in 0..cout_g {
            let row = &w[(g * cout_g + i) * k..][..k];
            let panel = g * panels + i / PANEL_ROWS;
            for (p, &v) in row.iter().enumerate() {
                out[(panel * k + p) * PANEL_ROWS + i % PANEL_ROWS] = v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_conv_weights_become_panels() {
        use crate::passes::testing::{before_after, ints_attr, ModelBuilder};
        let w: Vec<f32> = (0..180).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let graph = ModelBuilder::new()
            .input("x", &[1, 2, 5, 5])
            .floats("w", &[10, 2, 3, 3], &w)
            .node_with(
                "Conv",
                &["x", "w"],
                &["y"],
                vec![ints_attr("pads", &[1, 1, 1, 1])],
            )
            .output("y")
            .build();
        let (after, text) = before_after(graph, pack_weights);
        insta::assert_snapshot!(text);
        let conv = &after.nodes[0];
        let packed = after.value(conv.inputs[1].expect("weights"));
        // 10 rows in two panels of 8 (6 zero rows), k = 18.
        assert_eq!(packed.shape.as_deref(), Some(&[1, 16, 18][..]));
    }

    #[test]
    fn panels_interleave_rows_and_pad_with_zeros() {
        // One group, 10 rows of k = 2: two panels, the second holding rows 8 and 9.
        let w: Vec<f32> = (0..20).map(|v| v as f32).collect();
        let p = pack(&w, 1, 10, 2);
        assert_eq!(p.len(), 2 * 8 * 2);
        // Panel 0, p = 0: rows 0..8, column 0.
        assert_eq!(p[..8], [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]);
        // Panel 0, p = 1: column 1.
        assert_eq!(p[8..16], [1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0]);
        // Panel 1: rows 8, 9, then zeros.
        assert_eq!(p[16..24], [16.0, 18.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(p[24..32], [17.0, 19.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
