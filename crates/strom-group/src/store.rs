//! The committed-offsets log: an append-only file of CRC-checked records, replayed at open and
//! compacted to the latest value per key.
//!
//! ```text
//! <dir>/offsets.log
//!
//! header (12 bytes)
//! +----------------------+-------------------+-------------------+
//! | magic "STROMOFS" (8) | format u16 BE = 1 | reserved u16 = 0  |
//! +----------------------+-------------------+-------------------+
//!
//! record (repeated until end of file)
//! +--------------------+---------------------------+----------------------+
//! | payload_len u32 BE | crc32c(payload) u32 BE    | payload (payload_len)|
//! +--------------------+---------------------------+----------------------+
//!
//! payload, all integers big-endian, str16 = u16 length + UTF-8 bytes, str32 = u32 length + bytes
//!   kind u8 = 1  offset commit:   group str16, topic str16, partition i32, offset i64,
//!                                 leader_epoch i32, commit_ms i64, expire_ms i64 (-1 = none),
//!                                 metadata str32
//!   kind u8 = 2  offset tombstone: group str16, topic str16, partition i32
//!   kind u8 = 3  group tombstone:  group str16     (drops every offset of the group before it)
//!   kind u8 = 4  group metadata:   group str16, protocol_type opt16, generation i32,
//!                                  protocol_name opt16, leader opt16, state_since_ms i64 (-1 = none),
//!                                  member_count u32, then per member:
//!                                    member_id str16, group_instance_id opt16, client_id str16,
//!                                    client_host str16, rebalance_timeout_ms i32,
//!                                    session_timeout_ms i32, protocol_count u32,
//!                                    (name str16, metadata bytes32) * protocol_count,
//!                                    assignment bytes32
//!   opt16 = u8 0 (null) | u8 1 + str16; bytes32 = u32 length + bytes
//! ```
//!
//! Kind 4 was added without changing the format version: files written before it simply
//! contain no such record, so they read unchanged. A whole, CRC-valid record that this build
//! cannot decode (an unknown kind: a file written by a newer Strom) stops the open with
//! `GroupError::UnknownRecord` and changes no byte; it is never mistaken for a torn tail.
//!
//! Recovery: records are read in order; the first record whose length is out of bounds, whose
//! bytes are incomplete or whose CRC does not match ends the log, and the file is truncated
//! there (a torn write from a crash). A failed append truncates
//! the file back to its previous length so a half-written record can never hide later ones.
//!
//! Compaction writes the live records to `offsets.log.tmp`, fsyncs it, renames it over
//! `offsets.log` and fsyncs the directory (`strom_log::atomic_file`); a leftover `.tmp` at open
//! is an interrupted compaction and is deleted. Compaction is never needed to start: at open
//! it is tried and, if it fails (a full disk), the store serves and appends to the file it
//! has. A compaction that fails after its rename moves the store to the new file and poisons
//! it, so no write goes to an unlinked file.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::GroupError;

pub(crate) const LOG_FILE_NAME: &str = "offsets.log";
const TMP_FILE_NAME: &str = "offsets.log.tmp";
const MAGIC: &[u8; 8] = b"STROMOFS";
const FORMAT_VERSION: u16 = 1;
pub(crate) const HEADER_BYTES: u64 = 12;
const RECORD_HEADER_BYTES: usize = 8;
/// Upper bound of one record's payload; anything larger is corruption. A commit record is at
/// most 2 * 64 KiB of names plus the metadata, which the coordinator caps far below this.
pub(crate) const RECORD_PAYLOAD_BYTES_MAX: usize = 1 << 20;

const KIND_COMMIT: u8 = 1;
const KIND_OFFSET_TOMBSTONE: u8 = 2;
const KIND_GROUP_TOMBSTONE: u8 = 3;
const KIND_GROUP_METADATA: u8 = 4;
const KIND_CONSUMER_GROUP: u8 = 5;

/// One committed offset, as stored and as served by OffsetFetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: i64,
    /// Explicit expiry from OffsetCommit v2-v4 `retention_time_ms`, or -1.
    pub expire_ms: i64,
}

