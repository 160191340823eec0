//! SCRAM (RFC 5802, RFC 7677) for SHA-256 and SHA-512: deriving a stored credential from a
//! password or a salted password, and the server side of one exchange. No I/O; the
//! connection layer carries the messages in SaslAuthenticate requests.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

use super::settings::Mechanism;

/// Kafka's bounds on SCRAM iterations (`ScramMechanism.minIterations` / `maxIterations`).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;
/// Iterations `strom user create` uses unless told otherwise (Kafka's tools use 4096 too).
pub const DEFAULT_ITERATIONS: u32 = 4096;
const SALT_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// What is stored for one user and mechanism: never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

struct Algorithms {
    digest: &'static digest::Algorithm,
    hmac: hmac::Algorithm,
    pbkdf2: pbkdf2::Algorithm,
}

fn algorithms(m: Mechanism) -> Algorithms {
    match m {
        Mechanism::ScramSha512 => Algorithms {
            digest: &digest::SHA512,
            hmac: hmac::HMAC_SHA512,
            pbkdf2: pbkdf2::PBKDF2_HMAC_SHA512,
        },
        // PLAIN has no SCRAM form; SHA-256 is what it is checked against when asked.
        Mechanism::ScramSha256 | Mechanism::Plain => Algorithms {
            digest: &digest::SHA256,
            hmac: hmac::HMAC_SHA256,
            pbkdf2: pbkdf2::PBKDF2_HMAC_SHA256,
        },
    }
}

fn hmac_of(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(algorithms(m).hmac, key), data)
        .as_ref()
        .to_vec()
}

fn hash(m: Mechanism, data: &[u8]) -> Vec<u8> {
    digest::digest(algorithms(m).digest, data).as_ref().to_vec()
}

/// Compares without an early exit, so timing tells nothing about where keys differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut out = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("the system random source works");
    out
}

pub fn salted_password(m: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; algorithms(m).digest.output_len()];
    let rounds = std::num::NonZeroU32::new(iterations.max(1)).expect("at least one");
    pbkdf2::derive(algorithms(m).pbkdf2, rounds, salt, password, &mut out);
    out
}

impl ScramCredential {
    /// The credential for a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        m: Mechanism,
        salted: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredential {
        let client_key = hmac_of(m, salted, b"Client Key");
        ScramCredential {
            salt,
            stored_key: hash(m, &client_key),
            server_key: hmac_of(m, salted, b"Server Key"),
            iterations,
        }
    }

    /// A credential with a fresh random salt.
    pub fn from_password(m: Mechanism, password: &str, iterations: u32) -> ScramCredential {
        let salt = random_bytes(SALT_BYTES);
        let salted = salted_password(m, password.as_bytes(), &salt, iterations);
        Self::from_salted_password(m, &salted, salt, iterations)
    }

    /// Whether `password` is the one this credential was made from (PLAIN uses this).
    pub fn verify_password(&self, m: Mechanism, password: &str) -> bool {
        let salted = salted_password(m, password.as_bytes(), &self.salt, self.iterations);
        let client_key = hmac_of(m, &salted, b"Client Key");
        constant_time_eq(&hash(m, &client_key), &self.stored_key)
    }
}

