//! Element types that may live in an [`Arena`](crate::Arena) or a [`Weights`](crate::Weights) blob.
//!
//! Booleans are stored as `u8` (0 or 1): a byte region of the arena is reused by values of
//! different types over a run, and a `bool` view of bytes that once held a float would not be
//! valid, while every byte is a valid `u8`.

mod sealed {
    pub trait Sealed {}
}

/// A plain-old-data element: every bit pattern is a valid value, no padding, no drop glue.
///
/// # Safety
/// Implemented only in this crate, for types for which any initialized bytes of the right
/// size and alignment form a valid value.
pub unsafe trait Elem: sealed::Sealed + Copy + Default + 'static {}

macro_rules! elems {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        // SAFETY: a primitive number type: every bit pattern is valid, no padding.
        unsafe impl Elem for $t {}
    )*};
}
elems!(f32, f64, i8, i16, i32, i64, u8, u16, u32, u64);

/// Views a `bool` slice as bytes (0 or 1), the form booleans take inside the arena.
pub fn bools_as_bytes(values: &[bool]) -> &[u8] {
    // SAFETY: `bool` has size 1 and alignment 1 and every `bool` is a valid `u8` (0 or 1);
    // the returned slice borrows `values` for the same lifetime and length.
    unsafe { core::slice::from_raw_parts(values.as_ptr().cast::<u8>(), values.len()) }
}

/// Turns stored bytes back into booleans (`0` is false, anything else true).
pub fn bytes_to_bools<const N: usize>(bytes: &[u8]) -> [bool; N] {
    let mut out = [false; N];
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = b != 0;
    }
    out
}

/// Copies a slice into a fixed-size array; the lengths must match (checked by the caller,
/// generated code, which knows both at compile time).
pub fn to_array<T: Copy + Default, const N: usize>(values: &[T]) -> [T; N] {
    let mut out = [T::default(); N];
    out.copy_from_slice(values);
    out
}
