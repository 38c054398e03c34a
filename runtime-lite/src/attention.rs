//! Scaled dot-product attention (ONNX `Attention`): grouped-query heads, past key/value
//! caches, causal and explicit masks, padded key lengths, softcapping, and the optional
//! QK-matrix output. Scores and softmax are computed in f64, one query row at a time.
//! Also rotary position embeddings (`RotaryEmbedding`) and recurrent linear attention
//! (`LinearAttention`: linear, gated, delta and gated-delta state updates).

use crate::math::lanes::{Kernel, Lanes, LANES};
use crate::math64::exp_f64;

/// The geometry of one attention, fixed at compile time. Strides are element strides of the
/// batch, head and sequence axes (the head dimension is contiguous), which covers both the
/// 3-D `[B, S, H * D]` and the 4-D `[B, H, S, D]` layouts.
#[derive(Clone, Copy, Debug)]
pub struct AttentionParams {
    /// B.
    pub batch: usize,
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads (divides `q_heads`).
    pub kv_heads: usize,
    /// Query sequence length.
    pub q_seq: usize,
    /// New key/value sequence length.
    pub kv_seq: usize,
    /// Cached (past) sequence length.
    pub past_seq: usize,
    /// Query/key head size.
    pub head_size: usize,
    /// Value head size.
    pub v_head_size: usize,
    /// Q strides (batch, head, sequence).
    pub q_strides: [usize; 3],
    /// K strides.
    pub k_strides: [usize; 3],
    /// V strides.
    pub v_strides: [usize; 3],
    /// Y strides.
    pub y_strides: [usize; 3],
    /// Mask strides over (batch, head, query, key), 0 where it broadcasts.
    pub mask_strides: [usize; 4],
    /// Keys the mask covers; later keys are masked out.
    pub mask_len: usize,
    /// Score scale.
    pub scale: f64,
    /// `softcap * tanh(score / softcap)` when positive.
    pub softcap: f64,
    /// Mask keys after the query's position (offset by the cache length).
    pub causal: bool,
    /// What the QK output holds: 0 or 1 the (softcapped) scores, 2 with the mask added,
    /// 3 the softmax.
    pub qk_mode: u8,
    /// Sliding window: query i sees keys j with `i + offset - j <= left` (negative: no limit).
    pub left_window: i64,
    /// And with `j - (i + offset) <= right` (negative: no limit).
    pub right_window: i64,
}

/// The operands of one attention.
#[derive(Clone, Copy, Debug)]
pub struct AttentionInputs<'a, T, M> {
    /// Queries.
    pub q: &'a [T],
    /// New keys.
    pub k: &'a [T],
    /// New values.
    pub v: &'a [T],
    /// Additive (or boolean, through its loader) mask.
    pub mask: Option<&'a [M]>,
    /// Cached keys `[B, Hkv, past, D]`.
    pub past_key: Option<&'a [T]>,
    /// Cached values `[B, Hkv, past, Dv]`.
    pub past_value: Option<&'a [T]>,
    /// Valid keys per batch item (later ones are padding).
    pub nonpad: Option<&'a [i64]>,
}

/// The results of one attention.
#[derive(Debug)]
pub struct AttentionOutputs<'a, T> {
    /// The output.
    pub y: &'a mut [T],
    /// Past and new keys `[B, Hkv, past + new, D]`.
    pub present_key: Option<&'a mut [T]>,
    /// Past and new values.
    pub present_value: Option<&'a mut [T]>,
    /// `[B, Hq, Sq, St]` scores, as `qk_mode` selects.
    pub qk: Option<&'a mut [T]>,
}

fn tanh_f64(x: f64) -> f64 {
    if x > 20.0 {
        1.0
    } else if x < -20.0 {
        -1.0
    } else {
        let e = exp_f64(2.0 * x);
        (e - 1.0) / (e + 1.0)
    }
}

