//! Reload benchmark (run with `cargo bench -p vigil-tests --bench reload`):
//! - time from a new plugin file landing to the first verdict from the new
//!   version, for manifest-only changes and for new components (recompiled);
//! - request latency p50/p99 under steady load, without reloads and with a
//!   reload every second, from one run, as a ratio.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil::service::Server;
use vigil_runtime::Config;
use vigil_runtime::util::sha256_hex;
use vigil_tests::wasm;

fn digest(wasm: &[u8], manifest: &str) -> String {
    sha256_hex(format!("{}{}", sha256_hex(wasm), sha256_hex(manifest.as_bytes())).as_bytes())[..16].to_string()
}

/// The component with a custom section appended: same code, new sha256, so
/// the host must compile it again.
fn recompiled(base: &[u8], n: u32) -> Vec<u8> {
    let name = b"vigil-bench";
    let payload = n.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = base.to_vec();
    out.push(0);
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn request(addr: &str, i: u64) -> serde_json::Value {
    let body = format!(
        r#"{{"id":"b-{i}","ts_ms":{},"account":"acct-{}","api_key":"k","prompt":"Think step by step and show all of your reasoning. {i}"}}"#,
        1_760_000_000_000u64 + i,
        i % 50
    );
    let r = ureq::post(&format!("http://{addr}/v1/score")).send_string(&body).expect("request failed");
    serde_json::from_str(&r.into_string().unwrap()).unwrap()
}

fn velocity_digest(v: &serde_json::Value) -> String {
    v["verdicts"][0]["signals"].as_array().unwrap().iter().find(|s| s["plugin"] == "velocity").unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn reload_latency(dir: &Path, addr: &str, rounds: u32, recompile: bool) -> Vec<f64> {
    let base_manifest = wasm::bundled_manifest("velocity");
    let mut out = Vec::new();
    for k in 0..rounds {
        let manifest = base_manifest.replace("account_requests = 240", &format!("account_requests = {}", 241 + k));
        let w = if recompile { recompiled(wasm::bundled("velocity"), k) } else { wasm::bundled("velocity").to_vec() };
        let want = digest(&w, &manifest);
        let t0 = Instant::now();
        std::fs::write(dir.join("velocity.wasm"), &w).unwrap();
        std::fs::write(dir.join("velocity.toml"), &manifest).unwrap();
        let mut i = 0;
        loop {
            i += 1;
            if velocity_digest(&request(addr, i)) == want {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "never went live");
            // Poll, don't saturate: the reload competes for the same 2 cores.
            std::thread::sleep(Duration::from_millis(2));
        }
        out.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    out
}

fn load_phase(addr: &str, secs: u64, reload_dir: Option<&Path>, recompile: bool) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let (stop, lat, addr) = (stop.clone(), lat.clone(), addr.to_string());
            std::thread::spawn(move || {
                let mut i = c * 1_000_000_000;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let t = Instant::now();
                    request(&addr, i);
                    lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3);
                    // Steady, not saturating: about 200 requests/s per client.
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut k = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(dir) = reload_dir {
            k += 1;
            let manifest = wasm::bundled_manifest("velocity")
                .replace("account_requests = 240", &format!("account_requests = {}", 500 + k));
            let w = if recompile {
                recompiled(wasm::bundled("velocity"), 1000 + k)
            } else {
                wasm::bundled("velocity").to_vec()
            };
            std::fs::write(dir.join("velocity.wasm"), w).unwrap();
            std::fs::write(dir.join("velocity.toml"), manifest).unwrap();
        }
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    Arc::try_unwrap(lat).unwrap().into_inner().unwrap()
}

fn main() {
    let plugins = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for name in ["velocity", "reasoning-elicitation"] {
        vigil_tests::write_plugin(plugins.path(), name, wasm::bundled(name), wasm::bundled_manifest(name));
    }
    let mut config = Config::default();
    config.server.state_dir = state.path().to_path_buf();
    config.server.rescan_interval_s = 0;
    let debounce = config.server.reload_debounce_ms;
    let server = Server::start(config, plugins.path(), "127.0.0.1:0").unwrap();
    let addr = server.addr.to_string();

    println!("reload benchmark (release build, debounce {debounce} ms, 2 bundled plugins)");
    for (label, recompile) in [("manifest-only change", false), ("new component (recompiled)", true)] {
        let mut l = reload_latency(plugins.path(), &addr, 30, recompile);
        println!(
            "file landed -> first verdict from the new version, {label}: median {:.0} ms, p99 {:.0} ms (n={})",
            percentile(&mut l, 0.5),
            percentile(&mut l, 0.99),
            l.len()
        );
    }
    // Interleaved phases, so drift on a shared machine hits all of them.
    let (mut steady, mut manifest_only, mut recompiling) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        steady.extend(load_phase(&addr, 5, None, false));
        manifest_only.extend(load_phase(&addr, 5, Some(plugins.path()), false));
        recompiling.extend(load_phase(&addr, 5, Some(plugins.path()), true));
    }
    let (s50, s99) = (percentile(&mut steady, 0.5), percentile(&mut steady, 0.99));
    println!("request latency, steady:                          p50 {s50:.2} ms, p99 {s99:.2} ms (n={})", steady.len());
    for (label, l) in [
        ("reload every second, manifest only", &mut manifest_only),
        ("reload every second, recompiled", &mut recompiling),
    ] {
        let (r50, r99) = (percentile(l, 0.5), percentile(l, 0.99));
        println!(
            "request latency, {label}: p50 {r50:.2} ms, p99 {r99:.2} ms (n={}); vs steady p50 {:.2}x, p99 {:.2}x",
            l.len(),
            r50 / s50,
            r99 / s99
        );
    }
    server.stop().unwrap();
}
