//! One TCP connection to one broker: length-prefixed frames, correlation ids, pipelining, and
//! the API versions negotiated with `ApiVersions` when the connection opens.
//!
//! ```text
//! request:  | size: i32 BE | header (api key, version, correlation id, client id) | body |
//! response: | size: i32 BE | header (correlation id [, tagged fields]) | body |
//! ```
//!
//! Requests are pipelined: up to [`IN_FLIGHT_REQUESTS_MAX`] may wait for answers at once. A
//! reader task reads whole frames (two steps: the size, bounded by [`RESPONSE_BYTES_MAX`], then
//! the body) and hands each to the request with its correlation id, so an abandoned request
//! only drops its answer. A frame written half-way (a future dropped mid-write), a request
//! timeout or a read error marks the connection broken; every waiting request then fails and
//! the owner opens a new connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    encode_request_header_into_buffer, Decodable, HeaderVersion, Request, StrBytes,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Mutex, Semaphore};
use tokio::task::JoinHandle;

use crate::error::{ClientError, Result};
use crate::transport::Transport;

/// The read side of a connection, plain TCP or TLS.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write side of a connection, plain TCP or TLS.
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// The largest response the client accepts, in bytes. A fetch asks for at most
/// `fetch_max_bytes` (50 MiB by default), so this leaves room for headers and one oversized
/// first batch.
pub const RESPONSE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// How many requests may wait for their responses on one connection at once.
pub const IN_FLIGHT_REQUESTS_MAX: usize = 32;

/// How long opening a TCP connection may take.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// The highest version of each API this client speaks. Above these, Kafka switches topic names
/// for topic ids (Produce 13, Fetch 13) or batches several groups per request (OffsetFetch 8,
/// FindCoordinator 4), which this client does not use.
fn client_max_version(api_key: i16) -> Option<i16> {
    let key = ApiKey::try_from(api_key).ok()?;
    Some(match key {
        ApiKey::Produce => 9,
        ApiKey::Fetch => 12,
        ApiKey::ListOffsets => 7,
        ApiKey::Metadata => 12,
        // v9 is v8 on the wire; it is the version that carries a KIP-848 member epoch.
        ApiKey::OffsetCommit => 9,
        ApiKey::OffsetFetch => 7,
        ApiKey::FindCoordinator => 3,
        ApiKey::JoinGroup => 9,
        ApiKey::Heartbeat => 4,
        ApiKey::LeaveGroup => 5,
        ApiKey::SyncGroup => 5,
        ApiKey::DescribeGroups => 5,
        ApiKey::ListGroups => 4,
        ApiKey::ApiVersions => 3,
        ApiKey::CreateTopics => 7,
        ApiKey::DeleteTopics => 5,
        ApiKey::DeleteGroups => 2,
        ApiKey::InitProducerId => 4,
        ApiKey::DescribeConfigs => 4,
        ApiKey::CreatePartitions => 3,
        ApiKey::SaslHandshake => 1,
        // v1 adds the session lifetime (KIP-368), which this client does not act on yet.
        ApiKey::SaslAuthenticate => 0,
        _ => return None,
    })
}

/// The readable name of an API key, e.g. `Fetch`.
pub(crate) fn api_name(api_key: i16) -> String {
    match ApiKey::try_from(api_key) {
        Ok(key) => format!("{key:?}"),
        Err(()) => format!("api {api_key}"),
    }
}

/// A request waiting for its response: the response header version to decode with, and
/// where to deliver the body.
type Waiter = (i16, oneshot::Sender<Result<Bytes>>);

/// State shared by the connection and its reader task.
struct Shared {
    addr: String,
    /// Waiting requests by correlation id.
    waiters: StdMutex<HashMap<i32, Waiter>>,
    /// Set once the stream cannot be trusted; never cleared.
    broken: AtomicBool,
}

impl Shared {
    /// Marks the connection broken and fails every waiting request with `reason`.
    fn break_with(&self, kind: std::io::ErrorKind, reason: &str) {
        self.broken.store(true, Ordering::Release);
        let waiters: Vec<Waiter> = {
            let mut map = self.waiters.lock().expect("waiters poisoned");
            map.drain().map(|(_, w)| w).collect()
        };
        for (_, tx) in waiters {
            let _ = tx.send(Err(ClientError::Io {
                addr: self.addr.clone(),
                source: std::io::Error::new(kind, reason.to_string()),
            }));
        }
    }

