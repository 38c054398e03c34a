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

/// Views stored booleans (bytes 0 or 1) as `bool`s.
///
/// Panics if a byte is neither 0 nor 1, which would mean a kernel wrote a non-boolean into a
/// boolean value (a bug), rather than hand out an invalid `bool`.
pub fn bytes_as_bools<const N: usize>(bytes: &[u8]) -> &[bool; N] {
    assert!(
        bytes.len() == N && bytes.iter().all(|&b| b <= 1),
        "boolean output holds a byte other than 0 or 1"
    );
    // SAFETY: exactly N bytes, each 0 or 1 (checked), which are valid `bool`s of the same size
    // and alignment; the result borrows `bytes`.
    unsafe { &*bytes.as_ptr().cast::<[bool; N]>() }
}

/// Views a slice of exactly `N` elements as an array reference.
///
/// Panics on another length (generated code passes lengths it knows at compile time).
pub fn as_array<T, const N: usize>(values: &[T]) -> &[T; N] {
    match values.try_into() {
        Ok(array) => array,
        Err(_) => panic!("expected {N} elements, found {}", values.len()),
    }
}
