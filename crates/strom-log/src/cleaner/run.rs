//! Phase 2 of a pass (see the module docs): build the key map over the dirty section, then
//! rewrite the segments below its end, group by group, into `.cleaned` files. Runs without
//! the partition lock: it reads only closed segments, through files the plan holds open.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use strom_protocol::record_batch::BatchHeader;

use super::filter::{parse_records, rebuild, records_section, RawRecord};
use super::offset_map::OffsetMap;
use super::swap::{temp_path, CLEANED};
use super::{CleanPlan, CleanStats, Cleaned, CleanedGroup, Planned};
use crate::error::LogError;
use crate::index::SegmentIndex;
use crate::segment::{log_path, Segment};
use crate::txn_index::AbortedTxn;

/// A visitor of whole batches: false stops the walk.
type BatchVisitor<'a> = dyn FnMut(&BatchHeader, &[u8]) -> Result<bool, LogError> + 'a;

/// Call `f(header, bytes)` for every whole batch of a closed segment, in order.
fn for_each_batch(segment: &Planned, f: &mut BatchVisitor<'_>) -> Result<(), LogError> {
    let mut position = 0u64;
    let mut buf = Vec::new();
    let mut head = [0u8; BatchHeader::SIZE];
    while position < segment.size {
        let corrupt = |what: &str| {
            LogError::Corrupt(format!(
                "segment {} at byte {position}: {what}",
                segment.base
            ))
        };
        if segment.size - position < BatchHeader::SIZE as u64 {
            return Err(corrupt("torn header"));
        }
        segment.file.read_exact_at(&mut head, position)?;
        let header = BatchHeader::parse(&head).map_err(|e| corrupt(&e.to_string()))?;
        header
            .check_stored(0, (segment.size - position) as usize)
            .map_err(|e| corrupt(&e.to_string()))?;
        buf.resize(header.total_size(), 0);
        segment.file.read_exact_at(&mut buf, position)?;
        if !f(&header, &buf)? {
            return Ok(());
        }
        position += header.total_size() as u64;
    }
    Ok(())
}

impl CleanPlan {
    fn is_aborted(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && self.aborted.iter().any(|t| {
                t.producer_id == header.producer_id
                    && t.first_offset <= header.base_offset
                    && header.base_offset <= t.last_offset
            })
    }

    /// Phase 2. Returns the cleaned groups, still under their `.cleaned` names.
    pub fn run(self) -> Result<Cleaned, LogError> {
        let (map, map_end) = self.build_map()?;
        if map_end <= self.first_dirty {
            return Err(LogError::Corrupt(format!(
                "the dedupe buffer ({} bytes) cannot hold the keys of one batch at offset {}",
                self.config.dedupe_buffer_bytes, self.first_dirty
            )));
        }
        let mut stats = CleanStats {
            segments_before: self.segments.len(),
            ..CleanStats::default()
        };
        let mut groups = Vec::new();
        let mut txn_retained: HashMap<i64, bool> = HashMap::new();
        let to_clean: Vec<&Planned> = self.segments.iter().filter(|s| s.base < map_end).collect();
        let mut rest = &to_clean[..];
        while !rest.is_empty() {
            let mut n = 1;
            let mut bytes = rest[0].size;
            while n < rest.len()
                && bytes + rest[n].size <= self.group_bytes_max
                && rest[n].next_offset - rest[0].base <= i64::from(u32::MAX)
            {
                bytes += rest[n].size;
                n += 1;
            }
            let (group, tail) = rest.split_at(n);
            rest = tail;
            match self.clean_group(group, &map, map_end, &mut txn_retained, &mut stats) {
                Ok(g) => groups.push(g),
                Err(e) => {
                    for g in &groups {
                        super::swap::discard(&self.dir, g.segment.base_offset);
                    }
                    super::swap::discard(&self.dir, group[0].base);
                    return Err(e);
                }
            }
        }
        Ok(Cleaned {
            dir: self.dir.clone(),
            groups,
            first_dirty_after: map_end,
            stats,
        })
    }

    /// The newest offset of every key in the dirty section, and where the map stopped.
    fn build_map(&self) -> Result<(OffsetMap, i64), LogError> {
        let mut map = OffsetMap::with_budget(self.config.dedupe_buffer_bytes);
        let mut map_end = self.first_dirty;
        let mut full = false;
        for segment in self
            .segments
            .iter()
            .filter(|s| s.next_offset > self.first_dirty)
        {
            for_each_batch(segment, &mut |header, bytes| {
                if header.last_offset() < self.first_dirty {
                    return Ok(true);
                }
                if !header.is_control() && !self.is_aborted(header) {
                    if !map.has_room_for(header.records_count.max(0) as usize) {
                        full = true;
                        return Ok(false);
                    }
                    let raw =
                        records_section(bytes, header, self.config.max_decompressed_batch_bytes)?;
                    for record in parse_records(&raw, header.records_count)? {
                        let offset = header.base_offset + i64::from(record.offset_delta);
                        if let (Some(key), true) = (record.key, offset >= self.first_dirty) {
                            map.put(key, offset);
                        }
                    }
                }
                map_end = header.last_offset() + 1;
                Ok(true)
            })?;
            if full {
                break;
            }
        }
        tracing::debug!(dir = %self.dir.display(), keys = map.len(), map_end, "cleaner key map built");
        Ok((map, map_end))
    }

