//! Einsum as one strided loop nest: every output element is the sum, over the reduced
//! labels' index space, of the product of the operands at offsets given by per-label strides
//! (a label repeated within one operand has its strides added, which reads the diagonal).
//! Accumulates in f64.

/// Most operands handled.
pub const MAX_OPERANDS: usize = 8;
/// Most labels (output or reduced) handled.
pub const MAX_LABELS: usize = 16;

/// The label structure of one einsum, fixed at compile time: for operand `k`,
/// `out_strides[k][i]` is its element stride along output label `i` and `red_strides[k][j]`
/// along reduced label `j` (0 where the operand lacks the label or broadcasts it).
#[derive(Clone, Copy, Debug)]
pub struct EinsumParams<'a> {
    /// Sizes of the output labels (the output's shape).
    pub out_shape: &'a [usize],
    /// Sizes of the summed-over labels.
    pub red_shape: &'a [usize],
    /// Per operand, strides along the output labels.
    pub out_strides: &'a [&'a [usize]],
    /// Per operand, strides along the reduced labels.
    pub red_strides: &'a [&'a [usize]],
}

/// Advances an odometer over `shape`, moving `offsets[k]` by `strides[k]`; false when done.
#[inline]
fn step(
    index: &mut [usize],
    shape: &[usize],
    offsets: &mut [usize; MAX_OPERANDS],
    strides: &[&[usize]],
) -> bool {
    let mut axis = shape.len();
    while axis > 0 {
        axis -= 1;
        index[axis] += 1;
        for (off, s) in offsets.iter_mut().zip(strides) {
            *off += s[axis];
        }
        if index[axis] < shape[axis] {
            return true;
        }
        for (off, s) in offsets.iter_mut().zip(strides) {
            *off -= s[axis] * shape[axis];
        }
        index[axis] = 0;
    }
    false
}

/// Computes the einsum of `inputs` into `out`, reading each element through `load` and
/// writing through `store` (identity for f32/f64, conversions for half types).
pub fn einsum<T: Copy>(
    p: &EinsumParams<'_>,
    inputs: &[&[T]],
    out: &mut [T],
    load: impl Fn(T) -> f64,
    store: impl Fn(f64) -> T,
) {
    let k = inputs.len();
    assert!(
        k <= MAX_OPERANDS
            && p.out_strides.len() == k
            && p.red_strides.len() == k
            && p.out_shape.len() <= MAX_LABELS
            && p.red_shape.len() <= MAX_LABELS,
        "einsum geometry out of range"
    );
    let out_len: usize = p.out_shape.iter().product();
    if out_len == 0 {
        return;
    }
    let reduce_empty = p.red_shape.contains(&0);
    let mut out_index = [0usize; MAX_LABELS];
    let mut base = [0usize; MAX_OPERANDS];
    for o in out.iter_mut().take(out_len) {
        let mut sum = 0.0f64;
        if !reduce_empty {
            let mut red_index = [0usize; MAX_LABELS];
            let mut offsets = base;
            loop {
                let mut prod = 1.0f64;
                for (input, &off) in inputs.iter().zip(&offsets) {
                    prod *= load(input[off]);
                }
                sum += prod;
                if !step(
                    &mut red_index[..p.red_shape.len()],
                    p.red_shape,
                    &mut offsets,
                    p.red_strides,
                ) {
                    break;
                }
            }
        }
        *o = store(sum);
        step(
            &mut out_index[..p.out_shape.len()],
            p.out_shape,
            &mut base,
            p.out_strides,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_trace_and_transpose() {
        // "ij,jk->ik" with 2x3 and 3x2.
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0f64, 0.0, 0.0, 1.0, 1.0, 1.0];
        let p = EinsumParams {
            out_shape: &[2, 2],
            red_shape: &[3],
            out_strides: &[&[3, 0], &[0, 1]],
            red_strides: &[&[1], &[2]],
        };
        let mut out = [0.0f64; 4];
        einsum(&p, &[&a, &b], &mut out, |v| v, |v| v);
        assert_eq!(out, [4.0, 5.0, 10.0, 11.0]);
        // "ii->" trace of a 2x2.
        let m = [1.0f64, 2.0, 3.0, 4.0];
        let p = EinsumParams {
            out_shape: &[],
            red_shape: &[2],
            out_strides: &[&[]],
            red_strides: &[&[3]],
        };
        let mut t = [0.0f64];
        einsum(&p, &[&m], &mut t, |v| v, |v| v);
        assert_eq!(t, [5.0]);
        // "ij->ji".
        let p = EinsumParams {
            out_shape: &[2, 2],
            red_shape: &[],
            out_strides: &[&[1, 2]],
            red_strides: &[&[]],
        };
        let mut tr = [0.0f64; 4];
        einsum(&p, &[&m], &mut tr, |v| v, |v| v);
        assert_eq!(tr, [1.0, 3.0, 2.0, 4.0]);
    }
}
