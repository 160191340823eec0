//! One connection's security state, between the socket and the request handlers. On a SASL
//! listener it answers SaslHandshake and SaslAuthenticate itself (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512, with Kafka's framed tokens or the raw tokens of SaslHandshake v0), lets
//! only ApiVersions through before authentication, and then hands every request to the
//! broker with the authenticated principal.
//!
//! A failed authentication is answered after `connection.failed.authentication.delay.ms`
//! and the connection is then closed; the log line names the peer and the user, never the
//! credentials.
//!
//! Re-authentication (KIP-368): with `connections.max.reauth.ms` set, every authentication
//! starts a session of that length, and SaslAuthenticate (v1+) tells the client its
//! lifetime. The client re-authenticates by sending SaslHandshake and SaslAuthenticate again
//! on the same connection, at most once a second, with the same mechanism and as the same
//! principal; the session then starts again. A change of principal or mechanism fails the
//! re-authentication and closes the connection (Kafka's `ReauthInfo`). Once a session has
//! expired, the next request that does not begin a re-authentication closes the
//! connection, as Kafka's `Processor` does (`serverAuthenticationSessionExpired`).
//!
//! Responses of requests made before a re-authentication still go out first and in order:
//! the connection loop queues the SASL replies behind them like any other reply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use strom_protocol::header::decode_header;
use strom_protocol::response::encode_response;
use strom_protocol::ResponseError;

use super::scram::{parse_client_first, ScramError, ServerExchange};
use super::settings::Mechanism;
use crate::broker::{Broker, Reply, RequestContext};

/// Kafka's PLAIN message for a wrong user name or password (PlainServerCallbackHandler).
pub const PLAIN_INVALID_CREDENTIALS: &str = "Authentication failed: Invalid username or password";

/// Kafka's principal for connections that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

enum SaslState {
    /// Waiting for SaslHandshake.
    Handshake,
    /// Mechanism chosen; waiting for the first token (`raw`: SaslHandshake v0 framing).
    FirstToken { mechanism: Mechanism, raw: bool },
    /// SCRAM server-first sent; waiting for the client's final message.
    ScramFinal {
        exchange: Box<ServerExchange>,
        raw: bool,
    },
    /// A re-authentication asked for another mechanism: the handshake was answered, and
    /// the next token fails with `message` (Kafka's `REAUTH_BAD_MECHANISM`, so the failure
    /// is reported where authentication failures are).
    BadMechanism { message: String, raw: bool },
}

/// Kafka lets a connection begin a re-authentication at most once a second
/// (`KafkaChannel.MIN_REAUTH_INTERVAL_ONE_SECOND_NANOS`).
const MIN_REAUTH_INTERVAL: Duration = Duration::from_secs(1);

/// The timing of one connection's authenticated session (KIP-368), apart from any I/O so
/// tests drive it with their own `now`.
#[derive(Debug, Default)]
struct Lifetime {
    /// When the session ends; `None`: it never does, and re-authentication is off.
    expires_at: Option<Instant>,
    /// When the last re-authentication began, for [`MIN_REAUTH_INTERVAL`].
    last_reauth_start: Option<Instant>,
}

impl Lifetime {
    /// Starts a session at `now` that lasts `max_reauth_ms` (0: forever); returns the
    /// lifetime to tell the client. SASL/PLAIN and SCRAM credentials carry no lifetime of
    /// their own, so the setting alone decides (Kafka takes the smaller of the two).
    fn start(&mut self, now: Instant, max_reauth_ms: u64) -> i64 {
        self.expires_at = (max_reauth_ms > 0).then(|| now + Duration::from_millis(max_reauth_ms));
        i64::try_from(max_reauth_ms).unwrap_or(i64::MAX)
    }

