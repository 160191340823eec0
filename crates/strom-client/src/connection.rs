//! One TCP connection to one broker: length-prefixed frames, correlation ids, and the API
//! versions negotiated with `ApiVersions` when the connection opens.
//!
//! ```text
//! request:  | size: i32 BE | header (api key, version, correlation id, client id) | body |
//! response: | size: i32 BE | header (correlation id [, tagged fields]) | body |
//! ```
//!
//! Requests go one at a time (a connection holds at most one request in flight); the client
//! opens one connection per broker, plus a dedicated one for a consumer group's coordinator so
//! heartbeats never wait behind a long-polling fetch. If a request is abandoned half-way (a
//! timeout or a dropped future), the connection is marked broken and the owner replaces it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    encode_request_header_into_buffer, Decodable, HeaderVersion, Request, StrBytes,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::error::{ClientError, Result};

/// The largest response the client accepts, in bytes. A fetch asks for at most
/// `fetch_max_bytes` (50 MiB by default), so this leaves room for headers and one oversized
/// first batch.
pub const RESPONSE_BYTES_MAX: usize = 128 * 1024 * 1024;

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
        ApiKey::OffsetCommit => 8,
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

struct Io {
    stream: TcpStream,
    /// Reused for every request so steady-state sends do not allocate.
    write_buf: BytesMut,
}

/// A connection to one broker. Cheap to share behind an `Arc`; requests are serialized.
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    io: Mutex<Io>,
    correlation_id: AtomicI32,
    /// Set while a request is on the wire; left set if the request was abandoned, because the
    /// stream may then hold half a frame.
    broken: AtomicBool,
    /// Broker's supported (min, max) per API key, from ApiVersions.
    versions: HashMap<i16, (i16, i16)>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Connection {
    /// Opens a connection and negotiates API versions.
    pub async fn connect(addr: &str, client_id: &str, request_timeout: Duration) -> Result<Self> {
        let connect = TcpStream::connect(addr);
        let stream =
            match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(ClientError::connect(addr, &e)),
                Err(_) => {
                    return Err(ClientError::Connect {
                        addr: addr.to_string(),
                        reason: "connection timed out".into(),
                    })
                }
            };
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            io: Mutex::new(Io {
                stream,
                write_buf: BytesMut::with_capacity(4096),
            }),
            correlation_id: AtomicI32::new(0),
            broken: AtomicBool::new(false),
            versions: HashMap::new(),
            request_timeout,
        };
        conn.versions = conn.negotiate().await?;
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
        &self.addr
    }

    /// Whether a request was abandoned half-way or the stream failed; the owner should open a
    /// new connection.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
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
        let mut frame = tokio::time::timeout(
            self.request_timeout,
            self.exchange::<R>(request, version, true),
        )
        .await
        .map_err(|_| ClientError::Timeout {
            what: format!("{} response from {}", api_name(R::KEY), self.addr),
            timeout_ms: self.request_timeout.as_millis() as u64,
        })??
        .expect("a response was expected");
        R::Response::decode(&mut frame, version).map_err(|e| {
            ClientError::protocol(format!(
                "cannot decode {} v{version} response: {e}",
                api_name(R::KEY)
            ))
        })
    }

    /// Sends a request for which the broker sends no response (Produce with acks=0).
    pub async fn send_without_response<R: Request>(&self, request: &R) -> Result<()> {
        let version = self.version_for::<R>()?;
        tokio::time::timeout(
            self.request_timeout,
            self.exchange::<R>(request, version, false),
        )
        .await
        .map_err(|_| ClientError::Timeout {
            what: format!("sending {} to {}", api_name(R::KEY), self.addr),
            timeout_ms: self.request_timeout.as_millis() as u64,
        })??;
        Ok(())
    }

    /// Writes one request frame and, if `expect_response`, reads frames until the one with
    /// this request's correlation id arrives; returns the response body (header removed).
    async fn exchange<R: Request>(
        &self,
        request: &R,
        version: i16,
        expect_response: bool,
    ) -> Result<Option<Bytes>> {
        let mut io = self.io.lock().await;
        if self.is_broken() {
            return Err(ClientError::Io {
                addr: self.addr.clone(),
                source: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection is broken"),
            });
        }
        self.broken.store(true, Ordering::Release);
        let correlation_id = self.correlation_id.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));

        let io = &mut *io;
        io.write_buf.clear();
        io.write_buf.put_i32(0); // size, patched below
        encode_request_header_into_buffer(&mut io.write_buf, &header)
            .map_err(|e| ClientError::protocol(format!("cannot encode request header: {e}")))?;
        request.encode(&mut io.write_buf, version).map_err(|e| {
            ClientError::protocol(format!(
                "cannot encode {} v{version}: {e}",
                api_name(R::KEY)
            ))
        })?;
        let size = i32::try_from(io.write_buf.len() - 4)
            .map_err(|_| ClientError::protocol("request larger than 2 GiB"))?;
        io.write_buf[..4].copy_from_slice(&size.to_be_bytes());
        let io_err = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        io.stream.write_all(&io.write_buf).await.map_err(io_err)?;
        if !expect_response {
            self.broken.store(false, Ordering::Release);
            return Ok(None);
        }

        let header_version = R::Response::header_version(version);
        loop {
            let size = io.stream.read_i32().await.map_err(io_err)?;
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s <= RESPONSE_BYTES_MAX)
                .ok_or_else(|| {
                    ClientError::protocol(format!("response size {size} is out of bounds"))
                })?;
            let mut body = BytesMut::zeroed(size);
            io.stream.read_exact(&mut body).await.map_err(io_err)?;
            let mut body = body.freeze();
            let response_header = ResponseHeader::decode(&mut body, header_version)
                .map_err(|e| ClientError::protocol(format!("bad response header: {e}")))?;
            if response_header.correlation_id == correlation_id {
                self.broken.store(false, Ordering::Release);
                return Ok(Some(body));
            }
            // A response to an earlier request that was sent without expecting an answer
            // (a broker may still answer Produce acks=0 with an error); skip it.
            tracing::debug!(
                expected = correlation_id,
                got = response_header.correlation_id,
                "skipping response with another correlation id"
            );
        }
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
    use tokio::net::TcpListener;

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
}
