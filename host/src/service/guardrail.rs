//! Inline decisions for an LLM gateway: LiteLLM's Generic Guardrail API
//! (`POST /beta/litellm_basic_guardrail_api`). A call is mapped to a
//! record, gathered with concurrent calls into one micro-batch, scored by
//! the same plugins and host state as `/v1/score`, and answered `BLOCKED`
//! (with the detectors' reasons) when the decision is `block`. Overload, a
//! missed deadline or a failed enforcing plugin are answered by the
//! configured failure policy, and the answer says so. See docs/litellm.md
//! for the field mapping.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use vigil_runtime::config::{Config, FailMode, Guardrail, Input};
use vigil_runtime::input::record::Record;
use vigil_runtime::metrics::Metrics;
use vigil_runtime::plugin::manifest::Mode;
use vigil_runtime::score::cases::CaseBook;
use vigil_runtime::score::combine::{Decision, Verdict};
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::util::{lock, now_ms};

use crate::service::remote::{Answer, Route, Slot};

/// The request LiteLLM sends (1.100.5). Every field is optional: LiteLLM
/// sends `null` for what it does not have, and newer versions add fields.
#[derive(Debug, Default, Deserialize)]
pub struct GuardrailRequest {
    pub input_type: Option<String>,
    pub litellm_call_id: Option<String>,
    pub texts: Option<Vec<String>>,
    pub structured_messages: Option<Vec<Value>>,
    pub model: Option<String>,
    pub request_data: Option<RequestData>,
    pub request_headers: Option<HashMap<String, String>>,
    pub additional_provider_specific_params: Option<serde_json::Map<String, Value>>,
}

