//! Hostile plugins, built from source (tests/plugins/hostile, raw WIT, and
//! tests/plugins/wrong-world). For each: the host keeps serving, a
//! well-behaved plugin's scores are unchanged, and the failure is reported
//! with the right kind.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vigil_runtime::Config;
use vigil_runtime::engine::Runtime;
use vigil_runtime::error::ErrorKind;
use vigil_runtime::registry::PluginState;
use vigil_runtime::registry::load::load_dir;
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::StateStore;
use vigil_tests::{LogCapture, T0, files, record, scorer_with, wasm};

fn logs() -> &'static LogCapture {
    static LOGS: OnceLock<LogCapture> = OnceLock::new();
    LOGS.get_or_init(|| {
        let c = LogCapture::default();
        let sink = c.clone();
        tracing_subscriber::fmt().with_ansi(false).with_writer(move || sink.clone()).init();
        c
    })
}

fn hostile_manifest(attack: &str, limits: &str) -> String {
    format!("version = \"0.1.0\"\ngrants = [\"account\"]\n[limits]\n{limits}\n[config]\nattack = \"{attack}\"\n")
}

const STEADY: &str = "version = \"0.1.0\"\ngrants = [\"account\"]\n";

/// The reasons the well-behaved `steady` plugin gives on two batches.
fn steady_reasons(s: &Scorer, state_tag: usize) -> (Vec<Vec<String>>, Vec<Option<ErrorKind>>, Vec<Duration>) {
    let mut reasons = Vec::new();
    let mut kinds = Vec::new();
    let mut times = Vec::new();
    for b in 0..2 {
        let recs =
            (0..5).map(|i| record(b * 5 + i, T0 + (b * 5 + i) as i64, &format!("acct-{state_tag}"), "")).collect();
        let (verdicts, outcomes) = s.score(s.batch(recs));
        let names: Vec<String> = verdicts[0].signals.iter().map(|s| s.plugin.to_string()).collect();
        let steady = names.iter().position(|n| n == "steady").unwrap();
        reasons.push(verdicts.iter().map(|v| v.signals[steady].reason.clone()).collect());
        if let Some(h) = names.iter().position(|n| n != "steady") {
            kinds.push(outcomes[h].result.as_ref().err().map(|e| e.kind));
            times.push(outcomes[h].elapsed);
        }
    }
    (reasons, kinds, times)
}

/// Runs `attack` beside `steady`; returns the hostile plugin's error kinds
/// and times per batch, after checking steady was untouched.
fn attack(attack: &str, limits: &str) -> (Vec<Option<ErrorKind>>, Vec<Duration>, Scorer, StateStore) {
    logs();
    let baseline = {
        let state = StateStore::new(Default::default());
        let s = scorer_with(vec![files("steady", wasm::BEHAVE, STEADY)], &state, Config::default());
        steady_reasons(&s, 0).0
    };
    let state = StateStore::new(Default::default());
    let s = scorer_with(
        vec![
            files("steady", wasm::BEHAVE, STEADY),
            files(&format!("hostile-{attack}"), wasm::HOSTILE, &hostile_manifest(attack, limits)),
        ],
        &state,
        Config::default(),
    );
    let (reasons, kinds, times) = steady_reasons(&s, 0);
    assert_eq!(reasons, baseline, "{attack}: the well-behaved plugin's scores changed");
    (kinds, times, s, state)
}

fn expect(name: &str, limits: &str, kind: ErrorKind) -> Vec<Duration> {
    let (kinds, times, _, _) = attack(name, limits);
    assert_eq!(kinds, [Some(kind), Some(kind)], "{name}");
    times
}

#[test]
fn infinite_loop_times_out_at_its_limit() {
    let times = expect("loop", "time_per_batch_ms = 100", ErrorKind::Timeout);
    // Cut off near 100 ms; 10x margin for a loaded machine.
    assert!(times.iter().all(|t| *t < Duration::from_millis(1000)), "{times:?}");
}

#[test]
fn sleeping_past_the_limit_is_cut_off_at_the_deadline() {
    let times = expect("sleep", "time_per_batch_ms = 100", ErrorKind::Timeout);
    assert!(times.iter().all(|t| *t < Duration::from_millis(1000)), "a 30 s sleep ran {times:?}");
}

#[test]
fn memory_growth_past_the_limit() {
    expect("memory", "memory_mb = 32", ErrorKind::Memory);
}

#[test]
fn deep_recursion_traps() {
    expect("recursion", "", ErrorKind::Trap);
}

#[test]
fn panic_traps() {
    expect("panic", "", ErrorKind::Trap);
}

#[test]
fn nan_infinite_and_out_of_range_scores_are_invalid_output() {
    for a in ["nan", "infinite", "range", "negative"] {
        expect(a, "", ErrorKind::InvalidOutput);
    }
}

#[test]
fn wrong_output_length_is_invalid_output() {
    for a in ["short", "long"] {
        expect(a, "", ErrorKind::InvalidOutput);
    }
}

#[test]
fn giant_labels_and_reasons_are_invalid_output() {
    for a in ["many-labels", "giant-label", "giant-reason"] {
        expect(a, "", ErrorKind::InvalidOutput);
    }
}

#[test]
fn a_slow_plugin_inside_its_limit_is_fine() {
    // About 50 ms of work against a 1 s limit: a 20x margin.
    let (kinds, _, _, _) = attack("slow", "time_per_batch_ms = 1000");
    assert_eq!(kinds, [None, None]);
}

