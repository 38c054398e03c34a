//! Data movement: transpose and concatenation.

/// Permutes the axes of `x` (shape `in_shape`) into `out`: output axis `i` is input axis
/// `perm[i]`.
pub fn transpose<T: Copy>(x: &[T], out: &mut [T], in_shape: &[usize], perm: &[usize]) {
    let rank = in_shape.len();
    assert!(rank <= 16 && perm.len() == rank, "transpose rank");
    let mut in_strides = [0usize; 16];
    let mut acc = 1;
    for axis in (0..rank).rev() {
        in_strides[axis] = acc;
        acc *= in_shape[axis];
    }
    let mut out_shape = [0usize; 16];
    let mut strides = [0usize; 16];
    for (i, &p) in perm.iter().enumerate() {
        out_shape[i] = in_shape[p];
        strides[i] = in_strides[p];
    }
    crate::elementwise::for_each_index(&out_shape[..rank], [&strides[..rank]], |i, [src]| {
        out[i] = x[src];
    });
}

/// Copies one concatenation input, viewed as `[outer, in_block]`, into its column range
/// `[offset, offset + in_block)` of the output viewed as `[outer, out_block]`.
pub fn concat_part<T: Copy>(
    x: &[T],
    out: &mut [T],
    outer: usize,
    in_block: usize,
    out_block: usize,
    offset: usize,
) {
    for o in 0..outer {
        out[o * out_block + offset..][..in_block].copy_from_slice(&x[o * in_block..][..in_block]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_2x3() {
        let x = [1, 2, 3, 4, 5, 6];
        let mut out = [0; 6];
        transpose(&x, &mut out, &[2, 3], &[1, 0]);
        assert_eq!(out, [1, 4, 2, 5, 3, 6]);
    }

    #[test]
    fn concat_two_parts() {
        let mut out = [0; 6];
        concat_part(&[1, 2], &mut out, 2, 1, 3, 0);
        concat_part(&[3, 4, 5, 6], &mut out, 2, 2, 3, 1);
        assert_eq!(out, [1, 3, 4, 2, 5, 6]);
    }
}
