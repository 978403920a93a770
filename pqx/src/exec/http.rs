//! `Http` commands (a task that is an HTTP request): success means a 2xx status. The response body
//! is streamed to the log line by line like a process's stdout, and its last part is kept for the
//! record. `${VAR}` in the URL and header values comes from the subscriber's environment, so that
//! tokens stay on the subscriber's machine.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::output::{LineSplitter, Tail};
use super::{CannotStart, OutputStream, RunEnd, RunReport};

/// The most of a response body that is read; the rest is left unread.
const MAX_BODY: usize = 1024 * 1024;

/// An `Http` command's fields.
pub(super) struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a BTreeMap<String, String>,
    pub body: Option<&'a str>,
}

/// Sends the request, until `timeout` or until `cancel` fires.
pub(super) async fn send(
    request: Request<'_>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    mut on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    let started_at = SystemTime::now();
    let built = match build(&request) {
        Ok(built) => built,
        Err(why) => return RunReport::not_started(why.to_string()),
    };
    let exchange = exchange(built, &mut on_line);
    let bounded = async {
        match timeout {
            Some(limit) => tokio::time::timeout(limit, exchange).await.ok(),
            None => Some(exchange.await),
        }
    };
    let outcome = tokio::select! {
        outcome = bounded => Some(outcome),
        _ = cancel.cancelled() => None,
    };
    let (end, body) = match outcome {
        None => (RunEnd::Interrupted, Tail::default()),
        Some(None) => (
            RunEnd::TimedOut(timeout.unwrap_or_default()),
            Tail::default(),
        ),
        Some(Some(Err(why))) => {
            // The URL as written, never as expanded: a `${TOKEN}` in it stays on this machine.
            let method = request.method.to_uppercase();
            let url = pqx_util::redact_url(request.url);
            (
                RunEnd::NotStarted(format!("{method} {url}: {why}")),
                Tail::default(),
            )
        }
        Some(Some(Ok((end, tail)))) => (end, tail),
    };
    RunReport::ended(end, started_at, body, Tail::default())
}

/// Sends the request and reads up to [`MAX_BODY`] of the response, passing its lines on.
async fn exchange(
    request: reqwest::RequestBuilder,
    on_line: &mut impl FnMut(OutputStream, &str),
) -> Result<(RunEnd, Tail), CannotStart> {
    let mut response = request.send().await.map_err(|e| chain(&e.without_url()))?;
    let status = response.status();
    let end = RunEnd::Http {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("").to_owned(),
    };
    let mut splitter = LineSplitter::default();
    let mut tail = Tail::default();
    let mut pass_on = |line: &[u8]| {
        on_line(OutputStream::Stdout, &String::from_utf8_lossy(line));
        tail.push_line(line);
    };
    let mut read = 0usize;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| chain(&e.without_url()))?
    {
        let room = MAX_BODY.saturating_sub(read);
        if chunk.len() > room {
            splitter.push(&chunk[..room], &mut pass_on);
            // The cut line is left out rather than shown as if it were whole.
            pass_on(format!("[pqx: body cut after {MAX_BODY} bytes]").as_bytes());
            return Ok((end, tail));
        }
        read += chunk.len();
        splitter.push(&chunk, &mut pass_on);
    }
    splitter.finish(&mut pass_on);
    Ok((end, tail))
}

fn build(request: &Request<'_>) -> Result<reqwest::RequestBuilder, CannotStart> {
    let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| CannotStart(format!("{:?} is not an HTTP method", request.method)))?;
    let expand = |value: &str, field: &str| {
        pqx_util::expand_env(value, field).map_err(|e| CannotStart(e.to_string()))
    };
    let url = expand(request.url, "cmd.Http.url")?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| chain(&e))?;
    let mut built = client.request(method, &url);
    for (name, value) in request.headers {
        built = built.header(name, expand(value, &format!("cmd.Http.headers.{name}"))?);
    }
    if let Some(body) = request.body {
        built = built.body(body.to_owned());
    }
    Ok(built)
}

/// An error with its causes, which is where reqwest says what went wrong ("connection refused").
fn chain(error: &dyn std::error::Error) -> CannotStart {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    CannotStart(text)
}
