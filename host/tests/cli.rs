//! The `vigil` binary as a user runs it.

mod common;
use common::{text, vigil};

fn rec(i: usize) -> String {
    format!(
        r#"{{"id":"r-{i}","ts_ms":{},"account":"a-{}","prompt":"hello {i}"}}"#,
        1_760_000_000_000u64 + i as u64,
        i % 3
    )
}

#[test]
fn score_writes_one_valid_verdict_per_line_in_order() {
    let input: String = (0..50).map(|i| rec(i) + "\n").collect();
    let out = vigil(&["score", "--batch-size", "8"], &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 50);
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["id"], format!("r-{i}"));
        let score = v["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score));
        assert!(["allow", "flag", "block"].contains(&v["decision"].as_str().unwrap()));
        let plugins: Vec<&str> =
            v["signals"].as_array().unwrap().iter().map(|s| s["plugin"].as_str().unwrap()).collect();
        assert_eq!(
            plugins,
            [
                "fanout",
                "lockstep",
                "output-harvest",
                "reasoning-elicitation",
                "shared-infra",
                "template-fleet",
                "velocity"
            ]
        );
    }
    let err = text(&out.stderr);
    assert!(err.contains("scored 50 requests"), "{err}");
    assert!(err.contains("decisions: allow"), "{err}");
}

#[test]
fn bad_lines_are_reported_by_number_and_field_then_skipped() {
    let input = format!("{}\n{{\"id\":\"x\",\"ts_ms\":1}}\n{}\nnot json\n{}\n", rec(0), rec(1), rec(2));
    let out = vigil(&["score"], &input);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("bad input: line 2, field `account`: missing field `account`"), "{err}");
    assert!(err.contains("bad input: line 4:"), "{err}");
    assert!(err.contains("2 bad lines skipped"), "{err}");
    assert_eq!(text(&out.stdout).lines().count(), 3);
}

#[test]
fn fail_stops_with_a_one_line_cause_and_keeps_what_came_before() {
    let input = format!("{}\n{}\n{{\"id\":\"x\",\"ts_ms\":\"soon\",\"account\":\"a\"}}\n{}\n", rec(0), rec(1), rec(2));
    let out = vigil(&["score", "--on-bad-input", "fail"], &input);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.lines().any(|l| l.starts_with("vigil: line 3, field `ts_ms`")), "{err}");
    assert_eq!(text(&out.stdout).lines().count(), 2);
}

#[test]
fn nothing_but_bad_input_is_a_failure() {
    let out = vigil(&["score"], "nope\n");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("nothing scored"));
}

#[test]
fn config_file_is_read_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(&cfg, "[scoring]\nflag_threshold = 0.1\nblock_threshold = 0.15\n").unwrap();
    let input = r#"{"id":"s","ts_ms":1,"account":"a","prompt":"explain it step by step"}"#;
    let out = vigil(&["--config", cfg.to_str().unwrap(), "score"], input);
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["decision"], "block", "0.2 is over the configured block threshold");

    std::fs::write(&cfg, "[scoring]\nbatch_sise = 3\n").unwrap();
    let out = vigil(&["--config", cfg.to_str().unwrap(), "score"], input);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("batch_sise"), "{}", text(&out.stderr));
}

