//! `vigil serve`: the HTTP scoring service over a hot-reloaded plugin set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use crate::combine::Verdict;
use crate::config::{BadInputPolicy, Config, Input};
use crate::engine::Runtime;
use crate::error::BadInput;
use crate::guardrail::{
    Details, Enqueue, Exchanges, GuardrailRequest, GuardrailResponse, MicroBatcher, answer, policy, to_record,
};
use crate::manifest::Mode;
use crate::metrics::Metrics;
use crate::pipeline::Scorer;
use crate::record::Record;
use crate::registry::Registry;
use crate::reload::{self, Audit, Reloader, Trigger};
use crate::state::StateStore;

struct App {
    scorer: Arc<Scorer>,
    gateway: Gateway,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
    config: Config,
    /// (name, token) pairs that may use the admin endpoints.
    tokens: Vec<(String, String)>,
    ready: AtomicBool,
    cases: Arc<std::sync::Mutex<crate::cases::CaseBook>>,
}

/// The inline (gateway) side: micro-batched scoring and completed exchanges.
struct Gateway {
    batcher: MicroBatcher,
    exchanges: Exchanges,
    api_key: Option<String>,
}

impl Gateway {
    fn start(
        config: &Config,
        state_dir: &Path,
        scorer: Arc<Scorer>,
        metrics: Arc<Metrics>,
        cases: Arc<std::sync::Mutex<crate::cases::CaseBook>>,
    ) -> anyhow::Result<Self> {
        let g = &config.guardrail;
        let log = if g.exchange_log.as_os_str().is_empty() {
            state_dir.join("exchanges.ndjson")
        } else {
            g.exchange_log.clone()
        };
        let exchanges = Exchanges::open(&log, g.max_pending)
            .map_err(|e| anyhow::anyhow!("guardrail exchange log {}: {e}", log.display()))?;
        let observe: crate::guardrail::OnVerdicts = Box::new(move |verdicts| {
            let now = now_ms();
            let mut book = cases.lock().unwrap_or_else(|e| e.into_inner());
            for v in verdicts {
                book.observe(v, now);
            }
        });
        let api_key = g.api_key.clone().or_else(|| std::env::var("VIGIL_GUARDRAIL_KEY").ok()).filter(|k| !k.is_empty());
        Ok(Self { batcher: MicroBatcher::start(scorer, g, metrics, observe), exchanges, api_key })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A running server. `stop` drains in-flight requests and saves state.
pub struct Server {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub state: StateStore,
    pub reload: std::sync::mpsc::Sender<Trigger>,
    state_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn admin_tokens(config: &Config) -> Vec<(String, String)> {
    let mut t: Vec<(String, String)> = config.server.admin_tokens.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(tok) = &config.server.admin_token {
        t.push(("config".into(), tok.clone()));
    }
    if let Ok(tok) = std::env::var("VIGIL_ADMIN_TOKEN")
        && !tok.is_empty()
    {
        t.push(("env".into(), tok));
    }
    t.retain(|(_, tok)| !tok.is_empty());
    t
}

impl Server {
    /// Restores state, loads the plugin directory, starts the watcher and
    /// the HTTP listener. Returns once it is serving.
    pub fn start(config: Config, plugins: &Path, listen: &str) -> anyhow::Result<Server> {
        let state_dir = config.server.state_dir.clone();
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| anyhow::anyhow!("state directory {}: {e}", state_dir.display()))?;
        let state_path = state_dir.join("state.bin");
        let (state, corrupt) = StateStore::restore_or_new(&state_path, config.state.clone());
        if let Some(msg) = corrupt {
            tracing::error!("host state snapshot not restored: {msg}");
        }
        let audit = Arc::new(Audit::open(&state_dir.join("audit.ndjson"))?);
        let runtime = Runtime::with_config(&config.engine, false)?;
        let registry = Arc::new(Registry::new());
        let metrics = Arc::new(Metrics::new());
        let reloader = Arc::new(Reloader::new(
            plugins.to_path_buf(),
            runtime,
            config.clone(),
            state.clone(),
            registry.clone(),
            metrics.clone(),
            audit.clone(),
        )?);
        reloader.reload_all("start-up");
        let rescan =
            (config.server.rescan_interval_s > 0).then(|| Duration::from_secs(config.server.rescan_interval_s));
        let reload_tx = reload::spawn(reloader, Duration::from_millis(config.server.reload_debounce_ms), rescan);

        let scorer = Arc::new(Scorer::with_registry(registry.clone(), &config, metrics.clone()));
        let cases = Arc::new(std::sync::Mutex::new(crate::cases::CaseBook::new(config.server.max_cases)));
        let gateway = Gateway::start(&config, &state_dir, scorer.clone(), metrics.clone(), cases.clone())?;
        let app = Arc::new(App {
            scorer,
            gateway,
            registry: registry.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
            tokens: admin_tokens(&config),
            config: config.clone(),
            ready: AtomicBool::new(true),
            cases,
        });
        let listener = std::net::TcpListener::bind(listen).map_err(|e| anyhow::anyhow!("listen on {listen}: {e}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let snapshot_every = Duration::from_secs(config.state.snapshot_interval_s.max(1));
        let (st, sp) = (state.clone(), state_path.clone());
        let thread = std::thread::Builder::new().name("vigil-http".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            rt.block_on(async move {
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(snapshot_every);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        let (st, sp) = (st.clone(), sp.clone());
                        let _ = tokio::task::spawn_blocking(move || save_state(&st, &sp)).await;
                    }
                });
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let server = axum::serve(listener, router(app)).with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                });
                if let Err(e) = server.await {
                    tracing::error!("http server: {e}");
                }
            });
        })?;
        audit.record(json!({"event": "start", "listen": addr.to_string(), "plugins": plugins.display().to_string()}));
        Ok(Server {
            addr,
            registry,
            metrics,
            state,
            reload: reload_tx,
            state_path,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops accepting, lets in-flight requests finish, saves host state.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.reload.send(Trigger::Stop);
        save_state(&self.state, &self.state_path);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown_now();
        }
    }
}

