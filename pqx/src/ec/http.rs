//! `Http` commands (from the quebert seed: a task is an HTTP request): success means a 2xx status.
//! The response body is streamed to the log line by line like a process's stdout, and its last part
//! is kept for the record. `${VAR}` in the URL and header values comes from the subscriber's
//! environment, so that tokens stay on the subscriber's machine.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::output::{LineSplitter, Tail};
use super::{CmdArg, OutputStream, RunEnd, RunReport};

/// The most of a response body that is read; the rest is left unread.
const MAX_BODY: usize = 1024 * 1024;

/// Sends the request of an `Http` command; anything else is reported as not started.
pub(super) async fn send(
    cmd: &CmdArg,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    mut on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    let CmdArg::Http {
        method,
        url,
        headers,
        body,
    } = cmd
    else {
        return RunReport::not_started("not an Http command");
    };
    let started_at = SystemTime::now();
    let mut report = RunReport::not_started("");
    report.started_at = started_at;

    let request = match build(method, url, headers, body.as_deref()) {
        Ok(request) => request,
        Err(why) => {
            report.end = RunEnd::NotStarted(why);
            return report;
        }
    };
    let exchange = async {
        let response = request.send().await.map_err(|e| chain(&e))?;
        let status = response.status();
        let reason = status.canonical_reason().unwrap_or("").to_owned();
        let mut response = response;
        let mut splitter = LineSplitter::default();
        let mut read = 0usize;
        let mut tail = Tail::default();
        let mut pass_on = |line: &[u8]| {
            on_line(OutputStream::Stdout, &String::from_utf8_lossy(line));
            tail.push_line(line);
        };
        let mut cut = false;
        while let Some(chunk) = response.chunk().await.map_err(|e| chain(&e))? {
            let room = MAX_BODY.saturating_sub(read);
            cut = chunk.len() > room;
            let chunk = &chunk[..chunk.len().min(room)];
            read += chunk.len();
            splitter.push(chunk, &mut pass_on);
            if cut {
                break;
            }
        }
        if cut {
            // The cut line is left out rather than shown as if it were whole.
            pass_on(format!("[pqx: body cut after {MAX_BODY} bytes]").as_bytes());
        } else {
            splitter.finish(&mut pass_on);
        }
        Ok::<_, String>((status.as_u16(), reason, tail))
    };
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
    report.end = match outcome {
        None => RunEnd::Interrupted,
        Some(None) => RunEnd::TimedOut(timeout.unwrap_or_default()),
        Some(Some(Err(why))) => {
            RunEnd::NotStarted(format!("{} {url}: {why}", method.to_uppercase()))
        }
        Some(Some(Ok((status, reason, tail)))) => {
            report.stdout = tail;
            RunEnd::Http { status, reason }
        }
    };
    report.ended_at = SystemTime::now();
    report
}

fn build(
    method: &str,
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    body: Option<&str>,
) -> Result<reqwest::RequestBuilder, String> {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{method:?} is not an HTTP method"))?;
    let url = pqx_util::expand_env(url, "cmd.Http.url").map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| chain(&e))?;
    let mut request = client.request(method, &url);
    for (name, value) in headers {
        let value = pqx_util::expand_env(value, &format!("cmd.Http.headers.{name}"))
            .map_err(|e| e.to_string())?;
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    Ok(request)
}

/// An error with its causes, which is where reqwest says what went wrong ("connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
