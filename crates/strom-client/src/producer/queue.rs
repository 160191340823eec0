//! Hands commands from the producer's handle to its background task in bulk.
//!
//! `enqueue` pushes onto a vector under a mutex and wakes the task only when the vector was
//! empty; the task swaps the whole vector out and gives it back for reuse. A tokio channel
//! costs an allocation every few records and a wake-up per record, which at small records
//! was a large part of the producer's time.

use std::sync::Mutex;

use tokio::sync::Notify;

use super::Command;

#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    commands: Vec<Command>,
    /// An emptied vector to swap in, keeping its capacity.
    spare: Vec<Command>,
    /// The producer handle is gone: the task finishes what it has and stops.
    closed: bool,
    /// The task is gone: nothing more is accepted.
    task_gone: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a command for the task; false (and the command dropped) when the task is gone.
    pub fn push(&self, command: Command) -> bool {
        let mut state = self.lock();
        if state.task_gone {
            return false;
        }
        let wake = state.commands.is_empty();
        state.commands.push(command);
        drop(state);
        if wake {
            self.notify.notify_one();
        }
        true
    }

    /// Waits for commands and takes all of them, in order; `None` once the producer handle
    /// is gone and every command was taken. Cancel-safe: nothing is taken until it returns.
    pub async fn recv(&self) -> Option<Vec<Command>> {
        loop {
            // Registered before the check, so a push between the check and the wait is seen.
            let notified = self.notify.notified();
            {
                let mut state = self.lock();
                if !state.commands.is_empty() {
                    let spare = std::mem::take(&mut state.spare);
                    return Some(std::mem::replace(&mut state.commands, spare));
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Gives an emptied vector back for reuse.
    pub fn recycle(&self, mut commands: Vec<Command>) {
        commands.clear();
        let mut state = self.lock();
        if state.spare.capacity() < commands.capacity() {
            state.spare = commands;
        }
    }

    /// The producer handle is gone.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// The task stopped: later pushes fail, and commands not taken are dropped, which
    /// answers their deliveries with `Closed`.
    pub fn task_gone(&self) {
        let dropped = {
            let mut state = self.lock();
            state.task_gone = true;
            std::mem::take(&mut state.commands)
        };
        drop(dropped);
    }
}

/// The handle's end: closes the queue when the producer is dropped or closed.
pub(crate) struct QueueSender(pub std::sync::Arc<Queue>);

impl Drop for QueueSender {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The task's end: marks the task gone however it stops, a panic included.
pub(crate) struct QueueReceiver(pub std::sync::Arc<Queue>);

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        self.0.task_gone();
    }
}