    /// Rewrite one group of consecutive segments into `<first base>.log.cleaned`.
    fn clean_group(
        &self,
        group: &[&Planned],
        map: &OffsetMap,
        map_end: i64,
        txn_retained: &mut HashMap<i64, bool>,
        stats: &mut CleanStats,
    ) -> Result<CleanedGroup, LogError> {
        let base = group[0].base;
        let end = group[group.len() - 1].next_offset;
        let path = temp_path(&self.dir, base, "log", CLEANED);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let mut segment = Segment::with_files(
            log_path(&self.dir, base),
            base,
            file.try_clone()?,
            SegmentIndex::detached(),
            self.now_ms,
        );
        let mut out = BufWriter::new(&file);
        for planned in group {
            stats.bytes_read += planned.size;
            for_each_batch(planned, &mut |header, bytes| {
                let last_of_group = header.last_offset() + 1 == end;
                let kept = self.filter_batch(header, bytes, map, map_end, txn_retained, stats)?;
                let written = match kept {
                    Some(b) => b,
                    None if last_of_group => {
                        // Keep the group's offset range: its last batch stays, empty.
                        stats.batches_rewritten += 1;
                        std::borrow::Cow::Owned(rebuild(bytes, header, &[], None)?)
                    }
                    None => return Ok(true),
                };
                let written_header = BatchHeader::parse(&written).expect("a whole batch");
                out.write_all(&written)?;
                segment.track_batch(segment.size, &written_header, self.index_interval_bytes);
                Ok(true)
            })?;
        }
        out.flush()?;
        drop(out);
        file.sync_all()?;
        if segment.next_offset != end {
            return Err(LogError::Corrupt(format!(
                "cleaning segments {base}..{end} ended at offset {}",
                segment.next_offset
            )));
        }
        segment.last_append_ms = group[group.len() - 1].last_append_ms;
        segment.roll_base_ms = Some(self.now_ms);
        let aborted: Vec<AbortedTxn> = group
            .iter()
            .flat_map(|p| self.txn_entries.get(&p.base).into_iter().flatten().copied())
            .collect();
        let txn_bytes: Vec<u8> = aborted.iter().flat_map(|t| t.encode()).collect();
        let txn_path = temp_path(&self.dir, base, "txnindex", CLEANED);
        let txn_file = File::create(&txn_path)?;
        txn_file.write_all_at(&txn_bytes, 0)?;
        txn_file.sync_all()?;
        stats.bytes_written += segment.size;
        Ok(CleanedGroup {
            old: group
                .iter()
                .map(|p| (p.base, p.next_offset, p.size))
                .collect(),
            segment,
            aborted,
        })
    }

    /// The batch as it should be written (unchanged, or with fewer records, or stamped with a
    /// delete horizon), or `None` to drop it (see the module docs for the rules).
    fn filter_batch<'b>(
        &self,
        header: &BatchHeader,
        bytes: &'b [u8],
        map: &OffsetMap,
        map_end: i64,
        txn_retained: &mut HashMap<i64, bool>,
        stats: &mut CleanStats,
    ) -> Result<Option<std::borrow::Cow<'b, [u8]>>, LogError> {
        use std::borrow::Cow;
        // KIP-534: the first pass that keeps a tombstone or a marker starts its clock.
        let new_horizon = self.now_ms.saturating_add(self.config.delete_retention_ms);
        let horizon = header.delete_horizon_ms();
        if header.is_control() {
            let has_data = txn_retained.remove(&header.producer_id).unwrap_or(false);
            if has_data || header.last_offset() >= map_end {
                return Ok(Some(Cow::Borrowed(bytes)));
            }
            // No record of its transaction is left: the marker goes once its horizon passed.
            return match horizon {
                Some(h) if h <= self.now_ms => Ok(None),
                Some(_) => Ok(Some(Cow::Borrowed(bytes))),
                None => {
                    let raw =
                        records_section(bytes, header, self.config.max_decompressed_batch_bytes)?;
                    let records = parse_records(&raw, header.records_count)?;
                    stats.batches_rewritten += 1;
                    Ok(Some(Cow::Owned(rebuild(
                        bytes,
                        header,
                        &records,
                        Some(new_horizon),
                    )?)))
                }
            };
        }
        if self.is_aborted(header) {
            stats.records_removed += header.records_count.max(0) as u64;
            txn_retained.entry(header.producer_id).or_insert(false);
            return Ok(None);
        }
        let raw = records_section(bytes, header, self.config.max_decompressed_batch_bytes)?;
        let records = parse_records(&raw, header.records_count)?;
        if records.is_empty() {
            // An empty batch left by an earlier pass: only a group's last batch needs it.
            return Ok(None);
        }
        let tombstones_expire = horizon.is_some_and(|h| h <= self.now_ms);
        let keep = |r: &RawRecord<'_>| {
            let offset = header.base_offset + i64::from(r.offset_delta);
            if offset >= map_end {
                return true;
            }
            let Some(key) = r.key else { return false };
            let superseded = map.get(key).is_some_and(|newest| newest > offset);
            !superseded && (r.has_value || !tombstones_expire)
        };
        let kept: Vec<RawRecord<'_>> = records.iter().copied().filter(|r| keep(r)).collect();
        if header.is_transactional() {
            *txn_retained.entry(header.producer_id).or_insert(false) |= !kept.is_empty();
        }
        stats.records_removed += (records.len() - kept.len()) as u64;
        let stamp = (horizon.is_none() && kept.iter().any(|r| !r.has_value)).then_some(new_horizon);
        if kept.len() == records.len() && stamp.is_none() {
            return Ok(Some(Cow::Borrowed(bytes)));
        }
        if kept.is_empty() {
            return Ok(None);
        }
        stats.batches_rewritten += 1;
        Ok(Some(Cow::Owned(rebuild(bytes, header, &kept, stamp)?)))
    }
}
