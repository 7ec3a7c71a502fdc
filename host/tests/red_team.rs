//! Regressions from the red-team trial of commit aa7c79e, against the real
//! binary: each test names the item it pins and failed on that commit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{text, vigil};

const T0: i64 = 1_760_000_000_000;

/// A running `vigil serve`: its address, and everything it writes to
/// stderr (drained on a thread, so a chatty server never blocks on a full
/// pipe).
struct Served {
    child: Child,
    addr: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    /// SIGTERM, then the exit status and all of stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        sigterm(&self.child);
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "vigil serve still running 30 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        // The drain thread ends with the pipe.
        std::thread::sleep(Duration::from_millis(100));
        let err = self.stderr.lock().unwrap().clone();
        (status, err)
    }
}

impl Drop for Served {
    // A failed test leaves no server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vigil serve` on a fresh state dir with the bundled plugins.
fn serve(dir: &Path, config: &str) -> Served {
    let pdir = dir.join("plugins");
    if !pdir.exists() {
        assert!(vigil(&["bundled", "--out", pdir.to_str().unwrap()], "").status.success());
    }
    let cfg = dir.join("vigil.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["--config", cfg.to_str().unwrap(), "serve", "--plugins", pdir.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--state-dir", dir.join("state").to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let (pipe, log) = (child.stderr.take().unwrap(), stderr.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if line.contains("listening on ") {
                let _ = tx.send(line.clone());
            }
            log.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(120)).expect("vigil serve never said it was listening");
    let addr = line.split("listening on ").nth(1).and_then(|r| r.split_whitespace().next()).expect(&line).to_string();
    Served { child, addr, stderr }
}

fn sigterm(child: &Child) {
    // SAFETY: signalling our own child.
    unsafe { kill(child.id() as i32, 15) };
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    match ureq::post(&format!("http://{addr}{path}")).send_string(body) {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

fn rec(id: &str, ts: i64, account: &str, extra: &str) -> String {
    format!(r#"{{"id":"{id}","ts_ms":{ts},"account":"{account}"{extra}}}"#)
}

// 1. A line holding two records kept the first and dropped the second, even
// under --on-bad-input fail; the HTTP API answered 200 with no error.
#[test]
fn item1_two_records_on_a_line_are_bad_input_not_a_silent_drop() {
    let line = format!("{} {}\n", rec("t4", T0, "a", ""), rec("t5", T0, "b", ""));
    let out = vigil(&["score", "--on-bad-input", "fail"], &line);
    assert!(!out.status.success(), "exit status must say the run failed");
    assert!(text(&out.stderr).contains("line 1: more than one JSON value on the line"), "{}", text(&out.stderr));
    let cr = format!("{}\r{}\n", rec("t6", T0, "a", ""), rec("t7", T0, "b", ""));
    let out = vigil(&["score"], &format!("{}\n{cr}", rec("t8", T0, "c", "")));
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("1 bad lines skipped"), "{}", text(&out.stderr));

    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "");
    let addr = server.addr.clone();
    let (code, body) = post(&addr, "/v1/score", &line);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("exactly one record"), "{body}");
    let (code, body) = post(&addr, "/v1/score?on_bad_input=skip", &line);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errors"].as_array().unwrap().len(), 1, "the dropped record is reported: {body}");
    assert!(server.stop().0.success());
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024
}

// 2. A 16 MB body of `[1,1,1,...]` took 3.8 GB and 19 s, and /healthz
// waited behind it.
#[test]
fn item2_a_body_of_junk_costs_bounded_memory_and_does_not_stall_health() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "");
    let addr = server.addr.clone();
    let junk = format!("[{}1]", "1,".repeat((16 << 20) / 2 - 2));
    let senders: Vec<_> = (0..3)
        .map(|_| {
            let (addr, junk) = (addr.clone(), junk.clone());
            std::thread::spawn(move || post(&addr, "/v1/score?on_bad_input=skip", &junk))
        })
        .collect();
    // Health answers while they are in flight (it waited 27 s before).
    let t = Instant::now();
    let health = ureq::get(&format!("http://{addr}/healthz")).call().unwrap();
    assert_eq!(health.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(5), "healthz took {:?}", t.elapsed());
    for s in senders {
        let (code, body) = s.join().unwrap();
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("more than 1000 bad records"), "{body}");
    }
    // Three 16 MB bodies in flight at once: well under a gigabyte (one
    // took 3.8 GB before).
    let peak = peak_rss_mib(server.child.id());
    assert!(peak < 1024, "peak RSS {peak} MiB");
    assert!(server.stop().0.success());
}

/// Reads from a connection the server should close: true on EOF (or a
/// reset), false if it is still open after `wait`.
fn closed_by_server(c: &mut TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).unwrap();
    match c.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

