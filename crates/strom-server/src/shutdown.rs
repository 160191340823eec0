//! Graceful shutdown, as in mini-redis: a watch channel says "stop", and every connection task
//! holds a clone of a `Sender` of an mpsc channel; when the last clone drops, every connection
//! has finished its in-flight requests.

use tokio::sync::{mpsc, watch};

#[derive(Clone)]
pub struct Shutdown {
    notify: watch::Receiver<bool>,
    /// Dropped when the holder finishes; the server waits for all of them.
    _alive: mpsc::Sender<()>,
}

impl Shutdown {
    pub async fn wait(&mut self) {
        let _ = self.notify.wait_for(|stop| *stop).await;
    }
    pub fn is_shutdown(&self) -> bool {
        *self.notify.borrow()
    }
}

/// The side that triggers shutdown and waits for every holder to finish.
pub struct ShutdownController {
    notify: watch::Sender<bool>,
    alive_tx: Option<mpsc::Sender<()>>,
    alive_rx: mpsc::Receiver<()>,
}

impl Default for ShutdownController {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownController {
    pub fn new() -> Self {
        let (notify, _) = watch::channel(false);
        let (alive_tx, alive_rx) = mpsc::channel(1);
        Self {
            notify,
            alive_tx: Some(alive_tx),
            alive_rx,
        }
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            notify: self.notify.subscribe(),
            _alive: self.alive_tx.clone().expect("subscribe before shutdown"),
        }
    }

    /// Signals every holder, then waits until all have dropped their handles.
    pub async fn shutdown(mut self) {
        let _ = self.notify.send(true);
        self.alive_tx.take();
        let _ = self.alive_rx.recv().await;
    }
}
