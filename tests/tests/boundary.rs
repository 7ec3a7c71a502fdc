//! Scoring across the real host/plugin boundary: state, order, modes,
//! containment of failures, and the bundled detectors.

use std::sync::Mutex;

use vigil_runtime::Config;
use vigil_runtime::engine::Runtime;
use vigil_runtime::error::ErrorKind;
use vigil_runtime::registry;
use vigil_runtime::score::pipeline::{StreamOptions, score_stream};
use vigil_runtime::state::StateStore;
use vigil_tests::{T0, files, line, record, scorer, wasm, write_plugin};

fn behave(config: &str) -> String {
    format!("version = \"0.1.0\"\ngrants = [\"account\"]\n[config]\n{config}\n")
}

#[test]
fn state_continues_across_batches_and_new_versions() {
    let state = StateStore::new(Default::default());
    let v1 = scorer(vec![files("counter", wasm::BEHAVE, &behave("tag = \" v1\""))], &state);
    let batch = |from: usize| (from..from + 10).map(|i| record(i, T0 + i as i64, "a", "")).collect();
    let (out, _) = v1.score(v1.batch(batch(0)));
    assert_eq!(out[9].signals[0].reason, "count=10 v1");
    let (out, _) = v1.score(v1.batch(batch(10)));
    assert_eq!(out[9].signals[0].reason, "count=20 v1");
    let v1_digest = out[9].signals[0].digest.clone();
    drop(v1);
    // A new version of the same plugin keeps the counters.
    let v2 = scorer(vec![files("counter", wasm::BEHAVE, &behave("tag = \" v2\""))], &state);
    let (out, _) = v2.score(v2.batch(batch(20)));
    assert_eq!(out[0].signals[0].reason, "count=21 v2");
    assert_ne!(out[0].signals[0].digest, v1_digest, "signals name the version they came from");
    // Another plugin name gets its own, empty namespace.
    let other = scorer(vec![files("other", wasm::BEHAVE, &behave(""))], &state);
    let (out, _) = other.score(other.batch(batch(30)));
    assert_eq!(out[0].signals[0].reason, "count=1");
}

#[test]
fn verdicts_keep_input_order_and_count_with_bad_lines_reported() {
    let state = StateStore::new(Default::default());
    let s = scorer(vec![files("counter", wasm::BEHAVE, &behave(""))], &state);
    let mut input = String::new();
    for i in 0..1000 {
        match i {
            10 => input.push_str("{not json\n"),
            500 => input.push_str("{\"id\":\"x\",\"ts_ms\":\"noon\",\"account\":\"a\"}\n"),
            998 => input.push_str("{\"id\":\"x\",\"ts_ms\":1}\n"),
            _ => input.push_str(&(line(i, T0 + i as i64, &format!("acct-{}", i % 7), "") + "\n")),
        }
    }
    let bad = Mutex::new(Vec::new());
    let opts = StreamOptions {
        batch_size: 7,
        on_bad_input: vigil_runtime::config::BadInputPolicy::Skip,
        input: Default::default(),
        cases: None,
        in_flight: 3,
    };
    let mut out = Vec::new();
    let summary = score_stream(
        &s,
        input.as_bytes(),
        &mut out,
        &opts,
        &|b| bad.lock().unwrap().push((b.line, b.field.clone())),
        &|_| {},
    )
    .unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 997);
    assert_eq!(summary.requests, 997);
    assert_eq!(summary.bad_lines, 3);
    let ids: Vec<usize> = lines.iter().map(|v| v["id"].as_str().unwrap()[2..].parse().unwrap()).collect();
    let expected: Vec<usize> = (0..1000).filter(|i| ![10, 500, 998].contains(i)).collect();
    assert_eq!(ids, expected);
    assert_eq!(
        *bad.lock().unwrap(),
        [(11, None), (501, Some("ts_ms".to_string())), (999, Some("account".to_string()))]
    );
}

