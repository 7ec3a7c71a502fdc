//! Plugins in other languages: the bundled `velocity` detector ported to
//! Python (`examples/python-detector`), built with componentize-py
//! (installed with pip where it is missing), checked with `vigil check`,
//! and scored by `vigil score` beside the Rust build of the same detector
//! (`vigil bundled`) on a log where every budget is broken. Each record's
//! two signals must be equal as vigil writes them: the score (rounded to 6
//! decimals, as every signal is), the labels and the reason. (The bench's
//! section 7 compares the f32 scores bit for bit on larger batches.)
//!
//! The JavaScript port (`examples/js-detector`) is not built here: it
//! needs Node.js and npm, which CI does not have (docs/languages.md).

#[path = "common/python.rs"]
mod python;

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The manifest without its comments: the port's must be the Rust
/// plugin's, so the two run on the same grants, limits and config.
fn settings(manifest: &str) -> Vec<&str> {
    manifest.lines().filter(|l| !l.trim_start().starts_with('#')).collect()
}

const T0: i64 = 1_767_225_600_000;
const DAY: i64 = 86_400_000;

/// One request of the log.
struct Req {
    ts: i64,
    account: String,
    org: Option<&'static str>,
    key: String,
    card: String,
    tokens: u32,
    created: Option<i64>,
}

impl Req {
    fn new(ts: i64, account: String, created: Option<i64>) -> Self {
        let (key, card) = (format!("key-{account}"), format!("card-{account}"));
        Self { ts, account, org: None, key, card, tokens: 100, created }
    }
}

/// Two hours of traffic in which each of velocity's budgets is broken by
/// someone, with every weighing (young, old, unknown age, an organisation),
/// among quiet accounts that stay under all of them.
fn log() -> String {
    let mut reqs = Vec::new();
    // Young accounts, 400 requests in 40 minutes each: account-rate.
    for a in 0..3 {
        for i in 0..400 {
            reqs.push(Req::new(T0 + a * 1_000 + i * 6_000, format!("young-{a}"), Some(T0 - 2 * DAY)));
        }
    }
    // Few requests, many tokens: account-tokens, an old account.
    for i in 0..20 {
        let mut r = Req::new(T0 + i * 90_000, "tokens".into(), Some(T0 - 30 * DAY));
        r.tokens = 25_000 + i as u32 * 1_000;
        reqs.push(r);
    }
    // An organisation's account of unknown age: account-rate, weighed down twice.
    for i in 0..300 {
        let mut r = Req::new(T0 + 500 + i * 10_000, "org-member".into(), None);
        r.org = Some("org-1");
        reqs.push(r);
    }
    // One API key, ten quiet accounts: key-rate.
    for a in 0..10 {
        for i in 0..80 {
            let mut r = Req::new(T0 + a * 300 + i * 40_000, format!("keyed-{a}"), Some(T0 - 100 * DAY));
            r.key = "key-shared".into();
            reqs.push(r);
        }
    }
    // One card, fifty quiet accounts (some young): payment-rate.
    for a in 0..50i64 {
        let created = if a % 5 == 0 { T0 - 3 * DAY } else { T0 - 400 * DAY - a * 3_333_333 };
        for i in 0..90 {
            let mut r = Req::new(T0 + a * 137 + i * 75_000, format!("carded-{a}"), Some(created));
            r.card = "card-shared".into();
            reqs.push(r);
        }
    }
    // Quiet accounts under every budget.
    for a in 0..100 {
        for i in 0..5 {
            reqs.push(Req::new(T0 + a * 71 + i * 1_000_000, format!("quiet-{a}"), Some(T0 - a * DAY)));
        }
    }
    reqs.sort_by_key(|r| r.ts);
    let mut out = String::new();
    for (n, r) in reqs.iter().enumerate() {
        let mut line = format!(
            "{{\"id\":\"r{n}\",\"ts_ms\":{},\"account\":\"{}\",\"api_key\":\"{}\",\"payment_fingerprint\":\"{}\",\
             \"prompt_tokens\":{},\"completion_tokens\":{}",
            r.ts,
            r.account,
            r.key,
            r.card,
            r.tokens / 2,
            r.tokens - r.tokens / 2
        );
        if let Some(org) = r.org {
            let _ = write!(line, ",\"org\":\"{org}\"");
        }
        if let Some(c) = r.created {
            let _ = write!(line, ",\"account_created_ms\":{c}");
        }
        out += &line;
        out += "}\n";
    }
    out
}

