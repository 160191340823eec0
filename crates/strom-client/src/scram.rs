//! The client side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka's
//! `ScramSaslClient` runs it: no channel binding (`n,,`), the server's nonce must extend ours,
//! iterations within Kafka's 4096..=16384, and the server's signature in its final message is
//! checked, so a broker that does not know the password cannot pass for one that does.
//!
//! ```text
//! client-first  n,,n=<user>,r=<client nonce>
//! server-first  r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>
//! client-final  c=biws,r=<nonce>,p=<client proof b64>
//! server-final  v=<server signature b64>      (or e=<error>)
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};

use crate::security::SaslMechanism;

/// Kafka's bounds on SCRAM iterations (`ScramMechanism.minIterations`, `maxIterations`); the
/// upper one also keeps a hostile broker from making the client spin.
const ITERATIONS_MIN: u32 = 4096;
const ITERATIONS_MAX: u32 = 16384;
const NONCE_BYTES: usize = 24;

struct Algorithms {
    hmac: hmac::Algorithm,
    digest: &'static digest::Algorithm,
    pbkdf2: pbkdf2::Algorithm,
}

fn algorithms(m: SaslMechanism) -> Algorithms {
    match m {
        SaslMechanism::ScramSha512 => Algorithms {
            hmac: hmac::HMAC_SHA512,
            digest: &digest::SHA512,
            pbkdf2: pbkdf2::PBKDF2_HMAC_SHA512,
        },
        _ => Algorithms {
            hmac: hmac::HMAC_SHA256,
            digest: &digest::SHA256,
            pbkdf2: pbkdf2::PBKDF2_HMAC_SHA256,
        },
    }
}

fn hmac_of(a: &Algorithms, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(a.hmac, key), data)
        .as_ref()
        .to_vec()
}

/// Compares without an early exit, so timing tells nothing about where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `=` and `,` in a user name are written `=3D` and `=2C` (RFC 5802 section 5.1).
fn escape_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// One exchange, from client-first to the check of server-final.
pub struct ClientExchange {
    mechanism: SaslMechanism,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    /// Set by [`ClientExchange::client_final`]: what server-final must carry.
    expected_server_signature: Option<Vec<u8>>,
}

impl ClientExchange {
    pub fn new(mechanism: SaslMechanism, user: &str, password: &str) -> ClientExchange {
        use ring::rand::SecureRandom;
        let mut nonce = [0u8; NONCE_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        Self::with_nonce(mechanism, user, password, &B64.encode(nonce))
    }

    fn with_nonce(mechanism: SaslMechanism, user: &str, password: &str, nonce: &str) -> Self {
        ClientExchange {
            mechanism,
            password: password.to_string(),
            client_nonce: nonce.to_string(),
            client_first_bare: format!("n={},r={nonce}", escape_name(user)),
            expected_server_signature: None,
        }
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Answers server-first with client-final.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| "the broker's SCRAM server-first message is not UTF-8".to_string())?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("e", v)) => return Err(format!("the broker refused: {v}")),
                _ => {}
            }
        }
        let bad = |what: &str| format!("bad SCRAM server-first message from the broker: {what}");
        let nonce = nonce.ok_or_else(|| bad("no nonce"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(bad("its nonce does not extend the client's"));
        }
        let salt = B64
            .decode(salt.ok_or_else(|| bad("no salt"))?)
            .map_err(|_| bad("the salt is not base64"))?;
        let iterations: u32 = iterations
            .ok_or_else(|| bad("no iteration count"))?
            .parse()
            .map_err(|_| bad("the iteration count is not a number"))?;
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(bad(&format!(
                "{iterations} iterations, outside {ITERATIONS_MIN}..={ITERATIONS_MAX}"
            )));
        }

        let a = algorithms(self.mechanism);
        let mut salted = vec![0u8; a.digest.output_len()];
        let rounds = std::num::NonZeroU32::new(iterations).expect("checked above");
        pbkdf2::derive(
            a.pbkdf2,
            rounds,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_of(&a, &salted, b"Client Key");
        let stored_key = digest::digest(a.digest, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac_of(&a, stored_key.as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac_of(&a, &salted, b"Server Key");
        self.expected_server_signature = Some(hmac_of(&a, &server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final: the broker proves it knows the credential.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).unwrap_or("");
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("the broker refused: {e}"));
        }
        let expected = self
            .expected_server_signature
            .as_ref()
            .ok_or("SCRAM server-final before client-final")?;
        let got = text
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .and_then(|v| B64.decode(v).ok());
        match got {
            Some(sig) if constant_time_eq(&sig, expected) => Ok(()),
            _ => Err("the broker's SCRAM server signature is wrong: it does not hold this user's credential".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: the SCRAM-SHA-256 example exchange, byte for byte.
    #[test]
    fn rfc7677_example() {
        let mut c = ClientExchange::with_nonce(
            SaslMechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        // The RFC's example uses 4096 iterations, Kafka's minimum.
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = c.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        let err = c
            .verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert!(err.contains("server signature is wrong"), "{err}");
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        let mut c = ClientExchange::with_nonce(SaslMechanism::ScramSha512, "u", "p", "abc");
        let err = c.client_final(b"r=xyz123,s=AAAA,i=4096").unwrap_err();
        assert!(err.contains("does not extend"), "{err}");
        let err = c.client_final(b"r=abc123,s=AAAA,i=100000000").unwrap_err();
        assert!(err.contains("outside 4096..=16384"), "{err}");
        assert_eq!(escape_name("a=b,c"), "a=3Db=2Cc");
    }
}
