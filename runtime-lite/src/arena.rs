//! Aligned storage: the per-model [`Arena`] for intermediates and the static [`Weights`] blob.
//!
//! The compiler plans every intermediate value to a byte offset in one arena. A node's code
//! takes its output regions with a [`Splitter`], then reads its inputs through the [`Reader`]
//! the splitter leaves; the reader refuses any region that overlaps an output, so the mutable
//! and shared views handed out at one time never alias. Offsets and lengths come from the
//! compiler as constants; a violation is a compiler bug and panics with the region named.

use core::marker::PhantomData;
use core::mem::{align_of, size_of};

use crate::Elem;

/// 64 bytes aligned to 64: the unit arenas are made of, so every offset the planner hands out
/// (a multiple of 64) is aligned for every element type and for SIMD loads.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct Block(pub [u8; 64]);

impl Block {
    /// A zeroed block.
    pub const ZERO: Block = Block([0; 64]);
}

/// The static weights of a model: the bytes of its constant tensors, 64-byte aligned.
///
/// Generated code declares `static WEIGHTS: Weights<N> = Weights(*include_bytes!("…"));`, so
/// weights stay in the binary's read-only data and loading a model copies nothing.
#[repr(C, align(64))]
pub struct Weights<const N: usize>(pub [u8; N]);

impl<const N: usize> Weights<N> {
    /// Views `len` elements of type `T` starting at byte `offset`.
    ///
    /// Panics if the region is out of bounds or misaligned: offsets come from the compiler.
    pub fn get<T: Elem>(&self, offset: usize, len: usize) -> &[T] {
        region_bytes::<T>(offset, len, N, "weights");
        check_align::<T>(self.0.as_ptr() as usize + offset, offset);
        // SAFETY: the region [offset, offset + bytes) is inside `self.0` (checked above), its
        // start is aligned for `T` (checked), `T: Elem` accepts any initialized bytes, and the
        // result borrows `self` immutably.
        unsafe { core::slice::from_raw_parts(self.0.as_ptr().add(offset).cast::<T>(), len) }
    }
}

fn region_bytes<T>(offset: usize, len: usize, total: usize, what: &str) -> usize {
    let bytes = len.checked_mul(size_of::<T>());
    match bytes.and_then(|b| b.checked_add(offset)) {
        Some(end) if end <= total => bytes.unwrap_or(0),
        _ => panic!("{what} region at {offset} with {len} elements exceeds {total} bytes"),
    }
}

fn check_align<T>(address: usize, offset: usize) {
    assert!(
        address.is_multiple_of(align_of::<T>()),
        "region at byte {offset} is not aligned for its element type"
    );
}

#[cfg(feature = "std")]
type Storage<const BLOCKS: usize> = heap::Blocks;
#[cfg(not(feature = "std"))]
type Storage<const BLOCKS: usize> = [Block; BLOCKS];

/// One model's working memory for intermediates, `BLOCKS * 64` bytes, zeroed at creation.
///
/// With the `std` feature the blocks live on the heap (one allocation in `new`, none after);
/// without it they are inline, so a `no_std` program places a big model in a `static`.
pub struct Arena<const BLOCKS: usize> {
    data: Storage<BLOCKS>,
}

impl<const BLOCKS: usize> Default for Arena<BLOCKS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BLOCKS: usize> Arena<BLOCKS> {
    /// Size in bytes.
    pub const BYTES: usize = BLOCKS * 64;

    /// A zeroed arena.
    pub fn new() -> Self {
        #[cfg(feature = "std")]
        let data = heap::Blocks::zeroed(BLOCKS);
        #[cfg(not(feature = "std"))]
        let data = [Block::ZERO; BLOCKS];
        Self { data }
    }

    /// A zeroed arena in a `const` context (for `Model::new_static`): only without the `std`
    /// feature, whose arena is inline.
    #[cfg(not(feature = "std"))]
    pub const fn zeroed() -> Self {
        Self {
            data: [Block::ZERO; BLOCKS],
        }
    }

    /// Views `len` elements of type `T` at byte `offset`, read-only.
    pub fn get<T: Elem>(&self, offset: usize, len: usize) -> &[T] {
        self.splitter_ref().get(offset, len)
    }

