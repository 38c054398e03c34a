//! Kernels of the `ai.onnx.ml` ops: `TreeEnsemble` (opset 5), evaluated from compact
//! constant tables the compiler emits.

/// A child or root reference in a [`Trees`] table: an interior node index, or a leaf index
/// with this bit set.
pub const LEAF: u32 = 1 << 31;

/// Set in a node's mode when a NaN feature takes the true branch (otherwise a NaN feature
/// compares as IEEE says: only `NEQ` holds).
pub const MISSING_TRUE: u8 = 0x80;

/// `x <= split`.
pub const LEQ: u8 = 0;
/// `x < split`.
pub const LT: u8 = 1;
/// `x >= split`.
pub const GTE: u8 = 2;
/// `x > split`.
pub const GT: u8 = 3;
/// `x == split`.
pub const EQ: u8 = 4;
/// `x != split`.
pub const NEQ: u8 = 5;
/// `x` is one of the node's members.
pub const MEMBER: u8 = 6;

/// How the leaf weights reaching one target are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// The sum divided by the number of trees.
    Average,
    /// The sum.
    Sum,
    /// The smallest weight (the type's largest value when no leaf reaches the target).
    Min,
    /// The largest weight (the type's lowest value when no leaf reaches the target).
    Max,
}

/// The transform applied to each row of aggregated scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostTransform {
    /// The scores as they are.
    None,
    /// Softmax over the row.
    Softmax,
    /// `1 / (1 + e^-x)` of each score.
    Logistic,
    /// Softmax over the row's non-zero scores; zeros stay zero.
    SoftmaxZero,
}

/// A tree ensemble as parallel constant tables. Interior node `i` compares feature
/// `features[i]` by `modes[i]` (one of [`LEQ`] .. [`MEMBER`], possibly with [`MISSING_TRUE`])
/// against `splits[i]`, or for [`MEMBER`] against `member_values[members[i][0]..members[i][1]]`,
/// and continues at `children[i][0]` when the comparison holds, else at `children[i][1]`.
#[derive(Debug, Clone, Copy)]
pub struct Trees<'a> {
    /// Feature index per interior node.
    pub features: &'a [u32],
    /// Comparison per interior node.
    pub modes: &'a [u8],
    /// Threshold per interior node.
    pub splits: &'a [f64],
    /// `[true, false]` successors per interior node (see [`LEAF`]).
    pub children: &'a [[u32; 2]],
    /// Range into `member_values` per interior node (empty unless [`MEMBER`]).
    pub members: &'a [[u32; 2]],
    /// The member sets, concatenated.
    pub member_values: &'a [f64],
    /// Target per leaf.
    pub leaf_targets: &'a [u32],
    /// Weight per leaf.
    pub leaf_weights: &'a [f64],
    /// Where each tree starts (see [`LEAF`]).
    pub roots: &'a [u32],
}

impl Trees<'_> {
    /// The leaf that `row` reaches from `start`, or `None` when a reference is out of range
    /// or the walk does not end (tables the compiler validated never do either).
    fn leaf(&self, row: &[f64], start: u32) -> Option<usize> {
        let mut at = start;
        for _ in 0..=self.features.len() {
            if at & LEAF != 0 {
                return Some((at & !LEAF) as usize);
            }
            let i = at as usize;
            let x = *row.get(*self.features.get(i)? as usize)?;
            let mode = *self.modes.get(i)?;
            let split = *self.splits.get(i)?;
            let holds = match mode & !MISSING_TRUE {
                LEQ => x <= split,
                LT => x < split,
                GTE => x >= split,
                GT => x > split,
                EQ => x == split,
                NEQ => x != split,
                _ => {
                    let [a, b] = *self.members.get(i)?;
                    self.member_values.get(a as usize..b as usize)?.contains(&x)
                }
            } || (mode & MISSING_TRUE != 0 && x.is_nan());
            let [t, f] = *self.children.get(i)?;
            at = if holds { t } else { f };
        }
        None
    }
}

