//! The seed's newline-delimited JSON protocol (placeholder until it lands).

use std::sync::Arc;

use strom_broker::Broker;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// Serves JSON requests until shutdown.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut shutdown: Shutdown) {
    let _ = (listener, broker);
    shutdown.wait().await;
}