/// Runs the attention. `load` / `store` convert elements, `mask_load` turns a mask element
/// into an additive bias (a boolean `false` into `-inf`); `scores` holds at least
/// `past_seq + kv_seq` values.
pub fn attention<T: Copy, M: Copy>(
    p: &AttentionParams,
    inp: &AttentionInputs<'_, T, M>,
    out: &mut AttentionOutputs<'_, T>,
    scores: &mut [f64],
    load: impl Fn(T) -> f64,
    store: impl Fn(f64) -> T,
    mask_load: impl Fn(M) -> f64,
) {
    let total = p.past_seq + p.kv_seq;
    let (d, dv) = (p.head_size, p.v_head_size);
    let group = (p.q_heads / p.kv_heads.max(1)).max(1);
    assert!(scores.len() >= total, "attention scratch too short");
    // Key j of head hk: from the cache, then from the new keys.
    let key_at = |b: usize, hk: usize, j: usize| -> (&[T], usize) {
        match inp.past_key {
            Some(pk) if j < p.past_seq => (pk, ((b * p.kv_heads + hk) * p.past_seq + j) * d),
            _ => {
                let s = p.k_strides;
                (inp.k, b * s[0] + hk * s[1] + (j - p.past_seq) * s[2])
            }
        }
    };
    let value_at = |b: usize, hk: usize, j: usize| -> (&[T], usize) {
        match inp.past_value {
            Some(pv) if j < p.past_seq => (pv, ((b * p.kv_heads + hk) * p.past_seq + j) * dv),
            _ => {
                let s = p.v_strides;
                (inp.v, b * s[0] + hk * s[1] + (j - p.past_seq) * s[2])
            }
        }
    };
    for b in 0..p.batch {
        let valid = inp
            .nonpad
            .map(|n| usize::try_from(n[b]).unwrap_or(0).min(total));
        // Causal frontier: query i sees keys j <= i + offset.
        let offset: i64 = match (inp.past_key, inp.nonpad) {
            (None, Some(n)) => n[b] - p.q_seq as i64,
            _ => p.past_seq as i64,
        };
        for hq in 0..p.q_heads {
            let hk = hq / group;
            for i in 0..p.q_seq {
                let q0 = b * p.q_strides[0] + hq * p.q_strides[1] + i * p.q_strides[2];
                let q = &inp.q[q0..][..d];
                let mut max = f64::NEG_INFINITY;
                let qk_row = (((b * p.q_heads + hq) * p.q_seq) + i) * total;
                for (j, score) in scores.iter_mut().enumerate().take(total) {
                    let (src, k0) = key_at(b, hk, j);
                    let mut s = 0.0f64;
                    for (qv, kv) in q.iter().zip(&src[k0..][..d]) {
                        s += load(*qv) * load(*kv);
                    }
                    s *= p.scale;
                    if p.softcap > 0.0 {
                        s = p.softcap * tanh_f64(s / p.softcap);
                    }
                    let mut bias = 0.0;
                    if let Some(m) = inp.mask {
                        bias += if j < p.mask_len {
                            let ms = p.mask_strides;
                            mask_load(m[b * ms[0] + hq * ms[1] + i * ms[2] + j * ms[3]])
                        } else {
                            f64::NEG_INFINITY
                        };
                    }
                    let diff = i as i64 + offset - j as i64;
                    if (p.causal && diff < 0)
                        || (p.left_window >= 0 && diff > p.left_window)
                        || (p.right_window >= 0 && -diff > p.right_window)
                    {
                        bias = f64::NEG_INFINITY;
                    }
                    if valid.is_some_and(|v| j >= v) {
                        bias = f64::NEG_INFINITY;
                    }
                    if let Some(qk) = out.qk.as_deref_mut() {
                        if p.qk_mode <= 1 {
                            qk[qk_row + j] = store(s);
                        } else if p.qk_mode == 2 {
                            qk[qk_row + j] = store(s + bias);
                        }
                    }
                    *score = s + bias;
                    if *score > max {
                        max = *score;
                    }
                }
                // Softmax; a row with every key masked gives zero weights.
                let mut sum = 0.0;
                for s in scores.iter_mut().take(total) {
                    *s = if max == f64::NEG_INFINITY {
                        0.0
                    } else {
                        exp_f64(*s - max)
                    };
                    sum += *s;
                }
                let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
                for (j, s) in scores.iter_mut().enumerate().take(total) {
                    *s *= inv;
                    if let Some(qk) = out.qk.as_deref_mut() {
                        if p.qk_mode == 3 {
                            qk[qk_row + j] = store(*s);
                        }
                    }
                }
                let y0 = b * p.y_strides[0] + hq * p.y_strides[1] + i * p.y_strides[2];
                for e in 0..dv {
                    let mut acc = 0.0;
                    for (j, &w) in scores.iter().enumerate().take(total) {
                        if w != 0.0 {
                            let (src, v0) = value_at(b, hk, j);
                            acc += w * load(src[v0 + e]);
                        }
                    }
                    out.y[y0 + e] = store(acc);
                }
            }
        }
        // The caches with the new keys and values appended.
        for hk in 0..p.kv_heads {
            for j in 0..total {
                if let Some(pk) = out.present_key.as_deref_mut() {
                    let (src, k0) = key_at(b, hk, j);
                    let dst = ((b * p.kv_heads + hk) * total + j) * d;
                    pk[dst..dst + d].copy_from_slice(&src[k0..k0 + d]);
                }
                if let Some(pv) = out.present_value.as_deref_mut() {
                    let (src, v0) = value_at(b, hk, j);
                    let dst = ((b * p.kv_heads + hk) * total + j) * dv;
                    pv[dst..dst + dv].copy_from_slice(&src[v0..v0 + dv]);
                }
            }
        }
    }
}

/// Query rows [`attention_f32_exec`] takes at a time: their scores and probabilities stay in
/// the L2 cache.
pub const ATTENTION_BLOCK: usize = 32;

/// Scratch floats [`attention_f32_exec`] needs for `p`: per batch item and query head, a
/// block's scores, probabilities and output rows, and the
/// head's keys and values packed as GEMM panels.
pub const fn attention_f32_scratch(p: &AttentionParams) -> usize {
    p.batch * p.q_heads * attention_slot(p)
}

/// The scratch of one task of [`attention_f32_exec`].
const fn attention_slot(p: &AttentionParams) -> usize {
    let block = if p.q_seq < ATTENTION_BLOCK {
        p.q_seq
    } else {
        ATTENTION_BLOCK
    };
    let total = p.past_seq + p.kv_seq;
    block * (2 * total + p.v_head_size)
        + crate::gemm::packed_b_len(p.head_size, total)
        + crate::gemm::packed_b_len(total, p.v_head_size)
}

/// Query rows per key/value head (query heads of the group times query rows) up to which
/// [`attention_f32_exec`] reads the keys and values where they lie, one pass over each per
/// group of heads, instead of packing them as GEMM panels per query head: decoding, where
/// one or a few new tokens attend to a long cache and packing would cost more than the
/// products.
const DIRECT_ROWS: usize = 16;

/// `logits[r * total + j] = scale * (q_r . k_j)` for the rows at `q_at` and every key
/// ([`Kernel`]): each key row is read once for all rows.
struct DirectScores<'a> {
    q: &'a [f32],
    q_at: &'a [usize],
    k: &'a [f32],
    k_at: usize,
    k_step: usize,
    d: usize,
    scale: f32,
    logits: &'a mut [f32],
}

impl Kernel for DirectScores<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Lanes>(self, s: S) {
        let total = self.logits.len() / self.q_at.len().max(1);
        for j in 0..total {
            let key = &self.k[self.k_at + j * self.k_step..][..self.d];
            for (r, &at) in self.q_at.iter().enumerate() {
                let query = &self.q[at..][..self.d];
                let mut acc = s.splat(0.0);
                for (qc, kc) in query.chunks(LANES).zip(key.chunks(LANES)) {
                    acc = s.add(acc, s.mul(s.load(qc), s.load(kc)));
                }
                self.logits[r * total + j] = s.sum(acc) * self.scale;
            }
        }
    }
}

/// `out_r = sum_j probs[r * total + j] * v_j` ([`Kernel`]; `out` zeroed by the caller): each
/// value row is read once for all rows, zero weights (masked keys) skipped.
struct DirectValues<'a> {
    probs: &'a [f32],
    v: &'a [f32],
    v_at: usize,
    v_step: usize,
    out: &'a mut [f32],
    rows: usize,
}

