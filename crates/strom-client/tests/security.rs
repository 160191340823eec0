//! The client over TLS and SASL against a real `strom serve` with four listeners (PLAINTEXT,
//! SASL_SSL, SSL with client certificates requested, SASL_PLAINTEXT) and the authorizer on:
//! every SASL mechanism over TLS, a client certificate as the principal, and the errors a
//! person sees for a wrong password or an untrusted broker. Certificates come from the
//! openssl CLI; without it (or without the binary) the tests say why and pass without running.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strom_client::{
    ClientConfig, ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig, ResponseError,
    SecurityConfig,
};

const PASSWORD: &str = "alice-secret";

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate for `CN=carol,O=Strom`.
fn make_certificates(dir: &Path) -> bool {
    let issue = |name: &str, subject: &str, ext: &str| {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subject,
            ],
        ) && openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        )
    };
    let ok = openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=Strom Client Test CA"])
        && issue("server", "/CN=localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        && issue("carol", "/O=Strom/CN=carol", "extendedKeyUsage=clientAuth\n")
        // A second CA the broker's certificate does not chain to.
        && openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key",
            "-out", "other.pem", "-days", "2", "-subj", "/CN=Some Other CA"]);
    if !ok {
        eprintln!("SKIPPED: the openssl CLI is needed to make test certificates");
        return false;
    }
    let keystore = std::fs::read_to_string(dir.join("server.key")).unwrap()
        + &std::fs::read_to_string(dir.join("server.pem")).unwrap();
    std::fs::write(dir.join("keystore.pem"), keystore).unwrap();
    true
}

/// A broker with a SASL_SSL, an SSL and a SASL_PLAINTEXT listener, the user alice (a super
/// user, as is carol's certificate) and the authorizer on; killed on drop.
struct SecureBroker {
    child: Child,
    sasl_ssl: String,
    ssl: String,
    sasl_plaintext: String,
    certs: PathBuf,
    _dir: tempfile::TempDir,
}