#[test]
fn check_accepts_a_bundled_plugin_and_explains_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(vigil(&["bundled", "--out", d], "").status.success());
    let good = dir.path().join("velocity.wasm");
    let out = vigil(&["check", good.to_str().unwrap()], "");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("ok    smoke and campaign batch: 488 signals"), "{}", text(&out.stdout));

    // A plugin that fires on the check batch stops firing when a field it
    // reads is left out of its grants: valid, with a warning that says so.
    let harvest = dir.path().join("output-harvest.wasm");
    let out = vigil(&["check", harvest.to_str().unwrap()], "");
    assert!(!text(&out.stdout).contains("warn  no signal"), "{}", text(&out.stdout));
    let manifest = std::fs::read_to_string(dir.path().join("output-harvest.toml")).unwrap();
    let without_account = manifest.replace("grants = [\"account\", ", "grants = [");
    assert_ne!(manifest, without_account);
    std::fs::write(dir.path().join("output-harvest.toml"), without_account).unwrap();
    let out = vigil(&["check", harvest.to_str().unwrap()], "");
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("warn  no signal on the smoke and campaign batch"), "{}", text(&out.stdout));

    let wasm = std::fs::read(&good).unwrap();
    std::fs::write(dir.path().join("broken.wasm"), &wasm[..wasm.len() / 3]).unwrap();
    std::fs::copy(dir.path().join("velocity.toml"), dir.path().join("broken.toml")).unwrap();
    let out = vigil(&["check", dir.path().join("broken.wasm").to_str().unwrap()], "");
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("FAIL  load: not a valid WebAssembly component"), "{}", text(&out.stdout));

    std::fs::write(dir.path().join("velocity.toml"), "version = \"0.1.0\"\n[config]\nwindow_mss = 5\n").unwrap();
    let out = vigil(&["check", good.to_str().unwrap()], "");
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("window_mss"), "{}", text(&out.stdout));
}

#[test]
fn keygen_sign_and_a_trust_policy_that_check_and_score_apply() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    assert!(vigil(&["keygen", &p("vendor")], "").status.success());
    assert_eq!(std::fs::metadata(d.join("vendor.key")).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!vigil(&["keygen", &p("vendor")], "").status.success(), "never overwrites a key");
    assert!(vigil(&["bundled", "--out", &p("plugins")], "").status.success());
    let out = vigil(&["sign", "--key", &p("vendor.key"), &p("plugins/velocity.wasm")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(
        d.join("vigil.toml"),
        format!("[trust]\nkeys = [{:?}]\nrequire_signatures = true\n", p("vendor.pub")),
    )
    .unwrap();

    let out = vigil(&["--config", &p("vigil.toml"), "check", &p("plugins/velocity.wasm")], "");
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("signed by trusted key vendor"));

    // The bundled set is trusted as built: every plugin loads.
    let out = vigil(&["--config", &p("vigil.toml"), "score", "--plugins", &p("plugins")], &(rec(0) + "\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("\"plugin\":").count(), 7, "{}", text(&out.stdout));

    // A changed, unsigned manifest is no longer the built one: refused, and
    // score refuses to run without it unless told to go on.
    let m = d.join("plugins/reasoning-elicitation.toml");
    std::fs::write(&m, std::fs::read_to_string(&m).unwrap().replace("max_gap = 3", "max_gap = 4")).unwrap();
    let out = vigil(&["--config", &p("vigil.toml"), "score", "--plugins", &p("plugins")], &(rec(0) + "\n"));
    assert!(!out.status.success(), "partial scoring must be asked for");
    let err = text(&out.stderr);
    assert!(err.contains("plugin reasoning-elicitation not loaded: signature: unsigned"), "{err}");
    assert!(err.contains("--allow-partial") && text(&out.stdout).is_empty(), "{err}");
    let out = vigil(
        &["--config", &p("vigil.toml"), "score", "--allow-partial", "--plugins", &p("plugins")],
        &(rec(0) + "\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"plugin\":\"velocity\""));
    assert!(!text(&out.stdout).contains("reasoning-elicitation"));

    // Tampered manifest: check says so.
    let m = std::fs::read_to_string(d.join("plugins/velocity.toml"))
        .unwrap()
        .replace("grants = [", "grants = [\"prompt\", ");
    std::fs::write(d.join("plugins/velocity.toml"), m).unwrap();
    let out = vigil(&["--config", &p("vigil.toml"), "check", &p("plugins/velocity.wasm")], "");
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("FAIL  signature: signature does not verify"), "{}", text(&out.stdout));

    // A whole set signed at once: every plugin of the directory, then
    // scored with every one loaded under required signatures.
    let out = vigil(&["sign", "--key", &p("vendor.key"), &p("plugins")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches(".sig").count(), 7, "{}", text(&out.stdout));
    let out = vigil(&["--config", &p("vigil.toml"), "score", "--plugins", &p("plugins")], &(rec(0) + "\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("\"plugin\":").count(), 7, "{}", text(&out.stdout));
}

