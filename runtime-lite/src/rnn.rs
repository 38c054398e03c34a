//! Recurrent layers: LSTM, GRU and simple RNN over `[seq, batch, input]` (or batch-first)
//! sequences, forward, reverse or bidirectional, with per-batch sequence lengths.
//!
//! The input projection `X W^T` of every time step is one GEMM up front; each step then does
//! one `H R^T` GEMM and a fused pass over the gates. All state lives in the caller's scratch
//! buffer: no allocation per step.

use crate::gemm::{gemm_f32, Strides};

use crate::epilogue::Activation;

/// Which recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Gates `i o f c`.
    Lstm,
    /// Gates `z r h`.
    Gru,
    /// One gate.
    Rnn,
}

impl Cell {
    /// Gates per hidden unit.
    pub const fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn => 1,
        }
    }
}

/// The geometry and attributes of one recurrent layer.
#[derive(Clone, Copy, Debug)]
pub struct RnnParams {
    /// The cell.
    pub cell: Cell,
    /// Time steps.
    pub seq: usize,
    /// Batch size.
    pub batch: usize,
    /// Input features.
    pub input: usize,
    /// Hidden size.
    pub hidden: usize,
    /// 1 or 2.
    pub directions: usize,
    /// With one direction: run backwards in time.
    pub reverse: bool,
    /// Layout 1: X is `[batch, seq, input]`, Y `[batch, seq, dirs, hidden]`.
    pub batch_first: bool,
    /// Clip gate pre-activations to `[-clip, clip]` (infinity: no clipping).
    pub clip: f32,
    /// LSTM: couple the input and forget gates (`f = 1 - i`).
    pub input_forget: bool,
    /// GRU: apply the reset gate after the recurrent product.
    pub linear_before_reset: bool,
    /// Activations `f, g, h` per direction (unused trailing entries are ignored).
    pub activations: [[Activation; 3]; 2],
}

impl RnnParams {
    /// Scratch elements [`rnn_f32`] needs.
    pub const fn scratch_len(&self) -> usize {
        let gh = self.cell.gates() * self.hidden;
        self.seq * self.batch * gh + 2 * self.batch * gh + 3 * self.batch * self.hidden
    }
}

/// The optional operands of a recurrent layer.
#[derive(Default)]
pub struct RnnInputs<'a> {
    /// `B`: `[dirs, 2 * gates * hidden]` (input then recurrent biases).
    pub bias: Option<&'a [f32]>,
    /// `sequence_lens`: `[batch]`.
    pub sequence_lens: Option<&'a [i32]>,
    /// `initial_h`: `[dirs, batch, hidden]`.
    pub initial_h: Option<&'a [f32]>,
    /// `initial_c` (LSTM): `[dirs, batch, hidden]`.
    pub initial_c: Option<&'a [f32]>,
    /// `P` (LSTM peepholes): `[dirs, 3 * hidden]` for `i o f`.
    pub peepholes: Option<&'a [f32]>,
}

/// The optional outputs of a recurrent layer.
#[derive(Default)]
pub struct RnnOutputs<'a> {
    /// `Y`: every step's hidden state.
    pub y: Option<&'a mut [f32]>,
    /// `Y_h`: the last hidden state, `[dirs, batch, hidden]`.
    pub y_h: Option<&'a mut [f32]>,
    /// `Y_c` (LSTM): the last cell state.
    pub y_c: Option<&'a mut [f32]>,
}

