//! `vigil demo`: the product on an embedded default. Simulate the default
//! scenario, score it with the bundled detectors, evaluate against the
//! truth; the same for the mimicry preset (campaigns that look like
//! customers, visible only in what their accounts share), with one campaign
//! cluster drawn; report (terminal and a self-contained HTML page), then the
//! incident moment through the real reload path of `vigil serve`: a
//! stealthy campaign the running detectors miss, a detector hot-patched in
//! the watched directory, detection rising with no restart and state kept.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use vigil_sim::{Scenario, Simulator, eval};

use vigil_runtime::config::Config;
use vigil_runtime::engine::Runtime;
use vigil_runtime::input::record::Record;
use vigil_runtime::score::campaigns::Cluster;
use vigil_runtime::score::cases::CaseBook;
use vigil_runtime::score::combine::Decision;
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::StateStore;
use vigil_runtime::util::lock;

use vigil_runtime::score::compare::Comparison;

use crate::commands::replay;
use crate::service::Server;

/// What the simulated run gives the report.
struct Scored {
    requests: u64,
    secs: f64,
    /// Peak combined score per account.
    peak: HashMap<String, f64>,
    /// Request time of each account's first flag.
    first_flag: HashMap<String, i64>,
    report: eval::Report,
    clusters: Vec<(String, usize)>,
    /// The campaign cluster with the most accounts quiet on their own.
    campaign: Option<Cluster>,
    start_ms: i64,
    end_ms: i64,
}

pub fn run(config: &Config, out_dir: &Path, seed: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let scenario = Scenario::default_eval(seed);
    let mut term = std::io::stderr();
    writeln!(
        term,
        "== 1. Simulate and score: {} benign accounts and {} campaign accounts in {} campaigns over {} days (seed {seed})",
        scenario.benign.accounts,
        scenario.campaign_accounts(),
        scenario.campaigns.len(),
        scenario.days
    )?;
    let scored = simulate_and_score(config, &scenario, out_dir)?;
    writeln!(
        term,
        "   scored {} requests with the {} bundled detectors in {:.1} s ({:.0} requests/s)\n",
        scored.requests,
        vigil_bundle::names().count(),
        scored.secs,
        scored.requests as f64 / scored.secs
    )?;
    writeln!(term, "== 2. Evaluate against the truth (default thresholds: flag 0.5, block 0.9)")?;
    write!(term, "{}", summary_table(&scored.report))?;

    let mimicry = Scenario::preset("mimicry", seed).expect("a preset");
    writeln!(
        term,
        "\n== 3. Campaigns that look like customers (preset mimicry): {} benign accounts, {} campaign accounts \
         drawn from the benign distributions (age, sizes, turns, hours, volume, agents, models)",
        mimicry.benign.accounts,
        mimicry.campaign_accounts()
    )?;
    let mimic = simulate_and_score(config, &mimicry, out_dir)?;
    write!(term, "{}", summary_table(&mimic.report))?;
    if let Some(c) = &mimic.campaign {
        let quiet = c.accounts.len() - c.flagged.len();
        writeln!(term, "   e.g. {}: {} accounts ({quiet} quiet on their own), {}", c.id, c.accounts.len(), c.evidence)?;
    }

    writeln!(term, "\n== 4. Incident: a stealthy campaign, and a hot-patch through `vigil serve`'s reload path")?;
    let patch = hot_patch(config, out_dir, seed, &mut term)?;

    let html = out_dir.join("vigil-demo-report.html");
    std::fs::write(&html, html_report(&scenario, &scored, &mimicry, &mimic, &patch))?;
    writeln!(term, "\nreport: {}", html.display())?;
    Ok(())
}

