//! Recurrent layers: LSTM, GRU and simple RNN over `[seq, batch, input]` (or batch-first)
//! sequences, forward, reverse or bidirectional, with per-batch sequence lengths.
//!
//! The input projection `X W^T` of every time step is one GEMM up front; each step then does
//! one `H R^T` GEMM (GRU: one over the update and reset gates, one over the hidden gate) and a
//! fused pass over the gates. All state lives in the caller's scratch buffer: no allocation
//! per step.
//!
//! The driver here is shared by the float layer ([`rnn_f32`]) and the int8 one
//! (`int8::rnn_exec`), which differ only in how they compute the two products. Time steps run
//! as ONNX Runtime runs them: at step `s`, batch row `b` (sequence length `len_b`) processes
//! time `s` going forward and `len_b - 1 - s` going backwards, and is finished once
//! `s >= len_b`. Per row this is the ONNX order either way; it matters to the int8 layer,
//! whose per-step quantization of `H` sees all rows at once.

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

    /// Scratch elements the shared driver uses (at most [`RnnParams::scratch_len`]): the
    /// input products of every step, one step's recurrent products (gates, then GRU's hidden
    /// gate), and the hidden state, cell state and GRU's `r . H`.
    pub(crate) const fn driver_len(&self) -> usize {
        let gh = self.cell.gates() * self.hidden;
        self.seq * self.batch * gh + self.batch * gh + 4 * self.batch * self.hidden
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

/// Which output channels (rows of `R`, `gates * hidden` of them) a recurrent product covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// Every gate (LSTM, RNN).
    All,
    /// GRU's update and reset gates (`2 * hidden` channels).
    UpdateReset,
    /// GRU's hidden gate (`hidden` channels).
    Hidden,
}

impl Part {
    /// `(first channel, channels)` of the part in a layer with these parameters.
    pub(crate) const fn channels(self, p: &RnnParams) -> (usize, usize) {
        match self {
            Part::All => (0, p.cell.gates() * p.hidden),
            Part::UpdateReset => (0, 2 * p.hidden),
            Part::Hidden => (2 * p.hidden, p.hidden),
        }
    }
}

/// The batch rows a step's recurrent product reads as zeros: the rows whose sequence had
/// ended by the step before (`before`), when the layer writes `Y`. ONNX Runtime reads the
/// previous hidden state back from `Y`, whose finished rows are zero; the float product does
/// not care (those rows' results are never used), the int8 one quantizes what it reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retired<'a> {
    lens: Option<&'a [i32]>,
    seq: usize,
    before: Option<usize>,
}

impl Retired<'_> {
    /// No row.
    pub(crate) const NONE: Retired<'static> = Retired {
        lens: None,
        seq: 0,
        before: None,
    };

    /// Whether row `b` reads as zeros.
    pub(crate) fn contains(&self, b: usize) -> bool {
        self.before
            .is_some_and(|s| s >= seq_len(self.lens, self.seq, b))
    }
}

/// The two products of a layer: float or int8.
pub(crate) trait Products {
    /// `xw[..rows * gates * hidden] = x[..rows] W_d^T` for direction `d` (rows of `X` as
    /// stored, `input` values each).
    fn input(&mut self, d: usize, x: &[f32], rows: usize, xw: &mut [f32]);

    /// `out[..batch * n] = h R_d^T` over the `n` channels of `part`. `fresh` is false when
    /// `h` holds the same values as in the previous call (a quantizing product reuses its
    /// quantized copy); the rows in `retired` count as zeros.
    fn recurrent(
        &mut self,
        d: usize,
        part: Part,
        h: &[f32],
        fresh: bool,
        retired: Retired<'_>,
        out: &mut [f32],
    );
}

/// The sequence length of batch row `b`: `sequence_lens[b]` clamped to `[0, seq]`, or `seq`.
fn seq_len(lens: Option<&[i32]>, seq: usize, b: usize) -> usize {
    lens.map_or(seq, |l| usize::try_from(l[b]).map_or(0, |len| len.min(seq)))
}

/// The float products: `w: [dirs, gates*hidden, input]`, `r: [dirs, gates*hidden, hidden]`.
struct FloatProducts<'a> {
    p: &'a RnnParams,
    w: &'a [f32],
    r: &'a [f32],
}

impl Products for FloatProducts<'_> {
    fn input(&mut self, d: usize, x: &[f32], rows: usize, xw: &mut [f32]) {
        let (input, gh) = (self.p.input, self.p.cell.gates() * self.p.hidden);
        gemm_f32(
            rows,
            gh,
            input,
            1.0,
            x,
            Strides {
                rows: input,
                cols: 1,
            },
            &self.w[d * gh * input..][..gh * input],
            Strides {
                rows: 1,
                cols: input,
            },
            false,
            xw,
        );
    }

    fn recurrent(
        &mut self,
        d: usize,
        part: Part,
        h: &[f32],
        _fresh: bool,
        _retired: Retired<'_>,
        out: &mut [f32],
    ) {
        let (hidden, gh) = (self.p.hidden, self.p.cell.gates() * self.p.hidden);
        let (first, n) = part.channels(self.p);
        gemm_f32(
            self.p.batch,
            n,
            hidden,
            1.0,
            h,
            Strides {
                rows: hidden,
                cols: 1,
            },
            &self.r[(d * gh + first) * hidden..][..n * hidden],
            Strides {
                rows: 1,
                cols: hidden,
            },
            false,
            out,
        );
    }
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
    assert!(scratch.len() >= p.scratch_len(), "rnn scratch too short");
    run(
        p,
        x,
        inputs,
        outputs,
        scratch,
        &mut FloatProducts { p, w, r },
    );
}

