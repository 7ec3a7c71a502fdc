//! A candidate in shadow under `vigil serve`: dropped into `shadow/`, it
//! scores live traffic beside the live version without touching a verdict
//! or the live version's state; the admin API shows what it would change;
//! promoting it makes it live through the reload path, with rollback.

use std::time::Duration;

use serde_json::Value;
use vigil::service::Server;
use vigil_tests::{T0, serve_config, wasm};

/// An admin GET: its status and JSON body.
fn get(addr: &str, path: &str) -> (u16, Value) {
    let resp = match ureq::get(&format!("http://{addr}{path}")).set("Authorization", "Bearer t0ken").call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    (resp.status(), serde_json::from_str(&resp.into_string().unwrap()).unwrap())
}

/// `n` requests of `account` within a minute; the verdicts.
fn score(addr: &str, account: &str, n: usize) -> Vec<Value> {
    let body: String = (0..n)
        .map(|i| format!("{{\"id\":\"{account}-{i}\",\"ts_ms\":{},\"account\":\"{account}\"}}\n", T0 + i as i64 * 500))
        .collect();
    let resp = ureq::post(&format!("http://{addr}/v1/score")).send_string(&body).unwrap();
    let v: Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    v["verdicts"].as_array().unwrap().clone()
}

fn velocity_score(v: &Value) -> f64 {
    v["signals"].as_array().unwrap().iter().find(|s| s["plugin"] == "velocity").unwrap()["score"].as_f64().unwrap()
}

