//! The `log-start-offset` file: remembers a log start offset above the first segment's base
//! (after DeleteRecords) so it survives a restart.
//!
//! ```text
//! log-start-offset   version u8 (=1) | log_start_offset i64 BE | crc32c u32 BE of the 9 bytes before
//! ```
//! Written with [`crate::atomic_file::write_atomically`] (`log-start-offset.tmp`, fsync,
//! rename, directory fsync): a crash leaves either the old or the new value. A missing or damaged file means
//! "the first segment's base offset" (damage is logged; it can only make deleted records
//! readable again, never hide kept ones).

use std::io;
use std::path::Path;

pub(crate) const FILE_NAME: &str = "log-start-offset";
pub(crate) const TMP_NAME: &str = "log-start-offset.tmp";
const VERSION: u8 = 1;
const FILE_SIZE: usize = 13;

pub(crate) fn encode(offset: i64) -> [u8; FILE_SIZE] {
    let mut out = [0u8; FILE_SIZE];
    out[0] = VERSION;
    out[1..9].copy_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&out[..9]);
    out[9..13].copy_from_slice(&crc.to_be_bytes());
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Option<i64> {
    if bytes.len() != FILE_SIZE || bytes[0] != VERSION {
        return None;
    }
    let crc = u32::from_be_bytes(bytes[9..13].try_into().ok()?);
    if crc != crc32c::crc32c(&bytes[..9]) {
        return None;
    }
    Some(i64::from_be_bytes(bytes[1..9].try_into().ok()?))
}

pub(crate) fn read(dir: &Path) -> io::Result<Option<i64>> {
    match std::fs::read(dir.join(FILE_NAME)) {
        Ok(bytes) => {
            let value = decode(&bytes);
            if value.is_none() {
                tracing::warn!(dir = %dir.display(), "ignoring damaged log-start-offset file");
            }
            Ok(value)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn write(dir: &Path, offset: i64) -> io::Result<()> {
    crate::atomic_file::write_atomically(&dir.join(FILE_NAME), &encode(offset))
}

pub(crate) use crate::atomic_file::sync_dir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        for v in [0, 1, 12345, i64::MAX] {
            assert_eq!(decode(&encode(v)), Some(v));
        }
        let mut b = encode(77);
        b[4] ^= 1;
        assert_eq!(decode(&b), None);
        assert_eq!(decode(&encode(77)[..12]), None);
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), 42).unwrap();
        write(dir.path(), 43).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(43));
        assert!(!dir.path().join(TMP_NAME).exists());
    }
}
