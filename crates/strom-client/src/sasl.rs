//! SASL on a fresh connection, as Kafka clients do it (KIP-152): SaslHandshake v1 names the
//! mechanism, then SaslAuthenticate requests carry the tokens (one for PLAIN, two for SCRAM).
//! A refusal is `SaslAuthenticationFailed` with the broker's message, which is not retried:
//! the same credentials would fail again.

use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use crate::connection::Connection;
use crate::error::{ClientError, Result};
use crate::scram::ClientExchange;
use crate::security::{SaslMechanism, SaslSettings};

/// Kafka's SASL_AUTHENTICATION_FAILED, used for failures the client finds itself (a broker
/// whose SCRAM signature is wrong), so every authentication failure reads the same.
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// Authenticates `conn` with `sasl`.
pub async fn authenticate(conn: &Connection, sasl: &SaslSettings) -> Result<()> {
    let context = || {
        format!(
            "authenticating to {} as {} with {}",
            conn.addr(),
            sasl.username,
            sasl.mechanism.name()
        )
    };
    let handshake = conn
        .send(
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name())),
        )
        .await?;
    if handshake.error_code != 0 {
        let enabled: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        let message = format!("the broker enables {}", enabled.join(", "));
        return Err(ClientError::kafka_with_message(
            handshake.error_code,
            context(),
            Some(&message),
        ));
    }
    match sasl.mechanism {
        SaslMechanism::Plain => {
            let token = format!("\0{}\0{}", sasl.username, sasl.password);
            step(conn, token.into_bytes(), &context).await?;
        }
        scram => {
            let mut exchange = ClientExchange::new(scram, &sasl.username, &sasl.password);
            let server_first = step(conn, exchange.client_first(), &context).await?;
            let client_final = exchange
                .client_final(&server_first)
                .map_err(|m| failed(&context, &m))?;
            let server_final = step(conn, client_final, &context).await?;
            exchange
                .verify_server_final(&server_final)
                .map_err(|m| failed(&context, &m))?;
        }
    }
    tracing::debug!(addr = conn.addr(), user = %sasl.username, "authenticated");
    Ok(())
}

fn failed(context: &impl Fn() -> String, message: &str) -> ClientError {
    ClientError::kafka_with_message(SASL_AUTHENTICATION_FAILED, context(), Some(message))
}

/// One SaslAuthenticate round: our token out, the broker's back.
async fn step(conn: &Connection, token: Vec<u8>, context: &impl Fn() -> String) -> Result<Vec<u8>> {
    let response = conn
        .send(&SaslAuthenticateRequest::default().with_auth_bytes(token.into()))
        .await?;
    if response.error_code != 0 {
        return Err(ClientError::kafka_with_message(
            response.error_code,
            context(),
            response.error_message.as_ref().map(|m| m.as_str()),
        ));
    }
    Ok(response.auth_bytes.to_vec())
}
