//! The HTTP listener: `/health`, `/ready`, `/metrics` (Prometheus), the JSON API under
//! `/api/` ([`api`]) and the console ([`console`]), served by axum over hyper on the same
//! runtime as the Kafka listener. Connections go through the shared accept loop, so they are
//! bounded (`http.max.connections`) and counted like the others.
//!
//! The listener starts before the broker opens its data directory: `/health` answers during
//! recovery, `/ready` says 503 until recovery is done and the Kafka listener is up, and every
//! other path answers 503 until then too.

pub mod api;
mod api_error;
mod console;
mod messages;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use strom_broker::local::Local;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// A client must send its request headers within this long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the HTTP handlers share. The broker arrives once it has opened (`set_ready`).
#[derive(Default)]
pub struct HttpState {
    local: OnceLock<Arc<Local>>,
}

impl HttpState {
    pub fn new() -> Arc<HttpState> {
        Arc::new(HttpState::default())
    }

    /// Recovery is done and the listeners are up: `/ready` and the API answer from now on.
    pub fn set_ready(&self, local: Arc<Local>) {
        let _ = self.local.set(local);
    }

    pub(crate) fn local(&self) -> Option<&Arc<Local>> {
        self.local.get()
    }
}

/// Why the HTTP listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for HTTP on {addr} (http.listen): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds `http.listen`. An address the user chose must bind (the error stops startup); the
/// default one may be taken by another broker on the machine, which only warns and leaves
/// this broker without an HTTP listener.
pub async fn bind(
    addr: Option<SocketAddr>,
    explicit: bool,
) -> Result<Option<TcpListener>, BindError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(source) if !explicit => {
            tracing::warn!(
                %addr,
                error = %source,
                "the default HTTP address (setting http.listen) cannot be bound; starting without the HTTP listener (metrics, health, console). Set http.listen to another address, or to an empty value to silence this"
            );
            Ok(None)
        }
        Err(source) => Err(BindError { addr, source }),
    }
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .nest("/api", api::routes())
        .merge(console::routes())
        .with_state(state)
}

/// Serves until shutdown, at most `max_connections` at a time.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    max_connections: usize,
    shutdown: Shutdown,
) {
    let app = router(state);
    crate::accept::accept_loop(
        listener,
        "http",
        max_connections,
        shutdown,
        |_| {},
        move |socket, peer, mut shutdown| {
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            async move {
                let _ = socket.set_nodelay(true);
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                let conn = builder.serve_connection(TokioIo::new(socket), service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "HTTP connection ended");
                        }
                    }
                    _ = shutdown.wait() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
        },
    )
    .await
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<Arc<HttpState>>) -> Response {
    match state.local() {
        Some(_) => (StatusCode::OK, "ready\n").into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: recovering the data directory\n",
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let Some(local) = state.local().cloned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response();
    };
    // Locks each partition briefly; off the async worker with many partitions.
    let text = tokio::task::spawn_blocking(move || strom_broker::metrics::render(local.broker()))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
