//! Reads a topic as a member of a consumer group, printing and committing what it read.
//! Start it twice to see the group split the partitions.
//!
//! ```text
//! cargo run -p strom-client --example consumer_group -- 127.0.0.1:9092 demo-topic demo-group
//! ```
//!
//! Delivery is at least once: offsets are committed after the messages were handled, so a
//! member that dies before its commit leaves those messages to the next owner.

use std::time::Duration;

use strom_client::{ClientError, Consumer, ConsumerConfig, OffsetReset};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "demo-topic".into());
    let group = args.next().unwrap_or_else(|| "demo-group".into());

    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::with_group(group)
    };
    let mut consumer = Consumer::connect_with(&bootstrap, config).await?;
    consumer.subscribe(&[topic.as_str()]).await?;
    let mut idle_polls = 0;
    while idle_polls < 5 {
        let messages = consumer.poll(Duration::from_secs(1)).await?;
        if messages.is_empty() {
            idle_polls += 1;
            continue;
        }
        idle_polls = 0;
        for m in &messages {
            let key = m.key_str().unwrap_or_default();
            println!(
                "{}/{} @{} {key}: {}",
                m.topic,
                m.partition,
                m.offset,
                m.value_str()
            );
        }
        consumer.commit().await?;
    }
    println!("assignment at the end: {:?}", consumer.assignment());
    consumer.close().await
}