    /// Whether the session has ended at `now` (Kafka: strictly after the expiry time).
    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|end| now > end)
    }

    /// Whether a SaslHandshake at `now` begins a re-authentication, and if so notes when.
    /// As in Kafka, a session that never expires cannot be re-authenticated, nor can one
    /// that began re-authenticating less than a second ago; such a handshake is answered
    /// like any other request after authentication, with ILLEGAL_SASL_STATE.
    fn begin_reauth(&mut self, now: Instant) -> bool {
        if self.expires_at.is_none() {
            return false;
        }
        if self
            .last_reauth_start
            .is_some_and(|last| now.saturating_duration_since(last) < MIN_REAUTH_INTERVAL)
        {
            return false;
        }
        self.last_reauth_start = Some(now);
        true
    }
}

pub struct Session {
    pub ctx: RequestContext,
    /// `None` once authenticated (or on a listener without SASL).
    sasl: Option<SaslState>,
    close: bool,
    /// The authenticated session's expiry (`connections.max.reauth.ms`).
    lifetime: Lifetime,
    /// The mechanism chosen in the last SaslHandshake; a re-authentication must keep it.
    mechanism: Option<Mechanism>,
    /// A re-authentication is under way: it must end as the principal already authenticated.
    reauthenticating: bool,
    /// The listener the connection came in on, for its own `connections.max.reauth.ms`.
    listener: Option<String>,
}

/// The outcome of one authentication step.
enum Step {
    Continue(Vec<u8>),
    Done {
        reply: Vec<u8>,
        user: String,
    },
    Fail {
        message: String,
        user: Option<String>,
    },
}

impl Session {
    pub fn new(ctx: RequestContext, sasl: bool) -> Session {
        Session {
            ctx,
            sasl: sasl.then_some(SaslState::Handshake),
            close: false,
            lifetime: Lifetime::default(),
            mechanism: None,
            reauthenticating: false,
            listener: None,
        }
    }

    /// Names the listener the connection came in on, whose
    /// `listener.name.<listener>.<mechanism>.connections.max.reauth.ms` then applies.
    pub fn on_listener(mut self, listener: &str) -> Session {
        self.listener = Some(listener.to_string());
        self
    }

    pub fn authenticated(&self) -> bool {
        self.sasl.is_none()
    }

    /// Whether the connection must close after the last reply (a failed authentication).
    pub fn must_close(&self) -> bool {
        self.close
    }

    /// The largest frame to accept now: before authentication, `sasl.server.max.receive.size`.
    pub fn max_frame_bytes(&self, broker: &Broker, authenticated_max: usize) -> usize {
        if self.authenticated() {
            authenticated_max
        } else {
            broker
                .config
                .security
                .sasl_max_receive_size
                .min(authenticated_max)
        }
    }

    pub async fn handle(&mut self, broker: &Arc<Broker>, frame: Bytes) -> Reply {
        let Some(state) = self.sasl.take() else {
            return self.authenticated_request(broker, frame).await;
        };
        match state {
            SaslState::FirstToken {
                mechanism,
                raw: true,
            } => {
                let step = self.first_token(broker, mechanism, &frame, true).await;
                self.raw_reply(broker, step)
            }
            SaslState::ScramFinal {
                exchange,
                raw: true,
            } => {
                let step = finish_scram(&exchange, &frame);
                self.raw_reply(broker, step)
            }
            SaslState::BadMechanism { message, raw: true } => {
                let user = self.current_user();
                self.raw_reply(broker, Step::Fail { message, user })
            }
            state => self.framed(broker, state, frame).await,
        }
    }

    /// A request on an authenticated connection: a SaslHandshake that begins a
    /// re-authentication, or, unless the session has expired, a request for the broker.
    /// As in Kafka's `Processor`, a SaslHandshake may begin a re-authentication even once
    /// the session has expired; any other request then closes the connection.
    async fn authenticated_request(&mut self, broker: &Arc<Broker>, frame: Bytes) -> Reply {
        let api_key = frame.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
        let now = Instant::now();
        if api_key == Some(ApiKey::SaslHandshake as i16) && self.lifetime.begin_reauth(now) {
            tracing::debug!(peer = %self.ctx.client_host, principal = %self.ctx.principal, "re-authentication begins");
            self.reauthenticating = true;
            return self.framed(broker, SaslState::Handshake, frame).await;
        }
        if self.lifetime.expired(now) {
            self.close = true;
            return Reply::Close(format!(
                "SASL session of {} expired without re-authentication (connections.max.reauth.ms)",
                self.ctx.principal
            ));
        }
        broker.handle(frame, &self.ctx).await
    }