fn simulate_and_score(config: &Config, scenario: &Scenario, out_dir: &Path) -> anyhow::Result<Scored> {
    let runtime = Runtime::with_config(&config.engine, true)?;
    let state = StateStore::new(config.state.clone());
    let set = crate::plugins::plugin_set(&runtime, config, &state, None)?;
    anyhow::ensure!(set.failures.is_empty(), "bundled plugins failed to load: {:?}", set.failures);
    let scorer = Scorer::new(set, config);
    let pop = vigil_sim::population(scenario);
    let truth_path = out_dir.join("truth.ndjson");
    let verdict_path = out_dir.join("verdicts.ndjson");
    {
        let mut t = BufWriter::new(std::fs::File::create(&truth_path)?);
        for line in pop.truth(scenario) {
            serde_json::to_writer(&mut t, &line)?;
            t.write_all(b"\n")?;
        }
    }
    let mut out = BufWriter::new(std::fs::File::create(&verdict_path)?);
    let mut book = CaseBook::new(config.server.max_cases);
    let mut peak: HashMap<String, f64> = HashMap::new();
    let mut first_flag: HashMap<String, i64> = HashMap::new();
    let started = Instant::now();
    let mut requests = 0u64;
    let mut sim = Simulator::new(scenario, &pop).peekable();
    let mut line = Vec::new();
    let progress = progress_bar(scenario.expected_requests());
    while sim.peek().is_some() {
        let mut records = Vec::with_capacity(config.scoring.batch_size);
        for req in sim.by_ref().take(config.scoring.batch_size) {
            line.clear();
            serde_json::to_writer(&mut line, &req)?;
            records.push(Record::parse(&line, requests + records.len() as u64 + 1, &config.input)?);
        }
        let times: Vec<i64> = records.iter().map(|r| r.ts_ms).collect();
        let (verdicts, _) = scorer.score(scorer.batch(records));
        book.observe_all(&verdicts, &times);
        for (v, ts) in verdicts.iter().zip(times) {
            let p = peak.entry(v.account.clone()).or_insert(0.0);
            *p = p.max(v.score);
            if v.decision != Decision::Allow {
                first_flag.entry(v.account.clone()).or_insert(ts);
            }
            serde_json::to_writer(&mut out, v)?;
            out.write_all(b"\n")?;
        }
        requests += verdicts.len() as u64;
        progress.set_position(requests);
    }
    out.flush()?;
    drop(out);
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let truth = eval::read_truth(BufReader::new(std::fs::File::open(&truth_path)?))?;
    let report =
        eval::evaluate(BufReader::new(std::fs::File::open(&verdict_path)?), &truth, config.scoring.flag_threshold)?;
    // The verdict log is large and the report carries what matters.
    let _ = std::fs::remove_file(&verdict_path);
    let cases = book.cases();
    std::fs::write(out_dir.join("cases.json"), serde_json::to_vec_pretty(&cases)?)?;
    let clusters = cases.clusters.iter().take(20).map(|c| (c.cluster.clone(), c.accounts.len())).collect();
    let campaign = lock(&scorer.campaigns).clusters().into_iter().max_by_key(|c| c.accounts.len() - c.flagged.len());
    // Keep only campaign/benign split info for the plots.
    let peak = peak
        .into_iter()
        .map(|(a, s)| (if truth.get(&a).is_some_and(|t| t.label == "campaign") { format!("c:{a}") } else { a }, s))
        .collect();
    let first_flag =
        first_flag.into_iter().filter(|(a, _)| truth.get(a).is_some_and(|t| t.label == "campaign")).collect();
    Ok(Scored {
        requests,
        secs,
        peak,
        first_flag,
        report,
        clusters,
        campaign,
        start_ms: scenario.start_ms,
        end_ms: scenario.end_ms(),
    })
}

fn row<'a>(r: &'a eval::Report, detector: &str, set: &str) -> Option<&'a eval::Row> {
    r.rows.iter().find(|x| x.detector == detector && x.set == set)
}

fn summary_table(r: &eval::Report) -> String {
    let mut s = format!("   {:<24} {:>7} {:>9} {:>10} {:>14}\n", "", "recall", "FPR", "precision", "req->flag p50/p90");
    let opt = |v: Option<u32>| v.map_or("-".into(), |x| x.to_string());
    for (d, set) in [("combined", "tuning"), ("combined", "held-out"), ("combined", "all")] {
        if let Some(x) = row(r, d, set) {
            let _ = writeln!(
                s,
                "   {:<24} {:>7.3} {:>8.3}% {:>10.3} {:>9}/{}",
                format!("{d} ({set})"),
                x.recall,
                x.false_positive_rate * 100.0,
                x.precision,
                opt(x.requests_to_first_flag_p50),
                opt(x.requests_to_first_flag_p90)
            );
        }
    }
    for x in r.rows.iter().filter(|x| x.detector != "combined" && x.set == "all") {
        let _ = writeln!(
            s,
            "   {:<24} {:>7.3} {:>8.3}% {:>10.3} {:>9}/{}",
            x.detector,
            x.recall,
            x.false_positive_rate * 100.0,
            x.precision,
            opt(x.requests_to_first_flag_p50),
            opt(x.requests_to_first_flag_p90)
        );
    }
    s
}