    fn broken_error(&self) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            source: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection is closed"),
        }
    }
}

struct Writer {
    half: WriteHalf,
    /// Reused for every request so steady-state sends do not allocate.
    buf: BytesMut,
}

/// Marks the connection broken if dropped before `disarm`: a frame written half-way leaves
/// the stream out of step.
struct WriteGuard<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl WriteGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.break_with(
                std::io::ErrorKind::BrokenPipe,
                "a request was abandoned mid-write",
            );
        }
    }
}

/// A connection to one broker. Cheap to share behind an `Arc`; requests are pipelined.
pub struct Connection {
    shared: Arc<Shared>,
    client_id: StrBytes,
    writer: Mutex<Writer>,
    in_flight: Arc<Semaphore>,
    correlation_id: AtomicI32,
    /// Broker's supported (min, max) per API key, from ApiVersions.
    versions: HashMap<i16, (i16, i16)>,
    request_timeout: Duration,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Opens a plaintext connection and negotiates API versions.
    pub async fn connect(addr: &str, client_id: &str, request_timeout: Duration) -> Result<Self> {
        Self::connect_with(addr, client_id, request_timeout, &Transport::default()).await
    }

    /// Opens a connection secured as `transport` says (TLS first, then ApiVersions, then
    /// SASL, as Kafka clients do) and negotiates API versions.
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        request_timeout: Duration,
        transport: &Transport,
    ) -> Result<Self> {
        let timed_out = || ClientError::Connect {
            addr: addr.to_string(),
            reason: "connection timed out".into(),
        };
        let connect = transport.open(addr);
        let (read_half, write_half) =
            match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect).await {
                Ok(halves) => halves?,
                Err(_) => return Err(timed_out()),
            };
        let shared = Arc::new(Shared {
            addr: addr.to_string(),
            waiters: StdMutex::new(HashMap::new()),
            broken: AtomicBool::new(false),
        });
        let reader = tokio::spawn(read_loop(read_half, shared.clone()));
        let mut conn = Connection {
            shared,
            client_id: StrBytes::from_string(client_id.to_string()),
            writer: Mutex::new(Writer {
                half: write_half,
                buf: BytesMut::with_capacity(4096),
            }),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT_REQUESTS_MAX)),
            correlation_id: AtomicI32::new(0),
            versions: HashMap::new(),
            request_timeout,
            reader,
        };
        conn.versions = conn.negotiate().await?;
        if let Some(sasl) = transport.sasl() {
            crate::sasl::authenticate(&conn, sasl).await?;
        }
        Ok(conn)
    }

    /// Asks the broker which versions it supports: first with v3 (which carries the client's
    /// name), then with v0 if the broker does not know v3.
    async fn negotiate(&self) -> Result<HashMap<i16, (i16, i16)>> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("strom-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = match self.send_version(&request, 3).await {
            Ok(r) if r.error_code == 0 => r,
            Ok(_) | Err(ClientError::Protocol(_)) => {
                // A broker that does not speak v3 answers in v0 with UNSUPPORTED_VERSION.
                let r: ApiVersionsResponse = self.send_version(&request, 0).await?;
                ClientError::check(r.error_code, || "ApiVersions".into())?;
                r
            }
            Err(e) => return Err(e),
        };
        Ok(response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect())
    }

    /// The broker address this connection goes to.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Whether the stream failed or was left out of step; the owner should open a new
    /// connection.
    pub fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::Acquire)
    }

    /// Whether the broker supports the API at all.
    pub fn supports(&self, api_key: i16) -> bool {
        self.versions.contains_key(&api_key)
    }

    /// The highest version of `R` that both the broker and this client speak.
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        let client_max = client_max_version(R::KEY)
            .unwrap_or(R::VERSIONS.max)
            .min(R::VERSIONS.max);
        let client_min = R::VERSIONS.min;
        let unsupported = || ClientError::UnsupportedApi {
            api: api_name(R::KEY),
            client_min,
            client_max,
        };
        let (broker_min, broker_max) = *self.versions.get(&R::KEY).ok_or_else(unsupported)?;
        let version = client_max.min(broker_max);
        if version < client_min.max(broker_min) {
            return Err(unsupported());
        }
        Ok(version)
    }

    /// Sends a request at the negotiated version and waits for its response.
    pub async fn send<R: Request>(&self, request: &R) -> Result<R::Response> {
        let version = self.version_for::<R>()?;
        self.send_version(request, version).await
    }

    /// Sends a request at the given version and waits for its response.
    pub async fn send_version<R: Request>(&self, request: &R, version: i16) -> Result<R::Response> {
        self.submit_version(request, version).await?.wait().await
    }

    /// Writes a request at the negotiated version and returns at once; await the answer with
    /// [`PendingResponse::wait`]. Requests submitted one after another reach the broker in
    /// that order, which is what keeps a pipelined producer's batches in sequence.
    pub async fn submit<R: Request>(&self, request: &R) -> Result<PendingResponse<R::Response>> {
        let version = self.version_for::<R>()?;
        self.submit_version(request, version).await
    }

    async fn submit_version<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<PendingResponse<R::Response>> {
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Closed)?;
        let correlation_id = self.correlation_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiters
            .lock()
            .expect("waiters poisoned")
            .insert(correlation_id, (R::Response::header_version(version), tx));
        if let Err(e) = self.write::<R>(request, version, correlation_id).await {
            self.shared
                .waiters
                .lock()
                .expect("waiters poisoned")
                .remove(&correlation_id);
            return Err(e);
        }
        Ok(PendingResponse {
            rx,
            _permit: permit,
            shared: self.shared.clone(),
            api_key: R::KEY,
            version,
            request_timeout: self.request_timeout,
            _response: std::marker::PhantomData,
        })
    }

    /// Sends a request for which the broker sends no response (Produce with acks=0).
    pub async fn send_without_response<R: Request>(&self, request: &R) -> Result<()> {
        let version = self.version_for::<R>()?;
        let correlation_id = self.correlation_id.fetch_add(1, Ordering::Relaxed);
        self.write::<R>(request, version, correlation_id).await
    }

    /// Writes one request frame.
    async fn write<R: Request>(
        &self,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<()> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut writer = self.writer.lock().await;
        if self.is_broken() {
            return Err(self.shared.broken_error());
        }
        let writer = &mut *writer;
        writer.buf.clear();
        writer.buf.put_i32(0); // size, patched below
        encode_request_header_into_buffer(&mut writer.buf, &header)
            .map_err(|e| ClientError::protocol(format!("cannot encode request header: {e}")))?;
        request.encode(&mut writer.buf, version).map_err(|e| {
            ClientError::protocol(format!(
                "cannot encode {} v{version}: {e}",
                api_name(R::KEY)
            ))
        })?;
        let size = i32::try_from(writer.buf.len() - 4)
            .map_err(|_| ClientError::protocol("request larger than 2 GiB"))?;
        writer.buf[..4].copy_from_slice(&size.to_be_bytes());

        let guard = WriteGuard {
            shared: &self.shared,
            armed: true,
        };
        let written =
            tokio::time::timeout(self.request_timeout, writer.half.write_all(&writer.buf)).await;
        match written {
            Ok(Ok(())) => {
                guard.disarm();
                Ok(())
            }
            Ok(Err(e)) => {
                drop(guard);
                Err(ClientError::Io {
                    addr: self.shared.addr.clone(),
                    source: e,
                })
            }
            Err(_) => {
                drop(guard);
                Err(ClientError::Timeout {
                    what: format!("sending {} to {}", api_name(R::KEY), self.shared.addr),
                    timeout_ms: self.request_timeout.as_millis() as u64,
                })
            }
        }
    }
}

