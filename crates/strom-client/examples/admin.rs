//! Lists the cluster's topics with their partitions, and its consumer groups with their lag.
//!
//! ```text
//! cargo run -p strom-client --example admin -- 127.0.0.1:9092
//! ```

use strom_client::{Admin, ClientError};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let admin = Admin::connect(&bootstrap).await?;
    for broker in admin.client().brokers() {
        println!("broker {} at {}", broker.id, broker.addr);
    }
    for topic in admin.list_topics().await? {
        println!(
            "topic {} ({} partitions)",
            topic.name,
            topic.partitions.len()
        );
    }
    for listing in admin.list_groups().await? {
        let group = admin.describe_group(&listing.group_id).await?;
        println!(
            "group {} state {} with {} members",
            listing.group_id,
            group.state,
            group.members.len()
        );
        for p in &group.offsets {
            let lag = p.lag.map_or("-".to_string(), |l| l.to_string());
            println!(
                "  {}/{} end {} lag {lag}",
                p.topic, p.partition, p.end_offset
            );
        }
    }
    Ok(())
}
