//! Live updates as server-sent events. A page's `<main>` is rendered again every few seconds and
//! sent (event `main`) when it changed, so a command published now appears and ends on an open
//! page without reloading it, and a page behind a banner comes back by itself. A running message
//! is followed as `inspector show --follow` follows it: each line as the subscriber sends it
//! (event `line`), each attempt as it ends (`attempt`), and `end` with the exit status of the last.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::mpsc;

use super::page::View;
use super::{Dashboard, Filters};
use crate::inspector::{json, show};

/// How often a page is rendered again to see whether it changed.
const PAGE_EVERY: Duration = Duration::from_secs(1);
/// How often the records are asked while a message is followed.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

type Events = Sse<
    axum::response::sse::KeepAliveStream<
        futures_util::stream::BoxStream<'static, Result<Event, Infallible>>,
    >,
>;

/// The events a task sends, as a stream that ends when the task does; the task sees the page
/// closed when a send fails.
fn events(rx: mpsc::Receiver<Event>) -> Events {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(boxed(stream)).keep_alive(KeepAlive::default())
}

fn boxed(
    s: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> futures_util::stream::BoxStream<'static, Result<Event, Infallible>> {
    Box::pin(s)
}

fn watch(d: Arc<Dashboard>, view: View, every: Duration) -> Events {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut shown = String::new();
        // The page was rendered for the request that opened this stream: the first look is
        // one period later, not at once.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tx.closed() => return,
            }
            let (_, main) = view.main(&d).await;
            if main != shown {
                let event = Event::default().event("main").json_data(&main);
                if let Ok(event) = event {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                shown = main;
            }
        }
    });
    events(rx)
}

pub async fn hosts(State(d): State<Arc<Dashboard>>) -> Events {
    watch(d, View::Hosts, PAGE_EVERY * 2)
}

pub async fn attempts(State(d): State<Arc<Dashboard>>, Query(f): Query<Filters>) -> Events {
    watch(d, View::Attempts(f), PAGE_EVERY)
}

/// Reading the dead-letter queue takes its messages for a moment: not more often than this.
pub async fn dead_letters(State(d): State<Arc<Dashboard>>) -> Events {
    watch(d, View::DeadLetters, PAGE_EVERY * 3)
}

/// Follows message `id`: its lines, its attempts as they end, then `end`.
pub async fn follow(State(d): State<Arc<Dashboard>>, Path(id): Path<String>) -> Events {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let exchange = d.init.output_exchange();
        let mut lines = show::Lines::open(&d.conn, &exchange, &id).await;
        let mut ended = BTreeSet::new();
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        let mut first = true;
        loop {
            match d.message(&id).await {
                Ok(attempts) => {
                    for a in attempts.iter().filter(|a| a.result.is_some()) {
                        if !ended.insert(a.history.id) {
                            continue;
                        }
                        // Its last lines may still be on their way: they come before its result.
                        let rest = show::still_coming(&mut lines, first, a).await;
                        let events =
                            rest.into_iter()
                                .flatten()
                                .map(line_event)
                                .chain([Event::default()
                                    .event("attempt")
                                    .json_data(json::attempt(a))
                                    .unwrap_or_default()]);
                        for event in events {
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                    }
                    first = false;
                    if let Some(code) = show::finished(&attempts) {
                        let end = Event::default().event("end").data(code.to_string());
                        let _ = tx.send(end).await;
                        return;
                    }
                }
                Err(e) => {
                    let trouble = Event::default().event("trouble").data(e.to_string());
                    if tx.send(trouble).await.is_err() {
                        return;
                    }
                }
            }
            if !forward_lines(&mut lines, &mut tick, &tx).await {
                return;
            }
        }
    });
    events(rx)
}

/// Sends the lines that come until the next tick; false when the page is gone.
async fn forward_lines(
    lines: &mut Option<show::Lines>,
    tick: &mut tokio::time::Interval,
    tx: &mpsc::Sender<Event>,
) -> bool {
    loop {
        let line = async {
            match lines {
                Some(l) => l.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = line => match line {
                Some(line) => {
                    if tx.send(line_event(line)).await.is_err() {
                        return false;
                    }
                }
                // The broker went away: results only from now on.
                None => *lines = None,
            },
            _ = tick.tick() => return true,
            _ = tx.closed() => return false,
        }
    }
}

/// A followed line as an event, its escapes shown as text.
fn line_event(mut line: show::Line) -> Event {
    line.text = pqx_util::escape_control(&line.text).into_owned();
    Event::default()
        .event("line")
        .json_data(&line)
        .unwrap_or_default()
}