/// Who is calling, as LiteLLM's key authentication established it.
#[derive(Debug, Default, Deserialize)]
pub struct RequestData {
    pub user_api_key_hash: Option<String>,
    pub user_api_key_alias: Option<String>,
    pub user_api_key_user_id: Option<String>,
    pub user_api_key_team_id: Option<String>,
    pub user_api_key_end_user_id: Option<String>,
    pub user_api_key_org_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct GuardrailResponse {
    /// `BLOCKED` or `NONE` (LiteLLM blocks only on `BLOCKED`).
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    /// What vigil decided and why; LiteLLM ignores it, logs and tests read it.
    pub vigil: Details,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Set when the failure policy answered: what failed, and the policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// The inline side of `vigil serve`: calls mapped to records, gathered into
/// micro-batches, scored, and answered within the deadline or by the
/// failure policy; response sides joined to their requests and logged.
pub struct Gateway {
    cfg: Guardrail,
    input: Input,
    batcher: MicroBatcher,
    exchanges: Exchanges,
    metrics: Arc<Metrics>,
    /// On a cluster node, calls go to the account's partition owner.
    remote: Arc<Slot>,
    cases: Arc<Mutex<CaseBook>>,
}

impl Gateway {
    /// Starts the micro-batcher and opens the exchange log (by default
    /// `STATE_DIR/exchanges.ndjson`). Inline verdicts feed `cases` too.
    pub fn start(
        config: &Config,
        state_dir: &Path,
        scorer: Arc<Scorer>,
        metrics: Arc<Metrics>,
        cases: Arc<Mutex<CaseBook>>,
        remote: Arc<Slot>,
    ) -> anyhow::Result<Self> {
        let g = &config.guardrail;
        let log = if g.exchange_log.as_os_str().is_empty() {
            state_dir.join("exchanges.ndjson")
        } else {
            g.exchange_log.clone()
        };
        let exchanges = Exchanges::open(&log, g.max_pending)
            .map_err(|e| anyhow::anyhow!("guardrail exchange log {}: {e}", log.display()))?;
        let book = cases.clone();
        let observe: OnVerdicts = Box::new(move |verdicts| {
            let now = vec![now_ms(); verdicts.len()];
            lock(&book).observe_all(verdicts, &now);
        });
        Ok(Self {
            cfg: g.clone(),
            input: config.input.clone(),
            batcher: MicroBatcher::start(scorer, g, metrics.clone(), observe),
            exchanges,
            metrics,
            remote,
            cases,
        })
    }

    /// Whether `given` is the guardrail's `api_key` (any is, without one).
    pub fn authorized(&self, given: &str) -> bool {
        match self.cfg.api_key.as_deref().filter(|k| !k.is_empty()) {
            Some(key) => bool::from(key.as_bytes().ct_eq(given.as_bytes())),
            None => true,
        }
    }

    /// Answers one call; `Err` is a call that cannot be mapped (a 400).
    pub async fn call(&self, req: GuardrailRequest) -> Result<GuardrailResponse, String> {
        let started = Instant::now();
        let g = &self.cfg;
        let count = |input: &str, action: &str| {
            self.metrics.add(
                "vigil_guardrail_calls_total",
                vec![("input_type", input.to_string()), ("action", action.to_string())],
                1.0,
            );
        };
        if req.input_type.as_deref() == Some("response") {
            // The completion side is recorded, never blocked (docs/litellm.md).
            let id = req.litellm_call_id.as_deref().unwrap_or("");
            if let Err(e) = self.exchanges.complete(id, req.texts.as_deref().unwrap_or(&[])) {
                tracing::error!("guardrail exchange log: {e}");
            }
            count("response", "NONE");
            let details = Details { id: Some(id.to_string()), ..Details::default() };
            return Ok(GuardrailResponse { action: "NONE", blocked_reason: None, vigil: details });
        }
        let record = to_record(&req, g, &self.input, now_ms()).map_err(|m| {
            self.metrics.add("vigil_bad_input_total", vec![], 1.0);
            format!("cannot map the call to a record: {m}")
        })?;
        let details =
            Details { id: Some(record.id.clone()), account: Some(record.account.clone()), ..Details::default() };
        let fail = |cause: &str, what: String, details: Details| {
            self.metrics.add("vigil_guardrail_failures_total", vec![("cause", cause.to_string())], 1.0);
            tracing::warn!(cause, "guardrail answered by policy: {what}");
            policy(g.on_failure, &what, details)
        };
        self.exchanges.remember(&record);
        let deadline = Duration::from_millis(g.deadline_ms);
        let scored = |verdict: &Verdict| {
            let a = answer(verdict, g.on_failure);
            if let Some(d) = &a.vigil.degraded {
                self.metrics.add("vigil_guardrail_failures_total", vec![("cause", "plugin".to_string())], 1.0);
                tracing::warn!("guardrail answered by policy: {d}");
            }
            a
        };
        let late = || fail("deadline", format!("no verdict within the {} ms deadline", g.deadline_ms), details.clone());
        let resp = match self.remote.route() {
            Route::Here => match self.batcher.enqueue(record) {
                Enqueue::Overloaded => {
                    fail("overload", format!("overloaded: {} calls queued", g.queue_limit), details.clone())
                }
                Enqueue::Queued(rx) => match tokio::time::timeout(deadline, rx).await {
                    Ok(Ok(verdict)) => scored(&verdict),
                    Ok(Err(_)) => fail("internal", "the scorer stopped".to_string(), details.clone()),
                    Err(_) => late(),
                },
            },
            // The record goes on the record stream, to be scored by its
            // partition's owner, which answers here; if it does not in
            // time, the record is still scored later.
            Route::There(remote) => match remote.score(vec![record], deadline).await.pop() {
                Some(Answer::Verdict(v)) => {
                    lock(&self.cases).observe_all(std::slice::from_ref(&*v), &[now_ms()]);
                    scored(&v)
                }
                Some(Answer::Late) | None => late(),
                Some(Answer::Duplicate) => {
                    fail("duplicate", "the call id is already on the record stream".to_string(), details.clone())
                }
                Some(Answer::Failed(e)) => {
                    fail("cluster", format!("not stored on the record stream: {e}"), details.clone())
                }
            },
            Route::NotYet => fail("cluster", "this node has not joined its cluster yet".to_string(), details.clone()),
        };
        count("request", resp.action);
        self.metrics.observe("vigil_guardrail_seconds", vec![], started.elapsed());
        Ok(resp)
    }
}

/// The record for a request-side call. `now_ms` is its time: the gateway
/// sees the request as it happens.
pub fn to_record(req: &GuardrailRequest, cfg: &Guardrail, input: &Input, now_ms: i64) -> Result<Record, String> {
    let data = req.request_data.as_ref();
    let get = |f: fn(&RequestData) -> &Option<String>| data.and_then(|d| f(d).clone()).filter(|s| !s.is_empty());
    let identity = |source: &str| match source {
        "end_user_id" => get(|d| &d.user_api_key_end_user_id),
        "user_id" => get(|d| &d.user_api_key_user_id),
        "key_hash" => get(|d| &d.user_api_key_hash),
        "team_id" => get(|d| &d.user_api_key_team_id),
        "org_id" => get(|d| &d.user_api_key_org_id),
        _ => None,
    };
    let account = cfg
        .account_from
        .iter()
        .find_map(|s| identity(s))
        .ok_or_else(|| format!("no caller identity: none of {:?} is in request_data", cfg.account_from))?;

    // Extra fields: the guardrail's static `additional_provider_specific_params`,
    // overridden per request by `x-vigil-<field>` headers (which LiteLLM
    // forwards when listed in the guardrail's `extra_headers`).
    let headers = req.request_headers.as_ref();
    let extra = |field: &str| -> Option<String> {
        let header = format!("x-vigil-{}", field.replace('_', "-"));
        let from_header = headers.and_then(|h| h.get(&header)).filter(|v| !v.is_empty() && *v != "[present]");
        let from_params =
            req.additional_provider_specific_params.as_ref().and_then(|p| p.get(field)).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        from_header.cloned().or(from_params).filter(|s| !s.is_empty())
    };
    let number = |field: &str| -> Result<Option<i64>, String> {
        extra(field)
            .map(|v| v.trim().parse::<i64>().map_err(|_| format!("{field}: {v:?} is not an integer")))
            .transpose()
    };

    let (prompt, system_prompt, turn) = prompt_parts(req);
    let mut attrs = BTreeMap::new();
    if let Some(t) = get(|d| &d.user_api_key_team_id) {
        attrs.insert("litellm_team_id".to_string(), t);
    }
    if let Some(a) = get(|d| &d.user_api_key_alias) {
        attrs.insert("litellm_key_alias".to_string(), a);
    }
    let id = req.litellm_call_id.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| format!("litellm-{now_ms}"));
    let rec = Record {
        id,
        ts_ms: now_ms,
        account,
        org: extra("org").or_else(|| get(|d| &d.user_api_key_org_id)),
        api_key: get(|d| &d.user_api_key_hash),
        ip: extra("ip"),
        asn: number("asn")?.map(|n| u32::try_from(n).map_err(|_| format!("asn: {n} is out of range"))).transpose()?,
        user_agent: headers.and_then(|h| h.get("user-agent")).filter(|v| *v != "[present]").cloned(),
        model: req.model.clone().filter(|s| !s.is_empty()),
        prompt: prompt.map(|p| truncate(p, input.max_prompt_bytes)),
        system_prompt: system_prompt.map(|p| truncate(p, input.max_prompt_bytes)),
        prompt_tokens: None,
        completion_tokens: None,
        max_tokens: None,
        account_created_ms: number("account_created_ms")?,
        payment_fingerprint: extra("payment_fingerprint"),
        conversation_id: extra("conversation_id"),
        turn,
        attrs: (!attrs.is_empty()).then_some(attrs),
    };
    rec.check(input).map_err(|(field, m)| format!("{field}: {m}"))?;
    Ok(rec)
}

/// (prompt, system prompt, turn): the newest user message is the prompt
/// (earlier turns were scored when they were sent), system messages are
/// the system prompt, and the count of user messages is the turn.
fn prompt_parts(req: &GuardrailRequest) -> (Option<String>, Option<String>, Option<u32>) {
    let Some(messages) = req.structured_messages.as_ref().filter(|m| !m.is_empty()) else {
        // No roles: the texts, newest last.
        return (req.texts.as_ref().and_then(|t| t.last().cloned()), None, None);
    };
    let text_of = |m: &Value| -> String {
        match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
            }
            _ => String::new(),
        }
    };
    let role = |m: &Value| m.get("role").and_then(Value::as_str).unwrap_or("").to_string();
    let users: Vec<&Value> = messages.iter().filter(|m| role(m) == "user").collect();
    let system: Vec<String> =
        messages.iter().filter(|m| matches!(role(m).as_str(), "system" | "developer")).map(text_of).collect();
    let prompt = users.last().map(|m| text_of(m)).or_else(|| messages.last().map(text_of));
    let system = (!system.is_empty()).then(|| system.join("\n"));
    (prompt, system, (!users.is_empty()).then_some(users.len() as u32))
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The answer for a scored call.
pub fn answer(v: &Verdict, on_failure: FailMode) -> GuardrailResponse {
    let failed: Vec<&str> =
        v.signals.iter().filter(|s| s.mode == Mode::Enforce && s.error.is_some()).map(|s| &*s.plugin).collect();
    let details = Details {
        id: Some(v.id.clone()),
        account: Some(v.account.clone()),
        decision: Some(v.decision),
        score: Some(v.score),
        degraded: None,
    };
    if v.decision == Decision::Block {
        return GuardrailResponse { action: "BLOCKED", blocked_reason: Some(block_reason(v)), vigil: details };
    }
    if !failed.is_empty() {
        let what = format!("plugin failure: {}", failed.join(", "));
        return policy(on_failure, &what, details);
    }
    GuardrailResponse { action: "NONE", blocked_reason: None, vigil: details }
}

