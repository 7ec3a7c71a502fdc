//! The LiteLLM guardrail endpoint of `vigil serve`: shared state with log
//! scoring, micro-batching, and the failure policy (overload, deadline,
//! failed plugin) answering within the deadline and saying so.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil::service::Server;
use vigil_runtime::Config;
use vigil_runtime::config::FailMode;
use vigil_tests::wasm;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Scores `n` log records of `account` through `/v1/score`, just before now.
fn log(addr: &str, account: &str, n: i64) {
    let t = now_ms() - 60_000;
    let recs: Vec<Value> =
        (0..n).map(|i| json!({"id": format!("{account}-{i}"), "ts_ms": t + i, "account": account})).collect();
    ureq::post(&format!("http://{addr}/v1/score")).send_string(&Value::from(recs).to_string()).unwrap();
}

const URL: &str = "/beta/litellm_basic_guardrail_api";

fn config(state_dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.state_dir = state_dir.to_path_buf();
    c.server.rescan_interval_s = 0;
    c
}

/// A server with one `behave` plugin configured by `plugin_config`.
fn server(plugin_config: &str, limits: &str, tweak: impl FnOnce(&mut Config)) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let manifest = format!("version = \"0.1.0\"\ngrants = [\"account\"]\n{limits}\n[config]\n{plugin_config}\n");
    std::fs::write(plugins.join("counter.wasm"), wasm::BEHAVE).unwrap();
    std::fs::write(plugins.join("counter.toml"), manifest).unwrap();
    let mut c = config(&tmp.path().join("state"));
    tweak(&mut c);
    let s = Server::start(c, &plugins, "127.0.0.1:0").unwrap();
    (s, tmp)
}

fn call(addr: &str, user: &str, id: &str) -> Value {
    let body = json!({
        "input_type": "request",
        "litellm_call_id": id,
        "texts": ["hello"],
        "structured_messages": [{"role": "user", "content": "hello"}],
        "model": "mock-gpt",
        "request_data": {"user_api_key_hash": "h", "user_api_key_end_user_id": user},
        "request_headers": {"user-agent": "test"},
        "additional_provider_specific_params": {}
    });
    let r = ureq::post(&format!("http://{addr}{URL}")).send_string(&body.to_string()).unwrap();
    serde_json::from_str(&r.into_string().unwrap()).unwrap()
}

#[test]
fn log_scoring_and_inline_calls_share_one_state() {
    let (s, _tmp) = server("", "", |_| {});
    let addr = s.addr.to_string();
    // The log shows 95 requests from "heavy" (the count plugin scores n/100).
    log(&addr, "heavy", 95);

    let a = call(&addr, "heavy", "c1");
    assert_eq!(a["action"], "BLOCKED", "{a}");
    let reason = a["blocked_reason"].as_str().unwrap();
    assert!(reason.contains("counter") && reason.contains("count=96"), "{reason}");
    let b = call(&addr, "light", "c2");
    assert_eq!(b["action"], "NONE", "{b}");
    assert_eq!(b["vigil"]["decision"], "allow");
    // And the other way: inline calls count in the log's scoring.
    let r = ureq::post(&format!("http://{addr}/v1/score"))
        .send_string(&json!({"id": "r-after", "ts_ms": now_ms(), "account": "light"}).to_string())
        .unwrap();
    let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert!(v["verdicts"][0]["signals"][0]["reason"].as_str().unwrap().starts_with("count=2"), "{v}");
}

#[test]
fn concurrent_calls_share_micro_batches() {
    // A wide window so the concurrent calls surely meet in it.
    let (s, _tmp) = server("", "", |c| c.guardrail.batch_wait_us = 50_000);
    let addr = s.addr.to_string();
    let n = 24;
    let answers: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let addr = addr.clone();
                sc.spawn(move || call(&addr, &format!("u{i}"), &format!("call-{i}")))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| a["action"] == "NONE" && a["vigil"]["decision"] == "allow"), "{answers:?}");
    let batches = s.metrics.get("vigil_guardrail_batches_total", &[]);
    let calls = s.metrics.get("vigil_guardrail_batched_calls_total", &[]);
    assert_eq!(calls, n as f64);
    assert!(batches < calls / 2.0, "{calls} calls in {batches} batches: not batched");
    // Each answer is its own call's.
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a["vigil"]["id"], format!("call-{i}"));
        assert_eq!(a["vigil"]["account"], format!("u{i}"));
    }
}

