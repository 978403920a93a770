//! `inspector serve`: the dashboard. Pages for the hosts, the attempts (the filters of `hist`), one
//! message (its outputs, a running one followed line by line) and the dead letters (re-driven with
//! a button), rendered on the server; the JSON API under /api that they use is the same JSON as
//! `--json`. Live updates come as server-sent events (`live.rs`); the little JavaScript there is
//! is one static file, with no build chain.
//!
//! It listens on 127.0.0.1:8080 unless told otherwise; any other address needs a token
//! (`guard.rs`). The broker or the database being away is a banner on the page, and the page
//! comes back by itself when they do.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::inspector::{dlq, hosts, show};
use crate::publisher::redrive::{redrive, Redriven, Which};
use crate::{Attempt, Conn, Error, InitConfig, Result, Store, Wanted};

mod api;
mod filters;
mod guard;
mod live;
mod page;

pub use filters::Filters;
pub use guard::Token;

/// How many attempts a page shows unless its filters say.
const PAGE_ATTEMPTS: u64 = 50;
/// How many dead letters the page shows.
const PAGE_DEAD_LETTERS: u64 = 200;

/// What the pages read from: the broker, its management API and the records.
pub struct Dashboard {
    conn: Conn,
    init: InitConfig,
    api: pqx_util::MqApi,
    /// Connected when first needed, so that the dashboard starts while the database is away.
    store: tokio::sync::Mutex<Option<Store>>,
    /// Held while the dead-letter queue is read or re-driven: a reader holds its messages for a
    /// moment, and a re-drive at that moment would not see them.
    dead_letters: tokio::sync::Mutex<()>,
}

impl Dashboard {
    pub fn new(conn: Conn, init: InitConfig) -> Result<Self> {
        Ok(Self {
            api: pqx_util::MqApi::new(conn.api.clone())?,
            conn,
            init,
            store: tokio::sync::Mutex::new(None),
            dead_letters: tokio::sync::Mutex::new(()),
        })
    }

    async fn store(&self) -> Result<Store> {
        let mut store = self.store.lock().await;
        if let Some(store) = store.as_ref() {
            return Ok(store.clone());
        }
        let connected = Store::connect(&self.conn.db_url).await?;
        connected.ensure_tables().await?;
        *store = Some(connected.clone());
        Ok(connected)
    }

    /// Every host queue, and the attempts that failed in the last hour (newest first).
    pub async fn hosts(&self) -> Result<(Vec<hosts::Host>, Vec<Attempt>)> {
        let store = self.store().await?;
        let found = hosts::read(&self.api, &store, &self.init).await?;
        let failed = Wanted {
            status: Some(crate::Status::Failed),
            since: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
            ..Wanted::default()
        };
        Ok((found, store.find(&failed, 10).await?))
    }

    pub async fn attempts(&self, wanted: &Wanted, limit: u64) -> Result<Vec<Attempt>> {
        self.store().await?.find(wanted, limit).await
    }

    /// The attempts of one message, oldest first.
    pub async fn message(&self, id: &str) -> Result<Vec<Attempt>> {
        show::attempts_of(&self.store().await?, id).await
    }

    pub async fn dead_letters(&self) -> Result<(Vec<dlq::DeadLetter>, u32)> {
        let _alone = self.dead_letters.lock().await;
        dlq::read(&self.conn, &self.init, PAGE_DEAD_LETTERS).await
    }

    /// Sends dead letters back as `publisher redrive` does.
    pub async fn redrive(&self, which: &Which) -> Result<Redriven> {
        let _alone = self.dead_letters.lock().await;
        redrive(&self.conn, &self.init, which).await
    }

    pub fn dead_letter_queue(&self) -> String {
        self.init.dead_letter_queue()
    }
}

/// What is away when a view fails: the records or the broker.
fn away(e: &Error) -> &'static str {
    match e {
        Error::Db { .. } | Error::NoTables { .. } | Error::ReadOnly { .. } => "the database",
        Error::Util(
            pqx_util::Error::Db { .. }
            | pqx_util::Error::DbTls { .. }
            | pqx_util::Error::DbUnreachable { .. },
        ) => "the database",
        _ => "the broker",
    }
}

/// Serves the dashboard on `bind` until SIGINT or SIGTERM.
pub async fn serve(
    conn: Conn,
    init: InitConfig,
    bind: SocketAddr,
    token: Option<Token>,
) -> Result<()> {
    let guard = guard::Guard::new(bind, token)?;
    let dashboard = Arc::new(Dashboard::new(conn, init)?);
    let app = Router::new()
        .route("/", get(page::hosts))
        .route("/attempts", get(page::attempts))
        .route("/messages/{id}", get(page::message))
        .route("/dlq", get(page::dead_letters))
        .route("/live/hosts", get(live::hosts))
        .route("/live/attempts", get(live::attempts))
        .route("/live/dlq", get(live::dead_letters))
        .route("/api/hosts", get(api::hosts))
        .route("/api/attempts", get(api::attempts))
        .route("/api/messages/{id}", get(api::message))
        .route("/api/messages/{id}/follow", get(live::follow))
        .route("/api/dlq", get(api::dead_letters))
        .route("/api/dlq/redrive", post(api::redrive))
        .route("/static/style.css", get(page::style))
        .route("/static/app.js", get(page::script))
        .fallback(page::not_found)
        .with_state(dashboard);
    let login = Router::new()
        .route("/login", get(guard::login_form).post(guard::login))
        .with_state(guard.clone());
    let app = app
        .merge(login)
        .layer(axum::middleware::from_fn_with_state(guard, guard::check));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|source| Error::Serve {
            bind: bind.to_string(),
            source,
        })?;
    let shown = listener.local_addr().unwrap_or(bind);
    eprintln!("inspector: the dashboard is at http://{shown}/ (Ctrl-C stops it)");
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|source| Error::Serve {
            bind: bind.to_string(),
            source,
        })
}

async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