    fn splitter_ref(&self) -> Reader<'_> {
        Reader {
            base: self.data.as_ptr().cast::<u8>(),
            total: Self::BYTES,
            taken: [(0, 0); MAX_OUTPUTS],
            n_taken: 0,
            _arena: PhantomData,
        }
    }

    /// Starts handing out disjoint output regions for one node.
    pub fn splitter(&mut self) -> Splitter<'_> {
        Splitter {
            base: self.data.as_mut_ptr().cast::<u8>(),
            total: Self::BYTES,
            taken: [(0, 0); MAX_OUTPUTS],
            n_taken: 0,
            _arena: PhantomData,
        }
    }
}

/// The most output regions one node may take at a time.
pub const MAX_OUTPUTS: usize = 8;

fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < b.1 && b.0 < a.1 && a.0 < a.1 && b.0 < b.1
}

/// Hands out mutable, pairwise disjoint regions of an arena (a node's outputs).
pub struct Splitter<'a> {
    base: *mut u8,
    total: usize,
    taken: [(usize, usize); MAX_OUTPUTS],
    n_taken: usize,
    _arena: PhantomData<&'a mut [Block]>,
}

impl<'a> Splitter<'a> {
    /// Takes `len` elements of type `T` at byte `offset` for writing.
    ///
    /// Panics if the region is out of bounds, misaligned, overlaps a region already taken, or
    /// more than [`MAX_OUTPUTS`] regions are taken.
    pub fn take<T: Elem>(&mut self, offset: usize, len: usize) -> &'a mut [T] {
        let bytes = region_bytes::<T>(offset, len, self.total, "arena");
        let range = (offset, offset + bytes);
        assert!(
            self.n_taken < MAX_OUTPUTS,
            "more than {MAX_OUTPUTS} outputs taken at once"
        );
        for &t in &self.taken[..self.n_taken] {
            assert!(
                !overlaps(t, range),
                "arena output at byte {offset} overlaps another output"
            );
        }
        self.taken[self.n_taken] = range;
        self.n_taken += 1;
        check_align::<T>(self.base as usize + offset, offset);
        // SAFETY: the region is inside the arena (checked), aligned for `T` (checked), disjoint
        // from every other region this splitter handed out (checked) and from every region its
        // reader will hand out (the reader checks against `taken`); the arena is mutably
        // borrowed for 'a, so nothing else can reach it; `T: Elem` accepts any bytes.
        unsafe { core::slice::from_raw_parts_mut(self.base.add(offset).cast::<T>(), len) }
    }

    /// Ends the taking: the rest of the arena becomes readable.
    pub fn reader(self) -> Reader<'a> {
        Reader {
            base: self.base.cast_const(),
            total: self.total,
            taken: self.taken,
            n_taken: self.n_taken,
            _arena: PhantomData,
        }
    }
}

/// Reads arena regions that do not overlap the outputs taken before it.
pub struct Reader<'a> {
    base: *const u8,
    total: usize,
    taken: [(usize, usize); MAX_OUTPUTS],
    n_taken: usize,
    _arena: PhantomData<&'a [Block]>,
}

impl<'a> Reader<'a> {
    /// Views `len` elements of type `T` at byte `offset`, read-only.
    ///
    /// Panics if the region is out of bounds, misaligned, or overlaps an output region.
    pub fn get<T: Elem>(&self, offset: usize, len: usize) -> &'a [T] {
        let bytes = region_bytes::<T>(offset, len, self.total, "arena");
        let range = (offset, offset + bytes);
        for &t in &self.taken[..self.n_taken] {
            assert!(
                !overlaps(t, range),
                "arena input at byte {offset} overlaps an output"
            );
        }
        check_align::<T>(self.base as usize + offset, offset);
        // SAFETY: in bounds and aligned (checked); disjoint from every mutable region handed out
        // by the splitter this reader came from (checked); the arena stays borrowed for 'a.
        unsafe { core::slice::from_raw_parts(self.base.add(offset).cast::<T>(), len) }
    }
}

/// The heap storage of an [`Arena`] with the `std` feature.
#[cfg(feature = "std")]
mod heap {
    use super::Block;
    use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
    use std::ptr::NonNull;

    /// Bytes of a huge page (x86-64 and AArch64 Linux with 4 KiB base pages).
    const HUGE_PAGE: usize = 2 << 20;

