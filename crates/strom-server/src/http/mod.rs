//! The HTTP listener: `/health`, `/ready`, `/metrics` (Prometheus), the JSON API under
//! `/api/` ([`api`]) and the console ([`console`]), served by axum over hyper on the same
//! runtime as the Kafka listener. Connections go through the shared accept loop, so they are
//! bounded (`http.max.connections`) and counted like the others.
//!
//! The listener starts before the broker opens its data directory: `/health` answers during
//! recovery, `/ready` says 503 until recovery is done and the Kafka listener is up, and every
//! other path answers 503 until then too.
//!
//! Security: [`auth`] asks for a login (`http.authentication`), [`access`] applies the
//! Kafka listener's ACLs to each API call, and `http.listener.security.protocol=SSL` serves
//! HTTPS with the Kafka listeners' key (`ssl.keystore.*`, see [`crate::tls`]).

mod access;
pub mod api;
mod api_error;
pub mod auth;
mod console;
mod messages;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use strom_broker::local::Local;
use strom_broker::security::acl::op;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use access::Caller;

use crate::shutdown::Shutdown;

/// A client must send its request headers within this long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the HTTP handlers share. The broker arrives once it has opened (`set_ready`).
pub struct HttpState {
    local: OnceLock<Arc<Local>>,
    login: auth::Login,
}

impl HttpState {
    pub fn new(login: auth::Login) -> Arc<HttpState> {
        Arc::new(HttpState {
            local: OnceLock::new(),
            login,
        })
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
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::gate,
        ))
        .with_state(state)
}

/// HTTPS for the listener (`http.listener.security.protocol=SSL`).
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// `ssl.handshake.timeout.ms`: a handshake not done by then closes the connection.
    pub handshake_timeout: Duration,
}

/// Serves until shutdown, at most `max_connections` at a time.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    max_connections: usize,
    tls: Option<Tls>,
    shutdown: Shutdown,
) {
    let app = router(state);
    crate::accept::accept_loop(
        listener,
        "http",
        max_connections,
        shutdown,
        |_| {},
        move |socket, peer, shutdown| {
            let app = app.clone();
            let tls = tls.clone();
            async move {
                let _ = socket.set_nodelay(true);
                // The peer's address for the ACLs' host and the log lines.
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(req)
                });
                let Some(tls) = tls else {
                    return serve_connection(TokioIo::new(socket), service, peer, shutdown).await;
                };
                match tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(socket)).await
                {
                    Ok(Ok(stream)) => {
                        serve_connection(TokioIo::new(stream), service, peer, shutdown).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "HTTPS handshake failed");
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "HTTPS handshake timed out (ssl.handshake.timeout.ms)");
                    }
                }
            }
        },
    )
    .await
}

/// One HTTP/1.1 connection over plain TCP or TLS, until it ends or shutdown.
async fn serve_connection<IO, S>(io: IO, service: S, peer: SocketAddr, mut shutdown: Shutdown)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send,
    S::ResBody: Send + 'static,
    <S::ResBody as axum::body::HttpBody>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    <S::ResBody as axum::body::HttpBody>::Data: Send,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(io, service);
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

async fn metrics(
    State(state): State<Arc<HttpState>>,
    caller: Option<Extension<Caller>>,
) -> Response {
    let Some(local) = state.local().cloned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response();
    };
    // With a login on /metrics it also takes what DescribeLogDirs does, DESCRIBE on the
    // cluster: the exposition names every topic and group.
    if let (true, Some(Extension(caller))) = (state.login.probes_too(), caller) {
        let ok = caller.authz(&local).cluster(op::DESCRIBE);
        if let Err(e) = caller.require(ok, op::DESCRIBE, "the cluster") {
            return e.into_response();
        }
    }
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
