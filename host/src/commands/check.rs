//! `vigil check PLUGIN.wasm`: is this a plugin vigil can run, and if not,
//! what exactly is wrong. Each step prints `ok` or `FAIL` with the reason;
//! the first failure ends the check.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use vigil_runtime::config::Config;
use vigil_runtime::engine::worker::{PluginVersion, Worker};
use vigil_runtime::engine::{Contract, Runtime};
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
    let state = StateStore::new(config.state.clone());
    let ns = state.namespace(&name);
    let (plugin, seed) =
        match PluginVersion::load(&runtime, &files.name, &files.wasm, &files.manifest, config, ns.clone()) {
            Ok(v) => v,
            Err(e) => return Ok(Err(failed(e))),
        };
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
    let worker = Worker::spawn(plugin, seed, ns);
    let scorer = Scorer::new(PluginSet { workers: vec![worker], failures: Vec::new() }, config);
    let records = smoke_records();
    let n = records.len();
    let (verdicts, outcomes) = scorer.score(scorer.batch(records));
    if let Err(e) = &outcomes[0].result {
        return Ok(Err(format!("smoke batch: {}: {}", e.kind, e.message)));
    }
    let flagged = verdicts.iter().filter(|v| v.signals[0].score > 0.0).count();
    let ms = outcomes[0].elapsed.as_secs_f64() * 1e3;
    writeln!(out, "ok    smoke batch: {n} signals in {ms:.1} ms, {flagged} with a non-zero score")?;
    Ok(Ok(()))
}