impl Kernel for DirectValues<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Lanes>(self, s: S) {
        let dv = self.out.len() / self.rows.max(1);
        let total = self.probs.len() / self.rows.max(1);
        for j in 0..total {
            let value = &self.v[self.v_at + j * self.v_step..][..dv];
            for (r, out) in self.out.chunks_exact_mut(dv).enumerate() {
                let w = self.probs[r * total + j];
                if w == 0.0 {
                    continue;
                }
                let w = s.splat(w);
                for (oc, vc) in out.chunks_mut(LANES).zip(value.chunks(LANES)) {
                    let sum = s.add(s.load(oc), s.mul(w, s.load(vc)));
                    s.store(oc, sum);
                }
            }
        }
    }
}

/// Softcaps the scores of query row `i` of batch item `b`, head `h` (when `p.softcap` is
/// positive), adds the mask, and masks the keys the mask does not cover, when causal the keys
/// after the query, and with a left window the keys before it; returns whether every key is
/// masked.
#[allow(clippy::too_many_arguments, reason = "one row's coordinates")]
fn mask_scores<M: Copy>(
    p: &AttentionParams,
    mask: Option<&[M]>,
    mask_load: &impl Fn(M) -> f32,
    b: usize,
    h: usize,
    i: usize,
    row: &mut [f32],
) -> bool {
    if p.softcap > 0.0 {
        #[allow(clippy::cast_possible_truncation, reason = "the cap in float32")]
        let cap = p.softcap as f32;
        row.iter_mut().for_each(|s| *s /= cap);
        crate::math::tanh_slice(row);
        row.iter_mut().for_each(|s| *s *= cap);
    }
    if let Some(m) = mask {
        let ms = p.mask_strides;
        let base = b * ms[0] + h * ms[1] + i * ms[2];
        let (covered, past) = row.split_at_mut(p.mask_len.min(row.len()));
        let n = covered.len();
        if ms[3] == 1 {
            for (s, &x) in covered.iter_mut().zip(&m[base..base + n]) {
                *s += mask_load(x);
            }
        } else {
            for (j, s) in covered.iter_mut().enumerate() {
                *s += mask_load(m[base + j * ms[3]]);
            }
        }
        past.fill(f32::NEG_INFINITY);
    }
    if p.causal {
        // Query i sees keys j <= i + past.
        for s in row.iter_mut().skip(i + p.past_seq + 1) {
            *s = f32::NEG_INFINITY;
        }
    }
    if let Ok(window) = usize::try_from(p.left_window) {
        // And keys j >= i + past - left_window.
        let first = (i + p.past_seq).saturating_sub(window).min(row.len());
        row[..first].fill(f32::NEG_INFINITY);
    }
    row.iter().all(|&s| s == f32::NEG_INFINITY)
}

/// [`attention_f32_exec`] for at most [`DIRECT_ROWS`] query rows per key/value head: one task
/// per batch item and key/value head computes the rows of all the group's query heads.
#[allow(clippy::too_many_arguments, reason = "the attention's operands")]
fn attention_direct_f32<M: Copy + Sync>(
    exec: &crate::threads::Exec,
    p: &AttentionParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[M]>,
    mask_load: &(impl Fn(M) -> f32 + Sync),
    y: &mut [f32],
    scratch: &mut [f32],
) {
    let total = p.past_seq + p.kv_seq;
    let (d, dv, sq) = (p.head_size, p.v_head_size, p.q_seq);
    let group = (p.q_heads / p.kv_heads.max(1)).max(1);
    let rows = group * sq;
    let slot = rows * (2 * total + dv);
    let tasks = p.batch * p.kv_heads;
    let scratch = crate::threads::SharedMut::new(&mut scratch[..tasks * slot]);
    let y_len = y.len();
    let y = crate::threads::SharedMut::new(y);
    #[allow(clippy::cast_possible_truncation, reason = "the scale in float32")]
    let scale = p.scale as f32;
    exec.for_each(tasks, &|task| {
        let (b, hk) = (task / p.kv_heads, task % p.kv_heads);
        // SAFETY: each task owns its slot of the scratch.
        let mine = unsafe { scratch.slice(task * slot, slot) };
        let (logits, rest) = mine.split_at_mut(rows * total);
        let (probs, out) = rest.split_at_mut(rows * total);
        // Row r is query row r % sq of head hk * group + r / sq.
        let head = |r: usize| (hk * group + r / sq, r % sq);
        let mut q_at = [0usize; DIRECT_ROWS];
        for (r, at) in q_at.iter_mut().enumerate().take(rows) {
            let (h, i) = head(r);
            *at = b * p.q_strides[0] + h * p.q_strides[1] + i * p.q_strides[2];
        }
        crate::math::lanes::dispatch(DirectScores {
            q,
            q_at: &q_at[..rows],
            k,
            k_at: b * p.k_strides[0] + hk * p.k_strides[1],
            k_step: p.k_strides[2],
            d,
            scale,
            logits,
        });
        let mut blind = [false; DIRECT_ROWS];
        for (r, row) in logits.chunks_exact_mut(total).enumerate() {
            let (h, i) = head(r);
            blind[r] = mask_scores(p, mask, mask_load, b, h, i, row);
        }
        crate::softmax::softmax_f32(logits, probs, rows, total, 1);
        for (row, _) in probs
            .chunks_exact_mut(total)
            .zip(&blind)
            .filter(|(_, &b)| b)
        {
            row.fill(0.0);
        }
        out.fill(0.0);
        crate::math::lanes::dispatch(DirectValues {
            probs,
            v,
            v_at: b * p.v_strides[0] + hk * p.v_strides[1],
            v_step: p.v_strides[2],
            out,
            rows,
        });
        for (r, src) in out.chunks_exact(dv).enumerate() {
            let (h, i) = head(r);
            let at = b * p.y_strides[0] + h * p.y_strides[1] + i * p.y_strides[2];
            assert!(at + dv <= y_len, "attention output out of bounds");
            let dst = y.span_ptr(at, dv);
            // SAFETY: inside `y` (span_ptr checked it); the rows of different tasks' heads
            // are disjoint, and this task writes each of its rows once.
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, dv) };
        }
    });
}

