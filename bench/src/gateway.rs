//! Section 5, gateway latency (the LiteLLM guardrail): the time vigil adds
//! to each guardrail call at steady open-loop rates, with the bundled
//! detectors, with and without micro-batching. Three `vigil serve`
//! processes run side by side and the load rotates between them in short
//! slices, so machine noise hits all of them. Latency runs from each call's
//! scheduled send time (no coordinated omission) to its answer, over
//! keep-alive HTTP on loopback, from a native load generator.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

const WORDS: &[&str] = &[
    "explain",
    "the",
    "difference",
    "between",
    "a",
    "process",
    "and",
    "thread",
    "in",
    "modern",
    "operating",
    "systems",
    "with",
    "examples",
    "write",
    "function",
    "that",
    "parses",
    "dates",
    "from",
    "log",
    "lines",
    "summarise",
    "this",
    "article",
    "about",
    "climate",
    "policy",
    "for",
    "students",
    "translate",
    "paragraph",
    "into",
    "french",
    "please",
];

/// A LiteLLM call with a ~500-byte prompt from one of 1,000 users.
fn body(i: usize) -> String {
    let mut prompt = String::new();
    let mut x = i as u64 * 2_654_435_761 + 7;
    while prompt.len() < 500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        prompt.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        prompt.push(' ');
    }
    json!({
        "input_type": "request",
        "litellm_call_id": format!("bench-{i}"),
        "texts": [prompt.clone()],
        "structured_messages": [{"role": "user", "content": prompt}],
        "model": "mock-gpt",
        "request_data": {"user_api_key_hash": "h", "user_api_key_end_user_id": format!("user-{}", i % 1000)},
        "request_headers": {"user-agent": "OpenAI/Python 2.54.0", "x-vigil-payment-fingerprint": format!("card-{}", i % 1000)},
        "additional_provider_specific_params": {}
    })
    .to_string()
}

/// A `vigil serve` with the bundled plugins in a temp dir.
struct Server {
    child: Child,
    addr: String,
    _tmp: tempfile::TempDir,
}

impl Server {
    /// `wait_us`: the batch window; `None`: no micro-batching (one call per batch).
    fn start(vigil: &Path, wait_us: Option<u64>) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let plugins = tmp.path().join("plugins");
        std::fs::create_dir_all(&plugins)?;
        for p in vigil_bundle::files() {
            std::fs::write(plugins.join(format!("{}.wasm", p.name)), &p.wasm)?;
            std::fs::write(plugins.join(format!("{}.toml", p.name)), &p.manifest)?;
        }
        // Measure, don't cut off: a long deadline.
        let batching = match wait_us {
            Some(w) => format!("batch_wait_us = {w}"),
            None => "max_batch = 1".to_string(),
        };
        let cfg = tmp.path().join("vigil.toml");
        std::fs::write(
            &cfg,
            format!("[server]\nrescan_interval_s = 0\n[guardrail]\ndeadline_ms = 5000\n{batching}\n"),
        )?;
        let mut child = Command::new(vigil)
            .args(["--config", &cfg.display().to_string(), "serve", "--listen", "127.0.0.1:0"])
            .args([
                "--plugins",
                &plugins.display().to_string(),
                "--state-dir",
                &tmp.path().join("state").display().to_string(),
            ])
            .stderr(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let addr = loop {
            let line = lines.next().ok_or_else(|| anyhow::anyhow!("vigil serve exited before listening"))??;
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap_or("").to_string();
            }
        };
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child, addr, _tmp: tmp })
    }

    /// A counter from its `/metrics`.
    fn counter(&self, name: &str) -> f64 {
        let text = ureq::get(&format!("http://{}/metrics", self.addr)).call().ok().and_then(|r| r.into_string().ok());
        text.unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Slice {
    latencies_ms: Vec<f64>,
    failures: u64,
}

/// Sends `rate` calls/s for `dur` to `addr`, each at its scheduled time.
fn run_slice(addr: &str, rate: f64, dur: Duration, offset: usize, bodies: &[String]) -> Slice {
    let n = (rate * dur.as_secs_f64()) as usize;
    let (tx, rx) = mpsc::channel::<(Instant, usize)>();
    let rx = Arc::new(Mutex::new(rx));
    let results = Arc::new(Mutex::new(Slice { latencies_ms: Vec::with_capacity(n), failures: 0 }));
    let url = format!("http://{addr}/beta/litellm_basic_guardrail_api");
    std::thread::scope(|s| {
        for _ in 0..48 {
            let (rx, results, url) = (rx.clone(), results.clone(), url.clone());
            s.spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
                loop {
                    let Ok((at, i)) = rx.lock().unwrap().recv() else { return };
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let ok = agent
                        .post(&url)
                        .set("content-type", "application/json")
                        .send_string(&bodies[i % bodies.len()])
                        .ok()
                        .and_then(|r| r.into_string().ok())
                        .is_some_and(|b| b.contains("\"action\""));
                    let ms = at.elapsed().as_secs_f64() * 1e3;
                    let mut r = results.lock().unwrap();
                    if ok {
                        r.latencies_ms.push(ms);
                    } else {
                        r.failures += 1;
                    }
                }
            });
        }
        let start = Instant::now() + Duration::from_millis(20);
        for k in 0..n {
            tx.send((start + Duration::from_secs_f64(k as f64 / rate), offset + k)).unwrap();
        }
        drop(tx);
    });
    Arc::try_unwrap(results).ok().unwrap().into_inner().unwrap()
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// What to run: calls/s per rate, rounds of interleaved slices.
pub struct Sizes {
    pub rates: Vec<f64>,
    pub rounds: usize,
    pub slice: Duration,
}