#[test]
fn fail_policy_stops_at_the_first_bad_line_after_scoring_what_came_before() {
    let state = StateStore::new(Default::default());
    let s = scorer(vec![files("counter", wasm::BEHAVE, &behave(""))], &state);
    let input: String =
        (0..10).map(|i| if i == 5 { "[]\n".to_string() } else { line(i, T0, "a", "") + "\n" }).collect();
    let opts = StreamOptions {
        batch_size: 100,
        on_bad_input: vigil_runtime::config::BadInputPolicy::Fail,
        input: Default::default(),
        cases: None,
        in_flight: 3,
    };
    let mut out = Vec::new();
    let err = score_stream(&s, input.as_bytes(), &mut out, &opts, &|_| {}, &|_| {}).unwrap_err();
    assert!(err.to_string().starts_with("line 6"), "{err}");
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 5);
}

#[test]
fn monitor_mode_is_reported_but_not_counted() {
    let state = StateStore::new(Default::default());
    let enforce = behave("");
    let monitor = format!("mode = \"monitor\"\n{enforce}");
    let s = scorer(vec![files("enforced", wasm::BEHAVE, &enforce), files("watched", wasm::BEHAVE, &monitor)], &state);
    let records = (0..60).map(|i| record(i, T0, "a", "")).collect();
    let (out, _) = s.score(s.batch(records));
    let v = &out[59];
    let watched = v.signals.iter().find(|s| &*s.plugin == "watched").unwrap();
    let enforced = v.signals.iter().find(|s| &*s.plugin == "enforced").unwrap();
    assert_eq!(watched.mode, vigil_runtime::plugin::manifest::Mode::Monitor);
    assert!((watched.score - 0.6).abs() < 1e-6);
    // Only the enforced plugin's 0.6 counts.
    assert!((v.score - 0.6).abs() < 1e-6, "{}", v.score);
    assert_eq!(v.decision, vigil_runtime::score::combine::Decision::Flag);
    assert!((enforced.score - 0.6).abs() < 1e-6);
}

