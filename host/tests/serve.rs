//! `vigil serve` under fire: a client scores without a break while the
//! plugin is replaced over and over, good and broken versions alternating.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil::service::Server;
use vigil_runtime::Config;
use vigil_runtime::plugin::files::Fingerprint;
use vigil_runtime::util::sha256_hex;
use vigil_tests::{T0, serve_config, wasm};

fn manifest(config: &str) -> String {
    format!("version = \"0.1.0\"\ngrants = [\"account\"]\n[config]\n{config}\n")
}

/// Waits (on status, with a generous timeout) until the registry has tried
/// exactly these files.
fn wait_tried(server: &Server, wasm: &[u8], manifest: &str) {
    let want = Some(Fingerprint { wasm: sha256_hex(wasm), manifest: sha256_hex(manifest.as_bytes()), sig: None });
    wait_for(server, "counter", want);
}

/// Waits until the registry has tried whatever files `name` has in `dir` now.
fn wait_tried_dir(server: &Server, dir: &Path, name: &str) {
    let files = vigil_runtime::plugin::files::PluginFiles {
        name: name.into(),
        wasm: std::fs::read(dir.join(format!("{name}.wasm"))).unwrap(),
        manifest: std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap(),
        sig: std::fs::read(dir.join(format!("{name}.sig"))).ok(),
    };
    wait_for(server, name, Some(files.fingerprint()));
}

fn wait_for(server: &Server, name: &str, want: Option<Fingerprint>) {
    let reported = server.registry.wait_until(Duration::from_secs(60), |r| r.tried(name) == want);
    assert!(reported, "reload outcome never reported");
}

struct Seen {
    count: u64,
    tag: u32,
    digest: String,
}

