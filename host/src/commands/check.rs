//! `vigil check PLUGIN.wasm`: is this a plugin vigil can run, and if not,
//! what exactly is wrong. Each step prints `ok` or `FAIL` with the reason;
//! the first failure ends the check.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use vigil_runtime::config::Config;
use vigil_runtime::engine::worker::{PluginVersion, Worker};
use vigil_runtime::engine::{Contract, Runtime};
use vigil_runtime::input::record::Record;
use vigil_runtime::plugin::files::{read_plugin, valid_name};
use vigil_runtime::plugin::smoke::smoke_records;
use vigil_runtime::registry::load::PluginSet;
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::StateStore;

pub fn run(config: &Config, plugin: &Path) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    match check(plugin, config, &mut out)? {
        Ok(()) => {
            writeln!(out, "{} is a valid vigil plugin", plugin.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            writeln!(out, "FAIL  {why}")?;
            eprintln!("vigil: {} is not a valid vigil plugin (see above)", plugin.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// Checks a plugin file and its manifest, printing each step that passes;
/// the inner `Err` says why the first one that failed did.
pub fn check(path: &Path, config: &Config, out: &mut dyn Write) -> std::io::Result<Result<(), String>> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
        return Ok(Err(format!("{}: expected a NAME.wasm file", path.display())));
    }
    if !valid_name(&name) {
        return Ok(Err(format!("{name:?}: plugin names are letters, digits, '-' and '_' (at most 64)")));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let failed = |e: vigil_runtime::PluginError| format!("{}: {}", e.kind, e.message);
    let files = match read_plugin(dir, &name, &config.plugin_files) {
        Ok(f) => f,
        Err(e) => return Ok(Err(failed(e))),
    };
    writeln!(out, "ok    read {} ({} bytes)", path.display(), files.wasm.len())?;
    let trust = match crate::plugins::trust(config) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e.to_string())),
    };
    match trust.check(&name, Some(dir), &files.wasm, files.manifest.as_bytes(), files.sig.as_deref()) {
        Ok(Some(signer)) if signer == "built-in" => {
            writeln!(out, "ok    built into this vigil binary (trusted as built)")?
        }
        Ok(Some(signer)) => writeln!(out, "ok    signed by trusted key {signer}")?,
        Ok(None) => writeln!(out, "ok    unsigned (signatures are not required here)")?,
        Err(e) => return Ok(Err(failed(e))),
    }
    let runtime = Runtime::with_config(&config.engine, true).map_err(std::io::Error::other)?;
    let linked = match runtime.prepare(&files.wasm) {
        Ok(l) => l,
        Err(m) => return Ok(Err(format!("load: {m}"))),
    };
    let sha = vigil_runtime::util::sha256_hex(&files.wasm);
    let load = |manifest: &str| {
        let state = StateStore::new(config.state.clone());
        let ns = state.namespace(&name);
        PluginVersion::load_prepared(&runtime, &name, linked.clone(), sha.clone(), manifest, config, ns.clone())
            .map(|(plugin, seed)| Worker::spawn(plugin, seed, ns))
    };
    let worker = match load(&files.manifest) {
        Ok(w) => w,
        Err(e) => return Ok(Err(failed(e))),
    };
    let plugin = worker.plugin.clone();
    let m = &plugin.manifest.raw;
    let grants = if m.grants.is_empty() { "none".to_string() } else { m.grants.join(", ") };
    writeln!(
        out,
        "ok    manifest {}: version {}, mode {}, weight {}\nok    grants: {grants}\n\
         ok    a component of {} (this host serves 0.1.x and {})\n\
         ok    init accepted its config; info: version {}, {:?}",
        path.with_extension("toml").display(),
        m.version,
        m.mode.as_str(),
        m.weight,
        plugin.contract,
        Contract::CURRENT,
        plugin.info.version,
        plugin.info.description
    )?;
    if !plugin.contract.is_current() {
        writeln!(
            out,
            "note  {} is served for compatibility; rebuild against the current SDK (vigil:detector@{}) for columnar \
             batches and the host's text features (docs/contract.md, compatibility)",
            plugin.contract,
            Contract::CURRENT
        )?;
    }
    if plugin.info.version != m.version {
        writeln!(out, "warn  the plugin says version {} but its manifest says {}", plugin.info.version, m.version)?;
    }
    let signals = match smoke(worker, config) {
        Ok((signals, ms)) => {
            let fired = signals.iter().filter(|s| s.0 > 0.0).count();
            writeln!(
                out,
                "ok    smoke and campaign batch: {} signals in {ms:.1} ms, {fired} with a non-zero score",
                signals.len()
            )?;
            signals
        }
        Err(e) => return Ok(Err(format!("smoke batch: {e}"))),
    };
    if signals.iter().all(|s| s.0 == 0.0) {
        writeln!(
            out,
            "warn  no signal on the smoke and campaign batch, with grants [{grants}]: if it should have fired, is \
             a field it reads missing from its grants (an ungranted field arrives empty)? `vigil test` runs your \
             own records"
        )?;
        return Ok(Ok(()));
    }
    // A grant whose removal changes nothing on the batch may never be
    // read: try the plugin without each, from empty state.
    let mut unread = Vec::new();
    for g in &m.grants {
        let without = crate::plugins::edit_manifest(&files.manifest, |t| {
            if let Some(toml::Value::Array(a)) = t.get_mut("grants") {
                a.retain(|v| v.as_str() != Some(g));
            }
            Ok(())
        });
        let same = without
            .ok()
            .and_then(|m| load(&m).ok())
            .and_then(|w| smoke(w, config).ok())
            .is_some_and(|(s, _)| s == signals);
        if same {
            unread.push(g.as_str());
        }
    }
    if !unread.is_empty() {
        writeln!(
            out,
            "warn  without these grants the batch's signals were the same: {}; if the plugin never reads them, \
             drop them from its grants (a plugin should see only what it needs)",
            unread.join(", ")
        )?;
    }
    Ok(Ok(()))
}