    /// Zeroed blocks on the heap. An arena of at least a huge page is aligned to one and, on
    /// Linux, marked for transparent huge pages before its pages are first touched: the
    /// layers of a model stream through megabytes of it, and with 4 KiB pages every 64 lines
    /// read or written take another TLB entry.
    pub(super) struct Blocks {
        ptr: NonNull<Block>,
        len: usize,
    }

    // SAFETY: `Blocks` owns its allocation, as a `Box<[Block]>` would.
    unsafe impl Send for Blocks {}
    // SAFETY: as above; shared access only reads.
    unsafe impl Sync for Blocks {}

    impl Blocks {
        fn layout(len: usize) -> Layout {
            let bytes = len * 64;
            let align = if bytes >= HUGE_PAGE { HUGE_PAGE } else { 64 };
            Layout::from_size_align(bytes.max(64), align).expect("arena size overflows")
        }

        /// `len` zeroed blocks.
        pub(super) fn zeroed(len: usize) -> Self {
            let layout = Self::layout(len);
            // SAFETY: the layout's size is non-zero.
            let raw = unsafe { alloc(layout) };
            let Some(ptr) = NonNull::new(raw.cast::<Block>()) else {
                handle_alloc_error(layout)
            };
            #[cfg(all(target_os = "linux", not(miri)))]
            if layout.align() == HUGE_PAGE {
                extern "C" {
                    fn madvise(addr: *mut core::ffi::c_void, len: usize, advice: i32) -> i32;
                }
                const MADV_HUGEPAGE: i32 = 14;
                // SAFETY: the range is this allocation, page aligned; advice only (a kernel
                // without transparent huge pages returns an error, which changes nothing).
                unsafe { madvise(raw.cast(), layout.size(), MADV_HUGEPAGE) };
            }
            // SAFETY: the allocation holds `layout.size()` bytes.
            unsafe { raw.write_bytes(0, layout.size()) };
            Self { ptr, len }
        }

        pub(super) fn as_ptr(&self) -> *const Block {
            self.ptr.as_ptr()
        }

        pub(super) fn as_mut_ptr(&mut self) -> *mut Block {
            self.ptr.as_ptr()
        }
    }

    impl Drop for Blocks {
        fn drop(&mut self) {
            // SAFETY: allocated in `zeroed` with this layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), Self::layout(self.len)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_read_disjoint() {
        let mut arena = Arena::<2>::new();
        let mut s = arena.splitter();
        let out = s.take::<f32>(64, 4);
        let rd = s.reader();
        let input = rd.get::<f32>(0, 16);
        out[0] = input[0] + 1.0;
        assert_eq!(arena.get::<f32>(64, 1)[0], 1.0);
    }

    #[test]
    fn overlapping_read_is_refused() {
        let result = std::panic::catch_unwind(|| {
            let mut arena = Arena::<2>::new();
            let mut s = arena.splitter();
            let _out = s.take::<f32>(0, 4);
            let rd = s.reader();
            rd.get::<f32>(8, 4)[0]
        });
        assert!(
            result.is_err(),
            "a read overlapping an output must be refused"
        );
    }

    #[test]
    fn weights_are_aligned() {
        static W: Weights<8> = Weights([0, 0, 128, 63, 0, 0, 0, 64]);
        assert_eq!(W.get::<f32>(0, 2), &[1.0, 2.0]);
    }

    /// An arena of a few huge pages: aligned to one, zeroed, writable to its last byte.
    #[cfg(feature = "std")]
    #[test]
    #[cfg_attr(
        miri,
        ignore = "megabytes of checks; the small arenas above take the same paths"
    )]
    fn big_arena_is_zeroed_and_aligned() {
        const BLOCKS: usize = (5 << 20) / 64;
        let mut arena = Arena::<BLOCKS>::new();
        let floats = Arena::<BLOCKS>::BYTES / 4;
        assert!(arena.get::<f32>(0, floats).iter().all(|&v| v == 0.0));
        assert_eq!(arena.get::<f32>(0, 1).as_ptr() as usize % (2 << 20), 0);
        let mut s = arena.splitter();
        s.take::<f32>(0, floats)[floats - 1] = 3.0;
        assert_eq!(arena.get::<f32>((floats - 1) * 4, 1)[0], 3.0);
    }
}