#[test]
fn the_python_port_of_velocity_scores_as_the_rust_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let example = repo().join("examples/python-detector");

    // The sources in a scratch copy: the tests and the build write nothing
    // into the repository.
    let src = dir.join("python-detector");
    std::fs::create_dir(&src).unwrap();
    for f in ["velocity.py", "app.py", "test_velocity.py", "velocity-py.toml"] {
        std::fs::copy(example.join(f), src.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let tests = run(Command::new("python3").args(["-m", "unittest", "-v"]).current_dir(&src));
    let passed = |name: &str| tests.lines().any(|l| l.starts_with(name) && l.ends_with("... ok"));
    for t in ["test_keys_are_the_rust_sdks", "test_counters_continue_across_batches_and_instances"] {
        assert!(passed(t), "{t}:\n{tests}");
    }

    let start = Instant::now();
    run(python::componentize_py(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("componentize-py"))
        .unwrap()
        .arg("-d")
        .arg(repo().join("wit"))
        .args(["-w", "detector", "componentize", "app", "-o", "velocity-py.wasm"])
        .current_dir(&src));
    eprintln!("componentize-py built velocity-py.wasm in {:.1?}", start.elapsed());

    // The Rust build of the same detector, as the binary bundles it, beside the port.
    run(Command::new(VIGIL).arg("bundled").arg("--out").arg(dir.join("bundled")));
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for (from, name) in [(dir.join("bundled/velocity"), "velocity"), (src.join("velocity-py"), "velocity-py")] {
        for ext in ["wasm", "toml"] {
            std::fs::copy(from.with_extension(ext), plugins.join(format!("{name}.{ext}"))).unwrap();
        }
    }
    let manifest = |name: &str| std::fs::read_to_string(plugins.join(format!("{name}.toml"))).unwrap();
    assert_eq!(settings(&manifest("velocity-py")), settings(&manifest("velocity")), "the manifests drifted apart");

    // One compiled-plugin cache for check and score, inside the test's directory.
    let cache = dir.join("cache");
    let check =
        run(Command::new(VIGIL).env("VIGIL_CACHE_DIR", &cache).arg("check").arg(plugins.join("velocity-py.wasm")));
    assert!(check.contains("is a valid vigil plugin"), "{check}");
    assert!(check.contains("vigil:detector@0.2.0"), "{check}");

    let log = log();
    std::fs::write(dir.join("log.ndjson"), &log).unwrap();
    let records = log.lines().count();
    // Small batches: the counters carry across many of them.
    let summary = run(Command::new(VIGIL)
        .env("VIGIL_CACHE_DIR", &cache)
        .args(["score", "--batch-size", "256", "--plugins"])
        .arg(&plugins)
        .arg("--input")
        .arg(dir.join("log.ndjson"))
        .arg("--output")
        .arg(dir.join("verdicts.ndjson"))
        .arg("--state-dir")
        .arg(dir.join("state")));
    eprintln!("{summary}");

    let verdicts = std::fs::read_to_string(dir.join("verdicts.ndjson")).unwrap();
    let (mut fired, mut differ, mut labels) = (0, Vec::new(), std::collections::BTreeSet::new());
    let mut quiet_fired = 0;
    for line in verdicts.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let signal = |name: &str| -> Value {
            let s = v["signals"].as_array().unwrap().iter().find(|s| s["plugin"] == name);
            s.unwrap_or_else(|| panic!("no {name} signal in {line}")).clone()
        };
        let (rust, py) = (signal("velocity"), signal("velocity-py"));
        assert!(rust.get("error").is_none() && py.get("error").is_none(), "a plugin failed: {line}");
        let said = |s: &Value| (s["score"].as_f64().unwrap(), s["labels"].clone(), s["reason"].clone());
        if said(&rust) != said(&py) {
            differ.push(format!("{}:\n  rust   {rust}\n  python {py}", v["id"]));
        }
        if rust["score"].as_f64().unwrap() > 0.0 {
            fired += 1;
            labels.extend(rust["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()));
            quiet_fired += usize::from(v["account"].as_str().unwrap().starts_with("quiet-"));
        }
    }
    assert_eq!(verdicts.lines().count(), records, "one verdict per record");
    assert!(
        differ.is_empty(),
        "{} of {records} records differ, first:\n{}",
        differ.len(),
        differ[..differ.len().min(5)].join("\n")
    );
    // The log exercised every budget and weighing, and spared the quiet.
    let expected = ["account-rate", "account-tokens", "key-rate", "payment-rate", "young-account"];
    assert_eq!(labels.iter().map(String::as_str).collect::<Vec<_>>(), expected);
    assert!(fired > 1_000, "only {fired} of {records} records fired");
    assert_eq!(quiet_fired, 0);
}
