//! Test helpers: build valid RecordBatch v2 bytes (correct CRC-32C) without a Kafka client.
//! Compiled always but hidden from docs; the broker's tests use it too.
//!
//! Records are written uncompressed even when the compression attribute bits are set: the log
//! never decompresses, so tests can model compressed batches with these bytes.
//!
//! Record encoding (uncompressed, Kafka v2): length varint, attributes i8, timestampDelta
//! varlong, offsetDelta varint, key length varint (-1 = null) + bytes, value length varint +
//! bytes, header count varint (always 0 here). All varints are zigzag.

use crate::batch::compute_crc;

pub use strom_protocol::record_batch::write_varlong;

/// One record for [`BatchBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl TestRecord {
    pub fn new(timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> TestRecord {
        TestRecord {
            timestamp,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
        }
    }
}

/// Builder for one valid v2 batch.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    attributes: i16,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: Vec<TestRecord>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    /// A non-idempotent producer's batch (producer id -1) at base offset 0.
    pub fn new() -> BatchBuilder {
        BatchBuilder {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
        }
    }
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }
    pub fn attributes(mut self, attributes: i16) -> Self {
        self.attributes = attributes;
        self
    }
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }
    pub fn record(mut self, record: TestRecord) -> Self {
        self.records.push(record);
        self
    }

    /// Encode the batch. With no records it still produces a header-only batch (which
    /// `validate_batches` rejects, as Kafka does).
    pub fn build(&self) -> Vec<u8> {
        let base_timestamp = self.records.first().map_or(-1, |r| r.timestamp);
        let max_timestamp = self.records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
        let mut records = Vec::new();
        for (i, r) in self.records.iter().enumerate() {
            let mut body = Vec::new();
            body.push(0u8); // record attributes, unused in v2
            write_varlong(&mut body, r.timestamp - base_timestamp);
            write_varlong(&mut body, i as i64);
            for field in [&r.key, &r.value] {
                match field {
                    Some(bytes) => {
                        write_varlong(&mut body, bytes.len() as i64);
                        body.extend_from_slice(bytes);
                    }
                    None => write_varlong(&mut body, -1),
                }
            }
            write_varlong(&mut body, 0); // header count
            write_varlong(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let count = self.records.len() as i32;
        let mut out = Vec::with_capacity(61 + records.len());
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(2); // magic
        out.extend_from_slice(&0u32.to_be_bytes()); // crc, patched below
        out.extend_from_slice(&self.attributes.to_be_bytes());
        out.extend_from_slice(&(count - 1).to_be_bytes());
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&records);
        let crc = compute_crc(&out);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

/// A batch of `n` records with values `v0..v{n-1}` and timestamps `first_ts, first_ts + 1, ...`.
pub fn simple_batch(n: usize, first_ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        let value = format!("v{i}");
        b = b.record(TestRecord::new(
            first_ts + i as i64,
            None,
            Some(value.as_bytes()),
        ));
    }
    b.build()
}

/// A batch with explicit record timestamps (one record per timestamp) and `value_len`-byte values.
pub fn batch_with_timestamps(timestamps: &[i64], value_len: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    let value = vec![b'x'; value_len];
    for &ts in timestamps {
        b = b.record(TestRecord::new(ts, None, Some(&value)));
    }
    b.build()
}