fn save_state(state: &StateStore, path: &Path) {
    match state.save(path) {
        Ok(()) => tracing::debug!("host state saved to {}", path.display()),
        Err(e) => tracing::error!("saving host state to {}: {e}", path.display()),
    }
}

fn router(app: Arc<App>) -> Router {
    let limit = app.config.server.max_body_bytes;
    Router::new()
        .route("/v1/score", post(score).layer(DefaultBodyLimit::max(limit)))
        .route("/beta/litellm_basic_guardrail_api", post(litellm_guardrail).layer(DefaultBodyLimit::max(limit)))
        .route("/v1/plugins", get(plugins))
        .route("/v1/cases", get(cases))
        .route("/v1/plugins/{name}/rollback", post(rollback))
        .route("/v1/plugins/{name}/mode", post(set_mode))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(app)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

#[derive(Deserialize)]
struct ScoreQuery {
    on_bad_input: Option<BadInputPolicy>,
}

// A struct, not `json!`, so verdict fields keep their documented order.
#[derive(Serialize)]
struct ScoreResponse {
    verdicts: Vec<Verdict>,
    errors: Vec<ScoreError>,
}

#[derive(Serialize)]
struct ScoreError {
    index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    message: String,
}

/// A JSON array of records, or NDJSON. Each record's error names its
/// 0-based index in the body.
pub fn parse_body(body: &[u8], limits: &Input) -> Result<Vec<Result<Record, BadInput>>, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let mut ids = crate::pipeline::DuplicateIds::new("record");
    let parsed = parse_records(body, first, limits)?;
    if parsed.is_empty() {
        return Err("empty body: send a JSON array or NDJSON of request records".into());
    }
    Ok(parsed.into_iter().enumerate().map(|(i, r)| r.and_then(|r| ids.check(r, i as u64))).collect())
}

fn parse_records(body: &[u8], first: Option<&u8>, limits: &Input) -> Result<Vec<Result<Record, BadInput>>, String> {
    if first == Some(&b'[') {
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_slice(body).map_err(|e| format!("body is not a JSON array of records: {e}"))?;
        Ok(items.iter().enumerate().map(|(i, raw)| Record::parse(raw.get().as_bytes(), i as u64, limits)).collect())
    } else {
        Ok(body
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .enumerate()
            .map(|(i, l)| Record::parse(l, i as u64, limits))
            .collect())
    }
}