/// `TreeEnsemble`: `x` is `[rows, n_features]`, `out` is `[rows, n_targets]`. Each row is
/// read into `row` (`n_features` long) as f64 by `load`, its scores are aggregated in f64
/// (`init` is the starting score: 0, or the type's extremes for [`Aggregate::Min`] and
/// [`Aggregate::Max`]) and written by `store`.
#[allow(clippy::too_many_arguments, reason = "the op's parameters")]
pub fn tree_ensemble<T: Copy, U>(
    x: &[T],
    out: &mut [U],
    row: &mut [f64],
    trees: &Trees<'_>,
    aggregate: Aggregate,
    init: f64,
    post: PostTransform,
    load: impl Fn(T) -> f64,
    store: impl Fn(f64) -> U,
    scores: &mut [f64],
) {
    let (n_features, n_targets) = (row.len(), scores.len());
    if n_targets == 0 {
        return;
    }
    let n_trees = trees.roots.len() as f64;
    for (xr, or) in x
        .chunks_exact(n_features.max(1))
        .zip(out.chunks_exact_mut(n_targets))
    {
        for (r, &v) in row.iter_mut().zip(xr) {
            *r = load(v);
        }
        scores.fill(init);
        for &root in trees.roots {
            let Some(leaf) = trees.leaf(row, root) else {
                continue;
            };
            let (Some(&target), Some(&w)) =
                (trees.leaf_targets.get(leaf), trees.leaf_weights.get(leaf))
            else {
                continue;
            };
            let Some(s) = scores.get_mut(target as usize) else {
                continue;
            };
            *s = match aggregate {
                Aggregate::Average | Aggregate::Sum => *s + w,
                Aggregate::Min => {
                    if w < *s {
                        w
                    } else {
                        *s
                    }
                }
                Aggregate::Max => {
                    if w > *s {
                        w
                    } else {
                        *s
                    }
                }
            };
        }
        if aggregate == Aggregate::Average {
            for s in scores.iter_mut() {
                *s /= n_trees;
            }
        }
        match post {
            PostTransform::None => {}
            PostTransform::Logistic => {
                for s in scores.iter_mut() {
                    *s = crate::math::sigmoid_f64(*s);
                }
            }
            PostTransform::Softmax | PostTransform::SoftmaxZero => {
                let zero = post == PostTransform::SoftmaxZero;
                let max = scores
                    .iter()
                    .filter(|&&s| !zero || s != 0.0)
                    .fold(f64::NEG_INFINITY, |m, &s| if s > m { s } else { m });
                let mut sum = 0.0;
                for s in scores.iter_mut() {
                    if !zero || *s != 0.0 {
                        *s = crate::math::exp_f64(*s - max);
                        sum += *s;
                    }
                }
                if sum > 0.0 {
                    for s in scores.iter_mut() {
                        *s /= sum;
                    }
                }
            }
        }
        for (o, &s) in or.iter_mut().zip(scores.iter()) {
            *o = store(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_a_tree_with_member_sets() {
        // x <= 11 ? (x in {1, 2} ? leaf 0 : leaf 1) : leaf 2
        let trees = Trees {
            features: &[0, 0],
            modes: &[LEQ, MEMBER],
            splits: &[11.0, f64::NAN],
            children: &[[1, LEAF | 2], [LEAF, LEAF | 1]],
            members: &[[0, 0], [0, 2]],
            member_values: &[1.0, 2.0],
            leaf_targets: &[0, 1, 1],
            leaf_weights: &[1.0, 10.0, 100.0],
            roots: &[0],
        };
        let x = [2.0f32, 5.0, 20.0, f32::NAN];
        let mut out = [0f32; 8];
        let (mut row, mut scores) = ([0.0; 1], [0.0; 2]);
        tree_ensemble(
            &x,
            &mut out,
            &mut row,
            &trees,
            Aggregate::Sum,
            0.0,
            PostTransform::None,
            f64::from,
            |v| v as f32,
            &mut scores,
        );
        assert_eq!(out, [1.0, 0.0, 0.0, 10.0, 0.0, 100.0, 0.0, 100.0]);
    }
}