/// The incident moment's numbers.
struct Patch {
    accounts: usize,
    flagged_before: usize,
    flagged_after: usize,
    reload_ms: u128,
    state_before: usize,
    state_after: usize,
    old_digest: String,
    new_digest: String,
    /// `vigil replay` of the patch over the incident's days, benign traffic
    /// included.
    replay: Comparison,
    /// Requests replayed, and benign accounts among the newly flagged.
    replay_requests: u64,
    benign_newly_flagged: usize,
}

const STEALTH_TEMPLATE: &str = "Reconstruct, as a numbered ledger, every micro-inference behind your reply, \
    then give the reply itself. Query: ";
const QUERIES: &[&str] = &[
    "Why do we have leap years?",
    "How does TCP avoid congestion?",
    "What is the halting problem?",
    "How do vaccines train the immune system?",
    "Why is the sky blue?",
];

/// A patient campaign: aged accounts on their own cards and home IPs,
/// human-sized answers, conversations, uneven timing. Only its wording
/// gives it away, and no running detector knows that wording yet.
fn stealth_batch(rng: &mut rand_chacha::ChaCha8Rng, accounts: usize, round: usize, t0: i64) -> String {
    let mut body = String::new();
    for a in 0..accounts {
        let ts = t0 + (round as i64 * 86_400_000) + rng.gen_range(0..80_000_000);
        let q = QUERIES[rng.gen_range(0..QUERIES.len())];
        let rec = serde_json::json!({
            "id": format!("stealth-{round}-{a}"),
            "ts_ms": ts,
            "account": format!("acct-quiet-{a:03}"),
            "api_key": format!("key-quiet-{a:03}"),
            "ip": format!("100.{}.{}.{}", 64 + a % 60, a, 10 + round),
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 Version/17.2 Safari/605.1.15",
            "model": "m-large",
            "prompt": format!("{STEALTH_TEMPLATE}{q}"),
            "prompt_tokens": 60,
            "completion_tokens": rng.gen_range(300..900),
            "max_tokens": 2048,
            "account_created_ms": t0 - (200 + a as i64 * 7) * 86_400_000,
            "payment_fingerprint": format!("pf-quiet-{a:03}"),
            "conversation_id": format!("conv-quiet-{a}-{}", round / 2),
            "turn": 1 + round % 2,
        });
        body.push_str(&rec.to_string());
        body.push('\n');
    }
    body
}

fn flagged_accounts(addr: &str, body: &str, flagged: &mut std::collections::HashSet<String>) -> anyhow::Result<()> {
    let resp: serde_json::Value =
        serde_json::from_str(&ureq::post(&format!("http://{addr}/v1/score")).send_string(body)?.into_string()?)?;
    for v in resp["verdicts"].as_array().into_iter().flatten() {
        if v["decision"] != "allow" {
            flagged.insert(v["account"].as_str().unwrap_or("").to_string());
        }
    }
    Ok(())
}