    /// The user name of the authenticated principal, for log lines.
    fn current_user(&self) -> Option<String> {
        self.ctx
            .principal
            .strip_prefix("User:")
            .filter(|_| self.reauthenticating)
            .map(str::to_string)
    }

    /// A Kafka request while SASL is not done.
    async fn framed(&mut self, broker: &Arc<Broker>, state: SaslState, frame: Bytes) -> Reply {
        let peek = match decode_header(frame.clone()) {
            Ok(h) => h,
            // An unsupported ApiVersions version is still answered (KIP-511).
            Err(_) => {
                self.sasl = Some(state);
                return broker.handle(frame, &self.ctx).await;
            }
        };
        let version = peek.header.request_api_version;
        let corr = peek.header.correlation_id;
        let mut body = peek.body;
        match (peek.api_key, state) {
            (ApiKey::ApiVersions, state) => {
                self.sasl = Some(state);
                broker.handle(frame, &self.ctx).await
            }
            (ApiKey::SaslHandshake, SaslState::Handshake) => {
                let Ok(req) = SaslHandshakeRequest::decode(&mut body, version) else {
                    return self.refuse("malformed SaslHandshake request");
                };
                let enabled = &broker.config.security.sasl_mechanisms;
                let mechanisms = enabled
                    .iter()
                    .map(|m| StrBytes::from_static_str(m.name()))
                    .collect();
                let chosen =
                    Mechanism::from_name(req.mechanism.as_str()).filter(|m| enabled.contains(m));
                let mut response = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
                let raw = version == 0;
                match (chosen, self.mechanism) {
                    (Some(now), Some(before)) if self.reauthenticating && now != before => {
                        let message = format!(
                            "SASL mechanism '{}' requested by client is not supported for re-authentication of mechanism '{}'",
                            now.name(),
                            before.name()
                        );
                        self.sasl = Some(SaslState::BadMechanism { message, raw });
                    }
                    (Some(mechanism), _) => {
                        self.mechanism = Some(mechanism);
                        self.sasl = Some(SaslState::FirstToken { mechanism, raw })
                    }
                    (None, _) => {
                        tracing::warn!(peer = %self.ctx.client_host, mechanism = %req.mechanism.as_str(), "closing connection: unsupported SASL mechanism");
                        response.error_code = ResponseError::UnsupportedSaslMechanism.code();
                        self.close = true;
                    }
                }
                encoded(ApiKey::SaslHandshake, corr, version, &response)
            }
            (
                ApiKey::SaslAuthenticate,
                SaslState::FirstToken {
                    mechanism,
                    raw: false,
                },
            ) => {
                let Ok(req) = SaslAuthenticateRequest::decode(&mut body, version) else {
                    return self.refuse("malformed SaslAuthenticate request");
                };
                let step = self
                    .first_token(broker, mechanism, &req.auth_bytes, false)
                    .await;
                self.framed_reply(broker, corr, version, step)
            }
            (
                ApiKey::SaslAuthenticate,
                SaslState::ScramFinal {
                    exchange,
                    raw: false,
                },
            ) => {
                let Ok(req) = SaslAuthenticateRequest::decode(&mut body, version) else {
                    return self.refuse("malformed SaslAuthenticate request");
                };
                let step = finish_scram(&exchange, &req.auth_bytes);
                self.framed_reply(broker, corr, version, step)
            }
            (
                ApiKey::SaslAuthenticate,
                SaslState::BadMechanism {
                    message,
                    raw: false,
                },
            ) => {
                let user = self.current_user();
                self.framed_reply(broker, corr, version, Step::Fail { message, user })
            }
            (ApiKey::SaslAuthenticate, _) => {
                tracing::warn!(peer = %self.ctx.client_host, "closing connection: SaslAuthenticate before SaslHandshake");
                self.close = true;
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate request received before SaslHandshake",
                    )));
                encoded(ApiKey::SaslAuthenticate, corr, version, &response)
            }
            (api, _) => self.refuse(&format!(
                "{api:?} request before SASL authentication completed"
            )),
        }
    }

    fn refuse(&mut self, reason: &str) -> Reply {
        self.close = true;
        Reply::Close(format!("{reason} (ILLEGAL_SASL_STATE)"))
    }

    async fn first_token(
        &mut self,
        broker: &Arc<Broker>,
        mechanism: Mechanism,
        token: &[u8],
        raw: bool,
    ) -> Step {
        match mechanism {
            Mechanism::Plain => plain(broker, token).await,
            scram => {
                let first = match parse_client_first(token) {
                    Ok(f) => f,
                    Err(e) => {
                        return Step::Fail {
                            message: e.to_string(),
                            user: None,
                        }
                    }
                };
                let Some(credential) = broker.users.credential(&first.user, scram) else {
                    return Step::Fail {
                        message: ScramError::InvalidCredentials(scram.name()).to_string(),
                        user: Some(first.user),
                    };
                };
                let (exchange, reply) = ServerExchange::start(scram, first, credential);
                self.sasl = Some(SaslState::ScramFinal {
                    exchange: Box::new(exchange),
                    raw,
                });
                Step::Continue(reply)
            }
        }
    }

    /// Takes the authenticated user as the connection's principal; a re-authentication
    /// must name the principal already there (Kafka refuses a change of principal).
    fn authenticated_as(&mut self, user: &str) -> Result<(), String> {
        let principal = format!("User:{user}");
        if self.reauthenticating {
            if *self.ctx.principal != *principal {
                return Err(format!(
                    "Cannot change principals during re-authentication from {} to {principal}",
                    self.ctx.principal
                ));
            }
            tracing::debug!(peer = %self.ctx.client_host, principal = %principal, "re-authenticated");
        } else {
            tracing::debug!(peer = %self.ctx.client_host, principal = %principal, "authenticated");
        }
        self.ctx.principal = principal.into();
        self.reauthenticating = false;
        Ok(())
    }

    /// Starts the session after an authentication; returns its lifetime for the response
    /// (0: no limit).
    fn start_session(&mut self, broker: &Broker) -> i64 {
        let security = &broker.config.security;
        let max_reauth_ms = match self.mechanism {
            Some(m) => security.connections_max_reauth_ms_for(self.listener.as_deref(), m),
            None => security.connections_max_reauth_ms,
        };
        self.lifetime.start(Instant::now(), max_reauth_ms)
    }

    fn failed(&mut self, broker: &Broker, message: &str, user: Option<&str>) -> Duration {
        if self.reauthenticating {
            tracing::warn!(peer = %self.ctx.client_host, principal = %self.ctx.principal, user = user.unwrap_or("?"), reason = %message, "SASL re-authentication failed; closing connection");
        } else {
            tracing::warn!(peer = %self.ctx.client_host, user = user.unwrap_or("?"), reason = %message, "SASL authentication failed; closing connection");
        }
        self.close = true;
        Duration::from_millis(broker.config.security.failed_authentication_delay_ms)
    }

    fn framed_reply(&mut self, broker: &Broker, corr: i32, version: i16, step: Step) -> Reply {
        let response = SaslAuthenticateResponse::default();
        match step {
            Step::Continue(bytes) => encoded(
                ApiKey::SaslAuthenticate,
                corr,
                version,
                &response.with_auth_bytes(bytes.into()),
            ),
            Step::Done { reply, user } => {
                if let Err(message) = self.authenticated_as(&user) {
                    return self.framed_reply(
                        broker,
                        corr,
                        version,
                        Step::Fail {
                            message,
                            user: Some(user),
                        },
                    );
                }
                let lifetime_ms = self.start_session(broker);
                let mut response = response.with_auth_bytes(reply.into());
                // v0 has no field for it; such a client is still cut off at expiry (KIP-368).
                if version >= 1 {
                    response.session_lifetime_ms = lifetime_ms;
                }
                encoded(ApiKey::SaslAuthenticate, corr, version, &response)
            }
            Step::Fail { message, user } => {
                let delay = self.failed(broker, &message, user.as_deref());
                let response = response
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_string(message)));
                delayed(
                    encoded(ApiKey::SaslAuthenticate, corr, version, &response),
                    delay,
                )
            }
        }
    }

    /// SaslHandshake v0: tokens travel as bare size-prefixed frames; a failure just closes.
    fn raw_reply(&mut self, broker: &Broker, step: Step) -> Reply {
        let frame = |bytes: Vec<u8>| {
            let mut out = BytesMut::with_capacity(4 + bytes.len());
            out.put_i32(bytes.len() as i32);
            out.put_slice(&bytes);
            Reply::Ready(out)
        };
        match step {
            Step::Continue(bytes) => frame(bytes),
            // Raw tokens cannot tell the client its session lifetime, but the session still
            // ends on time, as in Kafka: such a client must re-authenticate or reconnect.
            Step::Done { reply, user } => match self.authenticated_as(&user) {
                Ok(()) => {
                    self.start_session(broker);
                    frame(reply)
                }
                Err(message) => self.raw_reply(
                    broker,
                    Step::Fail {
                        message,
                        user: Some(user),
                    },
                ),
            },
            Step::Fail { message, user } => {
                let delay = self.failed(broker, &message, user.as_deref());
                Reply::Deferred(Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    None
                }))
            }
        }
    }
}