async fn score(State(app): State<Arc<App>>, Query(q): Query<ScoreQuery>, body: Bytes) -> Response {
    let policy = q.on_bad_input.unwrap_or(app.config.server.on_bad_input);
    let parsed = match parse_body(&body, &app.config.input) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let mut records = Vec::with_capacity(parsed.len());
    let mut errors = Vec::new();
    for r in parsed {
        match r {
            Ok(r) => records.push(r),
            Err(b) => {
                app.metrics.add("vigil_bad_input_total", vec![], 1.0);
                let e = ScoreError { index: b.line, field: b.field.clone(), message: b.message.clone() };
                if policy == BadInputPolicy::Fail {
                    let field = b.field.map(|f| format!(", field `{f}`")).unwrap_or_default();
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"error": format!("record {}{field}: {}", b.line, b.message), "errors": [e]})),
                    )
                        .into_response();
                }
                errors.push(e);
            }
        }
    }
    let app2 = app.clone();
    let verdicts = tokio::task::spawn_blocking(move || {
        let mut out: Vec<Verdict> = Vec::with_capacity(records.len());
        let size = app2.scorer.scoring.batch_size;
        let mut rest = records;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(size));
            let times: Vec<i64> = rest.iter().map(|r| r.ts_ms).collect();
            let (v, _) = app2.scorer.score(app2.scorer.batch(rest));
            {
                let mut book = app2.cases.lock().unwrap_or_else(|e| e.into_inner());
                for (v, ts) in v.iter().zip(&times) {
                    book.observe(v, *ts);
                }
            }
            out.extend(v);
            rest = tail;
        }
        out
    })
    .await;
    match verdicts {
        Ok(verdicts) => axum::Json(ScoreResponse { verdicts, errors }).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("scoring failed: {e}")),
    }
}

/// LiteLLM's Generic Guardrail API (docs/litellm.md).
async fn litellm_guardrail(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = std::time::Instant::now();
    let g = &app.config.guardrail;
    if let Some(key) = &app.gateway.api_key {
        let given = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !constant_time_eq(key.as_bytes(), given.as_bytes()) {
            return error(StatusCode::UNAUTHORIZED, "a valid `x-api-key` is required (the guardrail's api_key)");
        }
    }
    let req: GuardrailRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a LiteLLM guardrail request: {e}")),
    };
    let count = |input: &str, action: &str| {
        app.metrics.add(
            "vigil_guardrail_calls_total",
            vec![("input_type", input.to_string()), ("action", action.to_string())],
            1.0,
        );
    };
    if req.input_type.as_deref() == Some("response") {
        // The completion side is recorded, never blocked (docs/litellm.md).
        let id = req.litellm_call_id.as_deref().unwrap_or("");
        if let Err(e) = app.gateway.exchanges.complete(id, req.texts.as_deref().unwrap_or(&[])) {
            tracing::error!("guardrail exchange log: {e}");
        }
        count("response", "NONE");
        let details = Details { id: Some(id.to_string()), account: None, decision: None, score: None, degraded: None };
        return axum::Json(GuardrailResponse { action: "NONE", blocked_reason: None, vigil: details }).into_response();
    }
    let record = match to_record(&req, g, &app.config.input, now_ms()) {
        Ok(r) => r,
        Err(m) => {
            app.metrics.add("vigil_bad_input_total", vec![], 1.0);
            return error(StatusCode::BAD_REQUEST, format!("cannot map the call to a record: {m}"));
        }
    };
    let details = Details {
        id: Some(record.id.clone()),
        account: Some(record.account.clone()),
        decision: None,
        score: None,
        degraded: None,
    };
    let fail = |cause: &str, what: String, details: Details| {
        app.metrics.add("vigil_guardrail_failures_total", vec![("cause", cause.to_string())], 1.0);
        tracing::warn!(cause, "guardrail answered by policy: {what}");
        policy(g.on_failure, &what, details)
    };
    app.gateway.exchanges.remember(&record);
    let deadline = Duration::from_millis(g.deadline_ms);
    let resp = match app.gateway.batcher.enqueue(record) {
        Enqueue::Overloaded => fail("overload", format!("overloaded: {} calls queued", g.queue_limit), details),
        Enqueue::Queued(rx) => match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(verdict)) => {
                let a = answer(&verdict, g.on_failure);
                if let Some(d) = &a.vigil.degraded {
                    app.metrics.add("vigil_guardrail_failures_total", vec![("cause", "plugin".to_string())], 1.0);
                    tracing::warn!("guardrail answered by policy: {d}");
                }
                a
            }
            Ok(Err(_)) => fail("internal", "the scorer stopped".to_string(), details),
            Err(_) => fail("deadline", format!("no verdict within the {} ms deadline", g.deadline_ms), details),
        },
    };
    count("request", resp.action);
    app.metrics.observe("vigil_guardrail_seconds", vec![], started.elapsed());
    axum::Json(resp).into_response()
}

