//! Losses: negative log-likelihood and softmax cross-entropy over `[N, C, inner]` scores
//! with `[N, inner]` class targets, optional class weights and an ignored class.

use crate::math64::{exp_f64, ln_f64};

/// How per-element losses combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// One loss per target element.
    None,
    /// Their sum.
    Sum,
    /// Their weighted mean (divided by the total weight of the counted elements).
    Mean,
}

/// The layout and options of one loss.
#[derive(Clone, Copy, Debug)]
pub struct LossParams {
    /// N.
    pub batch: usize,
    /// C.
    pub classes: usize,
    /// Product of the trailing dimensions.
    pub inner: usize,
    /// How losses combine.
    pub reduction: Reduction,
    /// A target value that contributes nothing.
    pub ignore_index: Option<i64>,
}

/// `NegativeLogLikelihoodLoss`: `loss = -input[n, target, ..] * weight[target]`, reduced.
/// A target outside `[0, C)` (and not ignored) gives NaN.
pub fn nll_loss_f32(
    p: &LossParams,
    input: &[f32],
    target: &[i64],
    weight: Option<&[f32]>,
    out: &mut [f32],
) {
    let (c, inner) = (p.classes, p.inner);
    let mut sum = 0.0f64;
    let mut total_weight = 0.0f64;
    for b in 0..p.batch {
        for d in 0..inner {
            let t = target[b * inner + d];
            let (loss, w) = if Some(t) == p.ignore_index {
                (0.0, 0.0)
            } else {
                match usize::try_from(t).ok().filter(|&t| t < c) {
                    Some(t) => {
                        let w = weight.map_or(1.0, |w| f64::from(w[t]));
                        (-f64::from(input[(b * c + t) * inner + d]) * w, w)
                    }
                    None => (f64::NAN, f64::NAN),
                }
            };
            if p.reduction == Reduction::None {
                out[b * inner + d] = loss as f32;
            }
            sum += loss;
            total_weight += w;
        }
    }
    match p.reduction {
        Reduction::None => {}
        Reduction::Sum => out[0] = sum as f32,
        Reduction::Mean => out[0] = (sum / total_weight) as f32,
    }
}

/// `log_prob = log_softmax(scores)` over the class axis of `[N, C, inner]`.
pub fn log_softmax_classes_f32(p: &LossParams, scores: &[f32], log_prob: &mut [f32]) {
    let (c, inner) = (p.classes, p.inner);
    for b in 0..p.batch {
        for d in 0..inner {
            let at = |k: usize| (b * c + k) * inner + d;
            let max = (0..c)
                .map(|k| f64::from(scores[at(k)]))
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..c)
                .map(|k| exp_f64(f64::from(scores[at(k)]) - max))
                .sum();
            let log_sum = ln_f64(sum);
            for k in 0..c {
                log_prob[at(k)] = (f64::from(scores[at(k)]) - max - log_sum) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_mean_with_weights_and_ignored() {
        let p = LossParams {
            batch: 3,
            classes: 2,
            inner: 1,
            reduction: Reduction::Mean,
            ignore_index: Some(1),
        };
        let input = [-1.0f32, -2.0, -3.0, -4.0, -5.0, -6.0];
        let target = [0i64, 1, 0];
        let mut out = [0.0f32];
        nll_loss_f32(&p, &input, &target, Some(&[2.0, 3.0]), &mut out);
        // (1 * 2 + 5 * 2) / (2 + 2)
        assert_eq!(out[0], 3.0);
        let mut lp = [0.0f32; 6];
        log_softmax_classes_f32(&p, &[0.0, 0.0, 1.0, 1.0, 5.0, 5.0], &mut lp);
        assert!((lp[0] + core::f32::consts::LN_2).abs() < 1e-6);
    }
}