/// One member of a stored generation (Kafka's `MemberMetadata` value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// Every protocol the member offered, in its order of preference. Kafka keeps only the
    /// chosen protocol's metadata; we keep all, so that an unchanged rejoin after a restart is
    /// still recognised as unchanged.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

/// A group's last completed generation (Kafka's `GroupMetadataValue`), written when the
/// leader's assignment is propagated, when a static member is replaced without a rebalance,
/// and when the group becomes Empty (then with no members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredGroup {
    pub group: String,
    pub protocol_type: Option<String>,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// When the group entered its stored state, or -1.
    pub state_since_ms: i64,
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        value: CommittedOffset,
    },
    OffsetTombstone {
        group: String,
        topic: String,
        partition: i32,
    },
    GroupTombstone {
        group: String,
    },
    /// Latest wins per group; a later `GroupTombstone` drops it.
    GroupMetadata(StoredGroup),
    /// A KIP-848 group (`consumer::persist`); latest wins per group, and whichever of this and
    /// `GroupMetadata` came last says which kind of group it is.
    ConsumerGroup {
        group: String,
        snapshot: Bytes,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GroupError + '_ {
    move |source| GroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn put_str16(buf: &mut Vec<u8>, s: &str) -> bool {
    let Ok(len) = u16::try_from(s.len()) else {
        return false;
    };
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
    true
}

fn put_opt16(buf: &mut Vec<u8>, s: Option<&str>) -> bool {
    match s {
        None => {
            buf.push(0);
            true
        }
        Some(s) => {
            buf.push(1);
            put_str16(buf, s)
        }
    }
}

fn put_bytes32(buf: &mut Vec<u8>, b: &[u8]) -> bool {
    let Ok(len) = u32::try_from(b.len()) else {
        return false;
    };
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(b);
    true
}

fn put_count(buf: &mut Vec<u8>, n: usize) -> bool {
    let Ok(n) = u32::try_from(n) else {
        return false;
    };
    buf.extend_from_slice(&n.to_be_bytes());
    true
}

fn put_group(p: &mut Vec<u8>, g: &StoredGroup) -> bool {
    // `&=` (not `&&`) so that every field is written; the result only says whether all fit.
    p.push(KIND_GROUP_METADATA);
    let mut fits = put_str16(p, &g.group);
    fits &= put_opt16(p, g.protocol_type.as_deref());
    p.extend_from_slice(&g.generation_id.to_be_bytes());
    fits &= put_opt16(p, g.protocol_name.as_deref());
    fits &= put_opt16(p, g.leader_id.as_deref());
    p.extend_from_slice(&g.state_since_ms.to_be_bytes());
    fits &= put_count(p, g.members.len());
    for m in &g.members {
        fits &= put_str16(p, &m.member_id);
        fits &= put_opt16(p, m.group_instance_id.as_deref());
        fits &= put_str16(p, &m.client_id);
        fits &= put_str16(p, &m.client_host);
        p.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
        p.extend_from_slice(&m.session_timeout_ms.to_be_bytes());
        fits &= put_count(p, m.protocols.len());
        for (name, metadata) in &m.protocols {
            fits &= put_str16(p, name);
            fits &= put_bytes32(p, metadata);
        }
        fits &= put_bytes32(p, &m.assignment);
        if !fits || p.len() > RECORD_PAYLOAD_BYTES_MAX {
            // Stop early: a huge group must not build a huge buffer only to refuse it.
            return false;
        }
    }
    fits
}

fn put_str32(buf: &mut Vec<u8>, s: &str) -> bool {
    let Ok(len) = u32::try_from(s.len()) else {
        return false;
    };
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
    true
}

impl Record {
    /// Appends `len | crc | payload` to `out`. Returns false (and leaves `out` unchanged) if a
    /// field does not fit the format.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> bool {
        let mut p = Vec::with_capacity(64);
        let fits = match self {
            Record::Commit {
                group,
                topic,
                partition,
                value,
            } => {
                p.push(KIND_COMMIT);
                let names = put_str16(&mut p, group) && put_str16(&mut p, topic);
                p.extend_from_slice(&partition.to_be_bytes());
                p.extend_from_slice(&value.offset.to_be_bytes());
                p.extend_from_slice(&value.leader_epoch.to_be_bytes());
                p.extend_from_slice(&value.commit_ms.to_be_bytes());
                p.extend_from_slice(&value.expire_ms.to_be_bytes());
                names && put_str32(&mut p, &value.metadata)
            }
            Record::OffsetTombstone {
                group,
                topic,
                partition,
            } => {
                p.push(KIND_OFFSET_TOMBSTONE);
                let names = put_str16(&mut p, group) && put_str16(&mut p, topic);
                p.extend_from_slice(&partition.to_be_bytes());
                names
            }
            Record::GroupTombstone { group } => {
                p.push(KIND_GROUP_TOMBSTONE);
                put_str16(&mut p, group)
            }
            Record::GroupMetadata(g) => put_group(&mut p, g),
            Record::ConsumerGroup { group, snapshot } => {
                p.push(KIND_CONSUMER_GROUP);
                put_str16(&mut p, group) && put_bytes32(&mut p, snapshot)
            }
        };
        if !fits || p.len() > RECORD_PAYLOAD_BYTES_MAX {
            return false;
        }
        // The pair of this check is in `decode_payload`: what we write must read back equal.
        debug_assert_eq!(decode_payload(&p).as_ref(), Some(self));
        let len = u32::try_from(p.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&p).to_be_bytes());
        out.extend_from_slice(&p);
        true
    }
}