/// The answer when vigil could not decide (`what` failed).
pub fn policy(on_failure: FailMode, what: &str, mut details: Details) -> GuardrailResponse {
    match on_failure {
        FailMode::Open => {
            details.degraded = Some(format!("{what}; failing open"));
            GuardrailResponse { action: "NONE", blocked_reason: None, vigil: details }
        }
        FailMode::Closed => {
            details.degraded = Some(format!("{what}; failing closed"));
            GuardrailResponse {
                action: "BLOCKED",
                blocked_reason: Some(format!("vigil could not check this request ({what}); failing closed")),
                vigil: details,
            }
        }
    }
}

/// "Blocked by vigil (score 0.97): template-fleet [template:0a1b2]: prompt
/// matches ...; shared-infra [...]": the enforcing detectors that spoke,
/// strongest first.
fn block_reason(v: &Verdict) -> String {
    let mut spoke: Vec<_> = v.signals.iter().filter(|s| s.mode == Mode::Enforce && s.score >= 0.2).collect();
    spoke.sort_by(|a, b| b.score.total_cmp(&a.score));
    let parts: Vec<String> = spoke
        .iter()
        .take(3)
        .map(|s| {
            let labels = s.labels.iter().filter(|l| **l != *s.plugin).cloned().collect::<Vec<_>>().join(", ");
            let labels = if labels.is_empty() { String::new() } else { format!(" [{labels}]") };
            let reason = if s.reason.is_empty() { String::new() } else { format!(": {}", s.reason) };
            format!("{} {:.2}{labels}{reason}", s.plugin, s.score)
        })
        .collect();
    format!("Blocked by vigil (score {:.2}, request {}): {}", v.score, v.id, parts.join("; "))
}