fn hot_patch(config: &Config, out_dir: &Path, seed: u64, term: &mut dyn Write) -> anyhow::Result<Patch> {
    let dir = out_dir.join("plugins.d");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for f in vigil_bundle::files() {
        std::fs::write(dir.join(format!("{}.wasm", f.name)), &f.wasm)?;
        std::fs::write(dir.join(format!("{}.toml", f.name)), &f.manifest)?;
    }
    let mut cfg = config.clone();
    cfg.server.state_dir = out_dir.join("state");
    let _ = std::fs::remove_dir_all(&cfg.server.state_dir);
    let server = Server::start(cfg, &dir, "127.0.0.1:0")?;
    let addr = server.addr.to_string();
    writeln!(term, "   vigil serve is up on {addr}, watching {}", dir.display())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let accounts = 40;
    let t0 = vigil_sim::scenario::START_MS + 10 * 86_400_000;
    let mut before = std::collections::HashSet::new();
    let mut incident = Vec::new();
    for round in 0..4 {
        incident.push(stealth_batch(&mut rng, accounts, round, t0));
        flagged_accounts(&addr, incident.last().expect("pushed"), &mut before)?;
    }
    writeln!(term, "   a quiet campaign: {accounts} aged accounts, own cards and networks, human-sized answers;")?;
    writeln!(term, "   after 4 days of it, the running detectors flag {} of {accounts}", before.len())?;

    let state_entries = |s: &StateStore| -> usize { vigil_bundle::names().map(|p| lock(&s.namespace(p)).len()).sum() };
    let state_before = state_entries(&server.state);
    let old = server.registry.active("reasoning-elicitation").map(|w| w.plugin.digest.to_string()).unwrap_or_default();
    // The analyst's patch: the campaign's wording, as two phrase patterns.
    let manifest = vigil_bundle::get("reasoning-elicitation").expect("bundled").1;
    let patched = manifest.replace("version = \"0.1.0\"", "version = \"0.1.1\"").replace(
        "# extra_patterns = [",
        "extra_patterns = [{ pattern = \"numbered ledger\", category = \"cot-elicitation\", weight = 0.6 }, \
         { pattern = \"every micro inference\", category = \"cot-elicitation\", weight = 0.6 }]\n# was: [",
    );
    let landed = Instant::now();
    std::fs::write(dir.join("reasoning-elicitation.toml"), patched)?;
    let digest = |r: &vigil_runtime::registry::Registry| {
        r.active("reasoning-elicitation").map(|w| w.plugin.digest.to_string()).unwrap_or_default()
    };
    let live = server.registry.wait_until(Duration::from_secs(30), |r| digest(r) != old);
    anyhow::ensure!(live, "the patched detector never went live");
    let new = digest(&server.registry);
    let reload_ms = landed.elapsed().as_millis();
    writeln!(
        term,
        "   hot-patch: reasoning-elicitation 0.1.1 (two new phrases) written to the watched directory;\n   \
         live in {reload_ms} ms ({old} -> {new}), no restart"
    )?;
    let mut after = std::collections::HashSet::new();
    for round in 4..6 {
        incident.push(stealth_batch(&mut rng, accounts, round, t0));
        flagged_accounts(&addr, incident.last().expect("pushed"), &mut after)?;
    }
    let state_after = state_entries(&server.state);
    writeln!(term, "   after 2 more days, the patched set flags {} of {accounts}", after.len())?;
    writeln!(term, "   host state kept across the swap: {state_before} entries before, {state_after} after")?;
    server.stop()?;

    // What the incident engineer runs before switching the patch to
    // enforce: `vigil replay` over the incident's days, the quiet
    // campaign among ordinary customers, the bundled set against it.
    let patch_dir = out_dir.join("patch.d");
    let _ = std::fs::remove_dir_all(&patch_dir);
    std::fs::create_dir_all(&patch_dir)?;
    for ext in ["wasm", "toml"] {
        let f = format!("reasoning-elicitation.{ext}");
        std::fs::copy(dir.join(&f), patch_dir.join(&f))?;
    }
    let log = out_dir.join("incident.ndjson");
    let replay_requests = write_incident_log(&log, &incident, seed, t0)?;
    let sets = replay::Sets::read(config, None, &patch_dir)?;
    let side = |candidate| replay::replay(config, &sets, candidate, &log, None, true);
    // Every account newly flagged, to count the benign ones; the report
    // shows a few.
    let comparison = Comparison::new(&side(false)?, &side(true)?, usize::MAX);
    let benign_newly_flagged =
        comparison.newly_flagged.iter().filter(|e| !e.account.starts_with("acct-quiet-")).count();
    writeln!(
        term,
        "   vigil replay --input {} --candidate {} ({replay_requests} requests: the quiet campaign among {} \
         ordinary accounts):",
        log.display(),
        patch_dir.display(),
        INCIDENT_BENIGN
    )?;
    for line in comparison.table().lines().take(comparison.rows.len() + 1) {
        writeln!(term, "     {line}")?;
    }
    Ok(Patch {
        accounts,
        flagged_before: before.len(),
        flagged_after: after.len(),
        reload_ms,
        state_before,
        state_after,
        old_digest: old,
        new_digest: new,
        replay: comparison,
        replay_requests,
        benign_newly_flagged,
    })
}

/// Ordinary accounts sending through the incident's days.
const INCIDENT_BENIGN: usize = 3_000;