/// Why an exchange failed; the text goes to the client, so it never holds a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("Authentication failed during authentication due to invalid credentials with SASL mechanism {0}")]
    InvalidCredentials(&'static str),
    #[error("Invalid SCRAM message: {0}")]
    Malformed(&'static str),
}

/// `=2C` and `=3D` in a SCRAM user name (RFC 5802, saslname).
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The client's first message, parsed.
#[derive(Debug)]
pub struct ClientFirst {
    pub user: String,
    gs2_header: String,
    bare: String,
    client_nonce: String,
}

pub fn parse_client_first(token: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(token).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    // gs2-header: cbind flag, optional authzid, then the bare message.
    let mut parts = text.splitn(3, ',');
    let cbind = parts.next().unwrap_or_default();
    let authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
    let bare = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
    if cbind != "n" && cbind != "y" {
        return Err(ScramError::Malformed("channel binding is not supported"));
    }
    let mut user = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        if let Some(v) = attr.strip_prefix("n=") {
            user = Some(decode_saslname(v)?);
        } else if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v.to_string());
        } else if attr.starts_with("m=") {
            return Err(ScramError::Malformed(
                "mandatory extensions are not supported",
            ));
        }
    }
    let user = user.ok_or(ScramError::Malformed("no user name"))?;
    let client_nonce = nonce
        .filter(|n| !n.is_empty())
        .ok_or(ScramError::Malformed("no nonce"))?;
    if let Some(authzid) = authzid.strip_prefix("a=") {
        if decode_saslname(authzid)? != user {
            return Err(ScramError::Malformed(
                "authorization id differs from the user name",
            ));
        }
    }
    Ok(ClientFirst {
        user,
        gs2_header: format!("{cbind},{authzid},"),
        bare: bare.to_string(),
        client_nonce,
    })
}

/// The server's side after the first message: what it sent and what it expects.
pub struct ServerExchange {
    mechanism: Mechanism,
    credential: ScramCredential,
    first: ClientFirst,
    server_first: String,
    nonce: String,
}

impl ServerExchange {
    /// Answers the client's first message; the returned bytes are the server-first message.
    pub fn start(
        mechanism: Mechanism,
        first: ClientFirst,
        credential: ScramCredential,
    ) -> (ServerExchange, Vec<u8>) {
        let nonce = format!(
            "{}{}",
            first.client_nonce,
            B64.encode(random_bytes(NONCE_BYTES))
        );
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        (
            ServerExchange {
                mechanism,
                credential,
                first,
                server_first,
                nonce,
            },
            reply,
        )
    }

    pub fn user(&self) -> &str {
        &self.first.user
    }

