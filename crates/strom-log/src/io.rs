//! The file operations of the write path, behind a small trait so tests can inject faults
//! (redb's `StorageBackend` habit, kept smaller): a failed or partial `pwrite`, a failed
//! fsync. Reads stay on `std::fs::File` because `ReadSlice` and `flush_target` hand real files
//! to the broker.

use std::fmt::Debug;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;

/// Most buffers one `pwritev` takes (Linux's `IOV_MAX`); a longer list takes several calls.
const IOV_MAX: usize = 1024;

/// Write-path file operations. The default methods are the real system calls.
pub trait FileIo: Send + Sync + Debug {
    fn write_all_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }
    /// Write `parts`, one after the other, at `offset`: one `pwritev` for up to `IOV_MAX`
    /// parts, more calls only after a short write. Lets the log store a batch as a patched
    /// header prefix plus the client's bytes without joining them in a copy first.
    fn write_all_vectored_at(&self, file: &File, parts: &[&[u8]], offset: u64) -> io::Result<()> {
        pwritev_all(file, parts, offset)
    }
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
}

/// `pwritev` until every byte of `parts` is written, as `write_all_at` does for one buffer:
/// retried on EINTR, continued after a short write, an error if nothing more can be written.
fn pwritev_all(file: &File, parts: &[&[u8]], mut offset: u64) -> io::Result<()> {
    // The parts still to write: `parts[first..]`, the first of them from byte `skip`.
    let (mut first, mut skip) = (0usize, 0usize);
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len().min(IOV_MAX));
    while first < parts.len() {
        slices.clear();
        slices.push(IoSlice::new(&parts[first][skip..]));
        slices.extend(
            parts[first + 1..]
                .iter()
                .take(IOV_MAX - 1)
                .map(|p| IoSlice::new(p)),
        );
        let mut written = match rustix::io::pwritev(file, &slices, offset) {
            Ok(0) if slices.iter().any(|s| !s.is_empty()) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write whole buffer",
                ))
            }
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        offset += written as u64;
        // Step over the parts written whole, then into the one written in part.
        while first < parts.len() && written >= parts[first].len() - skip {
            written -= parts[first].len() - skip;
            first += 1;
            skip = 0;
        }
        skip += written;
    }
    Ok(())
}

/// The real thing.
#[derive(Debug, Default)]
pub(crate) struct RealIo;

impl FileIo for RealIo {}

#[cfg(any(test, feature = "fault-injection"))]
pub use faulty::FaultyIo;

#[cfg(any(test, feature = "fault-injection"))]
mod faulty {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// Real I/O until armed; then the next write stores only its first `partial_bytes` bytes
    /// and fails, or the next fsync fails.
    #[derive(Debug, Default)]
    pub struct FaultyIo {
        fail_next_write: AtomicBool,
        partial_bytes: AtomicU64,
        fail_next_sync: AtomicBool,
    }

    impl FaultyIo {
        pub fn fail_next_write(&self, partial_bytes: u64) {
            self.partial_bytes.store(partial_bytes, Ordering::SeqCst);
            self.fail_next_write.store(true, Ordering::SeqCst);
        }
        pub fn fail_next_sync(&self) {
            self.fail_next_sync.store(true, Ordering::SeqCst);
        }
        pub fn disarm(&self) {
            self.fail_next_write.store(false, Ordering::SeqCst);
            self.fail_next_sync.store(false, Ordering::SeqCst);
        }
    }

    impl FileIo for FaultyIo {
        fn write_all_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
            if self.fail_next_write.swap(false, Ordering::SeqCst) {
                let n = (self.partial_bytes.load(Ordering::SeqCst) as usize).min(buf.len());
                file.write_all_at(&buf[..n], offset)?;
                return Err(io::Error::other("injected write failure"));
            }
            file.write_all_at(buf, offset)
        }
        fn write_all_vectored_at(
            &self,
            file: &File,
            parts: &[&[u8]],
            offset: u64,
        ) -> io::Result<()> {
            if self.fail_next_write.load(Ordering::SeqCst) {
                // The torn write as one buffer: which part the tear falls in does not matter.
                return self.write_all_at(file, &parts.concat(), offset);
            }
            super::pwritev_all(file, parts, offset)
        }
        fn sync_data(&self, file: &File) -> io::Result<()> {
            if self.fail_next_sync.swap(false, Ordering::SeqCst) {
                return Err(io::Error::other("injected fsync failure"));
            }
            file.sync_data()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn vectored_writes_store_the_parts_in_order() {
        let file = tempfile::tempfile().unwrap();
        // More parts than one pwritev takes, some of them empty.
        let owned: Vec<Vec<u8>> = (0..2 * IOV_MAX + 7)
            .map(|i| vec![(i % 251) as u8; i % 5])
            .collect();
        let parts: Vec<&[u8]> = owned.iter().map(|p| p.as_slice()).collect();
        RealIo.write_all_at(&file, b"head", 0).unwrap();
        RealIo.write_all_vectored_at(&file, &parts, 4).unwrap();
        let mut stored = Vec::new();
        (&file).read_to_end(&mut stored).unwrap();
        assert_eq!(&stored[..4], b"head");
        assert_eq!(stored[4..], owned.concat()[..]);
        RealIo.write_all_vectored_at(&file, &[], 0).unwrap();
    }

    #[test]
    fn an_armed_fault_tears_a_vectored_write() {
        let file = tempfile::tempfile().unwrap();
        let io = FaultyIo::default();
        io.fail_next_write(5);
        let parts: [&[u8]; 2] = [b"abc", b"defgh"];
        assert!(io.write_all_vectored_at(&file, &parts, 0).is_err());
        let mut stored = Vec::new();
        (&file).read_to_end(&mut stored).unwrap();
        assert_eq!(stored, b"abcde");
        io.write_all_vectored_at(&file, &parts, 0).unwrap();
    }
}