#[test]
fn a_failed_plugin_follows_the_failure_policy_and_says_so() {
    for (mode, action) in [(FailMode::Open, "NONE"), (FailMode::Closed, "BLOCKED")] {
        // Healthy at load (the reload smoke test), failing on live state.
        let (s, _tmp) = server("panic_over = 5", "", |c| c.guardrail.on_failure = mode);
        log(&s.addr.to_string(), "u", 5);
        let a = call(&s.addr.to_string(), "u", "c");
        assert_eq!(a["action"], action, "{mode:?}: {a}");
        let degraded = a["vigil"]["degraded"].as_str().unwrap_or("");
        assert!(degraded.contains("plugin failure: counter"), "{a}");
        assert_eq!(s.metrics.get("vigil_guardrail_failures_total", &[("cause", "plugin")]), 1.0);
    }
}

#[test]
fn a_slow_plugin_never_holds_the_gateway_past_its_deadline() {
    // The plugin spins until its own 3 s limit; the gateway answers at 100 ms.
    let (s, _tmp) = server("spin_over = 5", "[limits]\ntime_per_batch_ms = 3000", |c| {
        c.guardrail.deadline_ms = 100;
        c.guardrail.on_failure = FailMode::Closed;
    });
    log(&s.addr.to_string(), "u", 5);
    let start = Instant::now();
    let a = call(&s.addr.to_string(), "u", "c");
    let took = start.elapsed();
    assert_eq!(a["action"], "BLOCKED", "{a}");
    assert!(a["blocked_reason"].as_str().unwrap().contains("100 ms deadline"), "{a}");
    // 10x margin over the 100 ms deadline, still well under the plugin's 3 s.
    assert!(took < Duration::from_millis(1000), "answered after {took:?}");
    assert_eq!(s.metrics.get("vigil_guardrail_failures_total", &[("cause", "deadline")]), 1.0);
}

#[test]
fn overload_is_answered_at_once_by_the_policy() {
    // One call at a time, and the plugin holds each batch for a while.
    let (s, _tmp) = server("spin_over = 5", "[limits]\ntime_per_batch_ms = 1000", |c| {
        c.guardrail.queue_limit = 1;
        c.guardrail.max_batch = 1;
        c.guardrail.deadline_ms = 5_000;
        c.guardrail.on_failure = FailMode::Open;
    });
    let addr = s.addr.to_string();
    log(&addr, "u", 5);
    let answers: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let addr = addr.clone();
                sc.spawn(move || call(&addr, "u", &format!("c{i}")))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let overloaded: Vec<&Value> =
        answers.iter().filter(|a| a["vigil"]["degraded"].as_str().is_some_and(|d| d.contains("overloaded"))).collect();
    assert!(!overloaded.is_empty(), "{answers:?}");
    assert!(
        overloaded
            .iter()
            .all(|a| a["action"] == "NONE" && a["vigil"]["degraded"].as_str().unwrap().contains("failing open"))
    );
    assert!(s.metrics.get("vigil_guardrail_failures_total", &[("cause", "overload")]) >= 1.0);
}

#[test]
fn bad_calls_are_refused_with_what_is_wrong() {
    let (s, _tmp) = server("", "", |c| c.guardrail.api_key = Some("k3y".into()));
    let url = format!("http://{}{URL}", s.addr);
    let status = |r: Result<ureq::Response, ureq::Error>| match r {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    };
    let (c, body) = status(ureq::post(&url).send_string("{}"));
    assert_eq!(c, 401, "{body}");
    let (c, body) = status(ureq::post(&url).set("x-api-key", "k3y").send_string("{not json"));
    assert_eq!(c, 400);
    assert!(body.contains("not a LiteLLM guardrail request"), "{body}");
    let (c, body) =
        status(ureq::post(&url).set("x-api-key", "k3y").send_string(r#"{"input_type":"request","texts":["x"]}"#));
    assert_eq!(c, 400);
    assert!(body.contains("no caller identity"), "{body}");
    // The response side is recorded, never blocked, even for an unknown call.
    let (c, body) = status(
        ureq::post(&url)
            .set("x-api-key", "k3y")
            .send_string(r#"{"input_type":"response","litellm_call_id":"nope","texts":["done"]}"#),
    );
    assert_eq!(c, 200);
    assert!(body.contains("\"NONE\""), "{body}");
}