impl SecureBroker {
    fn start() -> Option<SecureBroker> {
        let binary = support::strom_binary()?;
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        if !make_certificates(&certs) {
            return None;
        }
        let data = dir.path().join("data");
        let (code, _, err) = support::run_cli(
            &binary,
            &[
                "user",
                "create",
                "alice",
                "--password",
                PASSWORD,
                "--data-dir",
                data.to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(code, 0, "strom user create: {err}");
        let port = |_| format!("127.0.0.1:{}", support::free_port());
        let [plain, sasl_ssl, ssl, sasl_plaintext] = [0, 1, 2, 3].map(port);
        let settings = [
            format!("listeners=PLAINTEXT://{plain},SASL_SSL://{sasl_ssl},SSL://{ssl},SASL_PLAINTEXT://{sasl_plaintext}"),
            format!("ssl.keystore.location={}", certs.join("keystore.pem").display()),
            format!("ssl.truststore.location={}", certs.join("ca.pem").display()),
            "ssl.client.auth=requested".into(),
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into(),
            "authorizer.class.name=acl".into(),
            "super.users=User:alice;User:CN=carol,O=Strom".into(),
            "connection.failed.authentication.delay.ms=50".into(),
            "http.listen=".into(),
        ];
        let mut cmd = Command::new(&binary);
        cmd.args(["serve", "--data-dir", data.to_str().unwrap()]);
        for s in &settings {
            cmd.args(["--set", s]);
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn strom serve");
        let deadline = Instant::now() + Duration::from_secs(15);
        for addr in [&plain, &sasl_ssl, &ssl, &sasl_plaintext] {
            while std::net::TcpStream::connect(addr.as_str()).is_err() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("strom serve exited early with {status}");
                }
                assert!(
                    Instant::now() < deadline,
                    "strom serve did not start listening"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(SecureBroker {
            child,
            sasl_ssl,
            ssl,
            sasl_plaintext,
            certs,
            _dir: dir,
        })
    }

    fn cert(&self, name: &str) -> String {
        self.certs.join(name).display().to_string()
    }

    fn config(&self, properties: &[(&str, &str)]) -> ClientConfig {
        ClientConfig {
            security: SecurityConfig::from_properties(properties.iter().copied()).unwrap(),
            ..ClientConfig::default()
        }
    }

    fn sasl_ssl_config(&self, mechanism: &str, password: &str) -> ClientConfig {
        let ca = self.cert("ca.pem");
        self.config(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", mechanism),
            ("sasl.username", "alice"),
            ("sasl.password", password),
            ("ssl.ca.location", &ca),
        ])
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

macro_rules! secure_broker {
    () => {
        match SecureBroker::start() {
            Some(b) => b,
            None => return,
        }
    };
}

/// Produces `values` to `topic` and reads them back through a consumer group (so the group
/// coordinator's connection is secured too); returns what came back.
async fn round_trip(
    bootstrap: &str,
    config: ClientConfig,
    topic: &str,
    values: &[String],
) -> Vec<String> {
    let producer = Producer::connect_with(
        bootstrap,
        ProducerConfig {
            client: config.clone(),
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("producer connects");
    producer.create_topic(topic, 2).await.expect("create topic");
    for (i, v) in values.iter().enumerate() {
        producer
            .send(topic, v.clone(), (i % 2) as i32)
            .await
            .expect("send");
    }
    producer.close().await.unwrap();

    let mut consumer = Consumer::connect_with(
        bootstrap,
        ConsumerConfig {
            client: config,
            ..ConsumerConfig::with_group(format!("{topic}-group"))
        },
    )
    .await
    .expect("consumer connects");
    consumer.subscribe(&[topic]).await.expect("subscribe");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < values.len() && Instant::now() < deadline {
        for m in consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
        {
            got.push(m.value_str().into_owned());
        }
    }
    consumer.commit().await.expect("commit");
    got.sort();
    got
}

#[tokio::test]
async fn sasl_ssl_with_each_mechanism_produces_and_consumes_every_message() {
    let broker = secure_broker!();
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let topic = format!("orders-{}", mechanism.to_lowercase());
        let mut values: Vec<String> = (0..6).map(|i| format!("{mechanism} message {i}")).collect();
        let config = broker.sasl_ssl_config(mechanism, PASSWORD);
        let got = round_trip(&broker.sasl_ssl, config, &topic, &values).await;
        values.sort();
        assert_eq!(got, values, "over SASL_SSL with {mechanism}");
    }
}

#[tokio::test]
async fn sasl_plaintext_with_scram_works_without_tls() {
    let broker = secure_broker!();
    let config = broker.config(&[
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", "SCRAM-SHA-256"),
        ("sasl.username", "alice"),
        ("sasl.password", PASSWORD),
    ]);
    let values = vec!["one".to_string(), "two".to_string()];
    assert_eq!(
        round_trip(&broker.sasl_plaintext, config, "plain-scram", &values).await,
        values
    );
}

#[tokio::test]
async fn a_client_certificate_is_the_principal_on_an_ssl_listener() {
    let broker = secure_broker!();
    let (ca, cert, key) = (
        broker.cert("ca.pem"),
        broker.cert("carol.pem"),
        broker.cert("carol.key"),
    );
    let config = broker.config(&[
        ("security.protocol", "SSL"),
        ("ssl.ca.location", &ca),
        ("ssl.certificate.location", &cert),
        ("ssl.key.location", &key),
    ]);
    let values = vec!["from carol".to_string()];
    assert_eq!(
        round_trip(&broker.ssl, config, "carol-topic", &values).await,
        values
    );

    // Without the certificate the same listener sees User:ANONYMOUS, which no ACL allows.
    let anonymous = broker.config(&[("security.protocol", "SSL"), ("ssl.ca.location", &ca)]);
    let producer = Producer::connect_with(
        &broker.ssl,
        ProducerConfig {
            client: anonymous,
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("TLS without a client certificate connects");
    let err = producer
        .create_topic("anonymous-topic", 1)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(ResponseError::TopicAuthorizationFailed),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_password_is_sasl_authentication_failed_and_not_retried() {
    let broker = secure_broker!();
    for mechanism in ["PLAIN", "SCRAM-SHA-512"] {
        let config = broker.sasl_ssl_config(mechanism, "not-the-password");
        let Err(err) = Producer::connect_with(
            &broker.sasl_ssl,
            ProducerConfig {
                client: config,
                ..ProducerConfig::default()
            },
        )
        .await
        else {
            panic!("a wrong password does not connect");
        };
        assert_eq!(
            err.code(),
            Some(ResponseError::SaslAuthenticationFailed),
            "{err}"
        );
        assert!(!err.is_retriable(), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "authenticating to {} as alice with {mechanism}: SaslAuthenticationFailed (",
                broker.sasl_ssl
            )),
            "{text}"
        );
        assert!(!text.contains("not-the-password"), "{text}");
    }
}

#[tokio::test]
async fn a_broker_whose_certificate_is_not_trusted_is_a_tls_error() {
    let broker = secure_broker!();
    let other = broker.cert("other.pem");
    let config = broker.config(&[("security.protocol", "SSL"), ("ssl.ca.location", &other)]);
    let err = strom_client::Client::connect_with(&broker.ssl, config)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    assert!(!err.is_retriable());
    assert_eq!(
        err.to_string(),
        format!(
            "TLS handshake with broker at {} failed: invalid peer certificate: UnknownIssuer",
            broker.ssl
        )
    );

    // Skipping verification (enable.ssl.certificate.verification=false) connects anyway.
    let config = broker.config(&[
        ("security.protocol", "SSL"),
        ("enable.ssl.certificate.verification", "false"),
    ]);
    strom_client::Client::connect_with(&broker.ssl, config)
        .await
        .expect("connects without verification");

    // A TLS client on a plaintext SASL port is told so rather than left hanging.
    let ca = broker.cert("ca.pem");
    let config = broker.config(&[("security.protocol", "SSL"), ("ssl.ca.location", &ca)]);
    let err = strom_client::Client::connect_with(&broker.sasl_plaintext, config)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
}