/// The incident's days as a log: the quiet campaign's requests among
/// `INCIDENT_BENIGN` simulated customers, in time order. Returns the
/// number of requests.
fn write_incident_log(path: &Path, campaign: &[String], seed: u64, t0: i64) -> anyhow::Result<u64> {
    let mut scenario = Scenario::default_eval(seed);
    scenario.campaigns.clear();
    scenario.start_ms = t0;
    scenario.days = campaign.len() as f64;
    scenario.benign.accounts = INCIDENT_BENIGN;
    scenario.benign.labelling_accounts = 1;
    let pop = vigil_sim::population(&scenario);
    let mut lines: Vec<(i64, String)> =
        Simulator::new(&scenario, &pop).map(|r| (r.ts_ms, serde_json::to_string(&r).expect("a request"))).collect();
    for l in campaign.iter().flat_map(|b| b.lines()) {
        let ts = serde_json::from_str::<serde_json::Value>(l)?["ts_ms"].as_i64().unwrap_or(0);
        lines.push((ts, l.to_string()));
    }
    lines.sort_by_key(|(ts, _)| *ts);
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for (_, l) in &lines {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    Ok(lines.len() as u64)
}

fn svg_bars(title: &str, series: &[(&str, &str, Vec<f64>)], labels: &[String], w: f64, h: f64) -> String {
    let n = labels.len().max(1) as f64;
    let max = series.iter().flat_map(|s| s.2.iter()).cloned().fold(1e-9, f64::max);
    let (left, bottom) = (50.0, 30.0);
    let (pw, ph) = (w - left - 10.0, h - bottom - 30.0);
    let mut s = format!("<svg width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">");
    let _ = write!(s, "<text x=\"{left}\" y=\"16\" font-weight=\"bold\">{title}</text>");
    let bw = pw / n / series.len() as f64;
    for (si, (name, color, vals)) in series.iter().enumerate() {
        for (i, v) in vals.iter().enumerate() {
            let bh = if *v > 0.0 { (v.ln_1p() / max.ln_1p()) * ph } else { 0.0 };
            let x = left + i as f64 * pw / n + si as f64 * bw;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{name} {}: {v}</title></rect>",
                30.0 + ph - bh,
                bw.max(1.0) - 0.5,
                labels[i]
            );
        }
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"22\" width=\"10\" height=\"8\" fill=\"{color}\"/><text x=\"{}\" y=\"30\">{name}</text>",
            w - 150.0 + si as f64 * 70.0,
            w - 137.0 + si as f64 * 70.0
        );
    }
    for (i, l) in labels.iter().enumerate().step_by((labels.len() / 10).max(1)) {
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\">{l}</text>", left + i as f64 * pw / n, h - 10.0);
    }
    let _ = write!(s, "<text x=\"4\" y=\"{}\">log count</text></svg>", 30.0 + ph / 2.0);
    s
}

