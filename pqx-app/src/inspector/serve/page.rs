//! The dashboard's pages, rendered on the server. Everything that comes from a command, a task
//! file or the broker is escaped as HTML text here; the Content-Security-Policy (`guard.rs`) is
//! the second line. A page is a layout around one `<main>`; the live updates and the buttons swap
//! that `<main>` for a newly rendered one.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use pqx_util::escape_control_lines;

use super::{away, Dashboard, Filters, PAGE_ATTEMPTS};
use crate::inspector::dlq::DeadLetter;
use crate::inspector::hosts::{unseen_line, Host};
use crate::{Attempt, Error, Result, Status};

/// The header that asks for a page's `<main>` only.
pub const FRAGMENT_HEADER: &str = "x-pqx-fragment";

/// One of the dashboard's pages.
pub enum View {
    Hosts,
    Attempts(Filters),
    Message(String),
    DeadLetters,
}

impl View {
    fn title(&self) -> String {
        match self {
            View::Hosts => "hosts".into(),
            View::Attempts(_) => "attempts".into(),
            View::Message(id) => format!("message {id}"),
            View::DeadLetters => "dead letters".into(),
        }
    }

    /// Where its live updates come from.
    fn live(&self) -> Option<String> {
        match self {
            View::Hosts => Some("/live/hosts".into()),
            View::Attempts(f) => Some(format!("/live/attempts?{}", f.query())),
            View::DeadLetters => Some("/live/dlq".into()),
            // A running message is followed line by line instead (`live::follow`).
            View::Message(_) => None,
        }
    }

    /// Its `<main>`, rendered now, and the status to answer with.
    pub async fn main(&self, d: &Dashboard) -> (StatusCode, String) {
        match self {
            View::Hosts => (StatusCode::OK, hosts_main(d.hosts().await)),
            View::Attempts(filters) => match filters.wanted(PAGE_ATTEMPTS) {
                Ok((wanted, limit)) => (
                    StatusCode::OK,
                    attempts_main(filters, None, d.attempts(&wanted, limit).await),
                ),
                Err(problem) => (
                    StatusCode::BAD_REQUEST,
                    attempts_main(filters, Some(&problem), Ok(Vec::new())),
                ),
            },
            View::Message(id) => match d.message(id).await {
                Err(Error::NoSuchMessage { .. }) => (
                    StatusCode::NOT_FOUND,
                    format!(
                        r#"<h1>Message {}</h1><p class="empty">No attempt of this message is recorded (yet): check the id, or wait for a subscriber to take it.</p>"#,
                        text(id)
                    ),
                ),
                found => (StatusCode::OK, message_main(id, found)),
            },
            View::DeadLetters => (
                StatusCode::OK,
                dead_letters_main(&d.dead_letter_queue(), d.dead_letters().await),
            ),
        }
    }
}

/// A whole page, or its `<main>` only when the request asks for that.
async fn page(d: &Dashboard, view: View, headers: &HeaderMap) -> Response {
    let (status, main) = view.main(d).await;
    if headers.contains_key(FRAGMENT_HEADER) {
        return (status, Html(main)).into_response();
    }
    (status, Html(layout(&view, &main))).into_response()
}

pub async fn hosts(State(d): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    page(&d, View::Hosts, &headers).await
}

pub async fn attempts(
    State(d): State<Arc<Dashboard>>,
    Query(filters): Query<Filters>,
    headers: HeaderMap,
) -> Response {
    page(&d, View::Attempts(filters), &headers).await
}

pub async fn message(
    State(d): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    page(&d, View::Message(id), &headers).await
}

pub async fn dead_letters(State(d): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    page(&d, View::DeadLetters, &headers).await
}

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such page\n").into_response()
}

pub async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/style.css"),
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/app.js"),
    )
        .into_response()
}

