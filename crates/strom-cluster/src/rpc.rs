//! Inter-node RPC on `controller.listen`: raft messages, proposals forwarded to the raft
//! leader, broker heartbeats, and the data plane (replica fetches).
//!
//! ```text
//! frame = total_len u32 BE | header_len u32 BE | header (JSON) | payload (raw bytes)
//! ```
//! `total_len` counts everything after itself and is at most [`RPC_FRAME_MAX_BYTES`]; the
//! payload carries record batches as they are on disk, so they are never re-encoded.
//!
//! Bounds: the server accepts at most [`RPC_CONNECTIONS_MAX`] connections and closes one that
//! sends no complete request for [`RPC_IDLE_MS`]; a [`Peer`] opens at most
//! [`PEER_CONNECTIONS_MAX`] connections to one node (a call beyond that waits for a free one,
//! which is the backpressure), and every call has a deadline. Each connection carries one call
//! at a time, so a slow partition's long poll never delays another partition's call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Largest frame either side accepts (a replica fetch answer is bounded well below it).
pub const RPC_FRAME_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Connections the RPC listener serves at once.
pub const RPC_CONNECTIONS_MAX: usize = 256;
/// Connections one node opens to one peer.
pub const PEER_CONNECTIONS_MAX: usize = 32;
/// An inbound connection idle this long is closed.
pub const RPC_IDLE_MS: u64 = 120_000;
/// How long opening a connection to a peer may take.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("call to {addr} failed: {reason}")]
    Io { addr: String, reason: String },
    #[error("call to {addr} timed out after {ms} ms")]
    Timeout { addr: String, ms: u64 },
    #[error("bad frame from {addr}: {reason}")]
    Codec { addr: String, reason: String },
}

fn io_err(e: std::io::Error) -> String {
    e.to_string()
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(
    stream: &mut TcpStream,
    header: &T,
    payload: &[u8],
) -> Result<(), String> {
    let json = serde_json::to_vec(header).map_err(|e| e.to_string())?;
    let total = 4 + json.len() + payload.len();
    if total > RPC_FRAME_MAX_BYTES {
        return Err(format!(
            "frame of {total} bytes exceeds {RPC_FRAME_MAX_BYTES}"
        ));
    }
    let mut buf = Vec::with_capacity(8 + json.len());
    buf.extend_from_slice(&(total as u32).to_be_bytes());
    buf.extend_from_slice(&(json.len() as u32).to_be_bytes());
    buf.extend_from_slice(&json);
    stream.write_all(&buf).await.map_err(io_err)?;
    if !payload.is_empty() {
        stream.write_all(payload).await.map_err(io_err)?;
    }
    Ok(())
}

/// Reads one frame; `Ok(None)` when the peer closed cleanly between frames.
pub async fn read_frame<T: DeserializeOwned>(
    stream: &mut TcpStream,
) -> Result<Option<(T, Bytes)>, String> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io_err(e)),
    }
    let total = u32::from_be_bytes(len) as usize;
    if !(4..=RPC_FRAME_MAX_BYTES).contains(&total) {
        return Err(format!("frame size {total} out of bounds"));
    }
    let mut body = vec![0u8; total];
    stream.read_exact(&mut body).await.map_err(io_err)?;
    let header_len = u32::from_be_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if header_len > total - 4 {
        return Err(format!(
            "header of {header_len} bytes in a frame of {total}"
        ));
    }
    let header = serde_json::from_slice(&body[4..4 + header_len]).map_err(|e| e.to_string())?;
    let payload = Bytes::from(body).slice(4 + header_len..);
    Ok(Some((header, payload)))
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the server does with one request.
pub trait Handler<Req, Resp>: Send + Sync + 'static {
    fn handle(&self, request: Req, payload: Bytes) -> BoxFuture<(Resp, Bytes)>;
}

/// Serves `listener` until the task is dropped.
pub async fn serve<Req, Resp, H>(listener: TcpListener, handler: Arc<H>)
where
    Req: DeserializeOwned + Send + Sync + 'static,
    Resp: Serialize + Send + Sync + 'static,
    H: Handler<Req, Resp>,
{
    let permits = Arc::new(Semaphore::new(RPC_CONNECTIONS_MAX));
    loop {
        let permit = match permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let (mut stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            loop {
                let frame = tokio::time::timeout(
                    Duration::from_millis(RPC_IDLE_MS),
                    read_frame::<Req>(&mut stream),
                )
                .await;
                let (req, payload) = match frame {
                    Ok(Ok(Some(f))) => f,
                    Ok(Ok(None)) | Err(_) => return,
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "closing an inter-node connection after a bad frame");
                        return;
                    }
                };
                let (resp, out) = handler.handle(req, payload).await;
                if let Err(e) = write_frame(&mut stream, &resp, &out).await {
                    tracing::debug!(%peer, error = %e, "inter-node reply failed");
                    return;
                }
            }
        });
    }
}

/// Calls to one node: a small pool of connections, each carrying one call at a time.
pub struct Peer {
    pub addr: String,
    idle: Mutex<Vec<TcpStream>>,
    permits: Semaphore,
}

impl Peer {
    pub fn new(addr: String) -> Peer {
        Peer {
            addr,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(PEER_CONNECTIONS_MAX),
        }
    }

    /// One call with a deadline covering the wait for a connection, the send and the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        request: &Req,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(Resp, Bytes), RpcError> {
        let ms = timeout.as_millis() as u64;
        match tokio::time::timeout(timeout, self.call_inner(request, payload)).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Timeout {
                addr: self.addr.clone(),
                ms,
            }),
        }
    }

    async fn call_inner<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        request: &Req,
        payload: &[u8],
    ) -> Result<(Resp, Bytes), RpcError> {
        let _permit = self.permits.acquire().await.map_err(|e| RpcError::Io {
            addr: self.addr.clone(),
            reason: e.to_string(),
        })?;
        let pooled = self.idle.lock().pop();
        let mut stream = match pooled {
            Some(s) => s,
            None => {
                let connect = TcpStream::connect(&self.addr);
                let stream =
                    match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect)
                        .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            return Err(RpcError::Unreachable {
                                addr: self.addr.clone(),
                                reason: e.to_string(),
                            })
                        }
                        Err(_) => {
                            return Err(RpcError::Unreachable {
                                addr: self.addr.clone(),
                                reason: "connect timed out".into(),
                            })
                        }
                    };
                let _ = stream.set_nodelay(true);
                stream
            }
        };
        // A dropped call (deadline) drops the stream with it, so a late answer is never read
        // as the answer to the next call.
        write_frame(&mut stream, request, payload)
            .await
            .map_err(|reason| RpcError::Io {
                addr: self.addr.clone(),
                reason,
            })?;
        match read_frame::<Resp>(&mut stream).await {
            Ok(Some(r)) => {
                self.idle.lock().push(stream);
                Ok(r)
            }
            Ok(None) => Err(RpcError::Io {
                addr: self.addr.clone(),
                reason: "connection closed".into(),
            }),
            Err(reason) => Err(RpcError::Codec {
                addr: self.addr.clone(),
                reason,
            }),
        }
    }
}
