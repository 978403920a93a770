//! The JSON API under /api: each document is the one `inspector --json` prints for the same view;
//! a failure is `{"error": ..., "away": ...}` with status 503 (the broker or database is away),
//! 400 (a filter that does not parse) or 404 (an unknown message).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{away, Dashboard, Filters, PAGE_ATTEMPTS};
use crate::inspector::json as doc;
use crate::publisher::redrive::Which;
use crate::{Error, Result};

fn answer(found: Result<Value>) -> Response {
    match found {
        Ok(doc) => Json(doc).into_response(),
        Err(e @ Error::NoSuchMessage { .. }) => {
            (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e.to_string(), "away": away(&e)})),
        )
            .into_response(),
    }
}

pub async fn hosts(State(d): State<Arc<Dashboard>>) -> Response {
    answer(d.hosts().await.map(|(found, _)| doc::hosts(&found)))
}

pub async fn attempts(State(d): State<Arc<Dashboard>>, Query(f): Query<Filters>) -> Response {
    match f.wanted(PAGE_ATTEMPTS) {
        Ok((wanted, limit)) => answer(d.attempts(&wanted, limit).await.map(|a| doc::attempts(&a))),
        Err(problem) => (StatusCode::BAD_REQUEST, Json(json!({"error": problem}))).into_response(),
    }
}

pub async fn message(State(d): State<Arc<Dashboard>>, Path(id): Path<String>) -> Response {
    answer(d.message(&id).await.map(|a| doc::message(&id, &a)))
}

pub async fn dead_letters(State(d): State<Arc<Dashboard>>) -> Response {
    let queue = d.dead_letter_queue();
    answer(
        d.dead_letters()
            .await
            .map(|(found, total)| doc::dead_letters(&queue, &found, total)),
    )
}

/// `{"message_id": ID}` or `{"all": true}`: which dead letters to send back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redrive {
    message_id: Option<String>,
    #[serde(default)]
    all: bool,
}

/// Sends dead letters back as `publisher redrive` does: each confirmed in its host queue before
/// it leaves the dead-letter queue. Answers what was sent and what was left, and why.
pub async fn redrive(State(d): State<Arc<Dashboard>>, body: String) -> Response {
    let which = match serde_json::from_str::<Redrive>(&body) {
        Ok(Redrive {
            message_id: Some(id),
            all: false,
        }) => Which::MessageId(id),
        Ok(Redrive {
            message_id: None,
            all: true,
        }) => Which::All,
        _ => {
            let problem = r#"the body must be {"message_id": "ID"} or {"all": true}"#;
            return (StatusCode::BAD_REQUEST, Json(json!({"error": problem}))).into_response();
        }
    };
    match d.redrive(&which).await {
        Ok(done) => Json(json!({"sent": done.sent, "left": done.left})).into_response(),
        Err(e @ Error::NoDeadLetter { .. }) => {
            (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response()
        }
        Err(e) => answer(Err(e)),
    }
}
