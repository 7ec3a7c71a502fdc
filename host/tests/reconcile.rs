//! The reloader converges on the directory, and what an operator did
//! through the API holds as documented: regressions from the red-team
//! trial of commit aa7c79e (items 8 and 10).

use std::time::{Duration, Instant};

use vigil::service::Server;
use vigil_runtime::Config;
use vigil_runtime::plugin::files::Fingerprint;
use vigil_runtime::util::sha256_hex;
use vigil_tests::{T0, serve_config, wasm};

fn manifest(extra: &str) -> String {
    format!("version = \"0.1.0\"\ngrants = [\"account\"]\n{extra}\n")
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (on the registry's changes, not by polling) until `done` holds.
fn wait_registry(server: &Server, what: &str, done: impl FnMut(&vigil_runtime::registry::Registry) -> bool) {
    assert!(server.registry.wait_until(Duration::from_secs(60), done), "{what}: not within 60 s");
}

fn fingerprint(wasm: &[u8], manifest: &str) -> Option<Fingerprint> {
    Some(Fingerprint { wasm: sha256_hex(wasm), manifest: sha256_hex(manifest.as_bytes()), sig: None })
}

fn score(addr: &str, id: &str) -> serde_json::Value {
    let body = format!(r#"{{"id":"{id}","ts_ms":{T0},"account":"a"}}"#);
    let resp = ureq::post(&format!("http://{addr}/v1/score")).send_string(&body).unwrap();
    serde_json::from_str(&resp.into_string().unwrap()).unwrap()
}

fn set_mode(addr: &str, name: &str, mode: &str) {
    ureq::post(&format!("http://{addr}/v1/plugins/{name}/mode"))
        .set("Authorization", "Bearer t0ken")
        .send_string(&format!(r#"{{"mode":"{mode}"}}"#))
        .unwrap();
}

// Item 8: a hot-patch that failed while the instance pool was full was
// never tried again once the pool had room.
#[test]
fn a_patch_that_failed_for_want_of_resources_goes_live_once_they_free() {
    let plugins = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    for i in 0..8 {
        vigil_tests::write_plugin(dir, &format!("p{i}"), wasm::BEHAVE, &manifest(""));
    }
    let mut c = serve_config(state.path());
    c.engine.max_instances = 8; // one instance per plugin: the pool is full
    let server = Server::start(c, dir, "127.0.0.1:0").unwrap();
    assert_eq!(server.registry.snapshot().plugins.len(), 8);

    let patched = manifest("[config]\ntag = \" patched\"");
    std::fs::write(dir.join("p0.toml"), &patched).unwrap();
    let want = fingerprint(wasm::BEHAVE, &patched);
    wait_registry(&server, "the patch is tried", |r| r.tried("p0") == want);
    let status = server.registry.status();
    let p0 = status.iter().find(|s| s.name == "p0").unwrap();
    assert!(p0.last_error.as_deref().is_some_and(|e| e.contains("instantiate")), "{:?}", p0.last_error);

    // Room frees up (another plugin leaves); p0's files are not touched.
    std::fs::remove_file(dir.join("p7.wasm")).unwrap();
    std::fs::remove_file(dir.join("p7.toml")).unwrap();
    wait_registry(&server, "the patch goes live", |r| {
        r.status().iter().any(|s| s.name == "p0" && s.last_error.is_none())
    });
    let v = score(&server.addr.to_string(), "r1");
    let reasons: Vec<&str> =
        v["verdicts"][0]["signals"].as_array().unwrap().iter().filter_map(|s| s["reason"].as_str()).collect();
    assert!(reasons.iter().any(|r| r.ends_with(" patched")), "{reasons:?}");
}

// Item 8: state bounds a manifest set outlived it.
#[test]
fn state_bounds_follow_the_manifest_now_running() {
    let plugins = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    let plain = manifest("");
    vigil_tests::write_plugin(dir, "counter", wasm::BEHAVE, &plain);
    let server = Server::start(serve_config(state.path()), dir, "127.0.0.1:0").unwrap();
    let defaults = Config::default().state;
    let bounds = || server.state.namespace("counter").lock().unwrap().bounds();
    assert_eq!(bounds(), (defaults.max_entries_per_plugin, defaults.max_bytes_per_plugin));

    let small = manifest("[limits]\nstate_entries = 5");
    std::fs::write(dir.join("counter.toml"), &small).unwrap();
    wait_registry(&server, "the small manifest is live", |r| r.tried("counter") == fingerprint(wasm::BEHAVE, &small));
    assert_eq!(bounds().0, 5);
    // Restored: the host's bounds again, without a restart.
    std::fs::write(dir.join("counter.toml"), &plain).unwrap();
    wait_registry(&server, "the plain manifest is live", |r| r.tried("counter") == fingerprint(wasm::BEHAVE, &plain));
    assert_eq!(bounds(), (defaults.max_entries_per_plugin, defaults.max_bytes_per_plugin));
}

// Item 10: a deleted plugin's state was kept forever.
#[test]
fn a_removed_plugins_state_is_dropped_after_the_grace_period() {
    let plugins = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    vigil_tests::write_plugin(dir, "counter", wasm::BEHAVE, &manifest(""));
    vigil_tests::write_plugin(dir, "stays", wasm::BEHAVE, &manifest(""));
    let mut c = serve_config(state.path());
    c.state.snapshot_interval_s = 1;
    c.state.removed_plugin_grace_s = 0;
    let server = Server::start(c, dir, "127.0.0.1:0").unwrap();
    score(&server.addr.to_string(), "r1");
    assert!(!server.state.namespace("counter").lock().unwrap().is_empty());
    std::fs::remove_file(dir.join("counter.wasm")).unwrap();
    std::fs::remove_file(dir.join("counter.toml")).unwrap();
    wait_until("the state is dropped", || !server.state.names().contains(&"counter".to_string()));
    assert!(server.state.names().contains(&"stays".to_string()), "only the removed plugin's state goes");
    server.stop().unwrap();
}

// Item 10: an API mode change was lost on restart (it holds until the
// plugin's files change).
#[test]
fn an_api_mode_change_holds_across_a_restart_until_the_files_change() {
    let plugins = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    vigil_tests::write_plugin(dir, "counter", wasm::BEHAVE, &manifest(""));
    let server = Server::start(serve_config(state.path()), dir, "127.0.0.1:0").unwrap();
    set_mode(&server.addr.to_string(), "counter", "monitor");
    server.stop().unwrap();

    let server = Server::start(serve_config(state.path()), dir, "127.0.0.1:0").unwrap();
    let v = score(&server.addr.to_string(), "r1");
    assert_eq!(v["verdicts"][0]["signals"][0]["mode"], "monitor", "{v}");
    let changed = manifest("[config]\ntag = \" v2\"");
    std::fs::write(dir.join("counter.toml"), &changed).unwrap();
    wait_registry(&server, "the new files load", |r| r.tried("counter") == fingerprint(wasm::BEHAVE, &changed));
    server.stop().unwrap();

    let server = Server::start(serve_config(state.path()), dir, "127.0.0.1:0").unwrap();
    let v = score(&server.addr.to_string(), "r2");
    assert_eq!(v["verdicts"][0]["signals"][0]["mode"], "enforce", "new files superseded it: {v}");
}

// Item 10: the audit log's `new_manifest_sha256` ran the manifest's and the
// signature's digests together.
#[test]
fn the_audit_log_names_each_files_digest_apart() {
    let plugins = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    let (secret, _) = vigil_runtime::plugin::trust::keygen(&keys.path().join("vendor")).unwrap();
    let m = manifest("");
    vigil_tests::write_plugin(dir, "counter", wasm::BEHAVE, &m);
    vigil_runtime::plugin::trust::sign(&secret, &dir.join("counter.wasm")).unwrap();
    let server = Server::start(serve_config(state.path()), dir, "127.0.0.1:0").unwrap();
    server.stop().unwrap();
    let audit = std::fs::read_to_string(state.path().join("audit.ndjson")).unwrap();
    let loaded: serde_json::Value =
        serde_json::from_str(audit.lines().find(|l| l.contains("\"outcome\":\"loaded\"")).unwrap()).unwrap();
    assert_eq!(loaded["new_manifest_sha256"], sha256_hex(m.as_bytes()));
    let sig = std::fs::read(dir.join("counter.sig")).unwrap();
    assert_eq!(loaded["new_sig_sha256"], sha256_hex(&sig));
}
