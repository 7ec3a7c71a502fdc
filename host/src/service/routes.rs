//! The HTTP routes: what every handler shares ([`App`]), the router, and
//! thin handlers that read a request, call the service's logic and answer
//! (an [`ApiError`] for anything but success).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use vigil_runtime::config::{BadInputPolicy, Config};
use vigil_runtime::metrics::Metrics;
use vigil_runtime::plugin::manifest::Mode;
use vigil_runtime::registry::Registry;
use vigil_runtime::score::cases::{CaseBook, Cases};
use vigil_runtime::util::lock;

use crate::service::admin::{Overrides, Tokens};
use crate::service::api::ApiError;
use crate::service::audit::Audit;
use crate::service::guardrail::{Gateway, GuardrailRequest, GuardrailResponse};
use crate::service::http::{BodyBudget, ReadBody};
use crate::service::reload::Trigger;
use crate::service::remote::{Route, Slot};
use crate::service::score::{LogScoring, ScoreResponse};

/// What every route shares.
pub struct App {
    pub config: Config,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub audit: Arc<Audit>,
    pub scoring: LogScoring,
    pub gateway: Gateway,
    pub tokens: Tokens,
    pub cases: Arc<std::sync::Mutex<CaseBook>>,
    pub bodies: BodyBudget,
    /// Requests parsed and scored at once.
    pub scoring_slots: Arc<tokio::sync::Semaphore>,
    pub overrides: Overrides,
    pub remote: Arc<Slot>,
    /// The watched plugin directory (promotion moves files into it).
    pub plugins_dir: std::path::PathBuf,
    /// Wakes the reload thread.
    pub reload: std::sync::mpsc::Sender<Trigger>,
}

impl App {
    /// A request's body, within the size, time and memory limits.
    async fn read_body(&self, body: Body) -> Result<ReadBody, ApiError> {
        let s = &self.config.server;
        Ok(self.bodies.read(body, s.max_body_bytes, Duration::from_millis(s.body_timeout_ms)).await?)
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/score", post(score))
        .route("/beta/litellm_basic_guardrail_api", post(guardrail))
        .route("/v1/plugins", get(plugins))
        .route("/v1/cases", get(cases))
        .route("/v1/plugins/{name}/rollback", post(rollback))
        .route("/v1/plugins/{name}/mode", post(set_mode))
        .route("/v1/plugins/{name}/shadow", get(shadow))
        .route("/v1/plugins/{name}/promote", post(promote))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(app)
}

#[derive(Deserialize)]
struct ScoreQuery {
    on_bad_input: Option<String>,
}

/// `POST /v1/score`.
async fn score(
    State(app): State<Arc<App>>,
    Query(q): Query<ScoreQuery>,
    body: Body,
) -> Result<Json<ScoreResponse>, ApiError> {
    let policy = match q.on_bad_input.as_deref().map(str::parse::<BadInputPolicy>) {
        None => app.config.server.on_bad_input,
        Some(Ok(p)) => p,
        Some(Err(m)) => return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("on_bad_input: {m}"))),
    };
    let route = app.remote.route();
    if let Route::NotYet = route {
        return Err(not_joined());
    }
    let body = app.read_body(body).await?;
    let slot = app.scoring_slots.clone().acquire_owned().await.expect("the semaphore is never closed");
    let app2 = app.clone();
    let failed = |e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("scoring failed: {e}"));
    // Parsing and scoring are bounded, but they are CPU work the threads
    // that accept connections must not do.
    match route {
        Route::There(remote) => {
            let checked = tokio::task::spawn_blocking(move || app2.scoring.check_body(&body.bytes, policy))
                .await
                .map_err(failed)??;
            let r = app.scoring.score_remote(checked, remote).await;
            drop(slot);
            Ok(Json(r))
        }
        _ => {
            let scored = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                app2.scoring.score_body(&body.bytes, policy)
            })
            .await
            .map_err(failed)?;
            Ok(Json(scored?))
        }
    }
}

fn not_joined() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this node has not joined its cluster yet: nothing can be scored")
}

/// `POST /beta/litellm_basic_guardrail_api` (docs/litellm.md).
async fn guardrail(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<GuardrailResponse>, ApiError> {
    let body = app.read_body(body).await?;
    let given = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !app.gateway.authorized(given) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid `x-api-key` is required (the guardrail's api_key)",
        ));
    }
    let req: GuardrailRequest = serde_json::from_slice(&body.bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("not a LiteLLM guardrail request: {e}")))?;
    let resp = app.gateway.call(req).await.map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    Ok(Json(resp))
}

/// A request bearing a valid admin token; holds the token's name (for the
/// audit log).
struct Admin(String);

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let auth = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        app.tokens.check(auth).map(Admin)
    }
}

async fn plugins(State(app): State<Arc<App>>, _: Admin) -> Json<Value> {
    Json(json!({"plugins": app.registry.status()}))
}

async fn cases(State(app): State<Arc<App>>, _: Admin) -> Json<Cases> {
    Json(lock(&app.cases).cases())
}

