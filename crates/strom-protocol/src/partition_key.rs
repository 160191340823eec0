//! Kafka's default key partitioning: `to_positive(murmur2(key)) % partitions`, exactly as the
//! Java client's default partitioner computes it, so a key lands on the same partition
//! whichever client (or the broker's JSON front end) wrote it.

/// Kafka's murmur2 variant (seed `0x9747b28c`), as `org.apache.kafka.common.utils.Utils`
/// computes it: little-endian 4-byte blocks, then the 1-3 byte tail, then the final mix.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Java's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on `i32::MIN`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition the Java client's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: &[(&str, i32)] = &[
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
            // Every tail length (1, 2, 3 bytes and none), published alongside Akka's port.
            ("1", -1_993_445_489),
            ("12", 126_087_238),
            ("123", -267_702_483),
            ("1234", -1_614_185_708),
            ("12345", -1_188_365_604),
            // From librdkafka's murmur2 unit test, which checks against the Java client.
            ("", 275_646_681),
            ("kafka", -798_503_068),
            ("giberish123456789", -1_890_243_828),
            ("PreAmbleWillBeRemoved,ThePrePartThatIs", 2_017_611_548),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), *expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn key_partition_is_positive_and_stable() {
        for key in ["", "a", "hello", "21", "foobar"] {
            let p = partition_for_key(key.as_bytes(), 3);
            assert!((0..3).contains(&p));
            assert_eq!(p, partition_for_key(key.as_bytes(), 3));
        }
        // to_positive(-973932308) = 1173551340; 1173551340 % 3 = 0.
        assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
        assert_eq!(to_positive(i32::MIN), 0);
    }
}
