//! `queued.max.request.bytes`: a bound, over every connection of a listener, on the bytes of
//! requests that were read but not yet answered. A producer with acks=all has many requests
//! waiting for their fsync; without this bound, each connection's read-ahead
//! (`queued.max.requests`) times the request size times the producers is what the broker
//! holds. With it, a connection that finds the budget spent stops reading its socket (TCP
//! pushes back on the client) until replies go out and give their bytes back.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shared by the connections of a listener; cheap to clone.
#[derive(Clone, Debug)]
pub struct RequestBudget {
    /// `None`: no bound (the setting is 0 or negative, as Kafka's -1).
    bytes: Option<Arc<Semaphore>>,
    capacity: usize,
}

/// Bytes held by one request until its reply is written (or dropped).
#[derive(Debug)]
pub struct Held(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl RequestBudget {
    pub fn new(capacity_bytes: usize) -> RequestBudget {
        let capacity = capacity_bytes.min(Semaphore::MAX_PERMITS);
        RequestBudget {
            bytes: (capacity > 0).then(|| Arc::new(Semaphore::new(capacity))),
            capacity,
        }
    }

    /// Waits until `frame_bytes` fit in the budget and takes them. A frame larger than the
    /// whole budget takes all of it (it waits for everything else to be answered), so any
    /// frame that `socket.request.max.bytes` admits still gets through.
    pub async fn take(&self, frame_bytes: usize) -> Held {
        let Some(bytes) = &self.bytes else {
            return Held(None);
        };
        let wanted = frame_bytes.clamp(1, self.capacity).min(u32::MAX as usize) as u32;
        // The semaphore is never closed, so acquiring only fails if it were.
        Held(bytes.clone().acquire_many_owned(wanted).await.ok())
    }

    /// Bytes currently free (for tests and metrics).
    pub fn available(&self) -> Option<usize> {
        self.bytes.as_ref().map(|s| s.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_budget_makes_the_next_request_wait_until_one_is_answered() {
        let budget = RequestBudget::new(1000);
        let first = budget.take(600).await;
        let _second = budget.take(400).await;
        assert_eq!(budget.available(), Some(0));
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.take(1)).await;
        assert!(
            waiting.is_err(),
            "the budget is spent: the third request must wait"
        );
        drop(first);
        assert_eq!(budget.available(), Some(600));
        let _third = budget.take(1).await;
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_budget_takes_all_of_it_instead_of_waiting_forever() {
        let budget = RequestBudget::new(100);
        let big = budget.take(10_000).await;
        assert_eq!(budget.available(), Some(0));
        drop(big);
        assert_eq!(budget.available(), Some(100));
    }

    #[tokio::test]
    async fn zero_means_no_bound() {
        let budget = RequestBudget::new(0);
        let _a = budget.take(usize::MAX).await;
        assert_eq!(budget.available(), None);
    }
}