/// [`attention`] in float32 on the blocked GEMM, for attention without a cache, softcap,
/// sliding window, valid-length input or QK output (the compiler picks it then): per batch
/// item and query head (the tasks split across `exec`'s threads), the head's keys (as
/// columns) and values are packed once as GEMM panels; then, a block of query rows at a time,
/// `scores = scale * Q K^T`, plus the mask (`mask_load` makes an element additive; keys past
/// `mask_len` and, when causal, keys after the query are `-inf`), a softmax per row (a row
/// with every key masked gets zero weights, as in [`attention`]), and `Y = P V`. Results
/// agree with [`attention`] to float32 rounding.
///
/// Panics if an operand or `scratch` (see [`attention_f32_scratch`]) is too short.
#[allow(clippy::too_many_arguments, reason = "the attention's operands")]
pub fn attention_f32_exec<M: Copy + Sync>(
    exec: &crate::threads::Exec,
    p: &AttentionParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[M]>,
    mask_load: impl Fn(M) -> f32 + Sync,
    y: &mut [f32],
    scratch: &mut [f32],
) {
    use crate::gemm::{gemm_packed_b_exec, pack_b, packed_b_len, Strides};
    let total = p.past_seq + p.kv_seq;
    let (d, dv, sq) = (p.head_size, p.v_head_size, p.q_seq);
    let block = sq.min(ATTENTION_BLOCK);
    let slot = attention_slot(p);
    let tasks = p.batch * p.q_heads;
    assert!(scratch.len() >= tasks * slot, "attention scratch too short");
    if tasks == 0 || sq == 0 || dv == 0 {
        return;
    }
    let group = (p.q_heads / p.kv_heads.max(1)).max(1);
    let last = |s: [usize; 3], b: usize, h: usize, rows: usize, width: usize| {
        b * s[0] + h * s[1] + rows.saturating_sub(1) * s[2] + width
    };
    assert!(
        q.len() >= last(p.q_strides, p.batch - 1, p.q_heads - 1, sq, d)
            && k.len() >= last(p.k_strides, p.batch - 1, p.kv_heads - 1, total, d)
            && v.len() >= last(p.v_strides, p.batch - 1, p.kv_heads - 1, total, dv)
            && y.len() >= last(p.y_strides, p.batch - 1, p.q_heads - 1, sq, dv),
        "attention operand too short"
    );
    if group * sq <= DIRECT_ROWS {
        attention_direct_f32(exec, p, q, k, v, mask, &mask_load, y, scratch);
        return;
    }
    let scratch = crate::threads::SharedMut::new(&mut scratch[..tasks * slot]);
    let y_len = y.len();
    let y = crate::threads::SharedMut::new(y);
    let single = crate::threads::Exec::single();
    #[allow(clippy::cast_possible_truncation, reason = "the scale in float32")]
    let scale = p.scale as f32;
    exec.for_each(tasks, &|task| {
        let (b, h) = (task / p.q_heads, task % p.q_heads);
        let hk = h / group;
        // SAFETY: each task owns its slot of the scratch.
        let mine = unsafe { scratch.slice(task * slot, slot) };
        // The scaled and masked scores (`logits`), then their softmax (`probs`).
        let (probs, rest) = mine.split_at_mut(block * total);
        let (out, rest) = rest.split_at_mut(block * dv);
        let (logits, rest) = rest.split_at_mut(block * total);
        let (keys, values) = rest.split_at_mut(packed_b_len(d, total));
        let q0 = b * p.q_strides[0] + h * p.q_strides[1];
        let y0 = b * p.y_strides[0] + h * p.y_strides[1];
        // K^T [d, total] (B(p, j) = K[j, p]) and V [total, dv], as panels.
        let k0 = b * p.k_strides[0] + hk * p.k_strides[1];
        let v0 = b * p.v_strides[0] + hk * p.v_strides[1];
        let k_cols = Strides {
            rows: 1,
            cols: p.k_strides[2],
        };
        pack_b(&k[k0..], k_cols, d, total, keys);
        let v_rows = Strides {
            rows: p.v_strides[2],
            cols: 1,
        };
        pack_b(&v[v0..], v_rows, total, dv, values);
        let mut i0 = 0;
        while i0 < sq {
            let rows = block.min(sq - i0);
            let logits = &mut logits[..rows * total];
            let q_rows = Strides {
                rows: p.q_strides[2],
                cols: 1,
            };
            let q_block = &q[q0 + i0 * p.q_strides[2]..];
            gemm_packed_b_exec(
                &single, rows, total, d, scale, q_block, q_rows, keys, false, logits, None,
            );
            // Rows whose keys are all masked (at most ATTENTION_BLOCK of them).
            let mut blind = [false; ATTENTION_BLOCK];
            for (r, row) in logits.chunks_exact_mut(total).enumerate() {
                blind[r] = mask_scores(p, mask, &mask_load, b, h, i0 + r, row);
            }
            let probs = &mut probs[..rows * total];
            crate::softmax::softmax_f32(logits, probs, rows, total, 1);
            for (row, _) in probs
                .chunks_exact_mut(total)
                .zip(&blind)
                .filter(|(_, &b)| b)
            {
                row.fill(0.0);
            }
            let out = &mut out[..rows * dv];
            let p_rows = Strides {
                rows: total,
                cols: 1,
            };
            gemm_packed_b_exec(
                &single, rows, dv, total, 1.0, probs, p_rows, values, false, out, None,
            );
            for (r, src) in out.chunks_exact(dv).enumerate() {
                let at = y0 + (i0 + r) * p.y_strides[2];
                assert!(at + dv <= y_len, "attention output out of bounds");
                let dst = y.span_ptr(at, dv);
                // SAFETY: inside `y` (span_ptr checked it); the rows of different tasks'
                // heads are disjoint, and this task writes each of its rows once.
                unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, dv) };
            }
            i0 += rows;
        }
    });
}