#[test]
fn empty_and_nested_input_get_clear_answers() {
    let out = vigil(&["score"], "");
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("the input was empty"));
    // Deep nesting: skipped where ignored, refused where it matters, never a crash.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let input = format!(
        "{}\n{{\"id\":\"d\",\"ts_ms\":1760000000000,\"account\":\"a\",\"extra\":{deep}}}\n\
         {{\"id\":\"e\",\"ts_ms\":1760000000000,\"account\":\"a\",\"attrs\":{{\"k\":{deep}}}}}\n{}\n",
        rec(0),
        rec(0)
    );
    let out = vigil(&["score"], &input);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("bad input: line 3, field `attrs.k`: invalid type"), "{err}");
    assert!(err.contains("bad input: line 4, field `id`: duplicate id \"r-0\" (first at line 1)"), "{err}");
    assert_eq!(text(&out.stdout).lines().count(), 2);
}

#[test]
fn demo_runs_end_to_end_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = vigil(&["demo", "--out", dir.path().to_str().unwrap()], "");
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("combined (held-out)"), "{err}");
    assert!(err.contains("the running detectors flag 0 of 40"), "{err}");
    assert!(err.contains("no restart"), "{err}");
    let html = std::fs::read_to_string(dir.path().join("vigil-demo-report.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("<script"), "self-contained, no scripts");
    // `vigil replay` of the hot-patch over the incident's days: every
    // account of the quiet campaign newly flagged, no customer, none lost.
    let flagged_row = err.lines().find(|l| l.trim_start().starts_with("flagged accounts")).expect("the replay table");
    let cells: Vec<&str> = flagged_row.split_whitespace().skip(2).collect();
    assert_eq!(cells, ["0", "40", "40", "0"], "{err}");
    assert!(
        html.contains("<b>40 accounts newly flagged</b>\n(0 of them benign), <b>0 no longer flagged</b>"),
        "{html}"
    );
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cases.json")).unwrap()).unwrap();
    assert!(!cases["accounts"].as_array().unwrap().is_empty());
}

#[test]
fn replay_shows_what_a_patched_plugin_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let cand = dir.path().join("cand");
    assert!(vigil(&["bundled", "--out", base.to_str().unwrap()], "").status.success());
    std::fs::create_dir(&cand).unwrap();
    std::fs::copy(base.join("velocity.wasm"), cand.join("velocity.wasm")).unwrap();
    // The patch: a far lower per-account budget.
    let manifest = std::fs::read_to_string(base.join("velocity.toml")).unwrap();
    std::fs::write(cand.join("velocity.toml"), manifest.replace("account_requests = 240", "account_requests = 5"))
        .unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/sample.ndjson");
    let json = dir.path().join("c.json");
    let args = ["replay", "--input", sample, "--baseline", base.to_str().unwrap(), "--candidate"];
    let out = vigil(&[&args[..], &[cand.to_str().unwrap(), "--json", json.to_str().unwrap()]].concat(), "");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("with velocity from"), "{stdout}");
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(c["requests"], 1072);
    let row = |w: &str| c["rows"].as_array().unwrap().iter().find(|r| r["what"] == w).unwrap().clone();
    assert!(row("velocity")["newly"].as_u64().unwrap() >= 1, "{c}");
    // Only velocity changed: every other detector flags the same accounts.
    for r in c["rows"].as_array().unwrap().iter().filter(|r| r["what"] != "velocity") {
        assert_eq!((&r["newly"], &r["no_longer"]), (&0.into(), &0.into()), "{r}");
    }

    // A candidate that cannot load stops the replay, naming it.
    std::fs::write(cand.join("velocity.toml"), "version = \"0.1.0\"\n[config]\nwindow_mss = 5\n").unwrap();
    let out = vigil(&[&args[..], &[cand.to_str().unwrap()]].concat(), "");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("candidate: plugin velocity not loaded"), "{}", text(&out.stderr));
}