fn layout(view: &View, main: &str) -> String {
    let nav = [
        ("/", "Hosts", matches!(view, View::Hosts)),
        (
            "/attempts",
            "Attempts",
            matches!(view, View::Attempts(_) | View::Message(_)),
        ),
        ("/dlq", "Dead letters", matches!(view, View::DeadLetters)),
    ]
    .iter()
    .map(|(href, name, here)| match here {
        true => format!(r#"<a href="{href}" aria-current="page">{name}</a>"#),
        false => format!(r#"<a href="{href}">{name}</a>"#),
    })
    .collect::<String>();
    let live = view
        .live()
        .map(|l| format!(r#" data-live="{}""#, attr(&l)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pqx · {title}</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head><body>
<header class="top"><span class="brand">pqx</span><nav>{nav}</nav><span id="live-state" class="live-state" title="live updates">live</span></header>
<p id="flash" class="flash" role="status" hidden></p>
<main id="main"{live}>{main}</main>
</body></html>"#,
        title = text(&view.title()),
    )
}

/// What is away and what it said; the page comes back by itself.
fn banner(e: &Error) -> String {
    format!(
        r#"<div class="banner" role="alert"><strong>{} cannot be reached.</strong> {} <em>This page tries again by itself.</em></div>"#,
        capitalized(away(e)),
        text(&e.to_string())
    )
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Running => "running",
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::Cancelled => "cancelled",
    }
}

fn pill(status: Status) -> String {
    let name = status_name(status);
    format!(r#"<span class="pill st-{name}">{name}</span>"#)
}

/// `id` as one segment of a path.
fn segment(id: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(id, SEGMENT).collect()
}

fn message_link(id: Option<&str>) -> String {
    match id {
        Some(id) => {
            format!(
                r#"<a class="mid" href="/messages/{}">{}</a>"#,
                segment(id),
                text(id)
            )
        }
        None => "<span class=\"mid\">(none)</span>".into(),
    }
}

/// How a host stands, worst first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HostState {
    Down,
    Failing,
    Up,
}

fn host_state(h: &Host) -> HostState {
    if h.unconsumed() {
        HostState::Down
    } else if h.failures_last_hour > 0
        || h.last.as_ref().is_some_and(|l| l.status == Status::Failed)
    {
        HostState::Failing
    } else {
        HostState::Up
    }
}

fn hosts_main(found: Result<(Vec<Host>, Vec<Attempt>)>) -> String {
    let (mut found, failed) = match found {
        Ok(found) => found,
        Err(e) => return format!("<h1>Hosts</h1>{}", banner(&e)),
    };
    found.sort_by_key(host_state);
    let count = |s: HostState| found.iter().filter(|h| host_state(h) == s).count();
    let failures: u64 = found.iter().map(|h| h.failures_last_hour).sum();
    let running: usize = found.iter().map(|h| h.running.len()).sum();
    let waiting: u64 = found.iter().filter_map(|h| h.messages_waiting).sum();
    let mut out = String::from("<h1>Hosts</h1><section class=\"tiles\">");
    let tiles = [
        ("down", count(HostState::Down) as u64, "down: no subscriber"),
        ("failing", failures, "failed in the last hour"),
        (
            "up",
            count(HostState::Up) as u64 + count(HostState::Failing) as u64,
            "listening",
        ),
        ("running", running as u64, "running now"),
        ("waiting", waiting, "waiting in queues"),
    ];
    for (class, n, what) in tiles {
        let zero = if n == 0 { " zero" } else { "" };
        let _ = write!(
            out,
            r#"<div class="tile {class}{zero}" data-tile="{class}"><b>{n}</b><span>{what}</span></div>"#
        );
    }
    out.push_str("</section><section class=\"hosts\">");
    for h in &found {
        out.push_str(&host_card(h));
    }
    out.push_str("</section>");
    if found.is_empty() {
        out.push_str(r#"<p class="empty">No host queue: run <code>initiator -o init</code> or <code>initiator add-host</code>.</p>"#);
    }
    out.push_str("<h2>Failed in the last hour</h2>");
    if failed.is_empty() {
        out.push_str(r#"<p class="empty">Nothing failed in the last hour.</p>"#);
    } else {
        out.push_str(&attempts_table(&failed));
    }
    out
}

fn host_card(h: &Host) -> String {
    let (class, label) = match host_state(h) {
        HostState::Down => ("down", "DOWN · no subscriber"),
        HostState::Failing => ("failing", "failing"),
        HostState::Up => ("up", "up"),
    };
    let mut subscribers: Vec<String> = h
        .consumers
        .iter()
        .map(|c| match &c.since {
            Some(since) => format!("{} <small>since {}</small>", text(&c.host), text(since)),
            None => text(&c.host).into_owned(),
        })
        .collect();
    if h.unconsumed() {
        subscribers.push("none: what is sent here waits".to_owned());
    } else if h.unseen() > 0 {
        subscribers.push(format!("<small>{}</small>", text(&unseen_line(h.unseen()))));
    }
    let subscribers = subscribers.join("<br>");
    let running = match h.running.as_slice() {
        [] => "—".to_owned(),
        all => all
            .iter()
            .map(|r| {
                format!(
                    "{} <small>attempt {} on {} since {}</small>",
                    message_link(r.message_id.as_deref()),
                    r.attempt.unwrap_or(1),
                    text(r.host.as_deref().unwrap_or("?")),
                    text(&r.started)
                )
            })
            .collect::<Vec<_>>()
            .join("<br>"),
    };
    let last = match &h.last {
        None => "—".to_owned(),
        Some(l) => format!(
            "{} {} <small>{} at {}</small>",
            pill(l.status),
            message_link(l.message_id.as_deref()),
            text(l.result.as_deref().unwrap_or_default()),
            text(l.ended.as_deref().unwrap_or("?"))
        ),
    };
    let waiting = h.messages_waiting.map_or("?".to_owned(), |n| n.to_string());
    format!(
        r#"<article class="host {class}" data-queue="{queue_attr}"><header><h3>{queue}</h3><span class="state {class}">{label}</span></header>
<dl><dt>subscribers</dt><dd>{subscribers}</dd><dt>waiting</dt><dd>{waiting}</dd><dt>running now</dt><dd>{running}</dd><dt>last result</dt><dd>{last}</dd><dt>failed (1h)</dt><dd class="failures">{failures}</dd></dl></article>"#,
        queue_attr = attr(&h.queue),
        queue = text(&h.queue),
        failures = h.failures_last_hour,
    )
}

fn attempts_table(attempts: &[Attempt]) -> String {
    let mut out = String::from(
        "<table class=\"attempts\"><thead><tr><th>status</th><th>message</th><th>queue</th><th>attempt</th><th>host</th><th>started (UTC)</th><th>ended (UTC)</th><th>exit</th><th>result</th></tr></thead><tbody>",
    );
    for a in attempts {
        let h = &a.history;
        let r = a.result.as_ref();
        let _ = write!(
            out,
            r#"<tr class="st-{status}" data-message-id="{id_attr}" data-status="{status}"><td>{pill}</td><td>{link}</td><td>{queue}</td><td>{attempt}</td><td>{host}</td><td>{started}</td><td>{ended}</td><td>{exit}</td><td class="result">{result}</td></tr>"#,
            status = status_name(a.status()),
            id_attr = attr(h.message_id.as_deref().unwrap_or_default()),
            pill = pill(a.status()),
            link = message_link(h.message_id.as_deref()),
            queue = text(h.queue.as_deref().unwrap_or_default()),
            attempt = h.attempt.unwrap_or(1),
            host = text(h.host.as_deref().unwrap_or_default()),
            started = when(&h.time),
            ended = r.map(|r| when(&r.time)).unwrap_or_default(),
            exit = r.map(|r| r.exit_code.to_string()).unwrap_or_default(),
            result = text(&r.map(|r| r.summary().into_owned()).unwrap_or_default()),
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn filter_form(f: &Filters) -> String {
    let field = |name: &str, label: &str, value: &Option<String>, hint: &str| {
        format!(
            r#"<label>{label}<input name="{name}" value="{}" placeholder="{hint}"></label>"#,
            attr(value.as_deref().unwrap_or_default())
        )
    };
    let chosen = f.status.as_deref().unwrap_or_default();
    let options = ["", "running", "succeeded", "failed", "skipped", "cancelled"]
        .iter()
        .map(|s| {
            let selected = if *s == chosen { " selected" } else { "" };
            let shown = if s.is_empty() { "any" } else { s };
            format!(r#"<option value="{s}"{selected}>{shown}</option>"#)
        })
        .collect::<String>();
    format!(
        r#"<form class="filters" method="get" action="/attempts">{}{}{}<label>status<select name="status">{options}</select></label>{}{}<button type="submit">Filter</button></form>"#,
        field("queue", "queue", &f.queue, "h1"),
        field("host", "host", &f.host, "web-1"),
        field("message_id", "message id", &f.message_id, ""),
        field("since", "since", &f.since, "1h or 2026-11-23T10:00"),
        field("limit", "limit", &f.limit, "50"),
    )
}

fn attempts_main(f: &Filters, problem: Option<&str>, found: Result<Vec<Attempt>>) -> String {
    let mut out = format!("<h1>Attempts</h1>{}", filter_form(f));
    if let Some(problem) = problem {
        let _ = write!(
            out,
            r#"<p class="problem" role="alert">{}</p>"#,
            text(problem)
        );
        return out;
    }
    match found {
        Err(e) => out.push_str(&banner(&e)),
        Ok(found) if found.is_empty() => {
            out.push_str(r#"<p class="empty">No attempt matches.</p>"#)
        }
        Ok(found) => {
            let _ = write!(
                out,
                r#"<p class="count">{}, newest first</p>"#,
                counted(found.len() as u64, "attempt", "attempts")
            );
            out.push_str(&attempts_table(&found));
        }
    }
    out
}

fn message_main(id: &str, found: Result<Vec<Attempt>>) -> String {
    let mut out = format!("<h1>Message <code>{}</code></h1>", text(id));
    let found = match found {
        Ok(found) => found,
        Err(e) => return out + &banner(&e),
    };
    if found.iter().any(|a| a.status() == Status::Running) {
        let follow = format!("/api/messages/{}/follow", segment(id));
        let _ = write!(
            out,
            r#"<section class="follow" data-follow="{}"><h2>Running now: its output as it prints</h2><pre id="live-output" class="output"></pre></section>"#,
            attr(&follow)
        );
    }
    for a in &found {
        let h = &a.history;
        let how = match &a.result {
            Some(r) => format!(
                "ended {} UTC, exit {}: {}",
                when(&r.time),
                r.exit_code,
                text(&r.summary())
            ),
            None => "no result yet: running, or its subscriber stopped before it ended".into(),
        };
        let _ = write!(
            out,
            r#"<article class="attempt st-{status}" data-status="{status}"><header>{pill}<h3>attempt {n} on {queue}</h3><small>host {host}, started {started} UTC</small></header><p>{how}</p>"#,
            status = status_name(a.status()),
            pill = pill(a.status()),
            n = h.attempt.unwrap_or(1),
            queue = text(h.queue.as_deref().unwrap_or("?")),
            host = text(h.host.as_deref().unwrap_or("?")),
            started = when(&h.time),
        );
        if let Some(r) = &a.result {
            for (name, printed) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
                let printed = printed.as_deref().unwrap_or_default();
                if !printed.is_empty() {
                    // Terminal escapes are shown as the CLI shows them (`\u{1b}`), then as HTML text.
                    let shown = escape_control_lines(printed);
                    let _ = write!(
                        out,
                        r#"<h4>{name}</h4><pre class="output {name}">{}</pre>"#,
                        text(&shown)
                    );
                }
            }
        }
        let _ = write!(
            out,
            r#"<details><summary>command</summary><pre class="output">{}</pre></details></article>"#,
            text(&h.cmd.to_string())
        );
    }
    out
}

fn age(secs: Option<i64>) -> String {
    secs.and_then(|s| u64::try_from(s).ok())
        .map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string())
        .unwrap_or_default()
}

/// "1 message", "2 messages": a count a person reads.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn dead_letters_main(queue: &str, found: Result<(Vec<DeadLetter>, u32)>) -> String {
    let mut out = format!("<h1>Dead letters <small>in {}</small></h1>", text(queue));
    let (letters, total) = match found {
        Ok(found) => found,
        Err(e) => return out + &banner(&e),
    };
    if total == 0 {
        out.push_str(
            r#"<p class="empty" data-total="0">Nothing waits in the dead-letter queue.</p>"#,
        );
        return out;
    }
    let _ = write!(
        out,
        r#"<p class="count" data-total="{total}">{}, oldest first (showing {}). <button class="redrive" data-redrive="all">Re-drive all</button></p>"#,
        counted(u64::from(total), "message", "messages"),
        letters.len()
    );
    out.push_str("<table class=\"dead-letters\"><thead><tr><th>message</th><th>host queue</th><th>reason</th><th>age</th><th>command</th><th></th></tr></thead><tbody>");
    for d in &letters {
        let button = match &d.message_id {
            Some(id) => format!(
                r#"<button class="redrive" data-redrive="message" data-message-id="{}">Re-drive</button>"#,
                attr(id)
            ),
            None => String::new(),
        };
        let _ = write!(
            out,
            r#"<tr><td>{link}</td><td>{queue}</td><td class="reason">{reason}</td><td>{age}</td><td><code>{command}</code></td><td>{button}</td></tr>"#,
            link = message_link(d.message_id.as_deref()),
            queue = text(d.queue.as_deref().unwrap_or("?")),
            reason = text(d.reason.as_deref().unwrap_or_default()),
            age = age(d.age_secs),
            command = text(&d.command),
        );
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_command_printed_is_text_in_every_place_it_is_shown() {
        let evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";
        let f = Filters {
            queue: Some(evil.into()),
            ..Filters::default()
        };
        let page = attempts_main(&f, Some(evil), Ok(Vec::new()));
        assert!(
            !page.contains("<script>") && !page.contains("<img"),
            "{page}"
        );
        let link = message_link(Some(evil));
        assert!(
            !link.contains("<script>") && link.contains("/messages/%3Cscript%3E"),
            "{link}"
        );
        let layout = layout(&View::Message(evil.into()), "");
        assert!(!layout.contains("<script>alert"), "{layout}");
    }

    #[test]
    fn counts_read_as_a_person_says_them() {
        let one = dead_letters_main("dlq", Ok((Vec::new(), 1)));
        assert!(one.contains(">1 message, oldest first"), "{one}");
        let two = dead_letters_main("dlq", Ok((Vec::new(), 2)));
        assert!(two.contains(">2 messages, oldest first"), "{two}");
        assert_eq!(counted(1, "attempt", "attempts"), "1 attempt");
        assert_eq!(counted(0, "attempt", "attempts"), "0 attempts");
    }
}
