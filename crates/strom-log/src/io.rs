//! The file operations of the write path, behind a small trait so tests can inject faults
//! (redb's `StorageBackend` habit, kept smaller): a failed or partial `pwrite`, a failed
//! fsync. Reads stay on `std::fs::File` because `ReadSlice` and `flush_target` hand real files
//! to the broker.

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Write-path file operations. The default methods are the real system calls.
pub trait FileIo: Send + Sync + Debug {
    fn write_all_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
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
        fn sync_data(&self, file: &File) -> io::Result<()> {
            if self.fail_next_sync.swap(false, Ordering::SeqCst) {
                return Err(io::Error::other("injected fsync failure"));
            }
            file.sync_data()
        }
    }
}
