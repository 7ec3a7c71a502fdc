//! vigil as a guardrail of a real LiteLLM proxy (examples/litellm): LiteLLM
//! is installed from PyPI into a virtual environment from the pinned
//! constraints (an install failure fails this test; it never skips), the
//! real `vigil serve` and `litellm` processes are started, and
//! examples/litellm/e2e.py drives the proxy with the OpenAI client.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Kills the process when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: could not run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// target/litellm-venv with the pinned LiteLLM and OpenAI client; reused
/// while the pins are unchanged.
fn venv() -> PathBuf {
    let dir = repo().join("examples/litellm");
    let venv = repo().join("target/litellm-venv");
    let python = venv.join("bin/python");
    let pins = [dir.join("requirements.txt"), dir.join("constraints.txt")]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    let stamp = venv.join("vigil-pins.txt");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(pins.as_str()) {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).output();
    if !made.is_ok_and(|o| o.status.success()) {
        // No venv module (Debian without python3-venv): virtualenv via pip.
        let _ = std::fs::remove_dir_all(&venv);
        run(Command::new("python3").args(["-m", "pip", "install", "--user", "virtualenv"]), "pip install virtualenv");
        run(Command::new("python3").args(["-m", "virtualenv"]).arg(&venv), "virtualenv");
    }
    eprintln!("installing LiteLLM into {} (pinned; a few minutes the first time)", venv.display());
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q", "-c"])
            .arg(dir.join("constraints.txt"))
            .arg("-r")
            .arg(dir.join("requirements.txt")),
        "pip install litellm[proxy]",
    );
    std::fs::write(&stamp, pins).unwrap();
    venv
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_http(url: &str, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if ureq::get(url).timeout(Duration::from_secs(2)).call().is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before it was ready:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready after 180 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn litellm_proxy_blocks_campaign_accounts_through_vigil() {
    let venv = venv();
    let tmp = tempfile::tempdir().unwrap();
    let (plugins, state) = (tmp.path().join("plugins"), tmp.path().join("state"));
    let vigil_bin = env!("CARGO_BIN_EXE_vigil");
    run(Command::new(vigil_bin).args(["bundled", "--out"]).arg(&plugins), "vigil bundled");

    // vigil serve, requiring LiteLLM's api_key from the example config.
    let vigil_log = tmp.path().join("vigil.log");
    let mut child = Command::new(vigil_bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
        .arg(&plugins)
        .arg("--state-dir")
        .arg(&state)
        .env("VIGIL_ADMIN_TOKEN", "admin-s3cret")
        .env("VIGIL_GUARDRAIL_KEY", "change-me")
        .env("VIGIL_CACHE_DIR", tmp.path().join("cache"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line.split("listening on ").nth(1).and_then(|r| r.split_whitespace().next()).expect(&line).to_string();
    let log_path = vigil_log.clone();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = stderr.read_to_end(&mut rest);
        let _ = std::fs::write(log_path, rest);
    });
    let mut vigil = Running(child);
    let vigil_url = format!("http://{addr}");

    // An unauthenticated caller is refused (LiteLLM sends the key).
    let r = ureq::post(&format!("{vigil_url}/beta/litellm_basic_guardrail_api")).send_string("{}");
    assert!(matches!(r, Err(ureq::Error::Status(401, _))), "guardrail endpoint without x-api-key: {r:?}");

    // The example config, pointed at this vigil.
    let config = std::fs::read_to_string(repo().join("examples/litellm/config.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:8787", &vigil_url);
    let config_path = tmp.path().join("litellm.yaml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let proxy_log = tmp.path().join("litellm.log");
    let proxy = Command::new(venv.join("bin/litellm"))
        .arg("--config")
        .arg(&config_path)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_DONT_SHOW_FEEDBACK_BOX", "true")
        .stdout(std::fs::File::create(&proxy_log).unwrap())
        .stderr(Stdio::from(std::fs::File::options().append(true).open(&proxy_log).unwrap()))
        .spawn()
        .unwrap();
    let mut proxy = Running(proxy);
    let proxy_url = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{proxy_url}/health/liveliness"), &mut proxy.0, "litellm proxy", &proxy_log);
    let pids = (vigil.0.id(), proxy.0.id());

    let out = Command::new(venv.join("bin/python"))
        .arg(repo().join("examples/litellm/e2e.py"))
        .args(["--proxy", &proxy_url, "--vigil", &vigil_url, "--admin-token", "admin-s3cret"])
        .arg("--plugins")
        .arg(&plugins)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    let report = format!(
        "{}\n{}\n--- litellm log (tail) ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tail(&proxy_log, 40)
    );
    assert!(out.status.success(), "e2e.py failed:\n{report}");
    eprintln!("{report}");

    // Neither process restarted for the hot-patch.
    assert!(vigil.0.try_wait().unwrap().is_none(), "vigil exited");
    assert!(proxy.0.try_wait().unwrap().is_none(), "litellm exited");
    assert_eq!((vigil.0.id(), proxy.0.id()), pids);

    // vigil's metrics saw the inline calls, in micro-batches.
    let metrics = ureq::get(&format!("{vigil_url}/metrics")).call().unwrap().into_string().unwrap();
    let blocked = metrics.lines().any(|l| {
        l.starts_with("vigil_guardrail_calls_total{") && l.contains("action=\"BLOCKED\"") && !l.ends_with(" 0")
    });
    assert!(blocked, "{metrics}");
    assert!(metrics.contains("vigil_guardrail_batches_total"), "{metrics}");
}

fn tail(p: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
