//! Who a JSON connection is. On a listener whose `json.listener.security.protocol` is
//! SASL_PLAINTEXT or SASL_SSL the first request must be
//! `{"type":"authenticate","mechanism":"PLAIN","username":..,"password":..}`, checked against
//! the same SCRAM user store as the Kafka listener's PLAIN; until then every other request
//! is refused with `authentication_required`. A wrong password is answered after
//! `connection.failed.authentication.delay.ms` with Kafka's message, and the connection is
//! then closed, as Kafka does. Without SASL the principal is the client certificate's
//! subject (SSL with `ssl.client.auth`) or `User:ANONYMOUS`.

use std::sync::Arc;
use std::time::Duration;

use strom_broker::security::session::{verify_password, ANONYMOUS, PLAIN_INVALID_CREDENTIALS};
use strom_broker::security::settings::Mechanism;
use strom_broker::Broker;

use super::response::{code, Body};

pub struct Session {
    pub principal: String,
    pub host: String,
    /// The listener requires `authenticate` and it has not succeeded yet.
    pending: bool,
    /// The listener takes `authenticate` at all.
    sasl: bool,
    /// A failed authentication: close after the answer.
    pub close: bool,
}

impl Session {
    /// `principal`: the client certificate's, if the TLS handshake carried one.
    pub fn new(sasl: bool, principal: Option<String>, host: String) -> Session {
        Session {
            principal: principal.unwrap_or_else(|| ANONYMOUS.to_string()),
            host,
            pending: sasl,
            sasl,
            close: false,
        }
    }

    /// The refusal for a request that came before `authenticate`, if it did.
    pub fn refuse_unauthenticated(&self) -> Option<Body> {
        self.pending.then(|| {
            Body::error(
                code::AUTHENTICATION_REQUIRED,
                "authenticate first: this listener requires \
                 {\"type\":\"authenticate\",\"mechanism\":\"PLAIN\",\"username\":...,\"password\":...}",
            )
        })
    }

    pub async fn authenticate(
        &mut self,
        broker: &Arc<Broker>,
        mechanism: &str,
        username: &str,
        password: &str,
    ) -> Body {
        let security = &broker.config.security;
        if !self.sasl {
            return Body::error(
                code::ILLEGAL_SASL_STATE,
                format!(
                    "this listener does not take authenticate (json.listener.security.protocol={})",
                    broker.config.json_security_protocol.name()
                ),
            );
        }
        if !self.pending {
            return Body::error(
                code::ILLEGAL_SASL_STATE,
                format!("already authenticated as {}", self.principal),
            );
        }
        if mechanism != Mechanism::Plain.name()
            || !security.sasl_mechanisms.contains(&Mechanism::Plain)
        {
            let enabled: Vec<&str> = security.sasl_mechanisms.iter().map(|m| m.name()).collect();
            return Body::error(
                code::UNSUPPORTED_SASL_MECHANISM,
                format!(
                    "unsupported SASL mechanism {mechanism:?}: the JSON protocol takes PLAIN when \
                     sasl.enabled.mechanisms has it (enabled: {})",
                    enabled.join(",")
                ),
            );
        }
        if !username.is_empty() && verify_password(broker, username, password).await {
            self.principal = format!("User:{username}");
            self.pending = false;
            tracing::debug!(peer = %self.host, principal = %self.principal, "JSON client authenticated");
            return Body::Authenticate {
                principal: self.principal.clone(),
            };
        }
        tracing::warn!(peer = %self.host, user = username, "JSON authentication failed; closing connection");
        tokio::time::sleep(Duration::from_millis(
            security.failed_authentication_delay_ms,
        ))
        .await;
        self.close = true;
        Body::error(code::AUTHENTICATION_FAILED, PLAIN_INVALID_CREDENTIALS)
    }
}