fn encoded<R>(api: ApiKey, corr: i32, version: i16, body: &R) -> Reply
where
    R: kafka_protocol::protocol::Encodable
        + kafka_protocol::protocol::HeaderVersion
        + crate::handlers::error_counts::ErrorCodes,
{
    crate::handlers::error_counts::count(api, body);
    match encode_response(corr, version, body) {
        Ok(b) => Reply::Ready(b),
        Err(e) => Reply::Close(e.to_string()),
    }
}

fn delayed(reply: Reply, delay: Duration) -> Reply {
    match reply {
        Reply::Ready(bytes) => Reply::Deferred(Box::pin(async move {
            tokio::time::sleep(delay).await;
            Some(bytes)
        })),
        other => other,
    }
}

fn finish_scram(exchange: &ServerExchange, token: &[u8]) -> Step {
    match exchange.finish(token) {
        Ok(reply) => Step::Done {
            reply,
            user: exchange.user().to_string(),
        },
        Err(e) => Step::Fail {
            message: e.to_string(),
            user: Some(exchange.user().to_string()),
        },
    }
}

/// Whether `password` is `user`'s, checked against the user's stored SCRAM credential
/// (PBKDF2 runs off the async workers). PLAIN here and the JSON protocol's `authenticate`
/// both use it.
pub async fn verify_password(broker: &Arc<Broker>, user: &str, password: &str) -> bool {
    let credential = Mechanism::SCRAM
        .into_iter()
        .find_map(|m| Some((m, broker.users.credential(user, m)?)));
    match credential {
        Some((m, credential)) => {
            let password = password.to_string();
            tokio::task::spawn_blocking(move || credential.verify_password(m, &password))
                .await
                .unwrap_or(false)
        }
        None => false,
    }
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
async fn plain(broker: &Arc<Broker>, token: &[u8]) -> Step {
    let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
    let [authzid, user, password] = parts.as_slice() else {
        return Step::Fail {
            message: "Invalid SASL/PLAIN response: expected 3 tokens".into(),
            user: None,
        };
    };
    let (Ok(authzid), Ok(user), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(user),
        std::str::from_utf8(password),
    ) else {
        return Step::Fail {
            message: "Invalid SASL/PLAIN response: not UTF-8".into(),
            user: None,
        };
    };
    if user.is_empty() || password.is_empty() {
        return Step::Fail {
            message: "Authentication failed: username or password is empty".into(),
            user: None,
        };
    }
    if !authzid.is_empty() && authzid != user {
        return Step::Fail {
            message: "Authentication failed: Client requested an authorization id that is different from username".into(),
            user: Some(user.to_string()),
        };
    }
    if verify_password(broker, user, password).await {
        Step::Done {
            reply: Vec::new(),
            user: user.to_string(),
        }
    } else {
        Step::Fail {
            message: PLAIN_INVALID_CREDENTIALS.into(),
            user: Some(user.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The re-authentication state machine (KIP-368), driven request by request as Kafka's
    //! `SaslServerAuthenticatorTest` and `SocketServerTest` do for theirs.

    use super::*;
    use crate::security::scram::{ScramCredential, MIN_ITERATIONS};
    use crate::ConfigBuilder;
    use bytes::Buf;
    use kafka_protocol::messages::{MetadataRequest, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Encodable, HeaderVersion};

    const MAX_REAUTH_MS: u64 = 3_000;

    #[test]
    fn a_lifetime_expires_after_the_setting_and_limits_reauthentication_to_once_a_second() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut off = Lifetime::default();
        assert_eq!(off.start(t0, 0), 0);
        assert!(!off.expired(t0 + Duration::from_secs(86_400)));
        assert!(
            !off.begin_reauth(t0),
            "no session lifetime: no re-authentication"
        );

        let mut on = Lifetime::default();
        assert_eq!(on.start(t0, MAX_REAUTH_MS), 3_000);
        assert!(
            !on.expired(t0 + ms(3_000)),
            "Kafka expires strictly after the end"
        );
        assert!(on.expired(t0 + ms(3_001)));
        assert!(on.begin_reauth(t0 + ms(2_700)));
        assert!(!on.begin_reauth(t0 + ms(3_699)), "less than a second later");
        assert!(on.begin_reauth(t0 + ms(3_700)));
        on.start(t0 + ms(3_700), MAX_REAUTH_MS);
        assert!(
            !on.expired(t0 + ms(6_000)),
            "a re-authentication starts a new session"
        );
    }

    fn open_broker(dir: &std::path::Path, max_reauth_ms: u64) -> Arc<Broker> {
        open_broker_with(dir, max_reauth_ms, &[])
    }

    fn open_broker_with(
        dir: &std::path::Path,
        max_reauth_ms: u64,
        extra: &[(&str, &str)],
    ) -> Arc<Broker> {
        let mut config = ConfigBuilder::new();
        for (name, value) in extra {
            config.set(name, value, "test").unwrap();
        }
        let set = |c: &mut ConfigBuilder, k: &str, v: &str| c.set(k, v, "test").unwrap();
        set(&mut config, "data.dir", dir.to_str().unwrap());
        set(
            &mut config,
            "sasl.enabled.mechanisms",
            "PLAIN,SCRAM-SHA-256",
        );
        set(
            &mut config,
            "connection.failed.authentication.delay.ms",
            "0",
        );
        set(
            &mut config,
            "connections.max.reauth.ms",
            &max_reauth_ms.to_string(),
        );
        let broker = Broker::open(config.build().unwrap()).unwrap();
        let upserts = ["alice", "bob"]
            .into_iter()
            .map(|user| {
                let password = format!("{user}-pw");
                let c = ScramCredential::from_password(
                    Mechanism::ScramSha256,
                    &password,
                    MIN_ITERATIONS,
                );
                (user.to_string(), Mechanism::ScramSha256, c)
            })
            .collect();
        broker.users.apply(upserts, &[]).unwrap();
        broker
    }

    fn request<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("session-test")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    /// The response bytes of `reply`, waiting out a delayed one; `None` for a close.
    async fn bytes_of(reply: Reply) -> Option<Bytes> {
        match reply {
            Reply::Ready(b) => Some(b.freeze()),
            Reply::Deferred(f) => f.await.map(BytesMut::freeze),
            Reply::None | Reply::Close(_) => None,
        }
    }

    fn decode<R: Decodable + HeaderVersion>(mut bytes: Bytes, version: i16) -> R {
        let size = bytes.get_i32() as usize;
        assert_eq!(size, bytes.len());
        ResponseHeader::decode(&mut bytes, R::header_version(version)).unwrap();
        R::decode(&mut bytes, version).unwrap()
    }

    async fn handshake(s: &mut Session, b: &Arc<Broker>, mechanism: &'static str) -> i16 {
        let req =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let reply = s.handle(b, request(ApiKey::SaslHandshake, 1, &req)).await;
        let bytes = bytes_of(reply).await.expect("a handshake response");
        decode::<SaslHandshakeResponse>(bytes, 1).error_code
    }

    /// SaslAuthenticate v2 with a PLAIN token; the response's error code and lifetime.
    async fn plain_authenticate(
        s: &mut Session,
        b: &Arc<Broker>,
        user: &str,
        password: &str,
    ) -> (i16, i64) {
        let token = format!("\0{user}\0{password}").into_bytes();
        let req = SaslAuthenticateRequest::default().with_auth_bytes(token.into());
        let reply = s
            .handle(b, request(ApiKey::SaslAuthenticate, 2, &req))
            .await;
        let bytes = bytes_of(reply).await.expect("an authenticate response");
        let response = decode::<SaslAuthenticateResponse>(bytes, 2);
        (response.error_code, response.session_lifetime_ms)
    }

    async fn metadata(s: &mut Session, b: &Arc<Broker>) -> Reply {
        s.handle(b, request(ApiKey::Metadata, 4, &MetadataRequest::default()))
            .await
    }

    fn new_session() -> Session {
        Session::new(RequestContext::anonymous("127.0.0.1"), true)
    }

    /// Moves the session's clock on: the session ended long ago and so did the last
    /// re-authentication.
    fn expire(s: &mut Session) {
        let past = Instant::now() - Duration::from_secs(10);
        s.lifetime.expires_at = Some(past);
        s.lifetime.last_reauth_start = Some(past);
    }

    #[tokio::test]
    async fn reauthentication_as_the_same_user_renews_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let b = open_broker(dir.path(), MAX_REAUTH_MS);
        let mut s = new_session();
        assert_eq!(handshake(&mut s, &b, "PLAIN").await, 0);
        assert_eq!(
            plain_authenticate(&mut s, &b, "alice", "alice-pw").await,
            (0, 3_000)
        );
        assert!(s.authenticated());
        assert!(matches!(metadata(&mut s, &b).await, Reply::Ready(_)));

        // Expired, yet a SaslHandshake still begins a re-authentication (Kafka's Processor
        // asks `maybeBeginServerReauthentication` before it checks the expiry).
        expire(&mut s);
        assert_eq!(handshake(&mut s, &b, "PLAIN").await, 0);
        assert!(!s.authenticated(), "re-authentication under way");
        assert_eq!(
            plain_authenticate(&mut s, &b, "alice", "alice-pw").await,
            (0, 3_000)
        );
        assert!(s.authenticated() && !s.must_close());
        assert_eq!(&*s.ctx.principal, "User:alice");
        assert!(matches!(metadata(&mut s, &b).await, Reply::Ready(_)));

        // A second re-authentication within a second is not one: the handshake is answered
        // as an ordinary request, with ILLEGAL_SASL_STATE, and the session goes on.
        let code = handshake(&mut s, &b, "PLAIN").await;
        assert_eq!(code, ResponseError::IllegalSaslState.code());
        assert!(s.authenticated() && !s.must_close());
    }

    #[tokio::test]
    async fn an_expired_session_is_closed_on_its_next_request() {
        let dir = tempfile::tempdir().unwrap();
        let b = open_broker(dir.path(), MAX_REAUTH_MS);
        let mut s = new_session();
        handshake(&mut s, &b, "PLAIN").await;
        plain_authenticate(&mut s, &b, "alice", "alice-pw").await;
        expire(&mut s);
        match metadata(&mut s, &b).await {
            Reply::Close(reason) => assert!(reason.contains("expired"), "{reason}"),
            _ => panic!("an expired session must be closed"),
        }
        assert!(s.must_close());
    }

    #[tokio::test]
    async fn reauthentication_as_another_user_fails_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let b = open_broker(dir.path(), MAX_REAUTH_MS);
        let mut s = new_session();
        handshake(&mut s, &b, "PLAIN").await;
        plain_authenticate(&mut s, &b, "alice", "alice-pw").await;
        assert_eq!(handshake(&mut s, &b, "PLAIN").await, 0);
        let (code, _) = plain_authenticate(&mut s, &b, "bob", "bob-pw").await;
        assert_eq!(code, ResponseError::SaslAuthenticationFailed.code());
        assert!(s.must_close());
        assert_eq!(
            &*s.ctx.principal, "User:alice",
            "the principal never changes"
        );
    }

    #[tokio::test]
    async fn reauthentication_with_another_mechanism_fails_at_its_first_token() {
        let dir = tempfile::tempdir().unwrap();
        let b = open_broker(dir.path(), MAX_REAUTH_MS);
        let mut s = new_session();
        handshake(&mut s, &b, "PLAIN").await;
        plain_authenticate(&mut s, &b, "alice", "alice-pw").await;
        // Kafka answers the handshake and fails the SaslAuthenticate after it.
        assert_eq!(handshake(&mut s, &b, "SCRAM-SHA-256").await, 0);
        assert!(!s.must_close());
        let (code, _) = plain_authenticate(&mut s, &b, "alice", "alice-pw").await;
        assert_eq!(code, ResponseError::SaslAuthenticationFailed.code());
        assert!(s.must_close());
    }

    #[tokio::test]
    async fn without_a_session_lifetime_nothing_expires_and_handshakes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = open_broker(dir.path(), 0);
        let mut s = new_session();
        handshake(&mut s, &b, "PLAIN").await;
        assert_eq!(
            plain_authenticate(&mut s, &b, "alice", "alice-pw").await,
            (0, 0)
        );
        let code = handshake(&mut s, &b, "PLAIN").await;
        assert_eq!(code, ResponseError::IllegalSaslState.code());
        assert!(matches!(metadata(&mut s, &b).await, Reply::Ready(_)));
    }

    #[tokio::test]
    async fn a_listener_and_mechanism_may_have_their_own_session_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let own = [(
            "listener.name.sasl_plaintext.plain.connections.max.reauth.ms",
            "1000",
        )];
        let b = open_broker_with(dir.path(), MAX_REAUTH_MS, &own);
        let mut s = new_session().on_listener("SASL_PLAINTEXT");
        handshake(&mut s, &b, "PLAIN").await;
        assert_eq!(
            plain_authenticate(&mut s, &b, "alice", "alice-pw").await,
            (0, 1_000)
        );
        let mut elsewhere = new_session().on_listener("SASL_SSL");
        handshake(&mut elsewhere, &b, "PLAIN").await;
        let (_, lifetime_ms) = plain_authenticate(&mut elsewhere, &b, "alice", "alice-pw").await;
        assert_eq!(lifetime_ms, 3_000);
    }

    #[test]
    fn the_per_listener_form_is_kafkas() {
        use crate::security::settings::parse_reauth_override_name as parse;
        assert_eq!(
            parse("listener.name.SASL_SSL.scram-sha-512.connections.max.reauth.ms"),
            Some(("sasl_ssl".to_string(), Mechanism::ScramSha512))
        );
        assert_eq!(
            parse("listener.name.sasl_ssl.gssapi.connections.max.reauth.ms"),
            None
        );
        assert_eq!(
            parse("listener.name..plain.connections.max.reauth.ms"),
            None
        );
        assert_eq!(parse("connections.max.reauth.ms"), None);
        let mut config = ConfigBuilder::new();
        let bad = config.set(
            "listener.name.x.oauthbearer.connections.max.reauth.ms",
            "1",
            "t",
        );
        assert!(bad.is_err(), "an unknown mechanism is an unknown setting");
    }
}
