//! Who may use the dashboard. Every answer carries headers that keep the pages from running
//! anything they did not come with (a Content-Security-Policy allowing this server's own script
//! only, so that what a command printed cannot run even if it were not escaped).
//!
//! - On a loopback address, only requests naming that address in `Host` are answered: a web page
//!   elsewhere cannot reach the dashboard through DNS rebinding.
//! - On any other address a token is needed: in a cookie set by the login page, or as
//!   `Authorization: Bearer TOKEN` for scripts. It comes from a file or the environment, never
//!   from the command line, where every user of the machine could read it.
//! - What changes something (POST) needs the header `X-Pqx-Request`, which a cross-site form
//!   cannot send and a cross-site script cannot without a CORS answer this server never gives.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The header a state-changing request must carry.
pub const REQUEST_HEADER: &str = "x-pqx-request";
const COOKIE: &str = "pqx_token";
/// Shorter tokens are refused: they could be guessed.
const TOKEN_MIN_CHARS: usize = 16;

/// The dashboard's token (kept as its digest, compared digest to digest).
#[derive(Clone)]
pub struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(redacted)")
    }
}

impl Token {
    /// The token in `path` (its first line) or, with no path, in `from_env`.
    pub fn read(path: Option<&Path>, from_env: Option<String>) -> Result<Option<Self>> {
        let (text, whence) = match (path, from_env) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::BadToken {
                    whence: path.display().to_string(),
                    why: format!("cannot be read: {e}"),
                })?;
                (text, path.display().to_string())
            }
            (None, Some(text)) => (text, "PQX_DASHBOARD_TOKEN".to_owned()),
            (None, None) => return Ok(None),
        };
        let token = text.lines().next().unwrap_or_default().trim();
        if token.chars().count() < TOKEN_MIN_CHARS {
            return Err(Error::BadToken {
                whence,
                why: format!("a token needs at least {TOKEN_MIN_CHARS} characters"),
            });
        }
        Ok(Some(Self(Sha256::digest(token.as_bytes()).into())))
    }

    fn admits(&self, given: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        // Digests of what was given: how long a comparison takes says nothing of the token.
        digest == self.0
    }
}

/// The dashboard's rules for one address.
#[derive(Clone)]
pub struct Guard {
    token: Option<Arc<Token>>,
    /// The `Host` headers answered, on a loopback address.
    hosts: Option<Arc<Vec<String>>>,
}

impl Guard {
    pub fn new(bind: SocketAddr, token: Option<Token>) -> Result<Self> {
        let loopback = bind.ip().is_loopback();
        if !loopback && token.is_none() {
            return Err(Error::ServeNeedsToken {
                bind: bind.to_string(),
            });
        }
        let port = bind.port();
        let hosts = loopback.then(|| {
            Arc::new(vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
                bind.to_string(),
            ])
        });
        Ok(Self {
            token: token.map(Arc::new),
            hosts,
        })
    }

    fn signed_in(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
            .find(|c| token.admits(&decoded(c)));
        bearer.is_some_and(|b| token.admits(b.trim())) || cookie.is_some()
    }
}

fn decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

/// Applies the rules to every request, and the headers to every answer.
pub async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Some(hosts) = &guard.hosts {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !host.is_some_and(|h| hosts.iter().any(|ok| ok == h)) {
            return refused(
                StatusCode::FORBIDDEN,
                &format!("this dashboard answers to {} only", hosts[0]),
            );
        }
    }
    let path = request.uri().path();
    let open = path == "/login" || path == "/static/style.css";
    if request.method() != Method::GET && path != "/login" && !headers.contains_key(REQUEST_HEADER)
    {
        return refused(
            StatusCode::FORBIDDEN,
            "a request that changes something needs the X-Pqx-Request header",
        );
    }
    if !open && !guard.signed_in(headers) {
        let wants_page = request.method() == Method::GET
            && !path.starts_with("/api/")
            && !path.starts_with("/live/");
        return match wants_page {
            true => Redirect::to("/login").into_response(),
            false => refused(
                StatusCode::UNAUTHORIZED,
                "a token is needed: Authorization: Bearer TOKEN",
            ),
        };
    }
    let mut answer = next.run(request).await;
    let headers = answer.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    answer
}

const LOGIN: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pqx · sign in</title><link rel="stylesheet" href="/static/style.css"></head>
<body class="login"><form method="post" action="/login"><h1>pqx</h1>
<p>This dashboard needs its token.</p>PROBLEM
<input type="password" name="token" autocomplete="current-password" autofocus aria-label="token">
<button type="submit">Sign in</button></form></body></html>"#;

pub async fn login_form() -> Html<String> {
    Html(LOGIN.replace("PROBLEM", ""))
}

/// Checks the token of the login form and keeps it in a cookie only this site sends.
pub async fn login(State(guard): State<Guard>, body: String) -> Response {
    let given = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    match &guard.token {
        Some(token) if token.admits(given.trim()) => {
            let encoded: String =
                url::form_urlencoded::byte_serialize(given.trim().as_bytes()).collect();
            let cookie = format!("{COOKIE}={encoded}; HttpOnly; SameSite=Strict; Path=/");
            let mut answer = Redirect::to("/").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                answer.headers_mut().insert(header::SET_COOKIE, value);
            }
            answer
        }
        Some(_) => (
            StatusCode::UNAUTHORIZED,
            Html(LOGIN.replace(
                "PROBLEM",
                r#"<p class="problem">That is not the token.</p>"#,
            )),
        )
            .into_response(),
        None => Redirect::to("/").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_read_checked_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "correct-horse-battery\nignored\n").unwrap();
        let token = Token::read(Some(&file), None).unwrap().unwrap();
        assert!(token.admits("correct-horse-battery"));
        assert!(!token.admits("correct-horse-batter"));
        assert!(!format!("{token:?}").contains("horse"));
        std::fs::write(&file, "short\n").unwrap();
        let e = Token::read(Some(&file), None).unwrap_err().to_string();
        assert!(
            e.contains("at least 16 characters") && e.contains("token"),
            "{e}"
        );
        let e = Token::read(Some(&dir.path().join("none")), None).unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
        assert!(Token::read(None, None).unwrap().is_none());
        assert!(Token::read(None, Some("x".repeat(16))).unwrap().is_some());
    }

    #[test]
    fn another_address_than_loopback_needs_a_token() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let e = Guard::new(any, None).err().unwrap().to_string();
        assert!(e.contains("--token-file"), "{e}");
        let token = Token::read(None, Some("x".repeat(20))).unwrap();
        assert!(Guard::new(any, token).is_ok());
        assert!(Guard::new("127.0.0.1:8080".parse().unwrap(), None).is_ok());
    }
}