/// The geometry of ONNX Runtime's `GroupQueryAttention` over its present caches
/// ([`group_query_attention_f32`]).
#[derive(Clone, Copy, Debug)]
pub struct GroupQueryParams {
    /// B.
    pub batch: usize,
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads (dividing `q_heads`).
    pub kv_heads: usize,
    /// Query rows per batch entry.
    pub seq: usize,
    /// Head size.
    pub head_size: usize,
    /// Rows of the present caches.
    pub present: usize,
    /// Score scale.
    pub scale: f32,
    /// `softcap * tanh(score / softcap)` when positive, before the bias.
    pub softcap: f32,
    /// A query at position `p` sees keys `p - window + 1 ..= p` (0: every key before it).
    pub window: usize,
    /// Queries see only keys at or before their position (else every key held).
    pub causal: bool,
    /// The attention bias's element strides over (batch, head, query row); its key axis is
    /// contiguous and `present` long.
    pub bias_strides: [usize; 3],
}

/// Scratch floats [`group_query_attention_f32`] needs.
pub const fn group_query_scratch(p: &GroupQueryParams) -> usize {
    attention_f32_scratch(&group_query_entry(p, p.present, 0))
}

/// The attention of one batch entry that holds `total` tokens, `cached` of them before the
/// step.
const fn group_query_entry(p: &GroupQueryParams, total: usize, cached: usize) -> AttentionParams {
    let (n, nk, d, c) = (p.q_heads, p.kv_heads, p.head_size, p.present);
    AttentionParams {
        batch: 1,
        q_heads: n,
        kv_heads: nk,
        q_seq: p.seq,
        kv_seq: total - cached,
        past_seq: cached,
        head_size: d,
        v_head_size: d,
        q_strides: [p.seq * n * d, d, n * d],
        k_strides: [nk * c * d, c * d, d],
        v_strides: [nk * c * d, c * d, d],
        y_strides: [p.seq * n * d, d, n * d],
        mask_strides: [0, p.bias_strides[1], p.bias_strides[2], 1],
        mask_len: total,
        scale: p.scale as f64,
        softcap: p.softcap as f64,
        causal: p.causal,
        qk_mode: 0,
        left_window: if p.window == 0 {
            -1
        } else {
            p.window as i64 - 1
        },
        right_window: -1,
    }
}

/// ONNX Runtime's `GroupQueryAttention` after its cache update: per batch entry `b`, holding
/// `t = seqlens_k[b] + 1` tokens of which the last `min(seq, t)` are the step's, query row `s`
/// (at position `p = t - min(seq, t) + s`) attends to the first `t` rows of the present caches
/// `k`, `v` (`[B, kv_heads, present, head]`): the keys at or before `p` when causal (the last
/// `window` of them with a window), else all `t`. Scores are scaled, softcapped, the bias
/// (`[B or 1, heads or 1, seq, present]`) is added, and the softmax weights the values. `q`
/// and `y` are `[B, seq, heads * head]`. The cost follows `t`, not the caches' length.
///
/// # Errors
/// A `seqlens_k` that is negative or reaches past the caches.
#[allow(clippy::too_many_arguments, reason = "the attention's operands")]
pub fn group_query_attention_f32(
    exec: &crate::threads::Exec,
    p: &GroupQueryParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    seqlens_k: &[i32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), &'static str> {
    let (rows, cache) = (
        p.seq * p.q_heads * p.head_size,
        p.kv_heads * p.present * p.head_size,
    );
    for (b, &len) in seqlens_k.iter().enumerate().take(p.batch) {
        let total = usize::try_from(len)
            .map_err(|_| "seqlens_k holds a negative length")?
            .saturating_add(1);
        if total > p.present {
            return Err("seqlens_k + 1 is longer than the present key/value cache");
        }
        let cached = total - p.seq.min(total);
        let entry = group_query_entry(p, total, cached);
        let bias = bias.map(|m| &m[b * p.bias_strides[0]..]);
        attention_f32_exec(
            exec,
            &entry,
            &q[b * rows..][..rows],
            &k[b * cache..][..cache],
            &v[b * cache..][..cache],
            bias,
            |m| m,
            &mut y[b * rows..][..rows],
            scratch,
        );
    }
    Ok(())
}

/// The geometry of one rotary embedding.
#[derive(Clone, Copy, Debug)]
pub struct RotaryParams {
    /// B.
    pub batch: usize,
    /// Sequence length.
    pub seq: usize,
    /// Heads.
    pub heads: usize,
    /// Head size.
    pub head_size: usize,
    /// Leading elements of each head that rotate (even).
    pub rotary_dim: usize,
    /// Input strides (batch, head, sequence); the head dimension is contiguous.
    pub strides: [usize; 3],
    /// Pairs are adjacent elements (else the two halves of the rotated part).
    pub interleaved: bool,
    /// Width of a cache row (at least `rotary_dim / 2`).
    pub cache_width: usize,
}

/// `RotaryEmbedding`: rotates each head's leading `rotary_dim` elements by the angles whose
/// cosines and sines are row `position_ids[b, s]` of the caches (or row `(b, s)` of caches
/// shaped `[B, S, width]` when there are no position ids). Out-of-range positions give NaN.
pub fn rotary_embedding_f32(
    p: &RotaryParams,
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    position_ids: Option<&[i64]>,
    out: &mut [f32],
) {
    let half = p.rotary_dim / 2;
    let rows = cos.len().min(sin.len()) / p.cache_width.max(1);
    for b in 0..p.batch {
        for s in 0..p.seq {
            let row = match position_ids {
                Some(ids) => usize::try_from(ids[b * p.seq + s]).ok(),
                None => Some(b * p.seq + s),
            }
            .filter(|&r| r < rows);
            for h in 0..p.heads {
                let base = b * p.strides[0] + h * p.strides[1] + s * p.strides[2];
                let src = &x[base..][..p.head_size];
                let dst = &mut out[base..][..p.head_size];
                dst[p.rotary_dim..].copy_from_slice(&src[p.rotary_dim..]);
                for i in 0..half {
                    let (c, sn) = match row {
                        Some(r) => (
                            f64::from(cos[r * p.cache_width + i]),
                            f64::from(sin[r * p.cache_width + i]),
                        ),
                        None => (f64::NAN, f64::NAN),
                    };
                    let (a, bi) = if p.interleaved {
                        (2 * i, 2 * i + 1)
                    } else {
                        (i, i + half)
                    };
                    let (x1, x2) = (f64::from(src[a]), f64::from(src[bi]));
                    dst[a] = (c * x1 - sn * x2) as f32;
                    dst[bi] = (sn * x1 + c * x2) as f32;
                }
            }
        }
    }
}

