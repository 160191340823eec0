//! The recovery-point checkpoint (Kafka's `recovery-point-offset-checkpoint`): for every
//! partition, an offset below which everything was fsynced. Recovery trusts the segments
//! below it (they are not fsynced again) and refuses to "repair" damage below it by deleting
//! acknowledged data: such a partition goes offline instead (see `strom_log`'s recovery).
//!
//! ```text
//! <data-dir>/recovery-point-offset-checkpoint     (text, one entry per line)
//!   strom-recovery-point 1                         format name and version
//!   <count>
//!   <topic> <topic id> <partition> <offset>        count lines; the topic id keeps a
//!   ...                                            re-created topic from inheriting a point
//!   crc32c <8 hex digits>                          CRC-32C of every byte before this line
//! ```
//! Written every `log.flush.offset.checkpoint.interval.ms` and at a clean shutdown, through a
//! temp file, fsync, rename and directory fsync (`strom_log::atomic_file`), so a crash leaves the old or the new file. A
//! point may lag the flushed offset (it is only ever a lower bound), never lead it. A missing
//! or damaged file means "no recovery points": recovery is then as strict as a durable log
//! allows without them (logged, never a reason to refuse to start).

use std::collections::HashMap;
use std::io;
use std::path::Path;

use uuid::Uuid;

pub const FILE_NAME: &str = "recovery-point-offset-checkpoint";
const HEADER: &str = "strom-recovery-point 1";

/// One partition's recovery point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub offset: i64,
}

/// The recovery points read at startup.
#[derive(Debug, Default)]
pub struct RecoveryPoints(HashMap<(String, i32), (Uuid, i64)>);

impl RecoveryPoints {
    /// The point of `topic`/`partition`, if it was written for this topic id.
    pub fn get(&self, topic: &str, topic_id: Uuid, partition: i32) -> Option<i64> {
        match self.0.get(&(topic.to_string(), partition)) {
            Some(&(id, offset)) if id == topic_id => Some(offset),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub fn encode(entries: &[Entry]) -> String {
    let mut text = format!("{HEADER}\n{}\n", entries.len());
    for e in entries {
        text.push_str(&format!(
            "{} {} {} {}\n",
            e.topic, e.topic_id, e.partition, e.offset
        ));
    }
    let crc = crc32c::crc32c(text.as_bytes());
    text.push_str(&format!("crc32c {crc:08x}\n"));
    text
}

pub fn decode(text: &str) -> Result<Vec<Entry>, String> {
    let text = text.strip_suffix('\n').ok_or("no final newline")?;
    let body_end = text.rfind('\n').map(|i| i + 1).ok_or("no CRC line")?;
    let (body, crc_line) = text.split_at(body_end);
    let stored = crc_line
        .strip_prefix("crc32c ")
        .filter(|h| h.len() == 8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("bad CRC line")?;
    if stored != crc32c::crc32c(body.as_bytes()) {
        return Err("CRC mismatch".into());
    }
    let mut lines = body.lines();
    if lines.next() != Some(HEADER) {
        return Err("unknown format".into());
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("bad count")?;
    let entries = lines
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let [topic, id, partition, offset] = f[..] else {
                return Err(format!("malformed line {line:?}"));
            };
            Ok(Entry {
                topic: topic.to_string(),
                topic_id: id
                    .parse()
                    .map_err(|_| format!("bad topic id in {line:?}"))?,
                partition: partition
                    .parse()
                    .map_err(|_| format!("bad partition in {line:?}"))?,
                offset: offset
                    .parse()
                    .map_err(|_| format!("bad offset in {line:?}"))?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if entries.len() != count {
        return Err(format!("{} entries, header says {count}", entries.len()));
    }
    Ok(entries)
}

/// Reads the checkpoint of `data_dir`; a missing or damaged one gives no points.
pub fn read(data_dir: &Path) -> RecoveryPoints {
    let path = data_dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return RecoveryPoints::default(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the recovery-point checkpoint; recovering without it");
            return RecoveryPoints::default();
        }
    };
    match decode(&text) {
        Ok(entries) => RecoveryPoints(
            entries
                .into_iter()
                .map(|e| ((e.topic, e.partition), (e.topic_id, e.offset)))
                .collect(),
        ),
        Err(why) => {
            tracing::warn!(path = %path.display(), %why, "ignoring a damaged recovery-point checkpoint; recovering without it");
            RecoveryPoints::default()
        }
    }
}

/// Writes the checkpoint of `data_dir` atomically (see the module docs).
pub fn write(data_dir: &Path, entries: &[Entry]) -> io::Result<()> {
    strom_log::atomic_file::write_atomically(&data_dir.join(FILE_NAME), encode(entries).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                topic: "orders".into(),
                topic_id: Uuid::from_u128(7),
                partition: 0,
                offset: 1234,
            },
            Entry {
                topic: "orders".into(),
                topic_id: Uuid::from_u128(7),
                partition: 1,
                offset: 0,
            },
        ]
    }

    #[test]
    fn roundtrip() {
        assert_eq!(decode(&encode(&entries())).unwrap(), entries());
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let text = encode(&entries());
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] ^= 0x01;
            let Ok(flipped) = String::from_utf8(bytes) else {
                continue;
            };
            assert!(decode(&flipped).is_err(), "flip at byte {i} accepted");
        }
        assert!(decode(&text[..text.len() / 2]).is_err());
    }

    #[test]
    fn a_point_belongs_to_one_topic_id() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &entries()).unwrap();
        let points = read(dir.path());
        assert_eq!(points.get("orders", Uuid::from_u128(7), 0), Some(1234));
        assert_eq!(points.get("orders", Uuid::from_u128(8), 0), None);
        assert_eq!(points.get("orders", Uuid::from_u128(7), 2), None);
        std::fs::write(dir.path().join(FILE_NAME), "garbage").unwrap();
        assert!(read(dir.path()).is_empty());
    }
}
