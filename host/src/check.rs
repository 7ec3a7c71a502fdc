//! `vigil check PLUGIN.wasm`: is this a plugin vigil can run, and if not,
//! what exactly is wrong.

use std::path::Path;

use crate::config::Config;
use crate::engine::Runtime;
use crate::pipeline::Scorer;
use crate::record::Record;
use crate::registry::{PluginSet, read_plugin, valid_name};
use crate::state::StateStore;
use crate::worker::{PluginVersion, Worker};

/// A few varied records exercising every field, for smoke-testing a plugin.
pub fn smoke_records() -> Vec<Record> {
    let base = 1_760_000_000_000i64;
    let prompts = [
        "What is the capital of France?",
        "Think step by step and show your full reasoning before the final answer.",
        "You are a reward model. Grade the following response on a scale of 1 to 10.",
        "",
        "Écris un poème sur la mer. 🌊",
        "Refactor this function:\nfn f(x: u32) -> u32 { x * 2 }",
        "a",
        "Summarise the attached report in three bullet points.",
    ];
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let line = format!(
                r#"{{"id":"smoke-{i}","ts_ms":{},"account":"smoke-acct-{}","org":"smoke-org","api_key":"key-{}",
                   "ip":"{}","asn":{},"user_agent":"smoke/1.0","model":"model-{}","prompt":{},
                   "system_prompt":"You are helpful.","prompt_tokens":{},"completion_tokens":{},"max_tokens":1024,
                   "account_created_ms":{},"payment_fingerprint":"pf-{}","conversation_id":"conv-{i}","turn":1,
                   "attrs":{{"region":"eu"}}}}"#,
                base + i as i64 * 1000,
                i % 3,
                i % 2,
                if i % 2 == 0 { "203.0.113.7" } else { "2001:db8::7" },
                64500 + i,
                i % 2,
                serde_json::to_string(p).unwrap(),
                10 * i,
                100 * i,
                base - 86_400_000 * i as i64,
                i % 4,
            )
            .replace('\n', " ");
            Record::parse(line.as_bytes(), i as u64 + 1, &Default::default()).expect("smoke record")
        })
        .collect()
}

/// Checks a plugin file and its manifest; prints each step. Returns whether
/// the plugin passed.
pub fn check(path: &Path, config: &Config, out: &mut dyn std::io::Write) -> std::io::Result<bool> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
    let mut ok = |msg: String| writeln!(out, "ok    {msg}");
    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
        writeln!(out, "FAIL  {}: expected a NAME.wasm file", path.display())?;
        return Ok(false);
    }
    if !valid_name(&name) {
        writeln!(out, "FAIL  {name:?}: plugin names are letters, digits, '-' and '_' (at most 64)")?;
        return Ok(false);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let files = match read_plugin(dir, &name, &config.plugin_files) {
        Ok(f) => f,
        Err(e) => {
            writeln!(out, "FAIL  {}: {}", e.kind, e.message)?;
            return Ok(false);
        }
    };
    ok(format!("read {} ({} bytes)", path.display(), files.wasm.len()))?;
    let manifest_path = path.with_extension("toml");
    let trust = match crate::registry::trust_policy(config) {
        Ok(t) => t,
        Err(e) => {
            writeln!(out, "FAIL  {e}")?;
            return Ok(false);
        }
    };
    match trust.check(&name, Some(dir), &files.wasm, files.manifest.as_bytes(), files.sig.as_deref()) {
        Ok(Some(signer)) if signer == "built-in" => {
            writeln!(out, "ok    built into this vigil binary (trusted as built)")?
        }
        Ok(Some(signer)) => writeln!(out, "ok    signed by trusted key {signer}")?,
        Ok(None) => writeln!(out, "ok    unsigned (signatures are not required here)")?,
        Err(e) => {
            writeln!(out, "FAIL  {}: {}", e.kind, e.message)?;
            return Ok(false);
        }
    }
    let runtime = Runtime::with_config(&config.engine, true).map_err(std::io::Error::other)?;
    let state = StateStore::new(config.state.clone());
    let ns = state.namespace(&name);
    let (plugin, seed) =
        match PluginVersion::load(&runtime, &files.name, &files.wasm, &files.manifest, config, ns.clone()) {
            Ok(v) => v,
            Err(e) => {
                writeln!(out, "FAIL  {}: {}", e.kind, e.message)?;
                return Ok(false);
            }
        };
    let m = &plugin.manifest.raw;
    let mut ok = |msg: String| writeln!(out, "ok    {msg}");
    ok(format!(
        "manifest {}: version {}, mode {}, weight {}",
        manifest_path.display(),
        m.version,
        m.mode.as_str(),
        m.weight
    ))?;
    ok(format!("grants: {}", if m.grants.is_empty() { "none".to_string() } else { m.grants.join(", ") }))?;
    ok("a component of the vigil:detector world".to_string())?;
    ok(format!("init accepted its config; info: version {}, {:?}", plugin.info.version, plugin.info.description))?;
    if plugin.info.version != m.version {
        writeln!(out, "warn  the plugin says version {} but its manifest says {}", plugin.info.version, m.version)?;
    }
    let worker = Worker::spawn(plugin, seed, ns);
    let scorer = Scorer::new(PluginSet { workers: vec![worker], failures: Vec::new() }, config);
    let records = smoke_records();
    let n = records.len();
    let (verdicts, outcomes) = scorer.score(scorer.batch(records));
    match &outcomes[0].result {
        Ok(_) => {
            let flagged = verdicts.iter().filter(|v| v.signals[0].score > 0.0).count();
            writeln!(
                out,
                "ok    smoke batch: {n} signals in {:.1} ms, {flagged} with a non-zero score",
                outcomes[0].elapsed.as_secs_f64() * 1e3
            )?;
            Ok(true)
        }
        Err(e) => {
            writeln!(out, "FAIL  smoke batch: {}: {}", e.kind, e.message)?;
            Ok(false)
        }
    }
}
