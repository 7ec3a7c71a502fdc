//! Section 6: vigil on NATS JetStream (`vigil serve --source nats://`) with
//! 1, 2 and 3 nodes on this machine, against one `vigil score` of the same
//! simulated log: CPU-seconds summed over every vigil process and
//! nats-server, bytes on the bus, partition balance, and the staleness of
//! the cross-account state.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::progress;

pub struct Sizes {
    /// Days of vigil-sim's default scenario (seed 1).
    pub days: f64,
    pub partitions: u32,
    pub nodes: Vec<usize>,
}

/// CPU seconds (user + system) of a live or not-yet-reaped process.
fn cpu_seconds(pid: u32, tick: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f[11].parse()?, f[12].parse()?);
    Ok((utime + stime) / tick)
}

fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').and_then(|x| x.1.trim_start().chars().next()).unwrap_or('?')
}

fn clock_tick() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Runs `cmd` to the end; its CPU seconds, read before it is reaped.
fn run_measured(mut cmd: Command, tick: f64) -> anyhow::Result<(f64, String)> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let mut err = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    while state(pid) != 'Z' {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu = cpu_seconds(pid, tick)?;
    let status = child.wait()?;
    let stderr = reader.join().unwrap_or_default();
    anyhow::ensure!(status.success(), "{cmd:?} failed: {stderr}");
    Ok((cpu, stderr))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("bound").port()
}