/// A request written to the broker whose answer is still to come.
pub struct PendingResponse<T> {
    rx: oneshot::Receiver<Result<Bytes>>,
    /// Holds the request's place among the connection's in-flight requests.
    _permit: tokio::sync::OwnedSemaphorePermit,
    shared: Arc<Shared>,
    api_key: i16,
    version: i16,
    request_timeout: Duration,
    _response: std::marker::PhantomData<fn() -> T>,
}

impl<T: Decodable> PendingResponse<T> {
    /// Waits up to the request timeout for the answer and decodes it. A timeout marks the
    /// connection broken, as Kafka clients treat a broker that stops answering as gone.
    pub async fn wait(self) -> Result<T> {
        let mut body = match tokio::time::timeout(self.request_timeout, self.rx).await {
            Ok(Ok(answer)) => answer?,
            Ok(Err(_)) => return Err(self.shared.broken_error()),
            Err(_) => {
                self.shared.break_with(
                    std::io::ErrorKind::TimedOut,
                    "an earlier request on this connection timed out",
                );
                return Err(ClientError::Timeout {
                    what: format!(
                        "{} response from {}",
                        api_name(self.api_key),
                        self.shared.addr
                    ),
                    timeout_ms: self.request_timeout.as_millis() as u64,
                });
            }
        };
        let version = self.version;
        T::decode(&mut body, version).map_err(|e| {
            ClientError::protocol(format!(
                "cannot decode {} v{version} response: {e}",
                api_name(self.api_key)
            ))
        })
    }
}