/// The geometry of a key/value cache update ([`kv_cache_update_f32`]).
#[derive(Clone, Copy, Debug)]
pub struct KvCacheParams {
    /// B.
    pub batch: usize,
    /// Key/value heads.
    pub heads: usize,
    /// Head size.
    pub head_size: usize,
    /// Rows of the past cache (0 without one).
    pub past: usize,
    /// New rows per batch entry (the chunk's sequence length).
    pub seq: usize,
    /// Rows of the present cache.
    pub present: usize,
}

/// ONNX Runtime's `GroupQueryAttention` cache update. Per batch entry `b`, the cache holds
/// `t = seqlens_k[b] + 1` tokens after the step, of which `q = min(seq, t)` are new, so
/// `p = t - q` were cached before. `present` `[B, heads, present, head]` gets the first `p`
/// rows of `past` `[B, heads, past, head]`, then the chunk's rows (`new` is `[B, seq, heads,
/// head]`, the layout of the op's key and value inputs) from row `p` on, as far as the cache
/// reaches, and zeros after them.
///
/// # Errors
/// The lengths the inputs select that the caches cannot hold: a negative `seqlens_k`, a `t`
/// longer than the present cache, or a `p` longer than the past one.
pub fn kv_cache_update_f32(
    c: &KvCacheParams,
    past: &[f32],
    new: &[f32],
    seqlens_k: &[i32],
    present: &mut [f32],
) -> Result<(), &'static str> {
    let (d, n) = (c.head_size, c.heads);
    for (b, &len) in seqlens_k.iter().enumerate().take(c.batch) {
        let total = usize::try_from(len)
            .map_err(|_| "seqlens_k holds a negative length")?
            .saturating_add(1);
        if total > c.present {
            return Err("seqlens_k + 1 is longer than the present key/value cache");
        }
        let cached = total - c.seq.min(total);
        if cached > c.past {
            return Err("seqlens_k asks for more cached tokens than past_key/past_value hold");
        }
        let fresh = c.seq.min(c.present - cached);
        for h in 0..n {
            let rows = &mut present[(b * n + h) * c.present * d..][..c.present * d];
            let (old, rest) = rows.split_at_mut(cached * d);
            old.copy_from_slice(&past[(b * n + h) * c.past * d..][..cached * d]);
            let (chunk, tail) = rest.split_at_mut(fresh * d);
            for (s, row) in chunk.chunks_exact_mut(d).enumerate() {
                row.copy_from_slice(&new[((b * c.seq + s) * n + h) * d..][..d]);
            }
            tail.fill(0.0);
        }
    }
    Ok(())
}

/// The geometry and update rule of one linear attention.
#[derive(Clone, Copy, Debug)]
pub struct LinearAttentionParams {
    /// B.
    pub batch: usize,
    /// Sequence length.
    pub seq: usize,
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads (divides `q_heads`).
    pub kv_heads: usize,
    /// Key head size.
    pub dk: usize,
    /// Value head size.
    pub dv: usize,
    /// Output scale.
    pub scale: f64,
    /// Decay the state by `exp(decay)` before each update.
    pub gated: bool,
    /// Delta rule: write `beta * (v - S^T k)` instead of `v`.
    pub delta: bool,
    /// Decay values per step and head: `dk` (per key row) or 1.
    pub decay_width: usize,
    /// Beta values per step: `kv_heads` or 1.
    pub beta_width: usize,
}