    /// Checks the client's final message; on success returns the server-final message.
    pub fn finish(&self, token: &[u8]) -> Result<Vec<u8>, ScramError> {
        let invalid = ScramError::InvalidCredentials(self.mechanism.name());
        let text = std::str::from_utf8(token).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        if binding != Some(B64.encode(&self.first.gs2_header).as_str()) {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        // Kafka's ScramSaslServer accepts a final nonce that *ends with* the server's, not
        // only an equal one, and librdkafka before 2.1 relies on that: it sends the client
        // nonce followed by the whole server nonce (which already starts with it). The proof
        // is computed over the message as sent, so this loosens nothing that matters.
        if !nonce.is_some_and(|n| n.ends_with(self.nonce.as_str())) {
            return Err(ScramError::Malformed(
                "Invalid client nonce in the final client message.",
            ));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let m = self.mechanism;
        let signature = hmac_of(m, &self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(invalid);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&hash(m, &client_key), &self.credential.stored_key) {
            return Err(invalid);
        }
        let server_signature = hmac_of(m, &self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client side, written from RFC 5802, to drive the server through a whole exchange.
    fn client_final(
        m: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        client_final_with(m, password, client_first_bare, server_first, &|n| {
            n.to_string()
        })
    }

    /// The same, sending `final_nonce(server nonce)` as the final message's nonce.
    fn client_final_with(
        m: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        final_nonce: &dyn Fn(&str) -> String,
    ) -> String {
        let mut salt = None;
        let mut iterations = 0;
        let mut nonce = "";
        for attr in server_first.split(',') {
            if let Some(v) = attr.strip_prefix("s=") {
                salt = Some(B64.decode(v).unwrap());
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = v.parse().unwrap();
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = v;
            }
        }
        let salted = salted_password(m, password.as_bytes(), &salt.unwrap(), iterations);
        let client_key = hmac_of(m, &salted, b"Client Key");
        let stored_key = hash(m, &client_key);
        let without_proof = format!("c={},r={}", B64.encode("n,,"), final_nonce(nonce));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = hmac_of(m, &stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    fn exchange(
        m: Mechanism,
        stored_password: &str,
        tried_password: &str,
    ) -> Result<Vec<u8>, ScramError> {
        let credential = ScramCredential::from_password(m, stored_password, MIN_ITERATIONS);
        let bare = "n=al=3Dice,r=fyko+d2lbbFgONRv9qkxdawL";
        let first = parse_client_first(format!("n,,{bare}").as_bytes()).unwrap();
        assert_eq!(first.user, "al=ice");
        let (server, server_first) = ServerExchange::start(m, first, credential);
        let server_first = String::from_utf8(server_first).unwrap();
        assert!(server_first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
        let fin = client_final(m, tried_password, bare, &server_first);
        server.finish(fin.as_bytes())
    }

    #[test]
    fn the_right_password_completes_and_a_wrong_one_fails_for_both_hashes() {
        for m in Mechanism::SCRAM {
            let server_final = exchange(m, "pencil", "pencil").unwrap();
            assert!(server_final.starts_with(b"v="));
            assert_eq!(
                exchange(m, "pencil", "pen").unwrap_err(),
                ScramError::InvalidCredentials(m.name())
            );
        }
    }

    #[test]
    fn plain_passwords_verify_against_the_stored_credential() {
        let c = ScramCredential::from_password(Mechanism::ScramSha512, "s3cret", MIN_ITERATIONS);
        assert!(c.verify_password(Mechanism::ScramSha512, "s3cret"));
        assert!(!c.verify_password(Mechanism::ScramSha512, "s3cre"));
    }

    #[test]
    fn rfc7677_test_vector_matches() {
        // RFC 7677 section 3: user "user", password "pencil", 4096 iterations.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(Mechanism::ScramSha256, b"pencil", &salt, 4096);
        let c = ScramCredential::from_salted_password(Mechanism::ScramSha256, &salted, salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let server = ServerExchange {
            mechanism: Mechanism::ScramSha256,
            credential: c,
            first,
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        };
        let server_final = server
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
    }

    /// kcat 1.7 (librdkafka 2.0) failed with "nonce does not match": its final message
    /// carries the client nonce followed by the whole server nonce. Kafka accepts a final
    /// nonce that ends with the server's; so do we, and anything else is still refused.
    #[test]
    fn a_final_nonce_ending_with_the_server_nonce_is_accepted_as_kafka_does() {
        let m = Mechanism::ScramSha256;
        let run = |final_nonce: &dyn Fn(&str) -> String| {
            let credential = ScramCredential::from_password(m, "pencil", MIN_ITERATIONS);
            let bare = "n=user,r=clientnonce";
            let first = parse_client_first(format!("n,,{bare}").as_bytes()).unwrap();
            let (server, server_first) = ServerExchange::start(m, first, credential);
            let server_first = String::from_utf8(server_first).unwrap();
            let fin = client_final_with(m, "pencil", bare, &server_first, final_nonce);
            server.finish(fin.as_bytes())
        };
        assert!(run(&|s| format!("clientnonce{s}")).is_ok());
        assert_eq!(
            run(&|s| format!("x{}", &s[1..])).unwrap_err(),
            ScramError::Malformed("Invalid client nonce in the final client message.")
        );
    }

    #[test]
    fn malformed_first_messages_are_refused() {
        assert!(parse_client_first(b"p=tls-unique,,n=a,r=x").is_err());
        assert!(parse_client_first(b"n,,n=a").is_err());
        assert!(parse_client_first(b"n,,r=x").is_err());
        assert!(parse_client_first(b"n,a=bob,n=alice,r=x").is_err());
        assert!(parse_client_first(b"n,,n=a=ZZ,r=x").is_err());
        assert!(parse_client_first(&[0xff, 0xfe]).is_err());
    }
}
