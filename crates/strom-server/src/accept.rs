//! The accept loop the listeners share: accept until shutdown, bound the connections by
//! `max.connections` (one more is refused at once, never queued), let the listener refuse a
//! peer by its own rules (the Kafka listener's limits per address), back off on accept
//! errors, and run each connection in its own task holding its slots until it ends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strom_broker::metrics::METRICS;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;

/// How long to pause after a failed accept (EMFILE and friends) rather than spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts until shutdown. `serve` runs one connection; `refuse` gets a connection beyond
/// `max_connections` (to say why, best effort) before it is dropped. `listener_name` labels
/// the log lines.
pub async fn accept_loop<S, F>(
    listener: TcpListener,
    listener_name: &'static str,
    max_connections: usize,
    shutdown: Shutdown,
    refuse: impl Fn(&TcpStream),
    serve: S,
) where
    S: Fn(TcpStream, SocketAddr, Shutdown) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let admit_all = |_: SocketAddr| Ok(());
    accept_loop_admitting(
        listener,
        listener_name,
        max_connections,
        shutdown,
        refuse,
        admit_all,
        serve,
    )
    .await
}

/// [`accept_loop`], where `admit` may also refuse a peer (saying why, for the log line) or
/// admit it with a guard the connection holds until it ends.
pub async fn accept_loop_admitting<S, F, A, G>(
    listener: TcpListener,
    listener_name: &'static str,
    max_connections: usize,
    mut shutdown: Shutdown,
    refuse: impl Fn(&TcpStream),
    admit: A,
    serve: S,
) where
    S: Fn(TcpStream, SocketAddr, Shutdown) -> F,
    F: Future<Output = ()> + Send + 'static,
    A: Fn(SocketAddr) -> Result<G, String>,
    G: Send + 'static,
{
    let connections = Arc::new(Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => return,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = listener_name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(listener = listener_name, %peer, max = max_connections, "refusing connection: max.connections reached");
            METRICS.connection_refused(listener_name);
            refuse(&socket);
            continue;
        };
        let admitted = match admit(peer) {
            Ok(guard) => guard,
            Err(reason) => {
                tracing::warn!(listener = listener_name, %peer, %reason, "refusing connection");
                METRICS.connection_refused(listener_name);
                continue;
            }
        };
        METRICS.connection_accepted(listener_name);
        let connection = serve(socket, peer, shutdown.clone());
        tokio::spawn(async move {
            connection.await;
            METRICS.connection_closed(listener_name);
            drop(admitted);
            drop(permit);
        });
    }
}