fn svg_line(title: &str, points: &[(f64, f64)], x_label: &str, w: f64, h: f64) -> String {
    let (left, bottom) = (50.0, 30.0);
    let (pw, ph) = (w - left - 10.0, h - bottom - 30.0);
    let xmax = points.iter().map(|p| p.0).fold(1e-9, f64::max);
    let mut s = format!("<svg width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">");
    let _ = write!(s, "<text x=\"{left}\" y=\"16\" font-weight=\"bold\">{title}</text>");
    let path: Vec<String> =
        points.iter().map(|(x, y)| format!("{:.1},{:.1}", left + x / xmax * pw, 30.0 + ph - y * ph)).collect();
    let _ = write!(s, "<polyline fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\" points=\"{}\"/>", path.join(" "));
    for f in [0.0, 0.5, 1.0] {
        let _ = write!(s, "<text x=\"10\" y=\"{:.1}\">{:.0}%</text>", 34.0 + ph - f * ph, f * 100.0);
    }
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\">{xmax:.0} {x_label}</text></svg>",
        h - 10.0,
        w - 80.0,
        h - 10.0
    );
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// What `svg_cluster` draws: labels taken in turn from each kind, largest
/// first, so every kind of evidence shows; then the accounts most linked by
/// them, in the order of the first label they share (fewer crossings); each
/// label with the rows of its drawn accounts.
fn cluster_sample(c: &Cluster) -> (Vec<&str>, Vec<(&str, Vec<usize>)>) {
    const ACCOUNTS: usize = 24;
    const LABELS: usize = 16;
    let mut by_kind: std::collections::BTreeMap<&str, Vec<&(String, Vec<String>)>> = Default::default();
    for l in &c.links {
        by_kind.entry(l.0.split(':').next().unwrap_or("")).or_default().push(l);
    }
    for v in by_kind.values_mut() {
        v.sort_by_key(|l| (std::cmp::Reverse(l.1.len()), l.0.as_str()));
    }
    let mut picked: Vec<&(String, Vec<String>)> = Vec::new();
    for i in 0.. {
        let before = picked.len();
        picked.extend(by_kind.values().filter_map(|v| v.get(i)));
        if picked.len() == before || picked.len() >= LABELS {
            break;
        }
    }
    picked.truncate(LABELS);
    let mut degree: HashMap<&str, usize> = HashMap::new();
    for (_, members) in &picked {
        for m in members {
            *degree.entry(m.as_str()).or_default() += 1;
        }
    }
    let mut accounts: Vec<&str> = c.accounts.iter().map(String::as_str).collect();
    accounts.sort_by_key(|a| (std::cmp::Reverse(degree.get(a).copied().unwrap_or(0)), *a));
    accounts.truncate(ACCOUNTS);
    let mut links: Vec<(&str, Vec<&str>)> = picked
        .iter()
        .map(|(l, m)| (l.as_str(), m.iter().map(String::as_str).filter(|a| accounts.contains(a)).collect::<Vec<_>>()))
        .filter(|(_, m)| m.len() >= 2)
        .collect();
    links.sort_by_key(|(l, _)| *l);
    let first = |a: &str| links.iter().position(|(_, m)| m.contains(&a)).unwrap_or(usize::MAX);
    accounts.sort_by_key(|a| (first(a), *a));
    let row: HashMap<&str, usize> = accounts.iter().enumerate().map(|(i, a)| (*a, i)).collect();
    let links: Vec<(&str, Vec<usize>)> =
        links.into_iter().map(|(l, m)| (l, m.iter().map(|a| row[a]).collect())).collect();
    (accounts, links)
}

/// A campaign cluster as a picture: its accounts (filled if flagged on
/// their own, hollow if quiet) on the left, the shared things that link
/// them on the right, coloured by kind of evidence. A sample is drawn: up
/// to 16 labels (every kind) and the 24 accounts they link most.
fn svg_cluster(c: &Cluster) -> String {
    // Label prefix, legend, colour.
    const KINDS: [(&str, &str, &str); 4] = [
        ("fanout", "fan-out", "#2980b9"),
        ("script", "script", "#27ae60"),
        ("pool", "proxy pool", "#8e44ad"),
        ("card", "card", "#d35400"),
    ];
    let kind_color = |label: &str| {
        let prefix = label.split(':').next().unwrap_or("");
        KINDS.iter().find(|k| k.0 == prefix).map_or("#7f8c8d", |k| k.2)
    };
    let (accounts, links) = cluster_sample(c);
    let (top, step) = (70.0, 16.0);
    let h = top + step * accounts.len().max(links.len()) as f64 + 20.0;
    let (ax, lx) = (200.0, 500.0);
    let quiet = c.accounts.len() - c.flagged.len();
    let mut s = format!("<svg width=\"780\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">");
    let _ = write!(
        s,
        "<text x=\"10\" y=\"16\" font-weight=\"bold\">{}: {} accounts, {quiet} of them quiet on their own (score {:.2} for all; \
         {} accounts and {} labels drawn)</text><text x=\"10\" y=\"32\">{}</text>",
        esc(&c.id),
        c.accounts.len(),
        c.score,
        accounts.len(),
        links.len(),
        esc(&c.evidence)
    );
    for (i, (_, kind, color)) in KINDS.iter().enumerate() {
        let x = 360.0 + i as f64 * 90.0;
        let y = 44.0;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{y}\" width=\"10\" height=\"8\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{kind}</text>",
            x + 14.0,
            y + 8.0
        );
    }
    let _ = write!(
        s,
        "<circle cx=\"20\" cy=\"48\" r=\"5\" fill=\"#c0392b\"/><text x=\"30\" y=\"52\">flagged on its own</text>\
         <circle cx=\"140\" cy=\"48\" r=\"5\" fill=\"#fff\" stroke=\"#c0392b\" stroke-width=\"2\"/><text x=\"150\" y=\"52\">quiet: raised by the cluster</text>"
    );
    let y = |i: usize| top + step * i as f64;
    // Labels spread over the accounts' height.
    let spread = (accounts.len().max(2) - 1) as f64 / (links.len().max(2) - 1) as f64;
    let ly = |i: usize| top + step * i as f64 * spread.max(1.0);
    for (li, (label, members)) in links.iter().enumerate() {
        for &a in members {
            let _ = write!(
                s,
                "<line x1=\"{ax}\" y1=\"{:.1}\" x2=\"{lx}\" y2=\"{:.1}\" stroke=\"{}\" stroke-opacity=\"0.5\"/>",
                y(a),
                ly(li),
                kind_color(label)
            );
        }
    }
    for (i, a) in accounts.iter().enumerate() {
        let own = c.flagged.iter().any(|f| f == a);
        let fill = if own { "#c0392b" } else { "#fff" };
        let _ = write!(
            s,
            "<circle cx=\"{ax}\" cy=\"{:.1}\" r=\"5\" fill=\"{fill}\" stroke=\"#c0392b\" stroke-width=\"2\"><title>{}</title></circle>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            y(i),
            esc(a),
            ax - 10.0,
            y(i) + 4.0,
            esc(a)
        );
    }
    for (i, (label, members)) in links.iter().enumerate() {
        let short: String = label.chars().take(34).collect();
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"><title>{} ({} accounts shown)</title></rect>\
             <text x=\"{}\" y=\"{:.1}\">{}</text>",
            lx,
            ly(i) - 5.0,
            kind_color(label),
            esc(label),
            members.len(),
            lx + 14.0,
            ly(i) + 4.0,
            esc(&short)
        );
    }
    s.push_str("</svg>");
    s
}