// 3. No connection limit or timeouts: idle connections piled up until
// accept failed; a client sending only headers blocked SIGTERM for good.
// (Defaults throughout: 1000 connections, 10 s header timeout, 10 s grace.)
#[test]
fn item3_idle_and_stuck_connections_are_bounded_and_shutdown_does_not_wait_forever() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "");
    let addr = server.addr.clone();

    // Over the limit: closed at once.
    let mut idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(&addr).unwrap();
    assert!(closed_by_server(&mut extra, Duration::from_secs(5)), "a connection over the limit is closed");
    // Idle ones are closed after the header timeout; clients get in again.
    assert!(closed_by_server(&mut idle[0], Duration::from_secs(30)), "an idle connection is closed");
    drop(idle);
    assert_eq!(ureq::get(&format!("http://{addr}/healthz")).call().unwrap().status(), 200);
    let metrics = ureq::get(&format!("http://{addr}/metrics")).call().unwrap().into_string().unwrap();
    assert!(metrics.contains("\nvigil_http_connections_refused_total "), "the refusal is counted and shown");

    // Headers promising a body that never comes, then SIGTERM: the server
    // stops waiting after the grace period, saves state and exits 0.
    let mut stuck = TcpStream::connect(&addr).unwrap();
    write!(stuck, "POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (status, err) = server.stop();
    assert!(status.success(), "{err}");
    assert!(dir.path().join("state/state.bin").exists(), "state saved on the way out");
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on this process.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

// 4. Plugin files were read with no type or size check: a FIFO wedged
// loading for good, a link to /dev/zero read gigabytes, a link to a file
// outside the directory put its first line into the API and logs.
#[test]
fn item4_plugin_files_are_regular_files_inside_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plugins");
    assert!(vigil(&["bundled", "--out", p.to_str().unwrap()], "").status.success());
    let fifo = p.join("x.wasm");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    std::fs::write(p.join("x.toml"), "version = \"1\"\n").unwrap();
    std::os::unix::fs::symlink("/dev/zero", p.join("z.wasm")).unwrap();
    std::fs::write(p.join("z.toml"), "version = \"1\"\n").unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET password hunter2\n").unwrap();
    std::fs::copy(p.join("velocity.wasm"), p.join("leak.wasm")).unwrap();
    std::os::unix::fs::symlink(&secret, p.join("leak.toml")).unwrap();

    let check = |name: &str| {
        let out = vigil(&["check", p.join(name).to_str().unwrap()], "");
        assert!(!out.status.success());
        text(&out.stdout) + &text(&out.stderr)
    };
    let out = check("x.wasm");
    assert!(out.contains("x.wasm is not a regular file"), "{out}");
    let out = check("z.wasm");
    assert!(out.contains("z.wasm is a link that leads out of the plugin directory"), "{out}");
    let out = check("leak.wasm");
    assert!(out.contains("leak.toml is a link that leads out") && !out.contains("TOP-SECRET"), "{out}");

    // Loading the directory: each is refused by name, the rest load.
    let input = rec("r1", T0, "a", "") + "\n";
    let out = vigil(&["score", "--allow-partial", "--plugins", p.to_str().unwrap()], &input);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("plugin x not loaded: load: x.wasm is not a regular file"), "{err}");
    assert!(!err.contains("TOP-SECRET"), "{err}");

    // Allowed out of the directory, /dev/zero is still not a regular file.
    let cfg = dir.path().join("links.toml");
    std::fs::write(&cfg, "[plugin_files]\nfollow_links_outside = true\n").unwrap();
    let out = vigil(&["--config", cfg.to_str().unwrap(), "check", p.join("z.wasm").to_str().unwrap()], "");
    assert!(text(&out.stdout).contains("z.wasm is not a regular file"), "{}", text(&out.stdout));
}

/// The bundled plugins in `dir`, each signed with `key` by `vigil sign`.
fn signed_bundled(dir: &Path, key: &Path) {
    assert!(vigil(&["bundled", "--out", dir.to_str().unwrap()], "").status.success());
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "wasm") {
            let out = vigil(&["sign", "--key", key.to_str().unwrap(), p.to_str().unwrap()], "");
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    }
}

// 5. A signature did not bind the plugin's name: velocity's signed files
// copied over reasoning-elicitation's names verified and went live.
#[test]
fn item5_signed_files_cannot_take_another_plugins_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    assert!(vigil(&["keygen", &p("vendor")], "").status.success());
    signed_bundled(&d.join("plugins"), &d.join("vendor.key"));
    std::fs::write(
        d.join("vigil.toml"),
        format!("[trust]\nkeys = [{:?}]\nrequire_signatures = true\n", p("vendor.pub")),
    )
    .unwrap();
    for ext in ["wasm", "toml", "sig"] {
        std::fs::copy(
            d.join(format!("plugins/velocity.{ext}")),
            d.join(format!("plugins/reasoning-elicitation.{ext}")),
        )
        .unwrap();
    }
    let out = vigil(&["--config", &p("vigil.toml"), "check", &p("plugins/reasoning-elicitation.wasm")], "");
    assert!(!out.status.success(), "velocity's signed files took reasoning-elicitation's name");
    assert!(text(&out.stdout).contains("signed for plugin \"velocity\""), "{}", text(&out.stdout));
    let out = vigil(&["--config", &p("vigil.toml"), "check", &p("plugins/velocity.wasm")], "");
    assert!(out.status.success(), "{}", text(&out.stdout));
}

