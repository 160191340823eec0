//! One connection's security state, between the socket and the request handlers. On a SASL
//! listener it answers SaslHandshake and SaslAuthenticate itself (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512, with Kafka's framed tokens or the raw tokens of SaslHandshake v0), lets
//! only ApiVersions through before authentication, and then hands every request to the
//! broker with the authenticated principal.
//!
//! A failed authentication is answered after `connection.failed.authentication.delay.ms`
//! and the connection is then closed; the log line names the peer and the user, never the
//! credentials.

use std::sync::Arc;
use std::time::Duration;

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
}

pub struct Session {
    pub ctx: RequestContext,
    /// `None` once authenticated (or on a listener without SASL).
    sasl: Option<SaslState>,
    close: bool,
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
        }
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
            return broker.handle(frame, &self.ctx).await;
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
            state => self.framed(broker, state, frame).await,
        }
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
                match chosen {
                    Some(mechanism) => {
                        self.sasl = Some(SaslState::FirstToken {
                            mechanism,
                            raw: version == 0,
                        })
                    }
                    None => {
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

    fn authenticated_as(&mut self, user: &str) {
        self.ctx.principal = format!("User:{user}").into();
        tracing::debug!(peer = %self.ctx.client_host, principal = %self.ctx.principal, "authenticated");
    }

    fn failed(&mut self, broker: &Broker, message: &str, user: Option<&str>) -> Duration {
        tracing::warn!(peer = %self.ctx.client_host, user = user.unwrap_or("?"), reason = %message, "SASL authentication failed; closing connection");
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
                self.authenticated_as(&user);
                encoded(
                    ApiKey::SaslAuthenticate,
                    corr,
                    version,
                    &response.with_auth_bytes(reply.into()),
                )
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
            Step::Done { reply, user } => {
                self.authenticated_as(&user);
                frame(reply)
            }
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