/// Reads response frames until the stream ends, delivering each to its waiting request.
async fn read_loop(mut half: ReadHalf, shared: Arc<Shared>) {
    loop {
        let size = match half.read_i32().await {
            Ok(size) => size,
            Err(e) => {
                let reason = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    "the broker closed the connection".to_string()
                } else {
                    e.to_string()
                };
                shared.break_with(e.kind(), &reason);
                return;
            }
        };
        let Some(size) = usize::try_from(size)
            .ok()
            .filter(|s| *s >= 4 && *s <= RESPONSE_BYTES_MAX)
        else {
            let reason = format!("response size {size} is out of bounds");
            let waiters: Vec<Waiter> = {
                let mut map = shared.waiters.lock().expect("waiters poisoned");
                map.drain().map(|(_, w)| w).collect()
            };
            shared.broken.store(true, Ordering::Release);
            for (_, tx) in waiters {
                let _ = tx.send(Err(ClientError::protocol(&reason)));
            }
            return;
        };
        let mut body = BytesMut::zeroed(size);
        if let Err(e) = half.read_exact(&mut body).await {
            shared.break_with(e.kind(), "the broker closed the connection mid-response");
            return;
        }
        let mut body = body.freeze();
        let correlation_id = i32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
        let waiter = shared
            .waiters
            .lock()
            .expect("waiters poisoned")
            .remove(&correlation_id);
        let Some((header_version, tx)) = waiter else {
            // The request was abandoned (or sent without expecting an answer): drop it.
            tracing::debug!(correlation_id, "dropping a response nobody waits for");
            continue;
        };
        let answer = ResponseHeader::decode(&mut body, header_version)
            .map(|_| body)
            .map_err(|e| ClientError::protocol(format!("bad response header: {e}")));
        let _ = tx.send(answer);
    }
}

#[cfg(test)]
mod tests {
    //! A scripted broker on a local socket checks framing, correlation ids and the ApiVersions
    //! fallback byte for byte.

    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{
        FetchRequest, MetadataRequest, MetadataResponse, ProduceRequest,
    };
    use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
    use tokio::net::{TcpListener, TcpStream};

    async fn read_request(stream: &mut TcpStream) -> Option<(RequestHeader, Bytes)> {
        let size = stream.read_i32().await.ok()?;
        let mut body = BytesMut::zeroed(size as usize);
        stream.read_exact(&mut body).await.ok()?;
        let mut body = body.freeze();
        let header = decode_request_header_from_buffer(&mut body).unwrap();
        Some((header, body))
    }