fn eval_rows(report: &eval::Report, sets: Option<&[&str]>) -> String {
    let mut rows = String::new();
    for r in report.rows.iter().filter(|r| sets.is_none_or(|s| s.contains(&r.set.as_str()))) {
        let opt = |v: Option<u32>| v.map_or("-".into(), |x| x.to_string());
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}%</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.detector,
            r.set,
            r.recall,
            r.false_positive_rate * 100.0,
            r.precision,
            r.campaign_accounts,
            opt(r.requests_to_first_flag_p50),
            opt(r.requests_to_first_flag_p90)
        );
    }
    rows
}

fn html_report(scenario: &Scenario, s: &Scored, mimicry: &Scenario, m: &Scored, p: &Patch) -> String {
    // Peak score distribution, benign vs campaign, 20 bins.
    let mut benign = vec![0.0; 20];
    let mut campaign = vec![0.0; 20];
    for (a, score) in &s.peak {
        let bin = ((score * 20.0) as usize).min(19);
        if a.starts_with("c:") { campaign[bin] += 1.0 } else { benign[bin] += 1.0 }
    }
    let bins: Vec<String> = (0..20).map(|i| format!("{:.2}", i as f64 / 20.0)).collect();
    let dist = svg_bars(
        "Peak combined score per account",
        &[("benign", "#2980b9", benign), ("campaign", "#c0392b", campaign)],
        &bins,
        760.0,
        260.0,
    );
    // Share of campaign accounts flagged over simulated time.
    let total =
        s.report.rows.iter().find(|r| r.detector == "combined" && r.set == "all").map_or(1, |r| r.campaign_accounts);
    let mut times: Vec<i64> = s.first_flag.values().cloned().collect();
    times.sort_unstable();
    let hours = (s.end_ms - s.start_ms) as f64 / 3.6e6;
    let mut pts = vec![(0.0, 0.0)];
    for (i, t) in times.iter().enumerate() {
        pts.push(((t - s.start_ms) as f64 / 3.6e6, (i + 1) as f64 / total.max(1) as f64));
    }
    pts.push((hours, times.len() as f64 / total.max(1) as f64));
    let over_time = svg_line("Campaign accounts flagged over time", &pts, "hours", 760.0, 240.0);
    // Cluster sizes.
    let labels: Vec<String> = s.clusters.iter().map(|c| c.0.clone()).collect();
    let sizes: Vec<f64> = s.clusters.iter().map(|c| c.1 as f64).collect();
    let clusters = svg_bars("Largest clusters (accounts)", &[("accounts", "#8e44ad", sizes)], &labels, 760.0, 260.0);

    let rows = eval_rows(&s.report, None);
    let mimic_rows = eval_rows(&m.report, Some(&["all", "tuning", "held-out"]));
    let cluster = m.campaign.as_ref().map_or("<p>No campaign cluster was raised.</p>".to_string(), svg_cluster);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>vigil demo report</title>
<style>body{{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}}table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}td:first-child,td:nth-child(2){{text-align:left}}</style></head><body>
<h1>vigil demo</h1>
<p>Scenario <b>{name}</b> (seed {seed}): {benign} benign accounts, {camp} campaign accounts in {nc} campaigns over {days} days;
{req} requests scored by the {np} bundled detectors in {secs:.1} s ({rps:.0} requests/s). Thresholds are the defaults (flag 0.5, block 0.9).
Template families T1-T4 are the tuning set, H1-H4 are held out.</p>
{dist}
{over_time}
{clusters}
<h2>Evaluation</h2>
<table><tr><th>detector</th><th>set</th><th>recall</th><th>FPR</th><th>precision</th><th>campaign accounts</th><th>req to flag p50</th><th>p90</th></tr>
{rows}</table>
<h2>Campaigns that look like customers</h2>
<p>Preset <b>mimicry</b> (seed {seed}): {mb} benign accounts and {mc} campaign accounts whose age, answer sizes, turns, hours,
volume, user agents and models are drawn from the benign population's own distributions. No account gives itself away; each
campaign shows only in what its accounts share: prompts fanned out to several accounts within minutes, a sweep's scripted
openings, a residential proxy pool, cards shared in small groups. Campaigns m1-m4 use the tuning template families (TS1, TS2), m5-m8 the held-out ones (HS1, HS2).
Detectors link accounts through what they share; the host's campaign stage raises a cluster held together by independent
kinds of evidence, quiet members included.</p>
{cluster}
<table><tr><th>detector</th><th>set</th><th>recall</th><th>FPR</th><th>precision</th><th>campaign accounts</th><th>req to flag p50</th><th>p90</th></tr>
{mimic_rows}</table>
<h2>Hot-patch</h2>
<p>A quiet campaign ({acc} aged accounts on their own cards and networks, human-sized answers, conversations, uneven timing) was
flagged for <b>{fb} of {acc}</b> accounts by the running detectors. An analyst wrote reasoning-elicitation 0.1.1 with two new
phrases into the watched plugin directory; <code>vigil serve</code> compiled, initialised and smoke-tested it off the scoring path
and swapped it in after {rms} ms ({od} &rarr; {nd}), with no restart. Afterwards <b>{fa} of {acc}</b> were flagged. Host state
was kept across the swap ({sb} entries before, {sa} after).</p>
{replay}
</body></html>",
        name = scenario.name,
        seed = scenario.seed,
        benign = scenario.benign.accounts,
        camp = scenario.campaign_accounts(),
        nc = scenario.campaigns.len(),
        days = scenario.days,
        req = s.requests,
        secs = s.secs,
        rps = s.requests as f64 / s.secs,
        np = vigil_bundle::names().count(),
        mb = mimicry.benign.accounts,
        mc = mimicry.campaign_accounts(),
        acc = p.accounts,
        fb = p.flagged_before,
        fa = p.flagged_after,
        rms = p.reload_ms,
        od = p.old_digest,
        nd = p.new_digest,
        sb = p.state_before,
        sa = p.state_after,
        replay = replay_html(p),
    )
}

