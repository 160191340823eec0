//! Sends keyed records with headers and prints where each landed.
//!
//! ```text
//! strom serve &
//! cargo run -p strom-client --example producer -- 127.0.0.1:9092 demo-topic
//! ```
//!
//! The producer is idempotent by default (acks=all): every record is written once and in
//! order per partition, or its delivery fails after `delivery_timeout_ms`.

use strom_client::{ClientError, Producer, ProducerConfig, ProducerRecord, ResponseError};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "demo-topic".into());

    let config = ProducerConfig {
        linger_ms: 5,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect_with(&bootstrap, config).await?;
    match producer.create_topic(&topic, 3).await {
        Err(e) if e.code() == Some(ResponseError::TopicAlreadyExists) => {}
        other => other?,
    }

    // Enqueue without waiting, so the records share batches; then wait for each answer.
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let record = ProducerRecord::new(topic.clone(), format!("event {i}"))
            .key(format!("user-{}", i % 3))
            .header("source", "example")
            .header("attempt", "1");
        deliveries.push(producer.enqueue(record).await?);
    }
    for delivery in deliveries {
        let meta = delivery.wait().await?;
        println!(
            "{} partition {} offset {}",
            meta.topic, meta.partition, meta.offset
        );
    }
    producer.close().await
}