#[test]
fn log_flood_is_bounded() {
    let (kinds, _, _, _) = attack("log-flood", "time_per_batch_ms = 10000\nlog_lines_per_batch = 50");
    assert_eq!(kinds, [None, None]);
    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    let lines = text.lines().filter(|l| l.contains("hostile-log-flood") && !l.contains("loaded")).count();
    assert!(lines > 0 && lines <= 2 * 50, "{lines} flood lines logged for two batches at 50 per batch");
}

#[test]
fn state_flood_is_bounded() {
    let (kinds, _, _, state) =
        attack("state-flood", "time_per_batch_ms = 10000\nstate_entries = 1000\nstate_bytes = 2000000");
    assert_eq!(kinds, [None, None]);
    let ns = state.namespace("hostile-state-flood");
    let ns = ns.lock().unwrap();
    assert!(ns.len() <= 1000, "{} entries", ns.len());
    assert!(ns.bytes() <= 2_000_000);
    assert!(ns.refused >= 4, "the 10 MB values (state-set and state-set-many, two batches) were refused");
    assert!(ns.evictions > 0);
}

#[test]
fn no_files_network_environment_or_arguments() {
    // SAFETY: set before any plugin thread reads the environment.
    unsafe { std::env::set_var("VIGIL_HOST_SECRET", "hunter2") };
    let state = StateStore::new(Default::default());
    let s = scorer_with(
        vec![files(
            "hostile-ambient",
            wasm::HOSTILE,
            &hostile_manifest("ambient", "time_per_batch_ms = 5000\nmax_reason_bytes = 8192"),
        )],
        &state,
        Config::default(),
    );
    let (v, outcomes) = s.score(s.batch(vec![record(0, T0, "a", "")]));
    assert!(outcomes[0].result.is_ok(), "{:?}", outcomes[0].result.as_ref().err());
    let reason = &v[0].signals[0].reason;
    for attempt in ["read /etc/passwd", "read /etc/hostname", "list .", "list /", "write", "tcp", "udp", "dns"] {
        let part = reason.split("; ").find(|p| p.starts_with(attempt)).unwrap_or_else(|| panic!("{attempt}: {reason}"));
        assert!(part.contains("Err("), "{attempt} succeeded: {part}");
    }
    assert!(reason.contains("env: []"), "{reason}");
    assert!(!reason.contains("hunter2") && !reason.contains("root:"), "{reason}");
}

#[test]
fn broken_components_are_refused_at_load_and_the_rest_run() {
    let dir = tempfile::tempdir().unwrap();
    let m = hostile_manifest("none", "");
    for (name, bytes) in [
        ("wrong-world", wasm::WRONG_WORLD),
        ("core-module", &b"\0asm\x01\0\0\0"[..]),
        ("truncated", &wasm::HOSTILE[..wasm::HOSTILE.len() / 3]),
        ("not-wasm", b"#!/bin/sh\nrm -rf /\n"),
    ] {
        vigil_tests::write_plugin(dir.path(), name, bytes, &m);
    }
    vigil_tests::write_plugin(
        dir.path(),
        "init-loop",
        wasm::HOSTILE,
        &hostile_manifest("init-loop", "time_per_batch_ms = 100"),
    );
    vigil_tests::write_plugin(dir.path(), "steady", wasm::BEHAVE, STEADY);
    let set = load_dir(
        &Runtime::new().unwrap(),
        &Config::default(),
        &StateStore::new(Default::default()),
        dir.path(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(set.names(), ["steady"]);
    let kind = |n: &str| set.failures.iter().find(|e| e.plugin == n).map(|e| (e.kind, e.message.clone())).unwrap();
    for n in ["wrong-world", "core-module", "truncated", "not-wasm"] {
        assert_eq!(kind(n).0, ErrorKind::Load, "{n}: {}", kind(n).1);
    }
    assert!(kind("wrong-world").1.contains("vigil:detector"), "{}", kind("wrong-world").1);
    assert!(kind("core-module").1.contains("not a valid WebAssembly component"), "{}", kind("core-module").1);
    assert_eq!(kind("init-loop").0, ErrorKind::Init);
}

#[test]
fn repeated_failures_quarantine_with_backoff_and_recovery() {
    let mut config = Config::default();
    config.limits.quarantine_after = 3;
    config.limits.quarantine_backoff_ms = 50;
    let state = StateStore::new(Default::default());
    let flaky = format!("version = \"0.1.0\"\ngrants = [\"account\"]\n[config]\nbehaviour = {{ panic-at = {T0} }}\n");
    let s = scorer_with(vec![files("flaky", wasm::BEHAVE, &flaky)], &state, config);
    let run = |ts: i64| {
        let (_, o) = s.score(s.batch(vec![record(0, ts, "a", "")]));
        o[0].result.as_ref().err().map(|e| e.kind)
    };
    for _ in 0..3 {
        assert_eq!(run(T0), Some(ErrorKind::Trap));
    }
    let registry = s.registry.clone();
    assert_eq!(run(T0 + 1), Some(ErrorKind::Quarantined), "sits out even a batch it could score");
    assert_eq!(registry.status()[0].state, PluginState::Quarantined);
    // After the backoff (50 ms; waited 10x) it is tried again and recovers.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(run(T0 + 2), None);
    assert_eq!(registry.status()[0].state, PluginState::Active);
    // A failed retry doubles the backoff.
    for _ in 0..3 {
        run(T0);
    }
    let start = Instant::now();
    while run(T0 + 3) == Some(ErrorKind::Quarantined) {
        std::thread::sleep(Duration::from_millis(5));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
    assert!(start.elapsed() >= Duration::from_millis(40), "{:?}", start.elapsed());
}