/// Runs the layer: `x` the input sequence, `w: [dirs, gates*hidden, input]`,
/// `r: [dirs, gates*hidden, hidden]`.
pub fn rnn_f32(
    p: &RnnParams,
    x: &[f32],
    w: &[f32],
    r: &[f32],
    inputs: &RnnInputs<'_>,
    outputs: &mut RnnOutputs<'_>,
    scratch: &mut [f32],
) {
    let (seq, batch, hidden) = (p.seq, p.batch, p.hidden);
    let g = p.cell.gates();
    let gh = g * hidden;
    assert!(scratch.len() >= p.scratch_len(), "rnn scratch too short");
    let (xw, rest) = scratch.split_at_mut(seq * batch * gh);
    let (gates, rest) = rest.split_at_mut(batch * gh);
    let (rh_gates, rest) = rest.split_at_mut(batch * gh);
    let (h, rest) = rest.split_at_mut(batch * hidden);
    let (c, rest) = rest.split_at_mut(batch * hidden);
    let rh = &mut rest[..batch * hidden];
    // Row of X (and of xw) holding time t, batch b.
    let row = |t: usize, b: usize| {
        if p.batch_first {
            b * seq + t
        } else {
            t * batch + b
        }
    };
    let clip = |v: f32| {
        if v > p.clip {
            p.clip
        } else if v < -p.clip {
            -p.clip
        } else {
            v
        }
    };

    for d in 0..p.directions {
        let reverse = if p.directions == 2 { d == 1 } else { p.reverse };
        let [f_act, g_act, h_act] = p.activations[d];
        let w_d = &w[d * gh * p.input..][..gh * p.input];
        let r_d = &r[d * gh * hidden..][..gh * hidden];
        gemm_f32(
            seq * batch,
            gh,
            p.input,
            1.0,
            x,
            Strides {
                rows: p.input,
                cols: 1,
            },
            w_d,
            Strides {
                rows: 1,
                cols: p.input,
            },
            false,
            xw,
        );
        let (wb, rb) = match inputs.bias {
            Some(bias) => {
                let bias = &bias[d * 2 * gh..][..2 * gh];
                (Some(&bias[..gh]), Some(&bias[gh..]))
            }
            None => (None, None),
        };
        for xw_row in xw.chunks_exact_mut(gh) {
            for (j, v) in xw_row.iter_mut().enumerate() {
                // GRU with linear_before_reset keeps the h gate's recurrent bias for later.
                let keep_rb = p.cell == Cell::Gru && j >= 2 * hidden;
                *v += wb.map_or(0.0, |b| b[j])
                    + if keep_rb {
                        0.0
                    } else {
                        rb.map_or(0.0, |b| b[j])
                    };
            }
        }
        match inputs.initial_h {
            Some(h0) => h.copy_from_slice(&h0[d * batch * hidden..][..batch * hidden]),
            None => h.fill(0.0),
        }
        match inputs.initial_c {
            Some(c0) => c.copy_from_slice(&c0[d * batch * hidden..][..batch * hidden]),
            None => c.fill(0.0),
        }
        let peep = inputs
            .peepholes
            .map(|pp| &pp[d * 3 * hidden..][..3 * hidden]);
        for step in 0..seq {
            let t = if reverse { seq - 1 - step } else { step };
            gemm_f32(
                batch,
                gh,
                hidden,
                1.0,
                h,
                Strides {
                    rows: hidden,
                    cols: 1,
                },
                r_d,
                Strides {
                    rows: 1,
                    cols: hidden,
                },
                false,
                gates,
            );
            if p.cell == Cell::Gru && !p.linear_before_reset {
                // The h gate needs (r . H) R_h^T: compute r first, then that product.
                for b in 0..batch {
                    for k in 0..hidden {
                        let pre = xw[row(t, b) * gh + hidden + k] + gates[b * gh + hidden + k];
                        rh[b * hidden + k] = f_act.apply(clip(pre)) * h[b * hidden + k];
                    }
                }
                gemm_f32(
                    batch,
                    hidden,
                    hidden,
                    1.0,
                    rh,
                    Strides {
                        rows: hidden,
                        cols: 1,
                    },
                    &r_d[2 * hidden * hidden..],
                    Strides {
                        rows: 1,
                        cols: hidden,
                    },
                    false,
                    &mut rh_gates[..batch * hidden],
                );
            }
            for b in 0..batch {
                let active = inputs
                    .sequence_lens
                    .is_none_or(|l| usize::try_from(l[b]).is_ok_and(|len| t < len));
                let y_at = |k: usize| {
                    if p.batch_first {
                        ((b * seq + t) * p.directions + d) * hidden + k
                    } else {
                        ((t * p.directions + d) * batch + b) * hidden + k
                    }
                };
                if !active {
                    if let Some(y) = outputs.y.as_deref_mut() {
                        y[y_at(0)..y_at(0) + hidden].fill(0.0);
                    }
                    continue;
                }
                let xg = &xw[row(t, b) * gh..][..gh];
                let hg = &gates[b * gh..][..gh];
                let hb = &mut h[b * hidden..][..hidden];
                let cb = &mut c[b * hidden..][..hidden];
                match p.cell {
                    Cell::Lstm => lstm_cell(
                        LstmStep {
                            xg,
                            hg,
                            peep,
                            input_forget: p.input_forget,
                            acts: [f_act, g_act, h_act],
                            clip: &clip,
                        },
                        cb,
                        hb,
                    ),
                    Cell::Gru => {
                        for k in 0..hidden {
                            let z = f_act.apply(clip(xg[k] + hg[k]));
                            let rbh = rb.map_or(0.0, |rb| rb[2 * hidden + k]);
                            let hh = if p.linear_before_reset {
                                let rgate = f_act.apply(clip(xg[hidden + k] + hg[hidden + k]));
                                g_act.apply(clip(
                                    xg[2 * hidden + k] + rgate * (hg[2 * hidden + k] + rbh),
                                ))
                            } else {
                                g_act.apply(clip(
                                    xg[2 * hidden + k] + rh_gates[b * hidden + k] + rbh,
                                ))
                            };
                            hb[k] = (1.0 - z) * hh + z * hb[k];
                        }
                    }
                    Cell::Rnn => {
                        for k in 0..hidden {
                            hb[k] = f_act.apply(clip(xg[k] + hg[k]));
                        }
                    }
                }
                if let Some(y) = outputs.y.as_deref_mut() {
                    y[y_at(0)..y_at(0) + hidden].copy_from_slice(hb);
                }
            }
        }
        // Y_h and Y_c are [dirs, batch, hidden], or [batch, dirs, hidden] batch-first.
        let state_at = |b: usize| {
            if p.batch_first {
                (b * p.directions + d) * hidden
            } else {
                (d * batch + b) * hidden
            }
        };
        for b in 0..batch {
            if let Some(y_h) = outputs.y_h.as_deref_mut() {
                y_h[state_at(b)..][..hidden].copy_from_slice(&h[b * hidden..][..hidden]);
            }
            if let Some(y_c) = outputs.y_c.as_deref_mut() {
                y_c[state_at(b)..][..hidden].copy_from_slice(&c[b * hidden..][..hidden]);
            }
        }
    }
}