    async fn write_response<R: Encodable + HeaderVersion>(
        stream: &mut TcpStream,
        correlation_id: i32,
        response: &R,
        version: i16,
    ) {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, R::header_version(version))
            .unwrap();
        response.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        stream.write_all(&buf).await.unwrap();
    }

    /// An old broker: knows ApiVersions up to v2 only, Metadata 0..=9 and Fetch 4..=11.
    async fn old_broker(listener: TcpListener) {
        let (mut stream, _) = listener.accept().await.unwrap();
        let apis = vec![
            ApiVersion::default()
                .with_api_key(18)
                .with_min_version(0)
                .with_max_version(2),
            ApiVersion::default()
                .with_api_key(3)
                .with_min_version(0)
                .with_max_version(9),
            ApiVersion::default()
                .with_api_key(1)
                .with_min_version(4)
                .with_max_version(11),
        ];
        while let Some((header, mut body)) = read_request(&mut stream).await {
            match header.request_api_key {
                18 if header.request_api_version > 2 => {
                    // As Kafka does: answer an unknown ApiVersions version in v0.
                    let r = ApiVersionsResponse::default()
                        .with_error_code(35)
                        .with_api_keys(apis.clone());
                    write_response(&mut stream, header.correlation_id, &r, 0).await;
                }
                18 => {
                    let r = ApiVersionsResponse::default().with_api_keys(apis.clone());
                    let v = header.request_api_version;
                    write_response(&mut stream, header.correlation_id, &r, v).await;
                }
                3 => {
                    let v = header.request_api_version;
                    assert_eq!(v, 9, "the highest common Metadata version");
                    MetadataRequest::decode(&mut body, v).unwrap();
                    assert_eq!(body.remaining(), 0, "the whole request body was read");
                    let r = MetadataResponse::default().with_cluster_id(Some("c".into()));
                    write_response(&mut stream, header.correlation_id, &r, v).await;
                }
                other => panic!("unexpected api {other}"),
            }
        }
    }

    #[tokio::test]
    async fn negotiates_down_to_an_old_broker() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(old_broker(listener));

        let conn = Connection::connect(&addr, "test", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(conn.version_for::<MetadataRequest>().unwrap(), 9);
        assert_eq!(conn.version_for::<FetchRequest>().unwrap(), 11);
        let err = conn.version_for::<ProduceRequest>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("broker does not support Produce"),
            "{err}"
        );

        // Two requests in a row: each answer matches its correlation id.
        for _ in 0..2 {
            let r = conn.send(&MetadataRequest::default()).await.unwrap();
            assert_eq!(r.cluster_id.as_deref(), Some("c"));
        }
        assert!(!conn.is_broken());
        drop(conn);
        broker.await.unwrap();
    }

    #[tokio::test]
    async fn an_oversized_response_is_refused_and_breaks_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (header, _) = read_request(&mut stream).await.unwrap();
            let r = ApiVersionsResponse::default().with_api_keys(vec![ApiVersion::default()
                .with_api_key(3)
                .with_min_version(0)
                .with_max_version(12)]);
            write_response(&mut stream, header.correlation_id, &r, 3).await;
            let _ = read_request(&mut stream).await.unwrap();
            stream.write_i32(i32::MAX).await.unwrap();
            // Keep the socket open until the client gives up.
            let _ = read_request(&mut stream).await;
        });
        let conn = Connection::connect(&addr, "test", Duration::from_secs(5))
            .await
            .unwrap();
        let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
        assert!(err.to_string().contains("out of bounds"), "{err}");
        assert!(
            conn.is_broken(),
            "the stream is out of step and must be replaced"
        );
    }

    #[tokio::test]
    async fn pipelined_answers_find_their_requests_in_any_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (header, _) = read_request(&mut stream).await.unwrap();
            let r = ApiVersionsResponse::default().with_api_keys(vec![ApiVersion::default()
                .with_api_key(3)
                .with_min_version(0)
                .with_max_version(12)]);
            write_response(&mut stream, header.correlation_id, &r, 3).await;
            // Read three requests before answering any, then answer the last one first.
            let mut ids = Vec::new();
            for _ in 0..3 {
                ids.push(read_request(&mut stream).await.unwrap().0.correlation_id);
            }
            for id in ids.into_iter().rev() {
                let r = MetadataResponse::default().with_cluster_id(Some(id.to_string().into()));
                write_response(&mut stream, id, &r, 12).await;
            }
        });
        let conn = Connection::connect(&addr, "test", Duration::from_secs(5))
            .await
            .unwrap();
        let request = MetadataRequest::default();
        let (a, b, c) = tokio::join!(
            conn.send(&request),
            conn.send(&request),
            conn.send(&request)
        );
        let mut ids: Vec<String> = [a, b, c]
            .into_iter()
            .map(|r| r.unwrap().cluster_id.unwrap().to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["1", "2", "3"], "each request got its own answer");
    }
}
