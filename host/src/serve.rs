//! `vigil serve`: the HTTP scoring service over a hot-reloaded plugin set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Semaphore, oneshot};

use crate::admit::{Admission, Origin};
use crate::body::{BodyError, BodyLimits, parse_body};
use crate::combine::Verdict;
use crate::config::{BadInputPolicy, Config};
use crate::engine::Runtime;
use crate::error::Error;
use crate::guardrail::{
    Details, Enqueue, Exchanges, GuardrailRequest, GuardrailResponse, MicroBatcher, answer, policy, to_record,
};
use crate::http::{BodyBudget, ConnLimits};
use crate::manifest::Mode;
use crate::metrics::Metrics;
use crate::pipeline::Scorer;
use crate::registry::{Fingerprint, Registry};
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
    /// Event-time window and recent ids, shared by every request.
    admission: Mutex<Admission>,
    /// Numbers requests, for duplicate-id messages.
    requests: AtomicU64,
    bodies: BodyBudget,
    /// Requests parsed and scored at once.
    scoring_slots: Arc<Semaphore>,
    overrides: Overrides,
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
    removed_grace: Duration,
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
        reloader.reload_all("start-up", false);
        // State of plugins no longer in the directory: kept for the grace
        // period, in case they come back, then dropped.
        let present = registry.names();
        for name in state.names().into_iter().filter(|n| !present.contains(n)) {
            state.retire(&name);
        }
        let overrides = Overrides::open(&state_dir.join("overrides.json"));
        overrides.reapply(&registry);
        let rescan =
            (config.server.rescan_interval_s > 0).then(|| Duration::from_secs(config.server.rescan_interval_s));
        let reload_tx = reload::spawn(reloader, Duration::from_millis(config.server.reload_debounce_ms), rescan);

        let scorer = Arc::new(Scorer::with_registry(registry.clone(), &config, metrics.clone()));
        let cases = Arc::new(std::sync::Mutex::new(crate::cases::CaseBook::new(config.server.max_cases)));
        let gateway = Gateway::start(&config, &state_dir, scorer.clone(), metrics.clone(), cases.clone())?;
        let sv = &config.server;
        let app = Arc::new(App {
            scorer,
            gateway,
            registry: registry.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
            tokens: admin_tokens(&config),
            ready: AtomicBool::new(true),
            cases,
            admission: Mutex::new(Admission::new(&config.input)),
            requests: AtomicU64::new(0),
            bodies: BodyBudget::new(sv.max_body_bytes.saturating_mul(sv.max_concurrent_requests)),
            scoring_slots: Arc::new(Semaphore::new(sv.max_concurrent_requests)),
            overrides,
            config: config.clone(),
        });
        crate::http::raise_fd_limit();
        let listener = std::net::TcpListener::bind(listen).map_err(|e| anyhow::anyhow!("listen on {listen}: {e}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let snapshot_every = Duration::from_secs(config.state.snapshot_interval_s.max(1));
        let removed_grace = Duration::from_secs(config.state.removed_plugin_grace_s);
        let limits = ConnLimits {
            max_connections: sv.max_connections,
            header_timeout: Duration::from_millis(sv.header_timeout_ms),
            grace: Duration::from_millis(sv.shutdown_grace_ms),
        };
        let (st, sp, m) = (state.clone(), state_path.clone(), metrics.clone());
        let thread = std::thread::Builder::new().name("vigil-http".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            rt.block_on(async move {
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(snapshot_every);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        let (st, sp) = (st.clone(), sp.clone());
                        let saved = tokio::task::spawn_blocking(move || save_state(&st, &sp, removed_grace)).await;
                        if let Ok(Err(e)) = saved {
                            tracing::error!("{e}");
                        }
                    }
                });
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                crate::http::serve(listener, router(app), limits, m, async {
                    let _ = stop_rx.await;
                })
                .await;
            });
            // Whatever is still running (a request past the grace period)
            // is abandoned: the process is on its way out.
            rt.shutdown_timeout(Duration::from_millis(200));
        })?;
        audit.record(json!({"event": "start", "listen": addr.to_string(), "plugins": plugins.display().to_string()}));
        Ok(Server {
            addr,
            registry,
            metrics,
            state,
            reload: reload_tx,
            state_path,
            removed_grace,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops accepting, lets in-flight requests finish (up to
    /// `server.shutdown_grace_ms`), saves host state. An error means the
    /// final state could not be saved.
    pub fn stop(mut self) -> Result<(), Error> {
        self.shutdown_now()
    }

    fn shutdown_now(&mut self) -> Result<(), Error> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.reload.send(Trigger::Stop);
        save_state(&self.state, &self.state_path, self.removed_grace)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some()
            && let Err(e) = self.shutdown_now()
        {
            tracing::error!("{e}");
        }
    }
}

/// Drops the state of plugins gone longer than the grace period, then
/// writes the snapshot.
fn save_state(state: &StateStore, path: &Path, removed_grace: Duration) -> Result<(), Error> {
    for name in state.sweep(removed_grace) {
        tracing::info!(plugin = name, "state of a removed plugin dropped after the grace period");
    }
    state.save(path).map_err(|e| Error::io(format!("saving host state to {}", path.display()), e))?;
    tracing::debug!("host state saved to {}", path.display());
    Ok(())
}

/// API mode changes, kept in the state directory so they hold across a
/// restart, until the plugin's files change (then they are superseded,
/// as the directory is the source of truth).
struct Overrides {
    path: PathBuf,
    modes: Mutex<BTreeMap<String, ModeOverride>>,
}

#[derive(Serialize, Deserialize, Clone)]
struct ModeOverride {
    mode: Mode,
    /// The files the change was made on.
    files: Fingerprint,
}

impl Overrides {
    fn open(path: &Path) -> Self {
        let modes = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::error!("{}: {e}; API mode changes from before the restart are not restored", path.display());
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Self { path: path.to_path_buf(), modes: Mutex::new(modes) }
    }

    /// Applies the saved modes whose plugin still has the same files, and
    /// forgets the others.
    fn reapply(&self, registry: &Registry) {
        let mut modes = self.modes.lock().unwrap_or_else(|e| e.into_inner());
        modes.retain(|name, o| {
            let same = registry.tried(name).as_ref() == Some(&o.files) && registry.set_mode(name, o.mode).is_ok();
            if same {
                tracing::info!(plugin = name, mode = o.mode.as_str(), "API mode change restored");
            }
            same
        });
        self.write(&modes);
    }

    fn set(&self, name: &str, mode: Mode, files: Fingerprint) {
        let mut modes = self.modes.lock().unwrap_or_else(|e| e.into_inner());
        modes.insert(name.to_string(), ModeOverride { mode, files });
        self.write(&modes);
    }

    fn write(&self, modes: &BTreeMap<String, ModeOverride>) {
        let tmp = self.path.with_extension("tmp");
        let res = serde_json::to_vec_pretty(modes)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = res {
            tracing::error!("{}: {e}; an API mode change will not survive a restart", self.path.display());
        }
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/score", post(score))
        .route("/beta/litellm_basic_guardrail_api", post(litellm_guardrail))
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

impl App {
    async fn read_body(&self, body: Body) -> Result<crate::http::ReadBody, Response> {
        let s = &self.config.server;
        self.bodies
            .read(body, s.max_body_bytes, Duration::from_millis(s.body_timeout_ms))
            .await
            .map_err(|r| error(r.status, r.message))
    }

    /// Parses, admits and scores one body (on a blocking thread: the work
    /// is bounded, but it is CPU work the async threads must not do).
    fn score_body(&self, body: &[u8], policy: BadInputPolicy) -> Response {
        let s = &self.config.server;
        let limits = BodyLimits {
            max_records: s.max_records_per_request,
            max_errors: s.max_errors_per_request,
            stop_at_first_error: policy == BadInputPolicy::Fail,
        };
        let parsed = match parse_body(body, &self.config.input, &limits) {
            Ok(p) => p,
            Err(e) => {
                let status = match e {
                    BodyError::TooManyRecords(_) => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                return error(status, e.to_string());
            }
        };
        let req = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut records = Vec::with_capacity(parsed.len());
        let mut errors = Vec::new();
        {
            let mut admission = self.admission.lock().unwrap_or_else(|e| e.into_inner());
            // A body refused whole leaves no trace in the stream's window.
            let mark = admission.mark();
            for (i, r) in parsed.into_iter().enumerate() {
                match r.and_then(|r| admission.admit(&r, Origin::Record(req, i as u64)).map(|()| r)) {
                    Ok(r) => records.push(r),
                    Err(b) => {
                        self.metrics.add("vigil_bad_input_total", vec![], 1.0);
                        let e = ScoreError { index: b.line, field: b.field.clone(), message: b.message.clone() };
                        if policy == BadInputPolicy::Fail {
                            admission.rollback(mark);
                            let field = b.field.map(|f| format!(", field `{f}`")).unwrap_or_default();
                            return (
                                StatusCode::BAD_REQUEST,
                                axum::Json(
                                    json!({"error": format!("record {}{field}: {}", b.line, b.message), "errors": [e]}),
                                ),
                            )
                                .into_response();
                        }
                        errors.push(e);
                    }
                }
            }
            if errors.len() > s.max_errors_per_request {
                admission.rollback(mark);
                return error(StatusCode::BAD_REQUEST, BodyError::TooManyErrors(s.max_errors_per_request).to_string());
            }
        }
        let mut verdicts: Vec<Verdict> = Vec::with_capacity(records.len());
        let size = self.scorer.scoring.batch_size;
        let mut rest = records;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(size));
            let times: Vec<i64> = rest.iter().map(|r| r.ts_ms).collect();
            let (v, _) = self.scorer.score(self.scorer.batch(rest));
            {
                let mut book = self.cases.lock().unwrap_or_else(|e| e.into_inner());
                for (v, ts) in v.iter().zip(&times) {
                    book.observe(v, *ts);
                }
            }
            verdicts.extend(v);
            rest = tail;
        }
        axum::Json(ScoreResponse { verdicts, errors }).into_response()
    }
}

async fn score(State(app): State<Arc<App>>, Query(q): Query<ScoreQuery>, body: Body) -> Response {
    let policy = q.on_bad_input.unwrap_or(app.config.server.on_bad_input);
    let body = match app.read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let slot = app.scoring_slots.clone().acquire_owned().await.expect("the semaphore is never closed");
    let app2 = app.clone();
    let scored = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        app2.score_body(&body.bytes, policy)
    })
    .await;
    scored.unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("scoring failed: {e}")))
}

/// LiteLLM's Generic Guardrail API (docs/litellm.md).
async fn litellm_guardrail(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let body = match app.read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let body: &Bytes = &body.bytes;
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
            if let Some(files) = app.registry.tried(&name) {
                app.overrides.set(&name, mode, files);
            }
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