/// A call waiting for its batch.
struct Call {
    record: Record,
    reply: oneshot::Sender<Verdict>,
    arrived: Instant,
}

/// Gathers concurrent calls into batches on its own thread: the first call
/// opens a batch, every call already queued joins it, and it stays open for
/// `batch_wait` more (or until `max_batch` calls) if calls are arriving
/// closer together than that. While a batch is scored the next one fills,
/// so under load batches grow and the per-call cost falls to that of a
/// batch, while a quiet gateway adds no wait.
pub struct MicroBatcher {
    tx: SyncSender<Call>,
}

pub enum Enqueue {
    Queued(oneshot::Receiver<Verdict>),
    Overloaded,
}

impl MicroBatcher {
    pub fn start(scorer: Arc<Scorer>, cfg: &Guardrail, metrics: Arc<Metrics>, on_verdicts: OnVerdicts) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Call>(cfg.queue_limit);
        let wait = Duration::from_micros(cfg.batch_wait_us);
        let max = cfg.max_batch;
        std::thread::Builder::new()
            .name("vigil-guardrail".into())
            .spawn(move || {
                // When the call before this batch's first arrived.
                let mut last_arrival: Option<Instant> = None;
                while let Ok(first) = rx.recv() {
                    // Calls closer together than the window mean company is
                    // likely: wait for it. A lone call on a quiet gateway
                    // is scored at once, adding nothing.
                    let busy = last_arrival.is_some_and(|t| first.arrived.duration_since(t) < wait);
                    let mut calls = vec![first];
                    // Whatever queued while the last batch was scored joins
                    // at once; then up to `wait` more for stragglers.
                    while calls.len() < max {
                        match rx.try_recv() {
                            Ok(c) => calls.push(c),
                            Err(_) => break,
                        }
                    }
                    let close = Instant::now() + if busy { wait } else { Duration::ZERO };
                    while calls.len() < max {
                        let left = close.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match rx.recv_timeout(left) {
                            Ok(c) => calls.push(c),
                            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    last_arrival = calls.iter().map(|c| c.arrived).max();
                    let (records, replies): (Vec<Record>, Vec<_>) =
                        calls.into_iter().map(|c| (c.record, c.reply)).unzip();
                    let n = records.len();
                    let (verdicts, _) = scorer.score(scorer.batch(records));
                    metrics.add("vigil_guardrail_batches_total", vec![], 1.0);
                    metrics.add("vigil_guardrail_batched_calls_total", vec![], n as f64);
                    on_verdicts(&verdicts);
                    for (v, reply) in verdicts.into_iter().zip(replies) {
                        // The caller may have given up at its deadline.
                        let _ = reply.send(v);
                    }
                }
            })
            .expect("spawn guardrail batcher");
        Self { tx }
    }

    pub fn enqueue(&self, record: Record) -> Enqueue {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Call { record, reply, arrived: Instant::now() }) {
            Ok(()) => Enqueue::Queued(rx),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Enqueue::Overloaded,
        }
    }
}

