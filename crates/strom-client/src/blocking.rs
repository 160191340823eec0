//! Blocking wrappers for programs without an async runtime: each owns a small tokio runtime
//! and blocks on the async client.
//!
//! The calls run on the wrapper's own runtime and the caller waits on a plain channel, so a
//! wrapper works from any thread, including one inside another async runtime (where tokio's
//! `block_on` and dropping a runtime panic): there a call blocks that thread like any other
//! blocking call (use the async client in async code), and dropping closes the client and shuts
//! its runtime down without blocking on it.
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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Runtime;

use crate::consumer::{self, ConsumerConfig, Message};
use crate::error::{ClientError, Result};
use crate::offsets::TopicPartition;
use crate::producer::{self, ProducerConfig, ProducerRecord, RecordMetadata};

fn runtime() -> Result<Runtime> {
    // Two worker threads: one for the producer's batching task or the consumer's heartbeat,
    // one for the caller's requests.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ClientError::Invalid(format!("cannot start a tokio runtime: {e}")))
}

/// Runs `work` on `runtime` and waits for it on a std channel, which (unlike `block_on`) may
/// be done from any thread.
fn run<T: Send + 'static>(
    runtime: &Runtime,
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv().map_err(|_| ClientError::Closed)
}

/// A blocking [`producer::Producer`].
pub struct Producer {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    inner: Option<Arc<producer::Producer>>,
}

impl Producer {
    /// Connects with default settings.
    pub fn connect(bootstrap: &str) -> Result<Producer> {
        Self::connect_with(bootstrap, ProducerConfig::default())
    }

    /// Connects with the given settings.
    pub fn connect_with(bootstrap: &str, config: ProducerConfig) -> Result<Producer> {
        let runtime = runtime()?;
        let bootstrap = bootstrap.to_string();
        let inner = run(&runtime, async move {
            producer::Producer::connect_with(&bootstrap, config).await
        })??;
        Ok(Producer {
            runtime: Some(runtime),
            inner: Some(Arc::new(inner)),
        })
    }

    fn call<T: Send + 'static, F: Future<Output = Result<T>> + Send + 'static>(
        &self,
        work: impl FnOnce(Arc<producer::Producer>) -> F,
    ) -> Result<T> {
        let inner = self.inner.clone().ok_or(ClientError::Closed)?;
        let runtime = self.runtime.as_ref().ok_or(ClientError::Closed)?;
        run(runtime, work(inner))?
    }

    /// See [`producer::Producer::create_topic`].
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let name = name.to_string();
        self.call(|p| async move { p.create_topic(&name, partitions).await })
    }

    /// See [`producer::Producer::send`].
    pub fn send(&self, topic: &str, value: impl Into<Bytes>, partition: i32) -> Result<i64> {
        let (topic, value) = (topic.to_string(), value.into());
        self.call(|p| async move { p.send(&topic, value, partition).await })
    }

    /// See [`producer::Producer::send_record`].
    pub fn send_record(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.call(|p| async move { p.send_record(record).await })
    }

    /// See [`producer::Producer::flush`].
    pub fn flush(&self) -> Result<()> {
        self.call(|p| async move { p.flush().await })
    }

    /// Flushes and stops the producer.
    pub fn close(mut self) -> Result<()> {
        self.shut()
    }

    fn shut(&mut self) -> Result<()> {
        let (Some(inner), Some(runtime)) = (self.inner.take(), self.runtime.take()) else {
            return Ok(());
        };
        let closed = match Arc::try_unwrap(inner) {
            Ok(p) => run(&runtime, p.close()).and_then(|r| r),
            Err(_) => Err(ClientError::Closed),
        };
        // Unlike dropping it, this never blocks nor panics inside another runtime.
        runtime.shutdown_background();
        closed
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Err(e) = self.shut() {
            tracing::debug!(error = %e, "closing a blocking producer on drop failed");
        }
    }
}

/// A blocking [`consumer::Consumer`].
pub struct Consumer {
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    /// Moved into each call and back.
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
        let bootstrap = bootstrap.to_string();
        let inner = run(&runtime, async move {
            consumer::Consumer::connect_with(&bootstrap, config).await
        })??;
        Ok(Consumer {
            runtime: Some(runtime),
            inner: Some(inner),
        })
    }

    /// Runs one call with the consumer moved onto the runtime and back.
    fn call<T: Send + 'static>(
        &mut self,
        work: impl for<'a> FnOnce(
                &'a mut consumer::Consumer,
            )
                -> std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>
            + Send
            + 'static,
    ) -> Result<T> {
        let runtime = self.runtime.as_ref().ok_or(ClientError::Closed)?;
        let mut inner = self.inner.take().ok_or(ClientError::Closed)?;
        let (inner, result) = run(runtime, async move {
            let result = work(&mut inner).await;
            (inner, result)
        })?;
        self.inner = Some(inner);
        result
    }

    fn inner(&mut self) -> Result<&mut consumer::Consumer> {
        self.inner.as_mut().ok_or(ClientError::Closed)
    }

    /// See [`consumer::Consumer::assign`].
    pub fn assign(&mut self, topic: &str, partition: i32) -> Result<()> {
        let topic = topic.to_string();
        self.call(move |c| Box::pin(async move { c.assign(&topic, partition).await }))
    }

    /// See [`consumer::Consumer::subscribe`].
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        self.call(move |c| {
            Box::pin(async move {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                c.subscribe(&topics).await
            })
        })
    }

    /// See [`consumer::Consumer::seek`].
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        self.inner()?.seek(topic, partition, offset)
    }

    /// See [`consumer::Consumer::position`].
    pub fn position(&mut self, topic: &str, partition: i32) -> Option<i64> {
        self.inner().ok()?.position(topic, partition)
    }

    /// See [`consumer::Consumer::assignment`].
    pub fn assignment(&mut self) -> Vec<TopicPartition> {
        self.inner().map(|c| c.assignment()).unwrap_or_default()
    }

    /// See [`consumer::Consumer::poll`].
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>> {
        self.call(move |c| Box::pin(async move { c.poll(timeout).await }))
    }

    /// See [`consumer::Consumer::commit`].
    pub fn commit(&mut self) -> Result<()> {
        self.call(|c| Box::pin(async move { c.commit().await }))
    }

    /// Leaves the group, if a member.
    pub fn close(mut self) -> Result<()> {
        self.shut()
    }

    fn shut(&mut self) -> Result<()> {
        let (Some(inner), Some(runtime)) = (self.inner.take(), self.runtime.take()) else {
            return Ok(());
        };
        let closed = run(&runtime, inner.close()).and_then(|r| r);
        runtime.shutdown_background();
        closed
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Err(e) = self.shut() {
            tracing::debug!(error = %e, "closing a blocking consumer on drop failed");
        }
    }
}