/// The layer with `products`; `scratch` holds at least [`RnnParams::driver_len`] elements.
pub(crate) fn run(
    p: &RnnParams,
    x: &[f32],
    inputs: &RnnInputs<'_>,
    outputs: &mut RnnOutputs<'_>,
    scratch: &mut [f32],
    products: &mut impl Products,
) {
    let (seq, batch, hidden) = (p.seq, p.batch, p.hidden);
    let gh = p.cell.gates() * hidden;
    assert!(scratch.len() >= p.driver_len(), "rnn scratch too short");
    let (xw, rest) = scratch.split_at_mut(seq * batch * gh);
    let (gates, rest) = rest.split_at_mut(batch * gh);
    let (gates_h, rest) = rest.split_at_mut(batch * hidden);
    let (h, rest) = rest.split_at_mut(batch * hidden);
    let (c, rest) = rest.split_at_mut(batch * hidden);
    let rh = &mut rest[..batch * hidden];
    let lens = inputs.sequence_lens;
    let len_of = |b: usize| seq_len(lens, seq, b);
    let max_len = (0..batch).map(len_of).max().unwrap_or(0);
    // Row of X (and of xw) holding time t, batch b.
    let row = |t: usize, b: usize| {
        if p.batch_first {
            b * seq + t
        } else {
            t * batch + b
        }
    };
    // Rows of X the products read: those of times before the longest sequence (batch-first,
    // all of them).
    let x_rows = if p.batch_first {
        seq * batch
    } else {
        max_len * batch
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
    // `[z r]` of GRU rows are `2 * hidden` apart; the other cells' gates `gh`.
    let gates_ld = if p.cell == Cell::Gru { 2 * hidden } else { gh };

    for d in 0..p.directions {
        let reverse = if p.directions == 2 { d == 1 } else { p.reverse };
        let [f_act, g_act, h_act] = p.activations[d];
        let xw = &mut xw[..x_rows * gh];
        if x_rows > 0 {
            products.input(d, x, x_rows, xw);
        }
        let (wb, rb) = match inputs.bias {
            Some(bias) => {
                let bias = &bias[d * 2 * gh..][..2 * gh];
                (Some(&bias[..gh]), Some(&bias[gh..]))
            }
            None => (None, None),
        };
        for xw_row in xw.chunks_exact_mut(gh) {
            for (j, v) in xw_row.iter_mut().enumerate() {
                // GRU keeps the h gate's recurrent bias for later.
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
        // The time row `b` processes at `step`, if its sequence has not ended.
        let time = |step: usize, b: usize| {
            let len = len_of(b);
            (step < len).then(|| if reverse { len - 1 - step } else { step })
        };
        let y_at = |t: usize, b: usize| {
            if p.batch_first {
                ((b * seq + t) * p.directions + d) * hidden
            } else {
                ((t * p.directions + d) * batch + b) * hidden
            }
        };
        for step in 0..seq {
            if step < max_len {
                let retired = Retired {
                    lens,
                    seq,
                    before: (outputs.y.is_some() && step > 0).then(|| step - 1),
                };
                match p.cell {
                    Cell::Lstm | Cell::Rnn => {
                        products.recurrent(d, Part::All, h, true, retired, &mut gates[..]);
                    }
                    Cell::Gru => {
                        let zr = &mut gates[..batch * 2 * hidden];
                        products.recurrent(d, Part::UpdateReset, h, true, retired, zr);
                        if p.linear_before_reset {
                            products.recurrent(d, Part::Hidden, h, false, retired, gates_h);
                        } else {
                            // The h gate needs (r . H) R_h^T: compute r first, then that
                            // product.
                            for b in 0..batch {
                                let rh_b = &mut rh[b * hidden..][..hidden];
                                let Some(t) = time(step, b) else {
                                    rh_b.fill(0.0);
                                    continue;
                                };
                                let xg = &xw[row(t, b) * gh..][..gh];
                                let zr_b = &gates[b * 2 * hidden..][..2 * hidden];
                                for k in 0..hidden {
                                    let pre = xg[hidden + k] + zr_b[hidden + k];
                                    rh_b[k] = f_act.apply(clip(pre)) * h[b * hidden + k];
                                }
                            }
                            products.recurrent(d, Part::Hidden, rh, true, Retired::NONE, gates_h);
                        }
                    }
                }
            }
            for b in 0..batch {
                let Some(t) = time(step, b) else {
                    if let Some(y) = outputs.y.as_deref_mut() {
                        y[y_at(step, b)..][..hidden].fill(0.0);
                    }
                    continue;
                };
                let xg = &xw[row(t, b) * gh..][..gh];
                let hg = &gates[b * gates_ld..][..gates_ld];
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
                        let hh = &gates_h[b * hidden..][..hidden];
                        for k in 0..hidden {
                            let z = f_act.apply(clip(xg[k] + hg[k]));
                            let rbh = rb.map_or(0.0, |rb| rb[2 * hidden + k]);
                            let candidate = if p.linear_before_reset {
                                let rgate = f_act.apply(clip(xg[hidden + k] + hg[hidden + k]));
                                g_act.apply(clip(xg[2 * hidden + k] + rgate * (hh[k] + rbh)))
                            } else {
                                g_act.apply(clip(xg[2 * hidden + k] + hh[k] + rbh))
                            };
                            hb[k] = (1.0 - z) * candidate + z * hb[k];
                        }
                    }
                    Cell::Rnn => {
                        for k in 0..hidden {
                            hb[k] = f_act.apply(clip(xg[k] + hg[k]));
                        }
                    }
                }
                if let Some(y) = outputs.y.as_deref_mut() {
                    y[y_at(t, b)..][..hidden].copy_from_slice(hb);
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