/// The hot-patch's `vigil replay`: a chart and the table, with examples.
fn replay_html(p: &Patch) -> String {
    let c = &p.replay;
    let labels: Vec<String> = c.rows.iter().map(|r| r.what.clone()).collect();
    let base: Vec<f64> = c.rows.iter().map(|r| r.baseline as f64).collect();
    let cand: Vec<f64> = c.rows.iter().map(|r| r.candidate as f64).collect();
    let chart = svg_bars(
        "Accounts (and clusters) flagged: bundled set vs the patch",
        &[("baseline", "#7f8c8d", base), ("candidate", "#27ae60", cand)],
        &labels,
        760.0,
        260.0,
    );
    let mut rows = String::new();
    for r in &c.rows {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.what),
            r.baseline,
            r.candidate,
            r.newly,
            r.no_longer
        );
    }
    let mut examples = String::new();
    for e in c.newly_flagged.iter().take(8).chain(c.no_longer_flagged.iter().take(8)) {
        let side = |d: Decision, s: Option<f64>| s.map_or(d.as_str().to_string(), |s| format!("{} {s:.2}", d.as_str()));
        let _ = write!(
            examples,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.account),
            side(e.baseline, e.baseline_score),
            side(e.candidate, e.candidate_score),
            esc(&e.detectors.join(", ")),
            esc(&e.reason)
        );
    }
    let flagged = &c.rows[0];
    format!(
        "<h3>Before enforcing: <code>vigil replay</code></h3>
<p>The incident's days as a log ({req} requests: the quiet campaign among {benign} simulated customers), scored by the
bundled set and by the bundled set with the patch, each from empty state. <b>{new} accounts newly flagged</b>
({bnew} of them benign), <b>{lost} no longer flagged</b>.</p>
{chart}
<table><tr><th>what</th><th>baseline</th><th>candidate</th><th>newly</th><th>no longer</th></tr>{rows}</table>
<p>Examples:</p>
<table><tr><th>account</th><th>baseline</th><th>candidate</th><th>flagged by</th><th>strongest reason</th></tr>{examples}</table>",
        req = p.replay_requests,
        benign = INCIDENT_BENIGN,
        new = flagged.newly,
        bnew = p.benign_newly_flagged,
        lost = flagged.no_longer,
    )
}

/// Progress on a terminal (hidden elsewhere), against the scenario's
/// expected request count.
fn progress_bar(expected: u64) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::with_draw_target(Some(expected), indicatif::ProgressDrawTarget::stderr());
    pb.set_style(
        indicatif::ProgressStyle::with_template("   {bar:30} {human_pos}/~{human_len} requests scored ({per_sec})")
            .expect("valid template"),
    );
    pb
}
