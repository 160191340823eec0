//! The Kafka listener: accepts connections (at most `max.connections`), reads size-prefixed
//! frames (at most `socket.request.max.bytes`), hands each to the broker in arrival order and
//! writes the responses in the same order. Up to `queued.max.requests` requests per connection
//! may wait for their response (e.g. for a group-commit fsync) while later ones are read, which
//! is how pipelining clients get throughput without reordering, and all connections together
//! hold at most `queued.max.request.bytes` of such requests (see [`crate::request_budget`]).
//!
//! A broken frame (bad size, unknown API, undecodable body) closes that connection with a log
//! line; nothing else is affected.
//!
//! Each listener has a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL): TLS is
//! set up before the first byte is read, and every frame then goes through the connection's
//! [`Session`], which runs SASL and carries the principal the handlers authorize.
//!
//! A PLAINTEXT port also speaks the JSON protocol: a connection whose first byte is `{` is handed to
//! [`crate::json::serve_connection`]. A Kafka request never starts with that byte, because it
//! starts with its 4-byte big-endian size and `{` (0x7b) there would mean a request of over
//! 2 GB, far beyond `socket.request.max.bytes`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use strom_broker::listeners::{Listener, SecurityProtocol};
use strom_broker::local::Local;
use strom_broker::metrics::{RequestTimer, METRICS};
use strom_broker::security::session::Session;
use strom_broker::{Broker, Reply, RequestContext};
use strom_protocol::frame::{check_frame, SIZE_PREFIX_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::request_budget::{Held, RequestBudget};
use crate::shutdown::Shutdown;
use crate::tls_reload::ReloadableAcceptor;

/// How much a connection reads at a time when its buffer is empty.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    pub queued_max_requests: usize,
    /// Shared by every connection of the listener.
    pub request_bytes: RequestBudget,
    pub idle_timeout: std::time::Duration,
}

impl Limits {
    pub fn from_broker(broker: &Broker) -> Limits {
        Limits {
            max_connections: broker.config.max_connections,
            max_frame_bytes: broker.config.socket_request_max_bytes,
            queued_max_requests: broker.config.queued_max_requests,
            request_bytes: RequestBudget::new(broker.config.queued_max_request_bytes),
            idle_timeout: std::time::Duration::from_millis(broker.config.connections_max_idle_ms),
        }
    }
}

/// The first byte of a JSON connection on the Kafka port.
const JSON_FIRST_BYTE: u8 = b'{';

/// Accepts connections until shutdown on a PLAINTEXT listener: Kafka ones, and JSON ones
/// (first byte `{`) served through `local`.
pub async fn serve(listener: TcpListener, local: Arc<Local>, limits: Limits, shutdown: Shutdown) {
    let addr = listener.local_addr().ok();
    let spec = Listener {
        name: SecurityProtocol::Plaintext.name().to_string(),
        protocol: SecurityProtocol::Plaintext,
        bind: addr.unwrap_or_else(|| local.broker().config.listen),
        advertised_host: local.broker().config.advertised().0,
        advertised_port: local.broker().config.advertised().1,
    };
    serve_listener(listener, spec, None, local, limits, shutdown).await
}

/// Accepts connections until shutdown on one listener of `listeners`: TLS first when its
/// protocol uses it (`tls` must then be given), SASL before any request when it uses SASL.
/// The JSON protocol is recognised only on PLAINTEXT listeners, where its requests are
/// authorized as `User:ANONYMOUS`, as Kafka requests on the same port are.
pub async fn serve_listener(
    listener: TcpListener,
    spec: Listener,
    tls: Option<Arc<ReloadableAcceptor>>,
    local: Arc<Local>,
    limits: Limits,
    shutdown: Shutdown,
) {
    let refuse = |_: &TcpStream| {};
    let json_limits = crate::json::Limits::from_broker(local.broker());
    let security = &local.broker().config.security;
    let json_allowed = spec.protocol == SecurityProtocol::Plaintext;
    let handshake_timeout = std::time::Duration::from_millis(security.handshake_timeout_ms);
    let spec = Arc::new(spec);
    let mapper = Arc::new(security.principal_mapper.clone());
    // Every Kafka listener counts as `kafka` in the connection metrics; the limits per
    // address (`max.connections.per.ip`, `connection_creation_rate`) span all of them.
    let quotas = local.broker().quotas.clone();
    crate::accept::accept_loop_admitting(
        listener,
        "kafka",
        limits.max_connections,
        shutdown,
        refuse,
        |peer: SocketAddr| quotas.connections.open(peer.ip()),
        |socket, peer, shutdown| {
            let local = local.clone();
            let spec = spec.clone();
            let tls = tls.clone();
            let limits = limits.clone();
            let mapper = mapper.clone();
            async move {
                let broker = local.broker().clone();
                let mut ctx = RequestContext::anonymous(peer.ip().to_string());
                ctx.advertised = Some((spec.advertised_host.clone(), spec.advertised_port));
                let sasl = spec.protocol.uses_sasl();
                // The certificate of the moment: a reload affects only later connections.
                if let Some(tls) = tls.filter(|_| spec.protocol.uses_tls()).map(|t| t.current()) {
                    let _ = socket.set_nodelay(true);
                    let stream =
                        match tokio::time::timeout(handshake_timeout, tls.accept(socket)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::warn!(%peer, listener = %spec.name, error = %e, "closing connection: TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::warn!(%peer, listener = %spec.name, timeout = ?handshake_timeout, "closing connection: TLS handshake not done in time (ssl.handshake.timeout.ms)");
                                return;
                            }
                        };
                    let certificate = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.as_ref().to_vec());
                    if let Some(der) = certificate {
                        let Some(subject) = crate::tls::certificate_subject(&der) else {
                            tracing::warn!(%peer, "closing connection: unreadable client certificate subject");
                            return;
                        };
                        match mapper.name(&subject) {
                            Ok(name) => ctx.principal = format!("User:{name}").into(),
                            Err(e) => {
                                tracing::warn!(%peer, error = %e, "closing connection: no ssl.principal.mapping.rules rule applies to the client certificate");
                                return;
                            }
                        }
                    }
                    let (reader, writer) = tokio::io::split(stream);
                    let session = Session::new(ctx, sasl).on_listener(&spec.name);
                    serve_connection(reader, writer, peer, broker, limits, shutdown, session).await;
                    return;
                }
                let first = first_byte(&socket, limits.idle_timeout).await;
                match first {
                    Some(JSON_FIRST_BYTE) if json_allowed => {
                        if let Err(e) = crate::json::serve_connection(
                            socket,
                            peer,
                            &local,
                            json_limits,
                            shutdown,
                        )
                        .await
                        {
                            tracing::debug!(%peer, error = %e, "JSON connection ended");
                        }
                    }
                    Some(_) => {
                        let _ = socket.set_nodelay(true);
                        let (reader, writer) = socket.into_split();
                        let session = Session::new(ctx, sasl).on_listener(&spec.name);
                        serve_connection(reader, writer, peer, broker, limits, shutdown, session)
                            .await
                    }
                    None => {}
                }
            }
        },
    )
    .await
}

