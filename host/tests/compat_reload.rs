//! Under `vigil serve`, a plugin built against the 0.1 contract hot-reloads
//! to its 0.2 rebuild and rolls back to it, beside plugins of either
//! version, without a pause or a lost request.

use std::time::Duration;

use vigil::service::Server;
use vigil_tests::{T0, serve_config, wasm};

const VELOCITY_0_1_0: &[u8] = include_bytes!("../../tests/fixtures/v0_1_0/velocity.wasm");
const VELOCITY_0_1_0_MANIFEST: &str = include_str!("../../tests/fixtures/v0_1_0/velocity.toml");
const FANOUT_0_1_1: &[u8] = include_bytes!("../../tests/fixtures/v0_1_1/fanout.wasm");
const FANOUT_0_1_1_MANIFEST: &str = include_str!("../../tests/fixtures/v0_1_1/fanout.toml");

fn contract(server: &Server, name: &str) -> Option<String> {
    server.registry.status().into_iter().find(|s| s.name == name).and_then(|s| s.contract)
}

/// Scores one request; every plugin must have answered.
fn score_ok(addr: &str, id: &str, plugins: usize) {
    let body = format!(
        r#"{{"id":"{id}","ts_ms":{T0},"account":"a","prompt":"Explain entropy in biology, focusing on its history"}}"#
    );
    let resp = ureq::post(&format!("http://{addr}/v1/score")).send_string(&body).unwrap();
    let v: serde_json::Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    let signals = v["verdicts"][0]["signals"].as_array().unwrap();
    let mine: Vec<_> = signals.iter().filter(|s| s["digest"] != "host").collect();
    assert_eq!(mine.len(), plugins, "{v}");
    assert!(mine.iter().all(|s| s["error"].is_null()), "{v}");
}

#[test]
fn a_0_1_plugin_hot_reloads_to_its_0_2_build_and_rolls_back() {
    let plugins = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    vigil_tests::write_plugin(dir, "velocity", VELOCITY_0_1_0, VELOCITY_0_1_0_MANIFEST);
    vigil_tests::write_plugin(dir, "fanout", FANOUT_0_1_1, FANOUT_0_1_1_MANIFEST);
    let tf = "template-fleet";
    vigil_tests::write_plugin(dir, tf, wasm::bundled(tf), wasm::bundled_manifest(tf));
    let server = Server::start(serve_config(state.path()), dir, "127.0.0.1:0").unwrap();
    let addr = server.addr.to_string();
    assert_eq!(contract(&server, "velocity").as_deref(), Some("0.1.0"));
    assert_eq!(contract(&server, "fanout").as_deref(), Some("0.1.1"));
    assert_eq!(contract(&server, tf).as_deref(), Some("0.2.0"));
    score_ok(&addr, "r1", 3);

    // The hot-patch: velocity rebuilt against 0.2.0.
    vigil_tests::write_plugin(dir, "velocity", wasm::bundled("velocity"), wasm::bundled_manifest("velocity"));
    let live = |r: &vigil_runtime::registry::Registry, want: &str| {
        r.status().iter().any(|s| s.name == "velocity" && s.contract.as_deref() == Some(want))
    };
    assert!(server.registry.wait_until(Duration::from_secs(60), |r| live(r, "0.2.0")), "reloaded to 0.2.0");
    score_ok(&addr, "r2", 3);

    // Rolled back through the API: the 0.1.0 build serves again.
    let resp = ureq::post(&format!("http://{addr}/v1/plugins/velocity/rollback"))
        .set("Authorization", "Bearer t0ken")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(contract(&server, "velocity").as_deref(), Some("0.1.0"));
    score_ok(&addr, "r3", 3);
}