fn score_one(addr: &str, i: u64) -> Result<Seen, String> {
    let body = format!(r#"{{"id":"r-{i}","ts_ms":{},"account":"steady"}}"#, T0 + i as i64);
    let resp = ureq::post(&format!("http://{addr}/v1/score")).send_string(&body).map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_str(&resp.into_string().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let sig = &v["verdicts"][0]["signals"][0];
    if sig.get("error").is_some() {
        return Err(format!("plugin error: {sig}"));
    }
    let reason = sig["reason"].as_str().ok_or(format!("no reason in {v}"))?;
    // "count=N vK"
    let (count, tag) = reason.strip_prefix("count=").and_then(|r| r.split_once(" v")).ok_or(reason.to_string())?;
    Ok(Seen {
        count: count.parse().map_err(|_| reason.to_string())?,
        tag: tag.parse().map_err(|_| reason.to_string())?,
        digest: sig["digest"].as_str().unwrap_or("").to_string(),
    })
}

#[test]
fn hot_reload_under_load_never_fails_a_request_or_serves_a_broken_version() {
    let plugins = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    let good = |k: u32| manifest(&format!("tag = \" v{k}\""));
    std::fs::write(dir.join("counter.wasm"), wasm::BEHAVE).unwrap();
    std::fs::write(dir.join("counter.toml"), good(0)).unwrap();
    let server = Server::start(serve_config(state.path()), dir, "127.0.0.1:0").unwrap();
    let addr = server.addr.to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = {
        let (stop, seen, failures, addr) = (stop.clone(), seen.clone(), failures.clone(), addr.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                match score_one(&addr, i) {
                    Ok(s) => seen.lock().unwrap().push(s),
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        })
    };

    let mut live_digests: HashSet<String> = HashSet::new();
    live_digests.insert(server.registry.active("counter").unwrap().plugin.digest.to_string());
    let truncated = &wasm::BEHAVE[..wasm::BEHAVE.len() / 2];
    let broken: [(&[u8], String); 4] = [
        (truncated, good(99)),
        (wasm::BEHAVE, manifest("fail_init = true\ntag = \" v99\"")),
        (wasm::BEHAVE, manifest("behaviour = \"panic\"\ntag = \" v99\"")),
        (wasm::BEHAVE, "version = \"0.1.0\"\nmode = \"loud\"\n".to_string()),
    ];
    let swaps = 52;
    for k in 1..=swaps as u32 {
        let (w, m): (&[u8], String) =
            if k % 2 == 0 { (wasm::BEHAVE, good(k)) } else { broken[(k as usize / 2) % 4].clone() };
        let before = server.registry.active("counter").unwrap().plugin.digest.to_string();
        std::fs::write(dir.join("counter.wasm"), w).unwrap();
        std::fs::write(dir.join("counter.toml"), &m).unwrap();
        wait_tried(&server, w, &m);
        let after = server.registry.active("counter").unwrap().plugin.digest.to_string();
        if k % 2 == 0 {
            assert_ne!(after, before, "good version {k} was not swapped in");
            live_digests.insert(after);
            // The new logic serves from now on: wait until the client sees it.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !seen.lock().unwrap().iter().any(|s| s.tag == k) {
                assert!(Instant::now() < deadline, "version {k} never answered");
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            assert_eq!(after, before, "broken version {k} replaced the running one");
            let status = server.registry.status();
            assert!(status[0].last_error.is_some(), "the failure is visible in status");
        }
    }
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();

    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{} failed requests, first: {:?}", failures.len(), failures.first());
    let seen = seen.lock().unwrap();
    assert!(seen.len() > swaps, "the client kept sending ({} requests)", seen.len());
    for (i, s) in seen.iter().enumerate() {
        assert!(live_digests.contains(&s.digest), "verdict from a version that was never live: {}", s.digest);
        assert_ne!(s.tag, 99, "a broken version served");
        // State continues across versions: one count per request, none lost or doubled.
        assert_eq!(s.count, i as u64 + 1, "counter broke at request {i}");
        if i > 0 {
            assert!(s.tag >= seen[i - 1].tag, "an older version answered after a newer one");
        }
    }
    let loaded = server.metrics.get("vigil_reloads_total", &[("outcome", "loaded")]);
    let failed = server.metrics.get("vigil_reloads_total", &[("outcome", "failed")]);
    // At least one reload per swap. More is possible on a loaded machine:
    // the .wasm and the .toml are two writes, and a debounce window can end
    // between them (that half-written pair is tried, too, and counted).
    assert!(loaded >= 1.0 + swaps as f64 / 2.0 && failed >= swaps as f64 / 2.0, "loaded {loaded}, failed {failed}");
    let last = seen.last().unwrap().count;
    drop(seen);

    // A restart keeps the counters: state was snapshotted on stop.
    server.stop().unwrap();
    let server = Server::start(serve_config(state.path()), dir, "127.0.0.1:0").unwrap();
    let s = score_one(&server.addr.to_string(), 1_000_000).unwrap();
    assert_eq!(s.count, last + 1);
    let audit = std::fs::read_to_string(state.path().join("audit.ndjson")).unwrap();
    assert_eq!(audit.lines().filter(|l| l.contains("\"outcome\":\"failed\"")).count(), swaps / 2);
}

#[test]
fn admin_api_rollback_mode_and_auth() {
    let plugins = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    std::fs::write(dir.join("counter.wasm"), wasm::BEHAVE).unwrap();
    let m1 = manifest("tag = \" v1\"");
    std::fs::write(dir.join("counter.toml"), &m1).unwrap();
    let server = Server::start(serve_config(state.path()), dir, "127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.addr);
    let m2 = manifest("tag = \" v2\"");
    std::fs::write(dir.join("counter.toml"), &m2).unwrap();
    wait_tried(&server, wasm::BEHAVE, &m2);

    let get = |path: &str, token: Option<&str>| {
        let mut r = ureq::get(&format!("{base}{path}"));
        if let Some(t) = token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        match r.call() {
            Ok(resp) => (resp.status(), resp.into_string().unwrap()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let post = |path: &str, body: &str, token: Option<&str>| {
        let mut r = ureq::post(&format!("{base}{path}"));
        if let Some(t) = token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        match r.send_string(body) {
            Ok(resp) => (resp.status(), resp.into_string().unwrap()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(get("/v1/plugins", None).0, 401);
    assert_eq!(get("/v1/plugins", Some("wrong")).0, 401);
    let (code, body) = get("/v1/plugins", Some("t0ken"));
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["plugins"][0]["rollback_available"], true);
    assert_eq!(v["plugins"][0]["state"], "active");

    assert_eq!(post("/v1/plugins/counter/rollback", "", None).0, 401);
    assert_eq!(post("/v1/plugins/nope/rollback", "", Some("t0ken")).0, 404);
    let (code, _) = post("/v1/plugins/counter/rollback", "", Some("t0ken"));
    assert_eq!(code, 200);
    // Ids are unique in the stream, across requests too.
    let rec = |id: &str| format!(r#"{{"id":"{id}","ts_ms":1,"account":"a"}}"#);
    let (_, body) = post("/v1/score", &rec("x1"), None);
    assert!(body.contains(" v1"), "rolled back to v1: {body}");

    assert_eq!(post("/v1/plugins/counter/mode", r#"{"mode":"loud"}"#, Some("t0ken")).0, 400);
    assert_eq!(post("/v1/plugins/counter/mode", r#"{"mode":"monitor"}"#, Some("t0ken")).0, 200);
    let (_, body) = post("/v1/score", &rec("x2"), None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["verdicts"][0]["signals"][0]["mode"], "monitor");
    assert_eq!(v["verdicts"][0]["score"], 0.0, "monitor mode does not count");

    // New files supersede the API's rollback and mode.
    let m3 = manifest("tag = \" v3\"");
    std::fs::write(dir.join("counter.toml"), &m3).unwrap();
    wait_tried(&server, wasm::BEHAVE, &m3);
    let (_, body) = post("/v1/score", &rec("x3"), None);
    assert!(body.contains(" v3") && body.contains("\"enforce\""), "{body}");

    // Bad input: 400 naming record and field, or skipped and reported.
    let two = format!("[{}, {{\"id\":\"y\",\"ts_ms\":\"later\",\"account\":\"a\"}}]", rec("x4"));
    let (code, body) = post("/v1/score", &two, None);
    assert_eq!(code, 400);
    assert!(body.contains("record 1, field `ts_ms`"), "{body}");
    let (code, body) = post("/v1/score?on_bad_input=skip", &two, None);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["verdicts"].as_array().unwrap().len(), 1);
    assert_eq!(v["errors"][0]["index"], 1);
    assert_eq!(v["errors"][0]["field"], "ts_ms");

    let big = "x".repeat(Config::default().server.max_body_bytes + 1);
    assert_eq!(post("/v1/score", &big, None).0, 413);

    let (code, metrics) = get("/metrics", None);
    assert_eq!(code, 200);
    for name in ["vigil_requests_scored_total", "vigil_reloads_total", "vigil_plugin_info", "vigil_decisions_total"] {
        assert!(metrics.contains(name), "{name} missing");
    }
    assert_eq!(get("/healthz", None).0, 200);
    assert_eq!(get("/readyz", None).0, 200);
    let audit = std::fs::read_to_string(state.path().join("audit.ndjson")).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"event\":\"rollback\"") && l.contains("\"token\":\"config\"")));
}

#[test]
fn tampered_signed_plugin_is_refused_and_the_running_version_keeps_serving() {
    let plugins = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = plugins.path();
    let (secret, public) = vigil_runtime::plugin::trust::keygen(&keys.path().join("vendor")).unwrap();
    std::fs::write(dir.join("counter.wasm"), wasm::BEHAVE).unwrap();
    std::fs::write(dir.join("counter.toml"), manifest("tag = \" v1\"")).unwrap();
    vigil_runtime::plugin::trust::sign(&secret, &dir.join("counter.wasm")).unwrap();
    let mut c = serve_config(state.path());
    c.trust.keys = vec![public];
    c.trust.require_signatures = true;
    let server = Server::start(c, dir, "127.0.0.1:0").unwrap();
    let signed = server.registry.active("counter").expect("signed plugin loads").plugin.digest.clone();

    // Widen the grants without the vendor's key.
    let widened = manifest("tag = \" v2\"").replace("grants = [\"account\"]", "grants = [\"account\", \"prompt\"]");
    std::fs::write(dir.join("counter.toml"), &widened).unwrap();
    wait_tried_dir(&server, dir, "counter");
    assert_eq!(server.registry.active("counter").unwrap().plugin.digest, signed, "tampered version went live");
    let status = server.registry.status();
    assert!(status[0].last_error.as_deref().unwrap().contains("signature"), "{:?}", status[0].last_error);
    let s = score_one(&server.addr.to_string(), 1).unwrap();
    assert_eq!((s.tag, s.digest.as_str()), (1, &*signed), "the signed version keeps serving");

    // An unsigned newcomer is refused too.
    std::fs::write(dir.join("intruder.wasm"), wasm::BEHAVE).unwrap();
    std::fs::write(dir.join("intruder.toml"), manifest("")).unwrap();
    wait_tried_dir(&server, dir, "intruder");
    assert!(server.registry.active("intruder").is_none());

    // Signed by the vendor, the change is accepted.
    vigil_runtime::plugin::trust::sign(&secret, &dir.join("counter.wasm")).unwrap();
    wait_tried_dir(&server, dir, "counter");
    assert_ne!(server.registry.active("counter").unwrap().plugin.digest, signed);
}