fn get(url: &str) -> anyhow::Result<String> {
    Ok(ureq::get(url).call()?.into_string()?)
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

struct Row {
    nodes: usize,
    wall: f64,
    vigil_cpu: f64,
    nats_cpu: f64,
    publish_cpu: f64,
    /// Stored bytes per stream (requests, verdicts, shared, the rest).
    bus: Vec<(String, f64)>,
    per_node: Vec<f64>,
    lead_s: f64,
    lag_s: f64,
    shared_bytes: f64,
    snapshot_bytes: f64,
}

pub fn run(vigil: &Path, dir: &Path, cache_dir: &Path, s: &Sizes) -> anyhow::Result<String> {
    let tick = clock_tick();
    let dir = dir.join("cluster");
    std::fs::create_dir_all(&dir)?;
    let nats_bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| anyhow::anyhow!("section 6 needs nats-server (apt-get install nats-server)"))?;

    progress!("cluster: simulating {} days of the default scenario", s.days);
    let mut scenario = vigil_sim::Scenario::preset("default", 1).expect("preset");
    scenario.days = s.days;
    let pop = vigil_sim::population(&scenario);
    let log = dir.join("log.ndjson");
    let mut records = 0u64;
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&log)?);
        for r in vigil_sim::Simulator::new(&scenario, &pop) {
            serde_json::to_writer(&mut w, &r)?;
            w.write_all(b"\n")?;
            records += 1;
        }
        w.flush()?;
    }
    let plugins = dir.join("plugins");
    let out = Command::new(vigil).arg("bundled").arg("--out").arg(&plugins).output()?;
    anyhow::ensure!(out.status.success(), "vigil bundled: {}", String::from_utf8_lossy(&out.stderr));
    let vigil_cmd = || {
        let mut c = Command::new(vigil);
        c.env("VIGIL_CACHE_DIR", cache_dir).env_remove("VIGIL_LOG");
        c
    };

    progress!("cluster: one `vigil score` of {records} records");
    let mut single = vigil_cmd();
    single.arg("score").arg("--plugins").arg(&plugins).arg("--input").arg(&log);
    single.args(["--output", "/dev/null", "--quiet"]);
    let started = Instant::now();
    let (single_cpu, _) = run_measured(single, tick)?;
    let single_wall = started.elapsed().as_secs_f64();

    let mut rows = Vec::new();
    for &n in &s.nodes {
        progress!("cluster: {n} node(s)");
        let run_dir = dir.join(format!("n{n}"));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir)?;
        let (port, mon) = (free_port(), free_port());
        let nats = Killed(
            Command::new(&nats_bin)
                .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-m", &mon.to_string(), "-sd"])
                .arg(run_dir.join("js"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let url = format!("nats://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut setup = vigil_cmd();
        setup.args(["cluster", "setup", "--nats", &url, "--partitions", &s.partitions.to_string()]);
        run_measured(setup, tick)?;
        let mut publish = vigil_cmd();
        publish.args(["publish", "--nats", &url, "--input"]).arg(&log);
        let (publish_cpu, _) = run_measured(publish, tick)?;
        let nats_before = cpu_seconds(nats.0.id(), tick)?;

        let started = Instant::now();
        let mut nodes = Vec::new();
        for i in 1..=n {
            let log_path = run_dir.join(format!("node{i}.log"));
            let f = std::fs::File::create(&log_path)?;
            let mut c = vigil_cmd();
            c.arg("serve").arg("--plugins").arg(&plugins).args(["--listen", "127.0.0.1:0", "--state-dir"]);
            c.arg(run_dir.join(format!("state{i}"))).args(["--source", &url, "--node-id", &format!("n{i}")]);
            nodes.push((Killed(c.stdout(f.try_clone()?).stderr(f).spawn()?), log_path));
        }
        let addr = |log: &Path| -> Option<String> {
            let text = std::fs::read_to_string(log).ok()?;
            let rest = text.split("vigil: listening on ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_string())
        };
        let scrape = |nodes: &[(Killed, PathBuf)]| -> Vec<String> {
            nodes
                .iter()
                .map(|(_, l)| addr(l).and_then(|a| get(&format!("http://{a}/metrics")).ok()).unwrap_or_default())
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(3600);
        let bodies = loop {
            let bodies = scrape(&nodes);
            let scored: f64 = bodies.iter().map(|b| metric(b, "vigil_cluster_records_scored_total")).sum();
            if scored >= records as f64 {
                break bodies;
            }
            anyhow::ensure!(Instant::now() < deadline, "{n} nodes: {scored} of {records} scored after an hour");
            std::thread::sleep(Duration::from_millis(100));
        };
        let wall = started.elapsed().as_secs_f64();
        let mut vigil_cpu = 0.0;
        for (p, _) in &nodes {
            vigil_cpu += cpu_seconds(p.0.id(), tick)?;
        }
        let nats_cpu = cpu_seconds(nats.0.id(), tick)? - nats_before;
        let jsz: serde_json::Value = serde_json::from_str(&get(&format!("http://127.0.0.1:{mon}/jsz?streams=true"))?)?;
        let mut bus: Vec<(String, f64)> = Vec::new();
        for acc in jsz["account_details"].as_array().into_iter().flatten() {
            for st in acc["stream_detail"].as_array().into_iter().flatten() {
                let name = st["name"].as_str().unwrap_or("?").to_string();
                bus.push((name, st["state"]["bytes"].as_f64().unwrap_or(0.0)));
            }
        }
        bus.sort_by(|a, b| a.0.cmp(&b.0));
        let sum = |name: &str| bodies.iter().map(|b| metric(b, name)).sum::<f64>();
        let batches = sum("vigil_cluster_batches_total").max(1.0);
        let applied = sum("vigil_cluster_shared_applied_total").max(1.0);
        rows.push(Row {
            nodes: n,
            wall,
            vigil_cpu,
            nats_cpu,
            publish_cpu,
            bus,
            per_node: bodies.iter().map(|b| metric(b, "vigil_cluster_records_scored_total")).collect(),
            lead_s: sum("vigil_cluster_lead_seconds_total") / batches,
            lag_s: if n > 1 { sum("vigil_cluster_shared_lag_seconds_total") / applied } else { 0.0 },
            shared_bytes: sum("vigil_cluster_shared_bytes_total"),
            snapshot_bytes: sum("vigil_cluster_snapshot_bytes_total"),
        });
        drop(nodes);
        drop(nats);
    }
    Ok(markdown(records, s, single_cpu, single_wall, &rows))
}

fn markdown(records: u64, s: &Sizes, single_cpu: f64, single_wall: f64, rows: &[Row]) -> String {
    let per_m = |cpu: f64| cpu * 1e6 / records as f64;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{records} records ({} days of vigil-sim's default scenario, seed 1), {} partitions, the bundled \
         detectors, default settings; nats-server on loopback on the same two cores. CPU is user + system from \
         `/proc` of every vigil node and nats-server while the nodes scored (publishing listed apart: a gateway \
         would do it); the nodes start after the log is on the stream.\n",
        s.days, s.partitions
    );
    let _ = writeln!(
        t,
        "| run | wall s | vigil CPU s | nats-server CPU s | CPU s per 1M records | vs `vigil score` | publish CPU s |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|");
    let _ =
        writeln!(t, "| `vigil score` | {single_wall:.1} | {single_cpu:.1} | - | {:.1} | 1.00 | - |", per_m(single_cpu));
    for r in rows {
        let cpu = r.vigil_cpu + r.nats_cpu;
        let _ = writeln!(
            t,
            "| {} node{} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} |",
            r.nodes,
            if r.nodes == 1 { "" } else { "s" },
            r.wall,
            r.vigil_cpu,
            r.nats_cpu,
            per_m(cpu),
            cpu / single_cpu,
            r.publish_cpu
        );
    }
    let _ = writeln!(
        t,
        "\n| run | bytes on the bus per record (stored, by stream) | shared state published per record | \
         snapshots written per record | records per node (max / mean) | mean lead of a batch over the slowest \
         partition (event time) | mean delay of shared state (wall) |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let bus: Vec<String> =
            r.bus.iter().filter(|(_, b)| *b > 0.0).map(|(n, b)| format!("{n} {:.0}", b / records as f64)).collect();
        let mean = r.per_node.iter().sum::<f64>() / r.per_node.len().max(1) as f64;
        let max = r.per_node.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            t,
            "| {} node{} | {} | {:.0} B | {:.0} B | {:.2} | {:.0} s | {} |",
            r.nodes,
            if r.nodes == 1 { "" } else { "s" },
            bus.join(", "),
            r.shared_bytes / records as f64,
            r.snapshot_bytes / records as f64,
            if mean > 0.0 { max / mean } else { 0.0 },
            r.lead_s,
            if r.nodes > 1 { format!("{:.3} s", r.lag_s) } else { "-".into() },
        );
    }
    t
}
