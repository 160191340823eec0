//! Replacing a small file so that a crash or power loss leaves the old or the new version,
//! never a mix: the one copy of "write a temp file, fsync it, rename it over the old one,
//! fsync the directory" that every durable small file in Strom uses (`topic.json`,
//! `partition.metadata`, the broker's `cluster-id` and `producer-ids`, `log-start-offset`, and
//! the compacted committed-offsets log).
//!
//! ```text
//! <dir>/<name>.tmp   written, fsynced        (removed again if anything before the rename fails)
//! <dir>/<name>       <- rename(<name>.tmp)    then fsync(<dir>)
//! ```
//!
//! Failure contract, which callers rely on:
//! - an error *before* the rename (e.g. ENOSPC while writing the temp file) leaves `<name>`
//!   untouched and removes the temp file, so a full disk does not fill up further;
//! - an error *after* the rename (the directory fsync) leaves the new bytes under `<name>` in
//!   the running system, but a power loss may still bring the old ones back. A caller that
//!   keeps the file open (the offsets log) must look at which file the name now points to.
//!
//! A leftover `<name>.tmp` (a crash between the temp write and the rename) holds nothing
//! anyone was promised; openers delete it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The temp file [`write_atomically`] uses for `path`: `<path>.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".tmp");
    PathBuf::from(name)
}

/// Replaces `path` with `bytes` durably (see the module docs for what an error means).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // Best effort: on a full disk the half-written temp file is exactly what must go.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent_dir(path))
}

/// fsyncs a directory, so that files created, renamed or deleted in it stay so after a power
/// loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topic.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two, longer");
        assert!(!tmp_path(&path).exists());
        assert_eq!(tmp_path(&path), dir.path().join("topic.json.tmp"));
    }

    /// The story: on a full disk the temp file was left behind half written, taking the last
    /// free blocks, and the old file had to survive. Here the rename fails (its target is a
    /// non-empty directory) after the temp file was written: the temp file must be gone and
    /// the target untouched.
    #[test]
    fn a_failure_before_the_rename_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomically(&path, b"new").is_err());
        assert!(!tmp_path(&path).exists());
        assert_eq!(std::fs::read(path.join("inside")).unwrap(), b"x");
    }
}
