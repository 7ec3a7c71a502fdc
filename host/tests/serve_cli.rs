//! The real `vigil serve` binary: start, replace a plugin, inspect, roll
//! back, read metrics, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut r = ureq::get(url);
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    match r.call() {
        Ok(resp) => (resp.status(), resp.into_string().unwrap()),
        Err(ureq::Error::Status(c, resp)) => (c, resp.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

fn plugins(base: &str) -> serde_json::Value {
    serde_json::from_str(&get(&format!("{base}/v1/plugins"), Some("s3cret")).1).unwrap()
}

fn velocity_digest(base: &str) -> String {
    let v = plugins(base);
    v["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "velocity").unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn serve_reload_rollback_metrics_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("plugins");
    let sdir = dir.path().join("state");
    let vigil = env!("CARGO_BIN_EXE_vigil");
    assert!(Command::new(vigil).args(["bundled", "--out", pdir.to_str().unwrap()]).status().unwrap().success());

    let mut child = Command::new(vigil)
        .args(["serve", "--plugins", pdir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--state-dir", sdir.to_str().unwrap()])
        .env("VIGIL_ADMIN_TOKEN", "s3cret")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line.split("listening on ").nth(1).and_then(|r| r.split_whitespace().next()).expect(&line).to_string();
    let base = format!("http://{addr}");

    let first = velocity_digest(&base);
    // An incident hot-patch: a lower budget, manifest only.
    let manifest = pdir.join("velocity.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace("account_requests = 240", "account_requests = 50");
    std::fs::write(&manifest, text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while velocity_digest(&base) == first {
        assert!(Instant::now() < deadline, "the new version never went live");
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = plugins(&base);
    let vel = v["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "velocity").unwrap().clone();
    assert_eq!(vel["rollback_available"], true);
    assert_eq!(vel["state"], "active");

    let resp = ureq::post(&format!("{base}/v1/plugins/velocity/rollback"))
        .set("Authorization", "Bearer s3cret")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(velocity_digest(&base), first);

    let (code, metrics) = get(&format!("{base}/metrics"), None);
    assert_eq!(code, 200);
    assert!(metrics.contains("vigil_reloads_total{plugin=\"velocity\",outcome=\"loaded\"} 2"), "{metrics}");
    assert!(metrics.contains(&format!("digest=\"{first}\"")), "info metric names the active version");
    assert!(metrics.contains("vigil_admin_actions_total{action=\"rollback\"} 1"));

    unsafe {
        libc_kill(child.id() as i32, 15);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM exits 0 after draining: {status:?}");
    assert!(sdir.join("state.bin").exists(), "state was snapshotted on the way out");
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
