//! A model in a `static`: for `no_std` programs without an allocator, whose models (arena
//! included, when `sinter-rt`'s `std` feature is off) live in `.bss` rather than on the stack.
//!
//! Generated modules gain `Model::new_static()`, a `const fn`, when the arena is inline (no
//! `std` feature; see [`static_constructor!`](crate::static_constructor)); [`StaticModel`]
//! holds such a model and hands out the one `&'static mut` reference to it.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A model placed in a `static`, handed out once as `&'static mut`.
///
/// ```ignore
/// static MODEL: sinter_rt::StaticModel<tiny_cnn::Model> =
///     sinter_rt::StaticModel::new(tiny_cnn::Model::new_static());
///
/// let model: &'static mut tiny_cnn::Model = MODEL.take().expect("taken once");
/// ```
///
/// An all-zero model (the arena is zeroed, the executor empty) is placed in `.bss`: it costs
/// RAM, not flash. Needs atomic compare-and-swap on bytes (`target_has_atomic = "8"`).
pub struct StaticModel<M> {
    taken: AtomicBool,
    model: UnsafeCell<M>,
}

// SAFETY: the model is reachable only through the one `&mut` that `take` hands out (the flag
// is swapped atomically), so sharing the cell between threads moves at most that reference,
// which `M: Send` allows.
unsafe impl<M: Send> Sync for StaticModel<M> {}

impl<M> StaticModel<M> {
    /// Holds `model` (in a `static`, `model` is a constant: `Model::new_static()`).
    pub const fn new(model: M) -> Self {
        Self {
            taken: AtomicBool::new(false),
            model: UnsafeCell::new(model),
        }
    }

    /// The model, the first time; `None` after.
    #[allow(
        clippy::mut_from_ref,
        reason = "the one `&mut` ever made, guarded by the flag (as a static cell does)"
    )]
    pub fn take(&'static self) -> Option<&'static mut M> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the flag was clear and is now set, so this is the only reference ever made;
        // the cell lives for `'static`.
        Some(unsafe { &mut *self.model.get() })
    }

    /// Whether [`StaticModel::take`] has handed the model out.
    pub fn is_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }
}

/// Defines `Model::new_static()` in a generated module, when the arena is inline (`sinter-rt`
/// built without `std`): a `const fn` only that arena allows. Generated code invokes it with the
/// model's extra fields and their initial values; with `std` it expands to nothing.
#[cfg(not(feature = "std"))]
#[macro_export]
macro_rules! static_constructor {
    ($($field:ident: $value:expr),* $(,)?) => {
        impl Model {
            /// A model built in a `const` context, for a `static` (see
            /// [`sinter_rt::StaticModel`](::sinter_rt::StaticModel)): its arena zeroed and
            /// inline in the `Model`, its kernels on the calling thread. Only without
            /// `sinter-rt`'s `std` feature.
            pub const fn new_static() -> Self {
                Self {
                    arena: Arena::zeroed(),
                    exec: $crate::threads::Exec::single(),
                    $($field: $value),*
                }
            }
        }
    };
}

/// Defines `Model::new_static()` in a generated module, when the arena is inline (`sinter-rt`
/// built without `std`): a `const fn` only that arena allows. Generated code invokes it with the
/// model's extra fields and their initial values; with `std` it expands to nothing.
#[cfg(feature = "std")]
#[macro_export]
macro_rules! static_constructor {
    ($($tokens:tt)*) => {};
}

#[cfg(test)]
mod tests {
    use super::StaticModel;

    #[test]
    fn hands_out_the_model_once() {
        static CELL: StaticModel<[u32; 4]> = StaticModel::new([0; 4]);
        assert!(!CELL.is_taken());
        let model = CELL.take().expect("first take");
        model[1] = 7;
        assert!(CELL.is_taken());
        assert!(CELL.take().is_none());
        assert_eq!(model[1], 7);
    }
}
