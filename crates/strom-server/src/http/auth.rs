//! The login check in front of the API: every `/api/` request (and, with
//! `http.metrics.authentication.enable`, `/metrics`, `/health` and `/ready`) gets a
//! [`Caller`]. With `http.authentication=basic` that takes HTTP Basic credentials checked
//! against the SCRAM user store, as SASL/PLAIN is; no or bad credentials are 401 with
//! `WWW-Authenticate`, and a wrong password is answered only after
//! `connection.failed.authentication.delay.ms`, so guessing is slow. The console's page and
//! its script stay open: they hold no data, and the page is where one logs in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use strom_broker::security::password_check::PasswordCheck;
use strom_broker::security::session::ANONYMOUS;
use strom_broker::security::settings::SecuritySettings;

use super::access::Caller;
use super::api_error::ApiError;
use super::HttpState;

/// The realm browsers and curl show.
const REALM: &str = "Basic realm=\"strom\", charset=\"UTF-8\"";
/// Longest Authorization header read; a longer one is refused unread.
const AUTHORIZATION_BYTES_MAX: usize = 4096;

/// The HTTP listener's login settings.
pub struct Login {
    basic: bool,
    probes_too: bool,
    failed_delay: Duration,
    check: PasswordCheck,
}

impl Login {
    pub fn from_settings(s: &SecuritySettings) -> Login {
        Login {
            basic: s.http_basic(),
            probes_too: s.http.metrics_authentication,
            failed_delay: Duration::from_millis(s.failed_authentication_delay_ms),
            check: PasswordCheck::new(
                Duration::from_millis(s.http.cache_ms),
                s.http.cache_max_entries,
            ),
        }
    }

    pub fn basic(&self) -> bool {
        self.basic
    }

    pub fn probes_too(&self) -> bool {
        self.probes_too
    }

    fn guards(&self, path: &str) -> bool {
        path == "/api"
            || path.starts_with("/api/")
            || (self.probes_too && matches!(path, "/metrics" | "/health" | "/ready"))
    }
}

/// The middleware: decides the caller or answers 401.
pub async fn gate(State(state): State<Arc<HttpState>>, mut req: Request, next: Next) -> Response {
    let login = &state.login;
    if !login.guards(req.uri().path()) {
        return next.run(req).await;
    }
    let host = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    // Until the broker has opened there is no user store: the API answers 503 and reveals
    // nothing; /health and /ready say how it is.
    let Some(local) = state.local().cloned() else {
        if req.uri().path().starts_with("/api") {
            return ApiError::unavailable("the broker is still starting (recovering its data)")
                .into_response();
        }
        return next.run(req).await;
    };
    let principal = if login.basic {
        let from_console = wants_no_dialog(req.headers());
        match credentials(req.headers()) {
            Credentials::Missing => {
                return unauthorized(
                    "log in: this API needs HTTP Basic credentials",
                    from_console,
                )
            }
            Credentials::Malformed => {
                tokio::time::sleep(login.failed_delay).await;
                return unauthorized("malformed Authorization header", from_console);
            }
            Credentials::Given { user, password } => {
                if !login
                    .check
                    .verify(&local.broker().users, &user, &password)
                    .await
                {
                    tracing::warn!(peer = %host, user = %user, "HTTP login failed");
                    tokio::time::sleep(login.failed_delay).await;
                    return unauthorized("invalid username or password", from_console);
                }
                format!("User:{user}")
            }
        }
    } else {
        ANONYMOUS.to_string()
    };
    req.extensions_mut().insert(Caller::new(&principal, host));
    next.run(req).await
}

enum Credentials {
    Missing,
    Malformed,
    Given { user: String, password: String },
}

/// `Authorization: Basic base64(user:password)` (RFC 7617, UTF-8).
fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Credentials::Missing;
    };
    if value.len() > AUTHORIZATION_BYTES_MAX {
        return Credentials::Malformed;
    }
    let Ok(value) = value.to_str() else {
        return Credentials::Malformed;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Credentials::Malformed;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Credentials::Malformed;
    }
    let Some(decoded) = B64
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return Credentials::Malformed;
    };
    match decoded.split_once(':') {
        Some((user, password)) => Credentials::Given {
            user: user.to_string(),
            password: password.to_string(),
        },
        None => Credentials::Malformed,
    }
}

/// The console marks its calls (`X-Requested-With: XMLHttpRequest`); their 401 leaves out
/// `WWW-Authenticate`, so the browser does not put its own login dialog over the console's.
fn wants_no_dialog(headers: &HeaderMap) -> bool {
    headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"))
}

fn unauthorized(message: &str, from_console: bool) -> Response {
    let mut response = ApiError::unauthorized(message).into_response();
    if !from_console {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_parsed_or_refused() {
        assert!(matches!(
            credentials(&HeaderMap::new()),
            Credentials::Missing
        ));
        // "alice:pa:ss" -- the password may hold colons, the name may not.
        match credentials(&with("basic YWxpY2U6cGE6c3M=")) {
            Credentials::Given { user, password } => {
                assert_eq!((user.as_str(), password.as_str()), ("alice", "pa:ss"))
            }
            _ => panic!("not parsed"),
        }
        for bad in ["Bearer abc", "Basic", "Basic !!!", "Basic YWxpY2U="] {
            assert!(
                matches!(credentials(&with(bad)), Credentials::Malformed),
                "{bad}"
            );
        }
    }
}
