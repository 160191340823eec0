//! The allocation guard installed as this test binary's global allocator, as the `strom`
//! binary installs it.
//!
//! The story: the guard served huge `alloc` requests with an untouched mapping, but a huge
//! *zeroed* request (`vec![0; n]`, or `BytesMut::zeroed(n)` in kafka-protocol's Snappy path,
//! sized by a length inside the compressed data) went through the trait's default
//! `alloc_zeroed`, which writes zeros over the whole block: the memory the guard saved was
//! committed after all, and a request for more than the machine has took the broker down.

use strom_protocol::alloc_guard::{HugeAllocationGuard, HUGE_ALLOCATION_BYTES};

#[global_allocator]
static GLOBAL: HugeAllocationGuard = HugeAllocationGuard;

const GIB: usize = 1 << 30;

/// This process's resident memory now, from /proc/self/status.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_huge_zeroed_allocation_neither_aborts_nor_commits_memory() {
    let before = rss_bytes();
    // 64 GiB: more than this machine has; with the default alloc_zeroed it would be written.
    let zeros = vec![0u8; 64 * GIB];
    assert_eq!(zeros.len(), 64 * GIB);
    assert_eq!((zeros[0], zeros[32 * GIB], zeros[64 * GIB - 1]), (0, 0, 0));
    let during = rss_bytes();
    assert!(
        during < before + 64 * 1024 * 1024,
        "64 GiB of zeros committed {} MiB",
        (during - before) >> 20
    );
    drop(zeros);

    let zeroed = bytes::BytesMut::zeroed(4 * GIB);
    assert!(zeroed.iter().step_by(1 << 20).all(|&b| b == 0));
    assert!(rss_bytes() < before + 64 * 1024 * 1024);
}

#[test]
fn huge_blocks_grow_and_shrink_with_their_contents() {
    let mut v: Vec<u8> = Vec::with_capacity(HUGE_ALLOCATION_BYTES);
    v.extend_from_slice(b"kept across every move");
    // Huge to huger: the mapping moves.
    v.reserve_exact(4 * GIB);
    assert!(v.capacity() >= 4 * GIB);
    assert_eq!(&v[..], b"kept across every move");
    // Huge to small: copied back to the system allocator.
    v.shrink_to_fit();
    assert_eq!(&v[..], b"kept across every move");
    // Small to huge.
    v.reserve_exact(2 * GIB);
    assert_eq!(&v[..], b"kept across every move");
    assert!(v.capacity() >= 2 * GIB);
}