/// The section's markdown tables.
pub fn run(sizes: &Sizes, vigil: &Path) -> anyhow::Result<String> {
    use std::fmt::Write;
    let (rounds, slice) = (sizes.rounds, sizes.slice);
    let bodies: Vec<String> = (0..20_000).map(body).collect();
    let modes: [(&str, Option<u64>); 3] = [
        ("micro-batched, adaptive 1 ms window", Some(1_000)),
        ("micro-batched, no window (the default)", Some(0)),
        ("one call per batch", None),
    ];
    let servers: Vec<(&str, Server)> =
        modes.iter().map(|(name, w)| Ok((*name, Server::start(vigil, *w)?))).collect::<anyhow::Result<_>>()?;
    let mut out = String::new();
    let mut offset = 0;
    for &rate in &sizes.rates {
        // Warm-up: instances, state, connections.
        for (_, s) in &servers {
            run_slice(&s.addr, rate, Duration::from_secs(1), offset, &bodies);
        }
        let counts =
            |s: &Server| (s.counter("vigil_guardrail_batches_total"), s.counter("vigil_guardrail_batched_calls_total"));
        let before: Vec<(f64, f64)> = servers.iter().map(|(_, s)| counts(s)).collect();
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
        let mut failures = vec![0u64; servers.len()];
        for round in 0..rounds {
            // Rotate which mode goes first.
            for j in 0..servers.len() {
                let i = (j + round) % servers.len();
                let r = run_slice(&servers[i].1.addr, rate, slice, offset, &bodies);
                offset += r.latencies_ms.len() + r.failures as usize;
                crate::progress!(
                    "gateway: {rate} calls/s, round {round}, {}: {} calls",
                    servers[i].0,
                    r.latencies_ms.len()
                );
                lat[i].extend(r.latencies_ms);
                failures[i] += r.failures;
            }
        }
        let _ = write!(
            out,
            "\n### {rate:.0} calls/s\n\nOpen loop, {rounds} x {} s slices per mode, interleaved.\n\n\
             | mode | calls | p50 ms | p90 ms | p99 ms | max ms | mean batch | failed |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
            slice.as_secs()
        );
        for (i, (name, s)) in servers.iter().enumerate() {
            let v = &mut lat[i];
            v.sort_by(|a, b| a.total_cmp(b));
            let (b, c) = counts(s);
            let (batches, calls) = (b - before[i].0, c - before[i].1);
            let p = |q| if v.is_empty() { f64::NAN } else { pct(v, q) };
            let _ = writeln!(
                out,
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                v.len(),
                p(0.5),
                p(0.9),
                p(0.99),
                v.last().copied().unwrap_or(f64::NAN),
                calls / batches.max(1.0),
                failures[i]
            );
        }
    }
    Ok(out)
}