#[test]
fn a_candidate_in_shadow_is_compared_on_live_traffic_then_promoted() {
    let plugins = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    let manifest = wasm::bundled_manifest("velocity");
    vigil_tests::write_plugin(dir, "velocity", wasm::bundled("velocity"), manifest);
    let server = Server::start(serve_config(state.path()), dir, "127.0.0.1:0").unwrap();
    let addr = server.addr.to_string();
    let live = server.registry.active("velocity").unwrap().plugin.digest.to_string();
    let (code, body) = get(&addr, "/v1/plugins/velocity/shadow");
    assert_eq!(code, 404, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("no candidate in shadow"), "{body}");

    // A broken candidate: reported, and the live version is untouched.
    let shadow = dir.join("shadow");
    std::fs::create_dir(&shadow).unwrap();
    vigil_tests::write_plugin(
        &shadow,
        "velocity",
        wasm::bundled("velocity"),
        "version = \"9\"\n[config]\nwindow_mss = 1\n",
    );
    let status = |r: &vigil_runtime::registry::Registry| r.status().into_iter().find(|s| s.name == "velocity").unwrap();
    let failed = server.registry.wait_until(Duration::from_secs(60), |r| {
        status(r).shadow.is_some_and(|s| s.last_error.is_some_and(|e| e.contains("window_mss")))
    });
    assert!(failed, "{:?}", status(&server.registry).shadow);

    // The patch: a per-account budget of 5 requests an hour instead of 240.
    let patched = manifest.replace("account_requests = 240", "account_requests = 5").replace("0.1.0", "0.1.1");
    assert_ne!(patched, manifest);
    vigil_tests::write_plugin(&shadow, "velocity", wasm::bundled("velocity"), &patched);
    let loaded = server.registry.wait_until(Duration::from_secs(60), |r| r.shadow("velocity").is_some());
    assert!(loaded, "{:?}", status(&server.registry).shadow);
    let candidate = server.registry.shadow("velocity").unwrap().plugin.digest.to_string();

    // Live traffic: the verdicts are the live version's alone.
    for v in score(&addr, "busy", 60).iter().chain(&score(&addr, "quiet", 2)) {
        assert_eq!(v["signals"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["signals"][0]["digest"], live.as_str());
        assert_eq!(velocity_score(v), 0.0, "under the live budget: {v}");
    }
    let shadow_state = vigil_runtime::util::lock(&server.state.namespace("velocity@shadow")).len();
    assert!(shadow_state > 0, "the candidate keeps its own state");

    let (code, s) = get(&addr, "/v1/plugins/velocity/shadow?examples=3");
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["candidate"]["digest"], candidate.as_str(), "{s}");
    assert_eq!(s["live"]["digest"], live.as_str(), "{s}");
    let c = &s["scored"]["comparison"];
    assert_eq!(c["requests"], 62, "{s}");
    let row = c["rows"].as_array().unwrap().iter().find(|r| r["what"] == "velocity").unwrap();
    assert_eq!((&row["baseline"], &row["candidate"], &row["newly"]), (&0.into(), &1.into(), &1.into()), "{s}");
    assert_eq!(c["newly_flagged"][0]["account"], "busy", "{s}");
    assert!(c["no_longer_flagged"].as_array().unwrap().is_empty(), "{s}");

    // A broken live reload meanwhile: the live version keeps serving, and
    // the fix in shadow can still be promoted.
    std::fs::write(dir.join("velocity.toml"), "version = \"0.1.2\"\n[config]\nwindow_mss = 1\n").unwrap();
    let broken = server.registry.wait_until(Duration::from_secs(60), |r| status(r).last_error.is_some());
    assert!(broken, "{:?}", status(&server.registry));
    assert_eq!(server.registry.active("velocity").unwrap().plugin.digest.to_string(), live);

    // Promoted: the candidate's files become the plugin's, loaded by the
    // reload path; the previous version is kept for rollback.
    let resp = ureq::post(&format!("http://{addr}/v1/plugins/velocity/promote"))
        .set("Authorization", "Bearer t0ken")
        .call()
        .unwrap();
    let p: Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    assert_eq!((&p["from"], &p["to"]), (&live.as_str().into(), &candidate.as_str().into()), "{p}");
    assert!(status(&server.registry).last_error.is_none());
    assert_eq!(server.registry.active("velocity").unwrap().plugin.digest.to_string(), candidate);
    assert!(std::fs::read_to_string(dir.join("velocity.toml")).unwrap().contains("account_requests = 5"));
    assert!(!shadow.join("velocity.wasm").exists());
    let gone = server.registry.wait_until(Duration::from_secs(60), |r| status(r).shadow.is_none());
    assert!(gone, "{:?}", status(&server.registry).shadow);
    assert!(status(&server.registry).rollback_available);
    let fired = score(&addr, "burst", 60);
    assert!(velocity_score(fired.last().unwrap()) > 0.0, "the promoted budget is live: {:?}", fired.last());
    server.stop().unwrap();
}

#[test]
fn a_candidate_in_shadow_answers_to_the_plugin_directorys_signature_policy() {
    let plugins = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    let manifest = wasm::bundled_manifest("velocity");
    vigil_tests::write_plugin(dir, "velocity", wasm::bundled("velocity"), manifest);
    let mut config = serve_config(state.path());
    config.trust.require_signatures_in = vec![dir.to_path_buf()];
    let server = Server::start(config, dir, "127.0.0.1:0").unwrap();
    assert!(server.registry.active("velocity").is_some(), "the bundled build is trusted as built");

    // Unsigned, and not the bundled build: refused in shadow/ as in the
    // directory itself, so it never sees live traffic.
    let shadow = dir.join("shadow");
    std::fs::create_dir(&shadow).unwrap();
    let patched = manifest.replace("account_requests = 240", "account_requests = 5");
    vigil_tests::write_plugin(&shadow, "velocity", wasm::bundled("velocity"), &patched);
    let refused = server.registry.wait_until(Duration::from_secs(60), |r| {
        r.status().iter().any(|s| {
            s.name == "velocity"
                && s.shadow.as_ref().is_some_and(|c| c.last_error.as_ref().is_some_and(|e| e.contains("signature")))
        })
    });
    assert!(refused, "{:?}", server.registry.status());
    assert!(server.registry.shadow("velocity").is_none());
    assert!(server.registry.snapshot().shadows.is_empty());
    server.stop().unwrap();
}
