//! [`MessageStream`]: a consumer as a `futures::Stream` of messages, for code built on stream
//! combinators (`while let Some(m) = stream.next().await`, `select!`, `forward`).
//!
//! The stream owns the consumer while it runs (a poll needs `&mut Consumer`, which a stream
//! item cannot borrow); [`MessageStream::into_inner`] gives it back, for `commit` or `close`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use super::{Consumer, Message};
use crate::error::{ClientError, Result};

/// How long one underlying `poll` waits before the stream polls again.
const STREAM_POLL_MS: u64 = 500;

type Polling = Pin<Box<dyn Future<Output = (Consumer, Result<Vec<Message>>)> + Send>>;

/// Messages of a [`Consumer`] as a `Stream`; see [`Consumer::into_stream`]. It never ends on
/// its own: an error is yielded as an item and the stream carries on after it.
pub struct MessageStream {
    consumer: Option<Consumer>,
    polling: Option<Polling>,
    ready: VecDeque<Message>,
}

impl MessageStream {
    pub(crate) fn new(consumer: Consumer) -> MessageStream {
        MessageStream {
            consumer: Some(consumer),
            polling: None,
            ready: VecDeque::new(),
        }
    }

    /// Stops the stream and returns the consumer. Messages the stream fetched but did not
    /// yield yet are dropped and the positions moved back to them, so the consumer reads
    /// them again. Fails with `Closed` while a poll is in progress (the consumer is inside
    /// it); poll the stream to completion or drop it.
    pub fn into_inner(mut self) -> Result<Consumer> {
        let mut consumer = self.consumer.take().ok_or(ClientError::Closed)?;
        for m in self.ready.drain(..) {
            let tp = (m.topic.clone(), m.partition);
            if let Some(Some(pos)) = consumer.positions.get_mut(&tp) {
                *pos = (*pos).min(m.offset);
            }
        }
        Ok(consumer)
    }
}

impl Stream for MessageStream {
    type Item = Result<Message>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(m)));
            }
            if self.polling.is_none() {
                let Some(mut consumer) = self.consumer.take() else {
                    return Poll::Ready(None);
                };
                self.polling = Some(Box::pin(async move {
                    let got = consumer.poll(Duration::from_millis(STREAM_POLL_MS)).await;
                    (consumer, got)
                }));
            }
            let polling = self.polling.as_mut().expect("set above");
            let (consumer, got) = match polling.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(done) => done,
            };
            self.polling = None;
            self.consumer = Some(consumer);
            match got {
                Ok(messages) => self.ready.extend(messages),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}