#[test]
fn plugins_that_fail_to_load_are_reported_and_the_rest_run() {
    let dir = tempfile::tempdir().unwrap();
    write_plugin(dir.path(), "good", wasm::BEHAVE, &behave(""));
    write_plugin(dir.path(), "truncated", &wasm::BEHAVE[..wasm::BEHAVE.len() / 2], &behave(""));
    write_plugin(dir.path(), "core-module", b"\0asm\x01\0\0\0", &behave(""));
    write_plugin(dir.path(), "bad-manifest", wasm::BEHAVE, "version = \"1\"\nmode = \"loud\"\n");
    write_plugin(dir.path(), "refuses-config", wasm::BEHAVE, &behave("fail_init = true"));
    std::fs::write(dir.path().join("orphan.toml"), behave("")).unwrap();

    let runtime = Runtime::new().unwrap();
    let config = Config::default();
    let set = registry::load::load_dir(
        &runtime,
        &config,
        &StateStore::new(Default::default()),
        dir.path(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(set.names(), ["good"]);
    let mut failures: Vec<(String, ErrorKind)> = set.failures.iter().map(|e| (e.plugin.clone(), e.kind)).collect();
    failures.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        failures,
        [
            ("bad-manifest".to_string(), ErrorKind::Manifest),
            ("core-module".to_string(), ErrorKind::Load),
            ("orphan".to_string(), ErrorKind::Load),
            ("refuses-config".to_string(), ErrorKind::Init),
            ("truncated".to_string(), ErrorKind::Load),
        ]
    );
    let msg = |n: &str| set.failures.iter().find(|e| e.plugin == n).unwrap().message.clone();
    assert!(msg("core-module").contains("not a valid WebAssembly component"), "{}", msg("core-module"));
    assert!(msg("refuses-config").contains("fail_init is set"), "{}", msg("refuses-config"));
    assert!(msg("bad-manifest").contains("mode"), "{}", msg("bad-manifest"));
}

#[test]
fn a_failing_plugin_fails_only_its_own_signal_and_recovers() {
    let state = StateStore::new(Default::default());
    let flaky =
        format!("version = \"0.1.0\"\ngrants = [\"account\"]\n[config]\nbehaviour = {{ panic-at = {} }}\n", T0 + 5);
    let s = scorer(vec![files("flaky", wasm::BEHAVE, &flaky), files("steady", wasm::BEHAVE, &behave(""))], &state);
    let batch = |ts: i64| (0..3).map(|i| record(i, ts, "a", "")).collect();

    let (out, outcomes) = s.score(s.batch(batch(T0 + 5)));
    assert_eq!(outcomes[0].result.as_ref().unwrap_err().kind, ErrorKind::Trap);
    let sig = &out[2].signals[0];
    assert_eq!(sig.error.as_ref().unwrap().kind, ErrorKind::Trap);
    assert_eq!(sig.score, 0.0, "fail open counts as 0");
    assert_eq!(out[2].signals[1].reason, "count=3", "the other plugin is unaffected");

    // A fresh instance serves the next batch; host state was kept.
    let (out, outcomes) = s.score(s.batch(batch(T0 + 6)));
    assert!(outcomes[0].result.is_ok());
    assert_eq!(out[0].signals[0].reason, "count=1");
    assert_eq!(out[0].signals[1].reason, "count=4");
}

#[test]
fn errors_are_typed_and_fail_closed_counts() {
    let state = StateStore::new(Default::default());
    let with = |b: &str, extra: &str| {
        format!(
            "version = \"0.1.0\"\ngrants = [\"account\"]\n{extra}\n[limits]\ntime_per_batch_ms = 100\n[config]\nbehaviour = \"{b}\"\n"
        )
    };
    let s = scorer(
        vec![
            files("a-spin", wasm::BEHAVE, &with("spin", "")),
            files("b-nan", wasm::BEHAVE, &with("nan", "")),
            files("c-err", wasm::BEHAVE, &with("err", "[failure]\npolicy = \"closed\"\nscore = 0.8")),
        ],
        &state,
    );
    let (out, outcomes) = s.score(s.batch(vec![record(0, T0, "a", "")]));
    let kinds: Vec<ErrorKind> = outcomes.iter().map(|o| o.result.as_ref().unwrap_err().kind).collect();
    assert_eq!(kinds, [ErrorKind::Timeout, ErrorKind::InvalidOutput, ErrorKind::PluginError]);
    // A 100 ms limit, with a 10x margin for a loaded machine.
    assert!(outcomes[0].elapsed.as_millis() < 1000, "{:?}", outcomes[0].elapsed);
    // Fail closed: c-err counts as 0.8.
    assert!((out[0].score - 0.8).abs() < 1e-9, "{}", out[0].score);
    assert_eq!(out[0].decision, vigil_runtime::score::combine::Decision::Flag);
}

#[test]
fn bundled_detectors_score_through_the_boundary() {
    let state = StateStore::new(Default::default());
    let s = scorer(
        ["reasoning-elicitation", "velocity"]
            .iter()
            .map(|n| files(n, wasm::bundled(n), wasm::bundled_manifest(n)))
            .collect(),
        &state,
    );
    let cot = r#""prompt":"Think step by step, show all of your reasoning, and put your chain of thought in <thinking> tags.""#;
    let plain = r#""prompt":"What is the capital of France?""#;
    let created = format!(r#""account_created_ms":{}"#, T0 - 86_400_000);
    let mut records = vec![record(0, T0, "curious", cot), record(1, T0, "ordinary", plain)];
    // 1,200 requests in 20 minutes from a day-old account.
    for i in 0..1200 {
        records.push(record(2 + i, T0 + i as i64 * 1000, "burst", &created));
    }
    let (out, outcomes) = s.score(s.batch(records));
    assert!(outcomes.iter().all(|o| o.result.is_ok()));
    assert!(out[0].score >= 0.5, "flagged: {:?}", out[0]);
    assert!(out[0].signals[0].labels.contains(&"cot-elicitation".to_string()));
    assert_eq!(out[1].score, 0.0);
    let last = out.last().unwrap();
    let v = last.signals.iter().find(|s| &*s.plugin == "velocity").unwrap();
    assert!(v.score >= 0.75, "{v:?}");
    assert!(v.reason.contains("1200 requests by this account in 1h"), "{}", v.reason);
}
