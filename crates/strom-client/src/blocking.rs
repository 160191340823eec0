//! Blocking wrappers for programs without an async runtime: each owns a small tokio runtime
//! and blocks on the async client.
//!
//! Called from inside an async runtime, blocking would stall (or, in tokio, panic) that
//! runtime's worker: every method then returns [`ClientError::Invalid`] saying to use the async
//! client instead, and dropping a wrapper there closes it on a thread of its own rather than
//! blocking the worker.
//!
//! ```no_run
//! # fn demo() -> Result<(), strom_client::ClientError> {
//! use std::time::Duration;
//! use strom_client::blocking::{Consumer, Producer};
//!
//! let producer = Producer::connect("127.0.0.1:9092")?;
//! let offset = producer.send("demo-topic", "Hello, Kafka!", 0)?;
//!
//! let mut consumer = Consumer::connect("127.0.0.1:9092")?;
//! consumer.assign("demo-topic", 0)?;
//! consumer.seek("demo-topic", 0, offset)?;
//! for msg in consumer.poll(Duration::from_secs(1))? {
//!     println!("{}: {}", msg.offset, msg.value_str());
//! }
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Runtime;

use crate::consumer::{self, ConsumerConfig, Message};
use crate::error::{ClientError, Result};
use crate::offsets::TopicPartition;
use crate::producer::{self, ProducerConfig, ProducerRecord, RecordMetadata};

/// Refuses to block inside an async runtime, where `block_on` would panic.
fn outside_runtime() -> Result<()> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(ClientError::Invalid(
            "strom_client::blocking cannot be used inside an async runtime; \
             use the async client (strom_client::Producer, strom_client::Consumer) there"
                .into(),
        ));
    }
    Ok(())
}

/// Closes a wrapper's client and shuts its runtime down. Inside an async runtime neither may
/// block the caller's worker (tokio panics on both), so a thread of its own does it.
fn close_on_drop<T: Send + 'static>(
    runtime: Runtime,
    inner: T,
    close: impl FnOnce(T) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>
        + Send
        + 'static,
) {
    let work = move || {
        if let Err(e) = runtime.block_on(close(inner)) {
            tracing::debug!(error = %e, "closing a blocking client on drop failed");
        }
        drop(runtime);
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        let spawned = std::thread::Builder::new()
            .name("strom-client-close".into())
            .spawn(work);
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a thread to close a blocking client");
        }
    } else {
        work();
    }
}

fn runtime() -> Result<Runtime> {
    outside_runtime()?;
    // Two worker threads: one for the producer's batching task or the consumer's heartbeat,
    // one for the caller's requests.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ClientError::Invalid(format!("cannot start a tokio runtime: {e}")))
}

/// A blocking [`producer::Producer`].
pub struct Producer {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    inner: Option<producer::Producer>,
}

impl Producer {
    /// Connects with default settings.
    pub fn connect(bootstrap: &str) -> Result<Producer> {
        Self::connect_with(bootstrap, ProducerConfig::default())
    }

    /// Connects with the given settings.
    pub fn connect_with(bootstrap: &str, config: ProducerConfig) -> Result<Producer> {
        let runtime = runtime()?;
        let inner = runtime.block_on(producer::Producer::connect_with(bootstrap, config))?;
        Ok(Producer {
            runtime: Some(runtime),
            inner: Some(inner),
        })
    }

    fn rt(&self) -> &Runtime {
        self.runtime.as_ref().expect("present until drop")
    }

    fn inner(&self) -> &producer::Producer {
        self.inner.as_ref().expect("present until close")
    }

    /// See [`producer::Producer::create_topic`].
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        outside_runtime()?;
        self.rt()
            .block_on(self.inner().create_topic(name, partitions))
    }

    /// See [`producer::Producer::send`].
    pub fn send(&self, topic: &str, value: impl Into<Bytes>, partition: i32) -> Result<i64> {
        outside_runtime()?;
        self.rt()
            .block_on(self.inner().send(topic, value, partition))
    }

    /// See [`producer::Producer::send_record`].
    pub fn send_record(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        outside_runtime()?;
        self.rt().block_on(self.inner().send_record(record))
    }

    /// See [`producer::Producer::flush`].
    pub fn flush(&self) -> Result<()> {
        outside_runtime()?;
        self.rt().block_on(self.inner().flush())
    }

    /// Flushes and stops the producer.
    pub fn close(mut self) -> Result<()> {
        outside_runtime()?;
        let inner = self.inner.take().expect("present until close");
        self.rt().block_on(inner.close())
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let (Some(inner), Some(runtime)) = (self.inner.take(), self.runtime.take()) {
            close_on_drop(runtime, inner, |p| Box::pin(p.close()));
        }
    }
}

/// A blocking [`consumer::Consumer`].
pub struct Consumer {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    inner: Option<consumer::Consumer>,
}

impl Consumer {
    /// Connects with default settings (no group).
    pub fn connect(bootstrap: &str) -> Result<Consumer> {
        Self::connect_with(bootstrap, ConsumerConfig::default())
    }

    /// Connects with the given settings.
    pub fn connect_with(bootstrap: &str, config: ConsumerConfig) -> Result<Consumer> {
        let runtime = runtime()?;
        let inner = runtime.block_on(consumer::Consumer::connect_with(bootstrap, config))?;
        Ok(Consumer {
            runtime: Some(runtime),
            inner: Some(inner),
        })
    }

    fn rt(&self) -> &Runtime {
        self.runtime.as_ref().expect("present until drop")
    }

    fn inner(&mut self) -> &mut consumer::Consumer {
        self.inner.as_mut().expect("present until close")
    }

    /// See [`consumer::Consumer::assign`].
    pub fn assign(&mut self, topic: &str, partition: i32) -> Result<()> {
        outside_runtime()?;
        let Consumer { runtime, inner } = self;
        let inner = inner.as_mut().expect("present until close");
        runtime.as_ref().expect("present until drop").block_on(inner.assign(topic, partition))
    }

    /// See [`consumer::Consumer::subscribe`].
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        outside_runtime()?;
        let Consumer { runtime, inner } = self;
        let inner = inner.as_mut().expect("present until close");
        runtime.as_ref().expect("present until drop").block_on(inner.subscribe(topics))
    }

    /// See [`consumer::Consumer::seek`].
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        self.inner().seek(topic, partition, offset)
    }

    /// See [`consumer::Consumer::position`].
    pub fn position(&mut self, topic: &str, partition: i32) -> Option<i64> {
        self.inner().position(topic, partition)
    }

    /// See [`consumer::Consumer::assignment`].
    pub fn assignment(&mut self) -> Vec<TopicPartition> {
        self.inner().assignment()
    }

    /// See [`consumer::Consumer::poll`].
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>> {
        outside_runtime()?;
        let Consumer { runtime, inner } = self;
        let inner = inner.as_mut().expect("present until close");
        runtime.as_ref().expect("present until drop").block_on(inner.poll(timeout))
    }

    /// See [`consumer::Consumer::commit`].
    pub fn commit(&mut self) -> Result<()> {
        outside_runtime()?;
        let Consumer { runtime, inner } = self;
        let inner = inner.as_mut().expect("present until close");
        runtime.as_ref().expect("present until drop").block_on(inner.commit())
    }

    /// Leaves the group, if a member.
    pub fn close(mut self) -> Result<()> {
        outside_runtime()?;
        let inner = self.inner.take().expect("present until close");
        self.rt().block_on(inner.close())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let (Some(inner), Some(runtime)) = (self.inner.take(), self.runtime.take()) {
            close_on_drop(runtime, inner, |c| Box::pin(c.close()));
        }
    }
}