/// Called with every batch of inline verdicts (the case book).
pub type OnVerdicts = Box<dyn Fn(&[Verdict]) + Send>;

/// Request records waiting for their response side, oldest first out.
pub struct Exchanges {
    pending: Mutex<(HashMap<String, Record>, VecDeque<String>)>,
    max_pending: usize,
    log: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
}

impl Exchanges {
    pub fn open(path: &Path, max_pending: usize) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            pending: Mutex::new((HashMap::new(), VecDeque::new())),
            max_pending,
            log: Mutex::new(Some(std::io::BufWriter::new(f))),
        })
    }

    pub fn remember(&self, r: &Record) {
        let mut g = lock(&self.pending);
        let (map, order) = &mut *g;
        if map.insert(r.id.clone(), r.clone()).is_none() {
            order.push_back(r.id.clone());
        }
        while map.len() > self.max_pending {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
    }

    /// The response side of call `id`: its completion, as tokens (LiteLLM
    /// sends text, not usage; estimated at 4 bytes a token). The joined
    /// exchange is appended to the log; false if the request is unknown.
    pub fn complete(&self, id: &str, completion: &[String]) -> std::io::Result<bool> {
        let rec = {
            let mut g = lock(&self.pending);
            g.0.remove(id)
        };
        let Some(mut rec) = rec else { return Ok(false) };
        let bytes: usize = completion.iter().map(String::len).sum();
        rec.completion_tokens = Some(bytes.div_ceil(4) as u32);
        let mut line = serde_json::to_vec(&rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut log = lock(&self.log);
        if let Some(w) = log.as_mut() {
            w.write_all(&line)?;
            w.flush()?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> GuardrailRequest {
        serde_json::from_value(v).unwrap()
    }

    // Shaped like what LiteLLM 1.100.5 sent in a captured pre_call.
    fn captured() -> Value {
        json!({
            "input_type": "request",
            "litellm_call_id": "19d3976a-c066-4050-9f1e-efb5c6aaaf2b",
            "litellm_trace_id": "5b5610cc",
            "structured_messages": [
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": [{"type": "text", "text": "hi there"}]}
            ],
            "images": null, "tools": null,
            "texts": ["be nice", "first question", "an answer", "hi there"],
            "request_data": {
                "user_api_key_hash": "litellm_proxy_master_key",
                "user_api_key_user_id": "default_user_id",
                "user_api_key_end_user_id": "end-user-alice"
            },
            "request_headers": {"user-agent": "OpenAI/Python 2.54.0", "x-vigil-ip": "203.0.113.9", "cookie": "[present]"},
            "litellm_version": "1.100.5",
            "additional_provider_specific_params": {"payment_fingerprint": "card-1", "ip": "198.51.100.1"},
            "tool_calls": null,
            "model": "mock-gpt"
        })
    }

    #[test]
    fn maps_a_litellm_call_to_a_record() {
        let r = to_record(&req(captured()), &Guardrail::default(), &Input::default(), 42).unwrap();
        assert_eq!(r.id, "19d3976a-c066-4050-9f1e-efb5c6aaaf2b");
        assert_eq!(r.ts_ms, 42);
        assert_eq!(r.account, "end-user-alice");
        assert_eq!(r.api_key.as_deref(), Some("litellm_proxy_master_key"));
        assert_eq!(r.prompt.as_deref(), Some("hi there"), "the newest user message");
        assert_eq!(r.system_prompt.as_deref(), Some("be nice"));
        assert_eq!(r.turn, Some(2));
        assert_eq!(r.model.as_deref(), Some("mock-gpt"));
        assert_eq!(r.user_agent.as_deref(), Some("OpenAI/Python 2.54.0"));
        assert_eq!(r.ip.as_deref(), Some("203.0.113.9"), "a header overrides the static params");
        assert_eq!(r.payment_fingerprint.as_deref(), Some("card-1"));
    }

    #[test]
    fn account_source_is_configurable_and_required() {
        let cfg = Guardrail { account_from: vec!["user_id".into()], ..Default::default() };
        assert_eq!(to_record(&req(captured()), &cfg, &Input::default(), 0).unwrap().account, "default_user_id");
        let none = req(json!({"input_type": "request", "texts": ["x"], "request_data": {}}));
        let e = to_record(&none, &Guardrail::default(), &Input::default(), 0).unwrap_err();
        assert!(e.contains("no caller identity"), "{e}");
    }

    #[test]
    fn bad_extra_fields_are_named() {
        let mut v = captured();
        v["request_headers"]["x-vigil-ip"] = json!("not-an-ip");
        let e = to_record(&req(v), &Guardrail::default(), &Input::default(), 0).unwrap_err();
        assert!(e.starts_with("ip:"), "{e}");
        let mut v = captured();
        v["additional_provider_specific_params"]["account_created_ms"] = json!("yesterday");
        let e = to_record(&req(v), &Guardrail::default(), &Input::default(), 0).unwrap_err();
        assert!(e.contains("account_created_ms"), "{e}");
    }

    #[test]
    fn a_long_prompt_is_truncated_not_refused() {
        let mut v = captured();
        v["structured_messages"] = json!([{"role": "user", "content": "é".repeat(300_000)}]);
        let r = to_record(&req(v), &Guardrail::default(), &Input::default(), 0).unwrap();
        assert!(r.prompt.unwrap().len() <= Input::default().max_prompt_bytes);
    }

    #[test]
    fn a_completed_exchange_is_logged_as_a_spec_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exchanges.ndjson");
        let x = Exchanges::open(&path, 10).unwrap();
        let r = to_record(&req(captured()), &Guardrail::default(), &Input::default(), 42).unwrap();
        x.remember(&r);
        assert!(x.complete(&r.id, &["hello from mock".into()]).unwrap());
        assert!(!x.complete(&r.id, &["again".into()]).unwrap(), "joined once");
        let text = std::fs::read_to_string(&path).unwrap();
        let back = Record::parse(text.trim_end().as_bytes(), 1, &Input::default()).unwrap();
        assert_eq!(back, Record { completion_tokens: Some(4), ..r });
        assert!(!text.contains("null"), "unset fields are left out: {text}");
    }

    #[test]
    fn failure_policy_says_what_happened() {
        let d = || Details { id: None, account: None, decision: None, score: None, degraded: None };
        let open = policy(FailMode::Open, "overloaded", d());
        assert_eq!(open.action, "NONE");
        assert!(open.vigil.degraded.unwrap().contains("failing open"));
        let closed = policy(FailMode::Closed, "deadline of 250 ms missed", d());
        assert_eq!(closed.action, "BLOCKED");
        assert!(closed.blocked_reason.unwrap().contains("deadline of 250 ms missed"));
    }
}