/// The token's name, or the response refusing the request.
fn admin(app: &App, headers: &HeaderMap) -> Result<String, Response> {
    if app.tokens.is_empty() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "admin endpoints are disabled: set server.admin_token or VIGIL_ADMIN_TOKEN",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    app.tokens
        .iter()
        .find(|(_, t)| constant_time_eq(t.as_bytes(), given.as_bytes()))
        .map(|(n, _)| n.clone())
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "a valid `Authorization: Bearer TOKEN` is required"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn plugins(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&app, &headers) {
        return r;
    }
    axum::Json(json!({"plugins": app.registry.status()})).into_response()
}

async fn cases(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&app, &headers) {
        return r;
    }
    let c = app.cases.lock().unwrap_or_else(|e| e.into_inner()).cases();
    axum::Json(c).into_response()
}

async fn rollback(State(app): State<Arc<App>>, headers: HeaderMap, UrlPath(name): UrlPath<String>) -> Response {
    let token = match admin(&app, &headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match app.registry.rollback(&name) {
        Ok((from, to)) => {
            app.audit.record(json!({"event": "rollback", "plugin": name, "token": token,
                "old_sha256": from.plugin.wasm_sha256, "new_sha256": to.plugin.wasm_sha256,
                "old_digest": &*from.plugin.digest, "new_digest": &*to.plugin.digest}));
            app.metrics.add("vigil_admin_actions_total", vec![("action", "rollback".into())], 1.0);
            axum::Json(json!({"plugin": name, "from": &*from.plugin.digest, "to": &*to.plugin.digest,
                "version": &*to.plugin.version}))
            .into_response()
        }
        Err(m) if m.starts_with("no plugin") => error(StatusCode::NOT_FOUND, m),
        Err(m) => error(StatusCode::CONFLICT, m),
    }
}

#[derive(Deserialize)]
struct ModeBody {
    mode: Mode,
}

async fn set_mode(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Response {
    let token = match admin(&app, &headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Ok(ModeBody { mode }) = serde_json::from_slice(&body) else {
        return error(StatusCode::BAD_REQUEST, "body must be {\"mode\": \"enforce\"} or {\"mode\": \"monitor\"}");
    };
    match app.registry.set_mode(&name, mode) {
        Ok((old, w)) => {
            app.audit
                .record(json!({"event": "mode", "plugin": name, "token": token, "old_mode": old, "new_mode": mode,
                "old_sha256": w.plugin.wasm_sha256, "new_sha256": w.plugin.wasm_sha256}));
            app.metrics.add("vigil_admin_actions_total", vec![("action", "mode".into())], 1.0);
            axum::Json(json!({"plugin": name, "mode": mode})).into_response()
        }
        Err(m) if m.starts_with("no plugin") => error(StatusCode::NOT_FOUND, m),
        Err(m) => error(StatusCode::CONFLICT, m),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(&app.registry.snapshot());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.ready.load(Ordering::SeqCst) && !app.registry.snapshot().plugins.is_empty() {
        "ready\n".into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "no plugin is live")
    }
}