/// A bounds-checked big-endian reader over one payload.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes)
    }
    fn str16(&mut self) -> Option<String> {
        let len = self
            .take(2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_be_bytes)?;
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec()).ok()
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    }
    fn opt16(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.str16().map(Some),
            _ => None,
        }
    }
    fn bytes32(&mut self) -> Option<Bytes> {
        let len = self.u32()?;
        let bytes = self.take(usize::try_from(len).ok()?)?;
        Some(Bytes::copy_from_slice(bytes))
    }
    fn str32(&mut self) -> Option<String> {
        let len = self
            .take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)?;
        let bytes = self.take(usize::try_from(len).ok()?)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

pub(crate) fn decode_payload(payload: &[u8]) -> Option<Record> {
    let mut r = Reader { buf: payload };
    let record = match r.u8()? {
        KIND_COMMIT => {
            let group = r.str16()?;
            let topic = r.str16()?;
            let partition = r.i32()?;
            let offset = r.i64()?;
            let leader_epoch = r.i32()?;
            let commit_ms = r.i64()?;
            let expire_ms = r.i64()?;
            let metadata = r.str32()?;
            Record::Commit {
                group,
                topic,
                partition,
                value: CommittedOffset {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_ms,
                    expire_ms,
                },
            }
        }
        KIND_OFFSET_TOMBSTONE => Record::OffsetTombstone {
            group: r.str16()?,
            topic: r.str16()?,
            partition: r.i32()?,
        },
        KIND_GROUP_TOMBSTONE => Record::GroupTombstone { group: r.str16()? },
        KIND_GROUP_METADATA => Record::GroupMetadata(read_group(&mut r)?),
        KIND_CONSUMER_GROUP => Record::ConsumerGroup {
            group: r.str16()?,
            snapshot: r.bytes32()?,
        },
        _ => return None,
    };
    // Trailing bytes mean the record is not what we wrote.
    if !r.buf.is_empty() {
        return None;
    }
    Some(record)
}

fn read_group(r: &mut Reader<'_>) -> Option<StoredGroup> {
    let group = r.str16()?;
    let protocol_type = r.opt16()?;
    let generation_id = r.i32()?;
    let protocol_name = r.opt16()?;
    let leader_id = r.opt16()?;
    let state_since_ms = r.i64()?;
    let member_count = r.u32()?;
    // No capacity from the count: a corrupt count can only fail on missing bytes, never
    // allocate more than the payload holds.
    let mut members = Vec::new();
    for _ in 0..member_count {
        let member_id = r.str16()?;
        let group_instance_id = r.opt16()?;
        let client_id = r.str16()?;
        let client_host = r.str16()?;
        let rebalance_timeout_ms = r.i32()?;
        let session_timeout_ms = r.i32()?;
        let protocol_count = r.u32()?;
        let mut protocols = Vec::new();
        for _ in 0..protocol_count {
            protocols.push((r.str16()?, r.bytes32()?));
        }
        let assignment = r.bytes32()?;
        members.push(StoredMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocols,
            assignment,
        });
    }
    Some(StoredGroup {
        group,
        protocol_type,
        generation_id,
        protocol_name,
        leader_id,
        state_since_ms,
        members,
    })
}