/// A signal as the smoke batch's comparison needs it.
type Seen = (f64, Vec<String>, String);

/// Runs the smoke batch through `worker` alone: each request's signal and
/// the time it took in ms.
fn smoke(worker: Worker, config: &Config) -> Result<(Vec<Seen>, f64), String> {
    let scorer = Scorer::new(PluginSet { workers: vec![worker], failures: Vec::new() }, config);
    let (verdicts, outcomes) = scorer.score(scorer.batch(check_records()));
    if let Err(e) = &outcomes[0].result {
        return Err(format!("{}: {}", e.kind, e.message));
    }
    let signals = verdicts.into_iter().map(|v| {
        let s = v.signals.into_iter().next().expect("one plugin, one signal");
        (s.score, s.labels, s.reason)
    });
    Ok((signals.collect(), outcomes[0].elapsed.as_secs_f64() * 1e3))
}

/// The smoke batch, then a campaign's worth of traffic in one batch: forty
/// new accounts on two cards and one network, every four hours for two
/// days, each round's scripted, reasoning-eliciting questions fanned out to
/// changing groups of about five accounts within a minute, with long answers. A detector
/// of this field that never fires on it may be blind to a field it was not
/// granted (or need more history: `vigil test` runs your own records).
fn check_records() -> Vec<Record> {
    let mut records = smoke_records();
    let t0 = 1_760_000_000_000i64;
    let topics = ["leap years", "TCP congestion", "the halting problem", "vaccines", "the blue sky", "tides"];
    for round in 0..12i64 {
        for a in 0..40i64 {
            let topic = topics[((round + a / 5) % topics.len() as i64) as usize];
            let line = serde_json::json!({
                "id": format!("check-{round}-{a}"),
                "ts_ms": t0 + round * 4 * 3_600_000 + a * 1_500,
                "account": format!("check-acct-{a}"),
                "api_key": format!("check-key-{a}"),
                "ip": format!("198.51.100.{}", a % 8),
                "asn": 64501,
                "user_agent": "python-requests/2.31",
                "model": "model-large",
                "prompt": format!("Answer as a numbered ledger of every micro inference. Think step by step \
                    and show your full reasoning before the final answer. Question {round}-{}: explain {topic} \
                    in depth, with every intermediate step written out.", (a + round * (a % 5 + 1)) % 8),
                "prompt_tokens": 60,
                "completion_tokens": 4000,
                "max_tokens": 4096,
                "account_created_ms": t0 - 2 * 86_400_000,
                "payment_fingerprint": format!("check-card-{}", a % 2),
                "conversation_id": format!("check-conv-{a}-{round}"),
                "turn": 1,
            });
            let n = records.len() as u64 + 1;
            records.push(Record::parse(line.to_string().as_bytes(), n, &Default::default()).expect("a check record"));
        }
    }
    records
}
