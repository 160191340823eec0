//! A global allocator for binaries that decode Kafka requests: the system allocator, except
//! for huge requests.
//!
//! Why this exists: the generated Kafka decoders (the `kafka-protocol` crate) reserve
//! `Vec::with_capacity(n)` from an array length read off the wire, before decoding any element.
//! A 20-byte request that claims 2^31 topics asks for ~200 GiB; the system allocator refuses and
//! Rust aborts the whole broker — one bad frame would take down every client. Requests of at
//! least [`HUGE_ALLOCATION_BYTES`] get an address-space-only mapping (`MAP_NORESERVE`): it costs
//! nothing until touched, the decoder fails on the next element for lack of bytes, and the
//! mapping is released unused. Every other allocation goes to the system allocator unchanged.
//!
//! Zeroed requests (`vec![0; n]`, `BytesMut::zeroed(n)`, which `kafka-protocol`'s Snappy path
//! sizes from a length in the compressed data) take the same path: a fresh anonymous mapping
//! is already zero, so nothing is written. The trait's default `alloc_zeroed` would write
//! zeros over the whole mapping and so commit every page of it. Growing a huge block moves the
//! mapping (`mremap`) instead of copying it, for the same reason.
//!
//! kafka-protocol 0.18 is the newest release (checked for this module): its array decoder
//! still calls `Vec::with_capacity(n)` on the length off the wire, unbounded by the bytes left,
//! so the guard stays.
//! The `strom` binary installs it (`tests/test_hostile_lengths.py` sends such frames to it),
//! and so does the broker's fuzz test binary.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// No legitimate allocation of the broker comes near this (frames are bounded by
/// `socket.request.max.bytes`, 100 MiB by default); larger ones take the mmap path, which is
/// correct for them too, just not reserved against the commit limit up front.
pub const HUGE_ALLOCATION_BYTES: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

pub struct HugeAllocationGuard;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION_BYTES && layout.align() <= PAGE_BYTES
}

// SAFETY: every pointer handed out comes from `System` or from `mmap`/`mremap` with the
// layout's size; `dealloc` and `realloc` route by the same `is_huge` test on the same layout, so
// each pointer returns to the allocator that produced it. Mappings are page-aligned, which
// covers every alignment `is_huge` admits.
unsafe impl GlobalAlloc for HugeAllocationGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            return System.alloc(layout);
        }
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if ptr == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            ptr as *mut u8
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // A fresh anonymous mapping reads as zeros; writing them would commit every page.
            self.alloc(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            libc::munmap(ptr as *mut libc::c_void, layout.size());
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return System.realloc(ptr, layout, new_size);
        }
        if is_huge(&layout) && is_huge(&new_layout) {
            // Both are mappings: move the pages instead of copying (and so touching) them.
            let moved = libc::mremap(
                ptr as *mut libc::c_void,
                layout.size(),
                new_size,
                libc::MREMAP_MAYMOVE,
            );
            return if moved == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                moved as *mut u8
            };
        }
        let new_ptr = self.alloc(new_layout);
        if !new_ptr.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new_ptr
    }
}