async fn rollback(
    State(app): State<Arc<App>>,
    Admin(token): Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = app.registry.rollback(&name)?;
    app.audit.record(json!({"event": "rollback", "plugin": name, "token": token,
        "old_sha256": from.plugin.wasm_sha256, "new_sha256": to.plugin.wasm_sha256,
        "old_digest": &*from.plugin.digest, "new_digest": &*to.plugin.digest}));
    app.metrics.add("vigil_admin_actions_total", vec![("action", "rollback".into())], 1.0);
    Ok(Json(json!({"plugin": name, "from": &*from.plugin.digest, "to": &*to.plugin.digest,
        "version": &*to.plugin.version})))
}

#[derive(Deserialize)]
struct ModeBody {
    mode: Mode,
}

async fn set_mode(
    State(app): State<Arc<App>>,
    Admin(token): Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Ok(ModeBody { mode }) = serde_json::from_slice(&body) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body must be {\"mode\": \"enforce\"} or {\"mode\": \"monitor\"}",
        ));
    };
    let (old, w) = app.registry.set_mode(&name, mode)?;
    if let Some(files) = app.registry.tried(&name) {
        app.overrides.set(&name, mode, files);
    }
    app.audit.record(json!({"event": "mode", "plugin": name, "token": token, "old_mode": old, "new_mode": mode,
        "old_sha256": w.plugin.wasm_sha256, "new_sha256": w.plugin.wasm_sha256}));
    app.metrics.add("vigil_admin_actions_total", vec![("action", "mode".into())], 1.0);
    Ok(Json(json!({"plugin": name, "mode": mode})))
}

#[derive(Deserialize)]
struct ShadowQuery {
    #[serde(default = "ten")]
    examples: usize,
}

fn ten() -> usize {
    10
}

/// The candidate in shadow beside `name`'s live version, and what it would
/// have changed on the traffic since it went in (`vigil replay`'s table).
async fn shadow(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(name): Path<String>,
    Query(q): Query<ShadowQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = app.registry.status().into_iter().find(|s| s.name == name);
    let Some(shadow) = status.as_ref().and_then(|s| s.shadow.clone()) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{name} has no candidate in shadow: put NAME.wasm + NAME.toml in the plugin directory's shadow/"),
        ));
    };
    let live = status.as_ref().and_then(|s| s.digest.clone());
    let scorer = &app.scoring.scorer;
    // The tally of this candidate against this live version: none until a
    // batch has been scored with both.
    let tally = shadow.digest.as_deref().and_then(|c| {
        scorer.shadows.get(&name, c, live.as_deref(), |t| {
            json!({"since": t.since_ms, "batches": t.batches, "errors": t.errors,
                "comparison": t.comparison(q.examples.min(1000))})
        })
    });
    Ok(Json(json!({"plugin": name, "live": {"version": status.as_ref().and_then(|s| s.version.clone()),
        "digest": live}, "candidate": shadow, "scored": tally})))
}

/// Makes the candidate in shadow the live version: the reload thread moves
/// its files from `shadow/` into the plugin directory and reloads, which
/// loads them as any new version (the current one is kept for rollback).
async fn promote(
    State(app): State<Arc<App>>,
    Admin(token): Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(candidate) = app.registry.shadow(&name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{name} has no loaded candidate in shadow to promote"),
        ));
    };
    let from = app.registry.active(&name).map(|w| w.plugin.digest.to_string());
    let to = candidate.plugin.digest.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    app.reload
        .send(Trigger::Promote(name.clone(), tx))
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the reload thread has stopped"))?;
    // A reload may be compiling ahead of it: allow for that.
    let answer = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(300)))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|_| ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the promotion did not finish in 300 s"))?;
    if let Err(why) = answer {
        return Err(ApiError::new(StatusCode::CONFLICT, why));
    }
    app.scoring.scorer.shadows.forget(&name);
    let live = app.registry.active(&name).is_some_and(|w| *w.plugin.digest == *to);
    app.audit.record(json!({"event": "promote", "plugin": name, "token": token, "old_digest": from,
        "new_digest": to, "live": live}));
    app.metrics.add("vigil_admin_actions_total", vec![("action", "promote".into())], 1.0);
    if !live {
        let why = app.registry.status().into_iter().find(|s| s.name == name).and_then(|s| s.last_error);
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "{name}: the candidate's files were moved into the plugin directory but did not go live: {}; the \
                 previous version keeps serving",
                why.unwrap_or_else(|| "no error recorded".into())
            ),
        ));
    }
    Ok(Json(json!({"plugin": name, "from": from, "to": to, "version": &*candidate.plugin.version})))
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let text = app.metrics.render(&app.registry.snapshot().gauges());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn readyz(State(app): State<Arc<App>>) -> Result<&'static str, ApiError> {
    if app.registry.snapshot().plugins.is_empty() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no plugin is live"));
    }
    if let Route::NotYet = app.remote.route() {
        return Err(not_joined());
    }
    Ok("ready\n")
}