/// One step of an LSTM cell's pre-activations for one batch row: the input and recurrent
/// products (`xg`, `hg`, gates `i o f c` of `hidden` units each), the peepholes, and the
/// activations `f, g, h` with the cell clip.
struct LstmStep<'a, C> {
    xg: &'a [f32],
    hg: &'a [f32],
    peep: Option<&'a [f32]>,
    input_forget: bool,
    acts: [Activation; 3],
    clip: &'a C,
}

/// Advances the cell state `c` and hidden state `h` of one batch row by one LSTM step, the
/// activations applied to blocks of units at once (vectorized where the activation is).
fn lstm_cell<C: Fn(f32) -> f32>(step: LstmStep<'_, C>, c: &mut [f32], h: &mut [f32]) {
    const BLOCK: usize = 64;
    let hidden = h.len();
    let LstmStep {
        xg,
        hg,
        peep,
        input_forget,
        acts: [f_act, g_act, h_act],
        clip,
    } = step;
    let (mut gi, mut gf, mut gc, mut go, mut hc) = (
        [0.0f32; BLOCK],
        [0.0f32; BLOCK],
        [0.0f32; BLOCK],
        [0.0f32; BLOCK],
        [0.0f32; BLOCK],
    );
    let mut k0 = 0;
    while k0 < hidden {
        let len = BLOCK.min(hidden - k0);
        for t in 0..len {
            let k = k0 + t;
            let (pi, pf) = peep.map_or((0.0, 0.0), |pp| (pp[k], pp[2 * hidden + k]));
            gi[t] = clip(xg[k] + hg[k] + pi * c[k]);
            gf[t] = clip(xg[2 * hidden + k] + hg[2 * hidden + k] + pf * c[k]);
            gc[t] = clip(xg[3 * hidden + k] + hg[3 * hidden + k]);
        }
        f_act.apply_slice(&mut gi[..len]);
        if input_forget {
            for t in 0..len {
                gf[t] = 1.0 - gi[t];
            }
        } else {
            f_act.apply_slice(&mut gf[..len]);
        }
        g_act.apply_slice(&mut gc[..len]);
        for t in 0..len {
            let k = k0 + t;
            let po = peep.map_or(0.0, |pp| pp[hidden + k]);
            let c_new = gf[t] * c[k] + gi[t] * gc[t];
            go[t] = clip(xg[hidden + k] + hg[hidden + k] + po * c_new);
            c[k] = c_new;
            hc[t] = c_new;
        }
        f_act.apply_slice(&mut go[..len]);
        h_act.apply_slice(&mut hc[..len]);
        for t in 0..len {
            h[k0 + t] = go[t] * hc[t];
        }
        k0 += len;
    }
}