/// A whole record with a valid CRC that this build cannot decode: not a torn write (a torn
/// write cannot produce a matching CRC) but a record of a newer format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unreadable {
    pub kind: u8,
    pub position: u64,
}

/// Parses the records of a whole file image (header included). Returns the records and the
/// byte length of the valid prefix, which ends at the first torn or damaged record; a
/// CRC-valid record that does not decode is an error instead (see [`Unreadable`]).
pub(crate) fn parse_log(bytes: &[u8]) -> Result<(Vec<Record>, u64), Unreadable> {
    let mut records = Vec::new();
    let mut pos = HEADER_BYTES as usize;
    while let Some(head) = bytes.get(pos..pos + RECORD_HEADER_BYTES) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > RECORD_PAYLOAD_BYTES_MAX {
            break;
        }
        let start = pos + RECORD_HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Some(record) = decode_payload(payload) else {
            return Err(Unreadable {
                kind: payload[0],
                position: pos as u64,
            });
        };
        records.push(record);
        pos = start + len;
    }
    Ok((records, pos as u64))
}

fn header() -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h
}

/// Test failpoints for [`OffsetLog::rewrite`]: the next rewrite on this thread fails before
/// its rename (as a full disk does while the temp file is written) or right after it (as a
/// failed directory fsync does).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RewriteFault {
    BeforeRename,
    AfterRename,
}