fn verdict_scores(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let vel = v["signals"].as_array().unwrap().iter().find(|s| s["plugin"] == "velocity").unwrap().clone();
            (v["id"].as_str().unwrap().to_string(), vel["score"].as_f64().unwrap())
        })
        .collect()
}

// 6. One record at 9e18 (or in microseconds) blinded velocity on its card
// for thousands of requests.
#[test]
fn item6_a_wild_timestamp_is_bad_input_not_state() {
    // One young account, 600 requests in under an hour: over velocity's
    // budget of 240 an hour.
    let lines: Vec<String> = (0..600)
        .map(|i| {
            let extra = format!(r#","payment_fingerprint":"card","account_created_ms":{}"#, T0 - 86_400_000);
            rec(&format!("r{i}"), T0 + i * 5_000, "busy", &extra)
        })
        .collect();
    let clean = vigil(&["score"], &(lines.join("\n") + "\n"));
    assert!(clean.status.success());
    let clean = verdict_scores(&text(&clean.stdout));
    assert!(clean.iter().any(|(_, s)| *s > 0.3), "velocity fires on the clean log");

    for wild in [9_000_000_000_000_000_000i64, T0 * 1000] {
        let mut poisoned = lines.clone();
        poisoned.insert(100, rec("wild", wild, "busy", r#","payment_fingerprint":"card""#));
        let out = vigil(&["score"], &(poisoned.join("\n") + "\n"));
        assert!(out.status.success());
        assert!(text(&out.stderr).contains("line 101, field `ts_ms`"), "{}", text(&out.stderr));
        assert_eq!(verdict_scores(&text(&out.stdout)), clean, "the wild record changed nothing");
    }
}

// 7. [limits] in the config were only defaults: any manifest could give
// itself an hour per batch and 4 GiB.
#[test]
fn item7_a_manifest_cannot_exceed_the_operators_ceilings() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plugins");
    assert!(vigil(&["bundled", "--out", p.to_str().unwrap()], "").status.success());
    let m = p.join("velocity.toml");
    let greedy = std::fs::read_to_string(&m)
        .unwrap()
        .replace("time_per_batch_ms = 2000", "time_per_batch_ms = 3600000")
        .replace("memory_mb = 64", "memory_mb = 4096");
    std::fs::write(&m, greedy).unwrap();
    let out = vigil(&["check", p.join("velocity.wasm").to_str().unwrap()], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("time_per_batch_ms = 3600000 is over the operator's ceiling"),
        "{}",
        text(&out.stdout)
    );
    // The operator may raise the ceiling.
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(&cfg, "[ceilings]\ntime_per_batch_ms = 3600000\nmemory_mb = 4096\n").unwrap();
    let out = vigil(&["--config", cfg.to_str().unwrap(), "check", p.join("velocity.wasm").to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stdout));
}

// 10. Smaller items, each against the binary.
#[test]
fn item10_duplicates_across_batches_are_caught() {
    let input: Vec<String> = (0..6).map(|i| rec(&format!("r{}", i % 5), T0 + i, "a", "")).collect();
    let out = vigil(&["score", "--batch-size", "2"], &(input.join("\n") + "\n"));
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("line 6, field `id`: duplicate id \"r0\" (first at line 1)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).lines().count(), 5);
}

#[test]
fn item10_a_byte_order_mark_does_not_cost_the_first_record() {
    let out = vigil(&["score"], &format!("\u{feff}{}\n", rec("r1", T0, "a", "")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1, "{}", text(&out.stderr));
}

#[test]
fn item10_trust_key_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    assert!(vigil(&["keygen", &p("vendor")], "").status.success());
    signed_bundled(&d.join("plugins"), &d.join("vendor.key"));
    std::fs::write(d.join("vigil.toml"), "[trust]\nkeys = [\"vendor.pub\"]\nrequire_signatures = true\n").unwrap();
    // Run from elsewhere: the key is found next to the config.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir("/")
        .args(["--config", &p("vigil.toml"), "check", &p("plugins/velocity.wasm")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("signed by trusted key vendor"));
}

#[test]
fn item10_state_dir_errors_name_the_path_and_a_failed_final_save_fails_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    // Something that is not a file where the audit log goes.
    std::fs::create_dir_all(dir.path().join("state/audit.ndjson")).unwrap();
    let pdir = dir.path().join("plugins");
    assert!(vigil(&["bundled", "--out", pdir.to_str().unwrap()], "").status.success());
    let state = dir.path().join("state");
    let out = vigil(&["serve", "--plugins", pdir.to_str().unwrap(), "--state-dir", state.to_str().unwrap()], "");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("audit.ndjson"), "{}", text(&out.stderr));
    std::fs::remove_dir(state.join("audit.ndjson")).unwrap();

    let server = serve(dir.path(), "");
    // The snapshot cannot be written (a non-empty directory is in the way).
    std::fs::create_dir_all(state.join("state.bin/blocked")).unwrap();
    let (status, err) = server.stop();
    assert!(!status.success(), "a failed final save must not exit 0");
    assert!(err.contains("state.bin"), "{err}");
}
