//! `POST /v1/score`: a JSON array or NDJSON of request records in, one
//! verdict per accepted record out, in input order, and the bad records
//! reported or the whole body refused, as the policy says.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vigil_runtime::config::BadInputPolicy;
use vigil_runtime::input::admit::Origin;
use vigil_runtime::input::body::{BodyError, BodyLimits, parse_body};
use vigil_runtime::score::combine::Verdict;
use vigil_runtime::util::lock;

use crate::service::App;
use crate::service::api::{ApiError, RecordError};

#[derive(Deserialize)]
pub struct ScoreQuery {
    on_bad_input: Option<String>,
}

// A struct, not `json!`, so verdict fields keep their documented order.
#[derive(Serialize)]
pub struct ScoreResponse {
    verdicts: Vec<Verdict>,
    errors: Vec<RecordError>,
}

pub async fn score(
    State(app): State<Arc<App>>,
    Query(q): Query<ScoreQuery>,
    body: Body,
) -> Result<Json<ScoreResponse>, ApiError> {
    let policy = match q.on_bad_input.as_deref().map(str::parse::<BadInputPolicy>) {
        None => app.config.server.on_bad_input,
        Some(Ok(p)) => p,
        Some(Err(m)) => return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("on_bad_input: {m}"))),
    };
    let body = app.read_body(body).await?;
    let slot = app.scoring_slots.clone().acquire_owned().await.expect("the semaphore is never closed");
    let app2 = app.clone();
    // Parsing and scoring are bounded, but they are CPU work the threads
    // that accept connections must not do.
    let scored = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        score_body(&app2, &body.bytes, policy)
    })
    .await;
    scored.unwrap_or_else(|e| Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("scoring failed: {e}"))))
}

/// Parses, admits and scores one body.
fn score_body(app: &App, body: &[u8], policy: BadInputPolicy) -> Result<Json<ScoreResponse>, ApiError> {
    let s = &app.config.server;
    let limits = BodyLimits {
        max_records: s.max_records_per_request,
        max_errors: s.max_errors_per_request,
        stop_at_first_error: policy == BadInputPolicy::Fail,
    };
    let parsed = parse_body(body, &app.config.input, &limits)?;
    let req = app.requests.fetch_add(1, Ordering::Relaxed);
    let mut records = Vec::with_capacity(parsed.len());
    let mut errors = Vec::new();
    {
        let mut admission = lock(&app.admission);
        // A body refused whole leaves no trace in the stream's window.
        let mark = admission.mark();
        for (i, r) in parsed.into_iter().enumerate() {
            match r.and_then(|r| admission.admit(&r, Origin::Record(req, i as u64)).map(|()| r)) {
                Ok(r) => records.push(r),
                Err(b) => {
                    app.metrics.add("vigil_bad_input_total", vec![], 1.0);
                    let field = b.field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default();
                    let message = format!("record {}{field}: {}", b.line, b.message);
                    let e = RecordError { index: b.line, field: b.field, message: b.message };
                    if policy == BadInputPolicy::Fail {
                        admission.rollback(mark);
                        return Err(ApiError { status: StatusCode::BAD_REQUEST, message, records: vec![e] });
                    }
                    errors.push(e);
                }
            }
        }
        if errors.len() > s.max_errors_per_request {
            admission.rollback(mark);
            return Err(BodyError::TooManyErrors(s.max_errors_per_request).into());
        }
    }
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(records.len());
    let size = app.scorer.scoring.batch_size;
    let mut rest = records;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(size));
        let batch = app.scorer.batch(rest);
        let times: Vec<i64> = batch.records.iter().map(|r| r.ts_ms).collect();
        let (v, _) = app.scorer.score(batch);
        lock(&app.cases).observe_all(&v, &times);
        verdicts.extend(v);
        rest = tail;
    }
    Ok(Json(ScoreResponse { verdicts, errors }))
}