#[cfg(test)]
thread_local! {
    static REWRITE_FAULT: std::cell::Cell<Option<RewriteFault>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
pub(crate) fn inject_rewrite_fault(fault: RewriteFault) {
    REWRITE_FAULT.with(|f| f.set(Some(fault)));
}

#[cfg(test)]
fn take_rewrite_fault() -> Option<RewriteFault> {
    REWRITE_FAULT.with(|f| f.take())
}

/// The open offsets log. Appends go to the page cache; `sync_handle` gives a handle to fsync
/// outside the lock that guards this struct.
pub(crate) struct OffsetLog {
    path: PathBuf,
    file: File,
    /// Bytes of valid data in the file (header included).
    len_bytes: u64,
    /// Records in the file, live or superseded; compaction compares it with the live count.
    records_in_file: u64,
    /// Incremented by every append; fsync progress is tracked against it.
    written_seq: u64,
    /// Set when an append failed and could not be rolled back; refuses further writes.
    poisoned: bool,
    /// Test failpoint: the next append writes half its bytes and then fails, like a disk
    /// that fills up mid-record.
    #[cfg(test)]
    fail_next_append_halfway: bool,
}

impl OffsetLog {
    /// Opens (creating if needed) `<dir>/offsets.log`, truncates a torn tail, and returns the
    /// log and the records it holds, oldest first.
    pub(crate) fn open(dir: &Path) -> Result<(OffsetLog, Vec<Record>), GroupError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOG_FILE_NAME);
        let tmp = dir.join(TMP_FILE_NAME);
        if tmp.exists() {
            tracing::warn!(path = %tmp.display(), "removing leftover of an interrupted compaction");
            fs::remove_file(&tmp).map_err(io_err(&tmp))?;
        }

        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err(&path))?;
        }
        if (bytes.len() as u64) < HEADER_BYTES {
            // New file, or one torn before its header was complete: nothing was committed.
            if !bytes.is_empty() && !MAGIC.starts_with(&bytes[..bytes.len().min(8)]) {
                return Err(GroupError::BadFormat { path, version: 0 });
            }
            strom_log::atomic_file::write_atomically(&path, &header()).map_err(io_err(&path))?;
            bytes = header().to_vec();
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if &bytes[..8] != MAGIC || version != FORMAT_VERSION {
            return Err(GroupError::BadFormat { path, version });
        }

        let (records, valid_len) = parse_log(&bytes).map_err(|u| GroupError::UnknownRecord {
            path: path.clone(),
            kind: u.kind,
            position: u.position,
        })?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if valid_len < bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = valid_len,
                file_bytes = bytes.len(),
                "truncating torn or corrupt tail of the offsets log"
            );
            file.set_len(valid_len)
                .and_then(|_| file.sync_all())
                .map_err(io_err(&path))?;
        }
        let log = OffsetLog {
            path,
            file,
            len_bytes: valid_len,
            records_in_file: records.len() as u64,
            written_seq: 0,
            poisoned: false,
            #[cfg(test)]
            fail_next_append_halfway: false,
        };
        Ok((log, records))
    }

    /// Appends records as one write. Returns the sequence number to pass to a later fsync.
    pub(crate) fn append(&mut self, records: &[Record]) -> Result<u64, GroupError> {
        if self.poisoned {
            return Err(GroupError::Poisoned);
        }
        let mut buf = Vec::with_capacity(records.len() * 64);
        for r in records {
            if !r.encode(&mut buf) {
                return Err(GroupError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "record field too large for the offsets log format",
                    ),
                });
            }
        }
        if let Err(source) = self.write_bytes(&buf) {
            // Roll back a partial write so that later appends are not hidden behind it.
            if self.file.set_len(self.len_bytes).is_err() {
                self.poisoned = true;
            }
            return Err(GroupError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.len_bytes += buf.len() as u64;
        self.records_in_file += records.len() as u64;
        self.written_seq += 1;
        Ok(self.written_seq)
    }

    #[cfg(not(test))]
    fn write_bytes(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_all(buf)
    }

    #[cfg(test)]
    fn write_bytes(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if std::mem::take(&mut self.fail_next_append_halfway) {
            self.file.write_all(&buf[..buf.len() / 2])?;
            return Err(std::io::Error::other(
                "injected failure halfway through an append",
            ));
        }
        self.file.write_all(buf)
    }

    /// Refuses every later write (see `LogHandle::sync_to`).
    pub(crate) fn poison(&mut self) {
        tracing::error!(path = %self.path.display(), "offsets log refuses writes until restart");
        self.poisoned = true;
    }

    pub(crate) fn written_seq(&self) -> u64 {
        self.written_seq
    }

    pub(crate) fn records_in_file(&self) -> u64 {
        self.records_in_file
    }

    /// A second handle on the same file, to fsync without holding the log's lock.
    pub(crate) fn sync_handle(&self) -> Result<File, GroupError> {
        self.file.try_clone().map_err(io_err(&self.path))
    }

    /// Replaces the file with exactly `live` records (`strom_log::atomic_file`: temp file,
    /// fsync, rename, directory fsync). Everything written before is durable afterwards.
    ///
    /// On failure the store never goes on appending to a file that is no longer
    /// `offsets.log`: before the rename (a full disk while writing the temp file) the old file
    /// is untouched and stays in use; after it (a failed directory fsync, or no descriptor
    /// left to reopen) the handle moves to the new file and the log is poisoned, because a
    /// power loss could still bring the old file back without anything appended since.
    pub(crate) fn rewrite(&mut self, live: &[Record]) -> Result<(), GroupError> {
        if self.poisoned {
            return Err(GroupError::Poisoned);
        }
        let mut buf = Vec::with_capacity(live.len() * 64 + HEADER_BYTES as usize);
        buf.extend_from_slice(&header());
        for r in live {
            if !r.encode(&mut buf) {
                tracing::error!(?r, "dropping unencodable record during compaction");
            }
        }
        let replaced = self.replace_file(&buf).and_then(|()| self.reopen());
        if let Err(source) = replaced {
            if !self.handle_is_current() {
                if let Err(e) = self.reopen() {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot reopen the compacted offsets log");
                }
                self.len_bytes = buf.len() as u64;
                self.records_in_file = live.len() as u64;
                self.poison();
            }
            return Err(io_err(&self.path)(source));
        }
        self.len_bytes = buf.len() as u64;
        self.records_in_file = live.len() as u64;
        Ok(())
    }

    fn replace_file(&self, bytes: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        match take_rewrite_fault() {
            Some(RewriteFault::BeforeRename) => return Err(std::io::Error::from_raw_os_error(28)),
            Some(RewriteFault::AfterRename) => {
                strom_log::atomic_file::write_atomically(&self.path, bytes)?;
                return Err(std::io::Error::other("injected directory fsync failure"));
            }
            None => {}
        }
        strom_log::atomic_file::write_atomically(&self.path, bytes)
    }

    /// Points the append handle at whatever file is `offsets.log` now.
    fn reopen(&mut self) -> std::io::Result<()> {
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }

    /// Whether the append handle is the file that `offsets.log` names (same device and inode).
    fn handle_is_current(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), fs::metadata(&self.path)) {
            (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
            _ => false,
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Fsyncs the file in place (used by `flush`); a failure poisons the log.
    pub(crate) fn sync(&mut self) -> Result<(), GroupError> {
        if self.poisoned {
            // A second fsync after a failed one can report success for pages the kernel
            // already dropped; nothing is made "durable" after a failure.
            return Err(GroupError::Poisoned);
        }
        if let Err(e) = self.file.sync_data() {
            self.poison();
            return Err(io_err(&self.path)(e));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn commit(g: &str, t: &str, p: i32, o: i64) -> Record {
        Record::Commit {
            group: g.into(),
            topic: t.into(),
            partition: p,
            value: CommittedOffset {
                offset: o,
                leader_epoch: 3,
                metadata: "m".into(),
                commit_ms: 77,
                expire_ms: -1,
            },
        }
    }

    pub(crate) fn stored_group(g: &str, members: usize) -> StoredGroup {
        StoredGroup {
            group: g.into(),
            protocol_type: Some("consumer".into()),
            generation_id: 7,
            protocol_name: (members > 0).then(|| "range".into()),
            leader_id: (members > 0).then(|| "m0".into()),
            state_since_ms: if members > 0 { 1234 } else { -1 },
            members: (0..members)
                .map(|i| StoredMember {
                    member_id: format!("m{i}"),
                    group_instance_id: (i % 2 == 1).then(|| format!("i{i}")),
                    client_id: "c".into(),
                    client_host: "/h".into(),
                    rebalance_timeout_ms: 30_000,
                    session_timeout_ms: 10_000,
                    protocols: vec![
                        ("range".into(), Bytes::from_static(b"\x00\x01sub")),
                        ("rr".into(), Bytes::new()),
                    ],
                    assignment: Bytes::from(format!("a{i}")),
                })
                .collect(),
        }
    }

    #[test]
    fn records_round_trip() {
        let recs = vec![
            commit("g", "t", 0, 5),
            Record::OffsetTombstone {
                group: "g".into(),
                topic: "t".into(),
                partition: 1,
            },
            Record::GroupTombstone { group: "h".into() },
            Record::GroupMetadata(stored_group("g", 2)),
            Record::GroupMetadata(stored_group("e", 0)),
        ];
        let mut buf = header().to_vec();
        for r in &recs {
            assert!(r.encode(&mut buf));
        }
        let (back, len) = parse_log(&buf).unwrap();
        assert_eq!(back, recs);
        assert_eq!(len, buf.len() as u64);
        // Every strict prefix parses to a prefix of the records and never panics.
        for cut in HEADER_BYTES as usize..buf.len() {
            let (some, valid) = parse_log(&buf[..cut]).unwrap();
            assert!(some.len() < recs.len());
            assert!(valid <= cut as u64);
        }
        // A flipped byte anywhere in the records ends the log at or before that record.
        for i in HEADER_BYTES as usize..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x5a;
            let (some, _) = parse_log(&bad).unwrap_or_default();
            assert!(some.len() < recs.len());
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "strom-group-store-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A write that fails halfway must not leave half a record in the file: the next
    /// successful append would sit behind it and be cut off at the next open.
    #[test]
    fn failed_append_is_rolled_back() {
        let dir = temp_dir("rollback");
        let (mut log, recs) = OffsetLog::open(&dir).unwrap();
        assert!(recs.is_empty());
        log.append(&[commit("g", "t", 0, 1)]).unwrap();
        log.fail_next_append_halfway = true;
        assert!(log
            .append(&[commit("g", "t", 1, 2), commit("g", "t", 2, 3)])
            .is_err());
        log.append(&[commit("g", "t", 0, 4)]).unwrap();
        drop(log);
        let (_, recs) = OffsetLog::open(&dir).unwrap();
        assert_eq!(recs, vec![commit("g", "t", 0, 1), commit("g", "t", 0, 4)]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leftover_compaction_file_is_ignored_and_removed() {
        let dir = temp_dir("tmp");
        let (mut log, _) = OffsetLog::open(&dir).unwrap();
        log.append(&[commit("g", "t", 0, 1)]).unwrap();
        drop(log);
        fs::write(dir.join(TMP_FILE_NAME), b"half a compaction").unwrap();
        let (mut log, recs) = OffsetLog::open(&dir).unwrap();
        assert_eq!(recs, vec![commit("g", "t", 0, 1)]);
        assert!(!dir.join(TMP_FILE_NAME).exists());
        // Rewrite keeps exactly what it is given.
        log.rewrite(&[commit("g", "t", 0, 9)]).unwrap();
        drop(log);
        let (_, recs) = OffsetLog::open(&dir).unwrap();
        assert_eq!(recs, vec![commit("g", "t", 0, 9)]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Random records (any field values, multi-byte UTF-8 names) survive encode + parse.
    #[test]
    fn random_records_round_trip() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let name = |next: &mut dyn FnMut() -> u64| -> String {
            let len = next() % 12;
            (0..len)
                .map(|_| ['a', 'z', '-', '.', 'é', '字', '🦀'][(next() % 7) as usize])
                .collect()
        };
        let mut recs = Vec::new();
        for _ in 0..500 {
            let r = match next() % 4 {
                3 => Record::GroupMetadata(StoredGroup {
                    group: name(&mut next),
                    protocol_type: (next() % 2 == 0).then(|| name(&mut next)),
                    generation_id: next() as i32,
                    protocol_name: (next() % 2 == 0).then(|| name(&mut next)),
                    leader_id: (next() % 2 == 0).then(|| name(&mut next)),
                    state_since_ms: next() as i64,
                    members: (0..next() % 4)
                        .map(|_| StoredMember {
                            member_id: name(&mut next),
                            group_instance_id: (next() % 2 == 0).then(|| name(&mut next)),
                            client_id: name(&mut next),
                            client_host: name(&mut next),
                            rebalance_timeout_ms: next() as i32,
                            session_timeout_ms: next() as i32,
                            protocols: (0..next() % 3)
                                .map(|_| (name(&mut next), Bytes::from(name(&mut next))))
                                .collect(),
                            assignment: Bytes::from(name(&mut next)),
                        })
                        .collect(),
                }),
                0 => Record::Commit {
                    group: name(&mut next),
                    topic: name(&mut next),
                    partition: next() as i32,
                    value: CommittedOffset {
                        offset: next() as i64,
                        leader_epoch: next() as i32,
                        metadata: name(&mut next),
                        commit_ms: next() as i64,
                        expire_ms: next() as i64,
                    },
                },
                1 => Record::OffsetTombstone {
                    group: name(&mut next),
                    topic: name(&mut next),
                    partition: next() as i32,
                },
                _ => Record::GroupTombstone {
                    group: name(&mut next),
                },
            };
            recs.push(r);
        }
        let mut buf = header().to_vec();
        for r in &recs {
            assert!(r.encode(&mut buf));
        }
        let (back, len) = parse_log(&buf).unwrap();
        assert_eq!(back, recs);
        assert_eq!(len, buf.len() as u64);
    }

    #[test]
    fn oversized_names_are_refused() {
        let long = "x".repeat(70_000);
        let mut buf = Vec::new();
        assert!(!commit(&long, "t", 0, 1).encode(&mut buf));
        assert!(buf.is_empty());
    }
}
