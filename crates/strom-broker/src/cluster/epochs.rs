//! Where leader epochs end in a log, from the batch headers (each batch carries the epoch of
//! the leader that appended it). Kafka keeps a leader-epoch checkpoint file for this; we walk
//! the headers, which costs a scan of the log's headers and is only done at a leader change
//! (see "Known limits" in docs/cluster.md).

use strom_log::{LogError, PartitionLog};

/// The largest epoch at or below `epoch` in the log and where it ends: the base offset of the
/// first batch of a later epoch, or the log end. `(-1, first batch offset)` when every batch
/// is of a later epoch; `(-1, log end)` for an empty log.
pub fn end_of_epoch(log: &PartitionLog, epoch: i32) -> Result<(i32, i64), LogError> {
    let mut found = -1;
    let mut end: Option<i64> = None;
    log.scan_headers(log.log_start_offset(), &mut |h| {
        if end.is_some() {
            return;
        }
        if h.partition_leader_epoch <= epoch {
            found = found.max(h.partition_leader_epoch);
        } else {
            end = Some(h.base_offset);
        }
    })?;
    Ok((found, end.unwrap_or_else(|| log.log_end_offset())))
}

/// The epoch of the last batch in the log, `None` when it is empty.
pub fn last_epoch(log: &PartitionLog) -> Result<Option<i32>, LogError> {
    let bases = log.segment_base_offsets();
    let from = bases
        .len()
        .checked_sub(2)
        .map_or(log.log_start_offset(), |i| bases[i]);
    let mut last = None;
    log.scan_headers(from, &mut |h| last = Some(h.partition_leader_epoch))?;
    Ok(last)
}