/// `LinearAttention` over 3-D `[B, S, H * D]` operands: the state `S: [B, Hkv, Dk, Dv]`
/// (from `past`, else zeros) is updated per step by the rule, and each query head reads
/// `scale * q^T S` from its key/value head. `state` is scratch of at least
/// `B * Hkv * Dk * Dv + Dv` values.
#[allow(
    clippy::too_many_arguments,
    reason = "the six ONNX operands, two outputs, scratch and conversions"
)]
pub fn linear_attention<T: Copy>(
    p: &LinearAttentionParams,
    (q, k, v): (&[T], &[T], &[T]),
    past: Option<&[T]>,
    decay: Option<&[T]>,
    beta: Option<&[T]>,
    out: &mut [T],
    present: Option<&mut [T]>,
    state: &mut [f64],
    load: impl Fn(T) -> f64,
    store: impl Fn(f64) -> T,
) {
    let (dk, dv) = (p.dk, p.dv);
    let block = dk * dv;
    let n = p.batch * p.kv_heads * block;
    let group = (p.q_heads / p.kv_heads.max(1)).max(1);
    let (st, tmp) = state.split_at_mut(n);
    let tmp = &mut tmp[..dv];
    match past {
        Some(ps) => {
            for (s, &x) in st.iter_mut().zip(ps) {
                *s = load(x);
            }
        }
        None => st.fill(0.0),
    }
    for b in 0..p.batch {
        for t in 0..p.seq {
            let row = b * p.seq + t;
            for hk in 0..p.kv_heads {
                let s = &mut st[(b * p.kv_heads + hk) * block..][..block];
                let kt = &k[(row * p.kv_heads + hk) * dk..][..dk];
                let vt = &v[(row * p.kv_heads + hk) * dv..][..dv];
                if p.gated {
                    if let Some(dc) = decay {
                        for r in 0..dk {
                            let idx = (row * p.kv_heads + hk) * p.decay_width
                                + if p.decay_width > 1 { r } else { 0 };
                            let g = exp_f64(load(dc[idx]));
                            for x in &mut s[r * dv..][..dv] {
                                *x *= g;
                            }
                        }
                    }
                }
                if p.delta {
                    let bt = beta.map_or(1.0, |bs| {
                        load(bs[row * p.beta_width + if p.beta_width > 1 { hk } else { 0 }])
                    });
                    for (e, d) in tmp.iter_mut().enumerate() {
                        let retrieved: f64 = (0..dk).map(|r| s[r * dv + e] * load(kt[r])).sum();
                        *d = bt * (load(vt[e]) - retrieved);
                    }
                } else {
                    for (d, &x) in tmp.iter_mut().zip(vt) {
                        *d = load(x);
                    }
                }
                for r in 0..dk {
                    let kr = load(kt[r]);
                    for (x, &d) in s[r * dv..][..dv].iter_mut().zip(tmp.iter()) {
                        *x += kr * d;
                    }
                }
                for h in hk * group..(hk + 1) * group {
                    let qt = &q[(row * p.q_heads + h) * dk..][..dk];
                    let o = &mut out[(row * p.q_heads + h) * dv..][..dv];
                    for (e, oe) in o.iter_mut().enumerate() {
                        let acc: f64 = (0..dk).map(|r| load(qt[r]) * s[r * dv + e]).sum();
                        *oe = store(p.scale * acc);
                    }
                }
            }
        }
    }
    if let Some(pr) = present {
        for (o, &x) in pr.iter_mut().zip(st.iter()) {
            *o = store(x);
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn kv_cache_update_places_past_then_new_rows() {
        // Two entries, one head of two values; the past cache has 3 rows, the present 4.
        let c = KvCacheParams {
            batch: 2,
            heads: 1,
            head_size: 2,
            past: 3,
            seq: 1,
            present: 4,
        };
        let past: [f32; 12] = core::array::from_fn(|v| v as f32);
        let new = [100.0, 101.0, 200.0, 201.0];
        let mut present = [f32::NAN; 16];
        // Entry 0 had 1 token cached (seqlens_k 1), entry 1 had 3.
        kv_cache_update_f32(&c, &past, &new, &[1, 3], &mut present).unwrap();
        let expected = [
            0.0, 1.0, 100.0, 101.0, 0.0, 0.0, 0.0, 0.0, //
            6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 200.0, 201.0,
        ];
        assert_eq!(present, expected);
        let mut present = [0.0; 16];
        assert!(kv_cache_update_f32(&c, &past, &new, &[4, 0], &mut present).is_err());
        assert!(kv_cache_update_f32(&c, &past, &new, &[-1, 0], &mut present).is_err());
        // A prompt of two: seqlens_k 0 is one token in all, so no past row is read.
        let two = KvCacheParams {
            seq: 2,
            past: 0,
            ..c
        };
        let chunk: [f32; 8] = core::array::from_fn(|v| (v + 1) as f32);
        kv_cache_update_f32(&two, &[], &chunk, &[0, 1], &mut present).unwrap();
        assert_eq!(&present[..8], &[1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(&present[8..], &[5.0, 6.0, 7.0, 8.0, 0.0, 0.0, 0.0, 0.0]);
        // One new token after 4 cached ones needs 4 past rows; there are 3.
        let short = KvCacheParams { present: 6, ..c };
        let mut big = [0.0; 24];
        assert!(kv_cache_update_f32(&short, &past, &new, &[4, 0], &mut big).is_err());
    }

    use super::*;

    /// Uniform values in [-1, 1) from a linear congruential generator seeded with `seed`.
    #[cfg(feature = "std")]
    fn uniform(seed: u32) -> impl FnMut(usize) -> std::vec::Vec<f32> {
        let mut seed = seed;
        move |n| {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
                })
                .collect()
        }
    }

    /// Checks [`attention_f32_exec`] against [`attention`] (within 1e-5) at one and two
    /// threads, which must agree bit for bit.
    #[cfg(feature = "std")]
    fn check_against_reference(
        p: &AttentionParams,
        [q, k, v]: [&[f32]; 3],
        mask: &[f32],
        what: &str,
    ) {
        let inp = AttentionInputs::<f32, f32> {
            q,
            k,
            v,
            mask: Some(mask),
            past_key: None,
            past_value: None,
            nonpad: None,
        };
        let mut want = std::vec![0.0f32; p.batch * p.q_heads * p.q_seq * p.v_head_size];
        let mut out = AttentionOutputs {
            y: &mut want,
            present_key: None,
            present_value: None,
            qk: None,
        };
        let mut scores = std::vec![0.0f64; p.past_seq + p.kv_seq];
        attention(
            p,
            &inp,
            &mut out,
            &mut scores,
            f64::from,
            |v| v as f32,
            f64::from,
        );
        let mut first = None;
        for threads in [1, 2] {
            let exec = crate::threads::Exec::with_threads(threads);
            let mut got = std::vec![f32::NAN; want.len()];
            let mut scratch = std::vec![0.0f32; attention_f32_scratch(p)];
            attention_f32_exec(&exec, p, q, k, v, Some(mask), |m| m, &mut got, &mut scratch);
            for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                assert!((x - y).abs() <= 1e-5, "{what} at {i}: {x} vs {y}");
            }
            let bits: std::vec::Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
            assert_eq!(*first.get_or_insert_with(|| bits.clone()), bits, "{what}");
        }
    }

    #[test]
    #[cfg(feature = "std")]
    fn float32_kernel_matches_the_reference() {
        // Grouped heads (4 query, 2 key/value), two query blocks and a tail (37 rows), the
        // 3-D layout, a broadcast additive mask with masked keys, a row-wise mask with a fully
        // masked row, and causal masking; one and two threads. Under Miri (some thousand
        // times slower) one image of 2 query heads and 1 key/value head of 2, 34 rows.
        let (b, hq, hkv, s, d, dv) = if cfg!(miri) {
            (1, 2, 1, 34, 2, 2)
        } else {
            (2, 4, 2, 37, 16, 8)
        };
        let mut rand = uniform(7);
        let (q, k, v) = (
            rand(b * s * hq * d),
            rand(b * s * hkv * d),
            rand(b * s * hkv * dv),
        );
        let key_mask: std::vec::Vec<f32> = (0..b * s)
            .map(|i| {
                if i % s >= 30 + i / s {
                    f32::NEG_INFINITY
                } else {
                    0.1 * (i % 5) as f32
                }
            })
            .collect();
        let mut row_mask = rand(b * s * s);
        for (i, m) in row_mask.iter_mut().enumerate() {
            if (i / s) % s == 3 {
                *m = f32::NEG_INFINITY;
            }
        }
        for (causal, mask, strides) in [
            (false, &key_mask, [s, 0, 0, 1]),
            (true, &key_mask, [s, 0, 0, 1]),
            (false, &row_mask, [s * s, 0, s, 1]),
        ] {
            let p = AttentionParams {
                batch: b,
                q_heads: hq,
                kv_heads: hkv,
                q_seq: s,
                kv_seq: s,
                past_seq: 0,
                head_size: d,
                v_head_size: dv,
                q_strides: [s * hq * d, d, hq * d],
                k_strides: [s * hkv * d, d, hkv * d],
                v_strides: [s * hkv * dv, dv, hkv * dv],
                y_strides: [s * hq * dv, dv, hq * dv],
                mask_strides: strides,
                mask_len: s,
                scale: 0.3,
                softcap: 0.0,
                causal,
                qk_mode: 0,
                left_window: -1,
                right_window: -1,
            };
            check_against_reference(&p, [&q, &k, &v], mask, &std::format!("causal {causal}"));
        }
    }

    #[test]
    #[cfg(feature = "std")]
    fn few_query_rows_read_the_cache_in_place() {
        // Decoding shapes (the direct path): 4 query heads over 2 key/value heads, 1 or 3
        // query rows against 40 keys (4 under Miri), a key mask with masked
        // keys, causal masking, and a row mask with a fully masked row.
        let (b, hq, hkv, t, d, dv) = if cfg!(miri) {
            (1, 2, 1, 4, 2, 2)
        } else {
            (2, 4, 2, 40, 20, 24)
        };
        let mut rand = uniform(11);
        for sq in [1, 3] {
            let (q, k, v) = (
                rand(b * hq * sq * d),
                rand(b * hkv * t * d),
                rand(b * hkv * t * dv),
            );
            let key_mask: std::vec::Vec<f32> = (0..b * t)
                .map(|j| {
                    if j % 7 == 2 {
                        f32::NEG_INFINITY
                    } else {
                        0.05 * (j % 3) as f32
                    }
                })
                .collect();
            let mut row_mask = rand(b * sq * t);
            row_mask[..t].fill(f32::NEG_INFINITY);
            for (causal, mask, strides) in [
                (false, &key_mask, [t, 0, 0, 1]),
                (true, &key_mask, [t, 0, 0, 1]),
                (false, &row_mask, [sq * t, 0, t, 1]),
            ] {
                let p = AttentionParams {
                    batch: b,
                    q_heads: hq,
                    kv_heads: hkv,
                    q_seq: sq,
                    kv_seq: t,
                    past_seq: 0,
                    head_size: d,
                    v_head_size: dv,
                    q_strides: [hq * sq * d, sq * d, d],
                    k_strides: [hkv * t * d, t * d, d],
                    v_strides: [hkv * t * dv, t * dv, dv],
                    y_strides: [hq * sq * dv, sq * dv, dv],
                    mask_strides: strides,
                    mask_len: t,
                    scale: 0.4,
                    softcap: 0.0,
                    causal,
                    qk_mode: 0,
                    left_window: -1,
                    right_window: -1,
                };
                let what = std::format!("{sq} rows, causal {causal}");
                check_against_reference(&p, [&q, &k, &v], mask, &what);
            }
        }
    }

    #[test]
    fn single_query_averages_equal_keys() {
        // One head, one query, two identical keys: equal weights, the mean of the values.
        let p = AttentionParams {
            batch: 1,
            q_heads: 1,
            kv_heads: 1,
            q_seq: 1,
            kv_seq: 2,
            past_seq: 0,
            head_size: 1,
            v_head_size: 1,
            q_strides: [1, 1, 1],
            k_strides: [2, 2, 1],
            v_strides: [2, 2, 1],
            y_strides: [1, 1, 1],
            mask_strides: [0; 4],
            mask_len: 0,
            scale: 1.0,
            softcap: 0.0,
            causal: false,
            qk_mode: 0,
            left_window: -1,
            right_window: -1,
        };
        let inp = AttentionInputs::<f32, f32> {
            q: &[1.0],
            k: &[2.0, 2.0],
            v: &[1.0, 3.0],
            mask: None,
            past_key: None,
            past_value: None,
            nonpad: None,
        };
        let mut y = [0.0f32];
        let mut out = AttentionOutputs {
            y: &mut y,
            present_key: None,
            present_value: None,
            qk: None,
        };
        let mut scores = [0.0f64; 2];
        attention(
            &p,
            &inp,
            &mut out,
            &mut scores,
            f64::from,
            |v| v as f32,
            f64::from,
        );
        assert!((y[0] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn rotary_quarter_turn() {
        // One head of size 2, half-split: (1, 0) rotated by 90 degrees is (0, 1).
        let p = RotaryParams {
            batch: 1,
            seq: 1,
            heads: 1,
            head_size: 2,
            rotary_dim: 2,
            strides: [2, 2, 2],
            interleaved: false,
            cache_width: 1,
        };
        let mut out = [0.0f32; 2];
        rotary_embedding_f32(&p, &[1.0, 0.0], &[0.0], &[1.0], Some(&[0]), &mut out);
        assert_eq!(out, [0.0, 1.0]);
    }

    #[test]
    fn linear_attention_accumulates_outer_products() {
        // dk = dv = 1, two steps of the plain linear rule: S = k1 v1 + k2 v2, out = q S.
        let p = LinearAttentionParams {
            batch: 1,
            seq: 2,
            q_heads: 1,
            kv_heads: 1,
            dk: 1,
            dv: 1,
            scale: 1.0,
            gated: false,
            delta: false,
            decay_width: 1,
            beta_width: 1,
        };
        let (q, k, v) = ([1.0f32, 2.0], [1.0f32, 1.0], [3.0f32, 4.0]);
        let mut out = [0.0f32; 2];
        let mut present = [0.0f32];
        let mut state = [0.0f64; 2];
        linear_attention(
            &p,
            (&q, &k, &v),
            None,
            None,
            None,
            &mut out,
            Some(&mut present),
            &mut state,
            f64::from,
            |x| x as f32,
        );
        assert_eq!(out, [3.0, 14.0]);
        assert_eq!(present, [7.0]);
    }
}