/// The connection's first byte, without consuming it; `None` if the client closed or sent
/// nothing within the idle timeout.
async fn first_byte(socket: &TcpStream, idle_timeout: std::time::Duration) -> Option<u8> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(idle_timeout, socket.peek(&mut byte)).await {
        Ok(Ok(1)) => Some(byte[0]),
        _ => None,
    }
}

/// Counts the request by the API key and version at the start of its header (both i16,
/// big-endian) and starts its latency timer.
fn start_timer(frame: &[u8]) -> Option<RequestTimer> {
    let header = frame.get(..4)?;
    let api = i16::from_be_bytes([header[0], header[1]]);
    let version = i16::from_be_bytes([header[2], header[3]]);
    METRICS.request_started(api, version)
}

async fn serve_connection<R, W>(
    mut reader: R,
    mut writer: W,
    peer: SocketAddr,
    broker: Arc<Broker>,
    limits: Limits,
    mut shutdown: Shutdown,
    mut session: Session,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // Each reply travels with its latency timer (stopped once the response is ready) and its
    // hold on the request budget (`_held` gives the bytes back once the reply is out).
    let (tx, mut rx) =
        mpsc::channel::<(Reply, Option<RequestTimer>, Held)>(limits.queued_max_requests);
    let writer_task = tokio::spawn(async move {
        while let Some((reply, timer, _held)) = rx.recv().await {
            let bytes = match reply {
                Reply::Ready(b) => Some(b),
                Reply::Deferred(f) => f.await,
                Reply::None => None,
                Reply::Close(_) => break,
            };
            if let Some(t) = timer {
                t.finish();
            }
            if let Some(b) = bytes {
                if writer.write_all(&b).await.is_err() {
                    break;
                }
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    'conn: loop {
        // Handle every whole frame already buffered, in order.
        loop {
            // Before SASL authentication, frames are bounded by sasl.server.max.receive.size.
            let max_frame = session.max_frame_bytes(&broker, limits.max_frame_bytes);
            match check_frame(&buf, max_frame) {
                Ok(Some(len)) => {
                    // Wait for room before handling: meanwhile the socket is not read.
                    let queued_since = METRICS.enabled().then(std::time::Instant::now);
                    let held = limits.request_bytes.take(len).await;
                    if let Some(since) = queued_since {
                        METRICS.request_queue_wait.observe(since.elapsed());
                    }
                    let mut frame = buf.split_to(SIZE_PREFIX_BYTES + len);
                    let _ = frame.split_to(SIZE_PREFIX_BYTES);
                    let timer = start_timer(&frame);
                    let reply = session.handle(&broker, frame.freeze()).await;
                    if let Reply::Close(reason) = &reply {
                        tracing::warn!(%peer, %reason, "closing connection");
                        let _ = tx.send((reply, None, held)).await;
                        break 'conn;
                    }
                    if tx.send((reply, timer, held)).await.is_err() || session.must_close() {
                        break 'conn;
                    }
                    // A quota throttle (KIP-219): the response is on its way; read nothing
                    // more from this client until the throttle time has passed.
                    let mute_ms = session.ctx.take_mute_ms();
                    if mute_ms > 0 {
                        let muted = std::time::Duration::from_millis(mute_ms);
                        tokio::select! {
                            _ = tokio::time::sleep(muted) => {}
                            _ = shutdown.wait() => break 'conn,
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                    break 'conn;
                }
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let read = tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, reader.read_buf(&mut buf)) => match r {
                Ok(r) => r,
                Err(_) => {
                    tracing::info!(%peer, idle = ?limits.idle_timeout, "closing idle connection (connections.max.idle.ms)");
                    break;
                }
            },
            _ = shutdown.wait() => break,
        };
        match read {
            Ok(0) => {
                if !buf.is_empty() {
                    tracing::warn!(%peer, buffered = buf.len(), "connection closed mid-frame; dropping the truncated request");
                }
                break;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%peer, error = %e, "read failed");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer_task.await;
}
