//! `vigil test PLUGIN... [--fixtures FILE]...`: runs plugins on fixture
//! records and checks what they said against what the fixtures expect, per
//! record or per account; prints a diff for each miss and exits non-zero,
//! so a vendor's CI can run it. Each test starts from empty host state, and
//! its records go through the same path as `vigil score` (admission,
//! batches, plugins, combine, campaign stage).
//!
//! Signatures are not checked: this runs the plugin being developed, still
//! in its sandbox; `vigil check` and the hosts apply the trust policy.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Deserialize;
use vigil_runtime::config::{BadInputPolicy, Config};
use vigil_runtime::engine::Runtime;
use vigil_runtime::engine::worker::{PluginVersion, Worker};
use vigil_runtime::engine::world::Linked;
use vigil_runtime::plugin::files::{PluginFiles, read_dir, read_plugin, read_plugin_file};
use vigil_runtime::registry::load::PluginSet;
use vigil_runtime::score::combine::{Decision, Verdict};
use vigil_runtime::score::pipeline::{Scorer, StreamOptions, score_stream};
use vigil_runtime::state::StateStore;

#[derive(clap::Args)]
pub struct Args {
    /// The plugins under test: NAME.wasm files (each with NAME.toml beside
    /// it) or directories of them; tested together, as one set.
    #[arg(required = true, value_name = "PLUGIN")]
    plugins: Vec<PathBuf>,
    /// The manifest of the one NAME.wasm given, when it is not beside it.
    #[arg(long, value_name = "NAME.toml")]
    manifest: Option<PathBuf>,
    /// Fixture files (TOML; docs/contract.md#fixtures-vigil-test).
    #[arg(long, value_name = "FILE", default_value = "tests/fixtures.toml")]
    fixtures: Vec<PathBuf>,
}

/// A fixture file: tests, each records and what to expect of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixtures {
    #[serde(rename = "test", default)]
    tests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// NDJSON request records, inline.
    records: Option<String>,
    /// Or a file of them, relative to the fixture file.
    records_file: Option<PathBuf>,
    /// Per plugin, keys laid over its manifest's `[config]` for this test.
    #[serde(default)]
    config: BTreeMap<String, toml::Table>,
    #[serde(default)]
    expect: Vec<Expect>,
}

/// What one record (`id`) or every record of one account (`account`) must
/// show: one plugin's signal (`plugin`), or the combined verdict.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    id: Option<String>,
    account: Option<String>,
    plugin: Option<String>,
    /// A score, or an inclusive range `[low, high]`; for an account, its
    /// peak.
    score: Option<Score>,
    /// The combined decision; for an account, its highest.
    decision: Option<Decision>,
    /// Labels that must all be present (for an account: on any record).
    labels: Option<Vec<String>>,
    /// Text the reason must contain (for an account: any record's).
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum Score {
    Exact(f64),
    Range([f64; 2]),
}

impl Score {
    fn holds(self, x: f64) -> bool {
        match self {
            // Scores are reported to 6 decimals.
            Score::Exact(s) => (x - s).abs() <= 1e-6,
            Score::Range([lo, hi]) => (lo..=hi).contains(&x),
        }
    }

    fn show(self) -> String {
        match self {
            Score::Exact(s) => format!("score {s}"),
            Score::Range([lo, hi]) => format!("score in [{lo}, {hi}]"),
        }
    }
}

/// A plugin under test: read and compiled once, loaded afresh per test.
struct Plugin {
    files: PluginFiles,
    linked: Linked,
    wasm_sha256: String,
}

pub fn run(config: &Config, args: &Args) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::with_config(&config.engine, true)?;
    let plugins = read_plugins(&runtime, config, &args.plugins, args.manifest.as_deref())?;
    let names: Vec<&str> = plugins.iter().map(|p| p.files.name.as_str()).collect();
    let (mut passed, mut failed) = (0, 0);
    for path in &args.fixtures {
        let text = std::fs::read_to_string(path).with_context(|| format!("fixtures {}", path.display()))?;
        let fixtures: Fixtures = toml::from_str(&text).with_context(|| format!("fixtures {}", path.display()))?;
        if fixtures.tests.is_empty() {
            bail!("fixtures {}: no [[test]] in it", path.display());
        }
        println!("{} (plugins: {})", path.display(), names.join(", "));
        let base = path.parent().unwrap_or(Path::new("."));
        for case in &fixtures.tests {
            match run_case(&runtime, config, &plugins, case, base) {
                Ok(n) => {
                    passed += 1;
                    println!("  ok    {} ({n} records, {} expectations)", case.name, case.expect.len());
                }
                Err(diff) => {
                    failed += 1;
                    println!("  FAIL  {}\n{diff}", case.name);
                }
            }
        }
    }
    println!("{} tests: {passed} passed, {failed} failed", passed + failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn read_plugins(
    runtime: &Runtime,
    config: &Config,
    paths: &[PathBuf],
    manifest: Option<&Path>,
) -> anyhow::Result<Vec<Plugin>> {
    if manifest.is_some() && (paths.len() != 1 || paths[0].is_dir()) {
        bail!("--manifest goes with exactly one NAME.wasm");
    }
    let limits = &config.plugin_files;
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let (found, failures) = read_dir(path, limits).with_context(|| format!("{}", path.display()))?;
            if let Some(e) = failures.first() {
                bail!("{}: {}: {}", path.display(), e.kind, e.message);
            }
            if found.is_empty() {
                bail!("{}: no NAME.wasm + NAME.toml in it", path.display());
            }
            files.extend(found);
            continue;
        }
        let (dir, name) = match (path.parent(), path.file_stem().and_then(|s| s.to_str())) {
            (Some(d), Some(n)) if path.extension().is_some_and(|e| e == "wasm") => {
                (if d.as_os_str().is_empty() { Path::new(".") } else { d }, n)
            }
            _ => bail!("{}: expected a NAME.wasm file or a directory of plugins", path.display()),
        };
        let f = match manifest {
            None => read_plugin(dir, name, limits).map_err(|e| anyhow::anyhow!("{}: {}", e.kind, e.message))?,
            Some(m) => {
                let wasm = read_plugin_file(dir, &format!("{name}.wasm"), limits.max_wasm_bytes, limits)
                    .map_err(anyhow::Error::msg)?
                    .with_context(|| format!("{} is missing", path.display()))?;
                let manifest = std::fs::read_to_string(m).with_context(|| format!("{}", m.display()))?;
                PluginFiles { name: name.to_string(), wasm, manifest, sig: None }
            }
        };
        files.push(f);
    }
    let mut seen = std::collections::HashSet::new();
    let mut plugins = Vec::new();
    for f in files {
        if !seen.insert(f.name.clone()) {
            bail!("two plugins named {}: a name is a plugin's identity", f.name);
        }
        let linked = runtime.prepare(&f.wasm).map_err(|m| anyhow::anyhow!("{}.wasm: {m}", f.name))?;
        let wasm_sha256 = vigil_runtime::util::sha256_hex(&f.wasm);
        plugins.push(Plugin { files: f, linked, wasm_sha256 });
    }
    Ok(plugins)
}

/// Runs one test; `Ok(records)` when every expectation held, else the
/// report of what did not.
fn run_case(runtime: &Runtime, config: &Config, plugins: &[Plugin], case: &Case, base: &Path) -> Result<usize, String> {
    let records = match (&case.records, &case.records_file) {
        (Some(r), None) => r.clone(),
        (None, Some(f)) => {
            let path = base.join(f);
            std::fs::read_to_string(&path).map_err(|e| format!("        {}: {e}", path.display()))?
        }
        _ => return Err("        give exactly one of `records` and `records_file`".into()),
    };
    if case.expect.is_empty() {
        return Err("        no [[test.expect]]: a test must expect something".into());
    }
    if let Some(unknown) = case.config.keys().find(|n| !plugins.iter().any(|p| &p.files.name == *n)) {
        return Err(format!("        [test.config.{unknown}]: no plugin of that name under test"));
    }
    let state = StateStore::new(config.state.clone());
    let mut workers = Vec::new();
    for p in plugins {
        let manifest = match case.config.get(&p.files.name) {
            Some(over) => with_config(&p.files.manifest, over).map_err(|e| format!("        {}: {e}", p.files.name))?,
            None => p.files.manifest.clone(),
        };
        let ns = state.namespace(&p.files.name);
        let (plugin, seed) = PluginVersion::load_prepared(
            runtime,
            &p.files.name,
            p.linked.clone(),
            p.wasm_sha256.clone(),
            &manifest,
            config,
            ns.clone(),
        )
        .map_err(|e| format!("        {} did not load: {}: {}", e.plugin, e.kind, e.message))?;
        workers.push(Worker::spawn(plugin, seed, ns));
    }
    let scorer = Scorer::new(PluginSet { workers, failures: Vec::new() }, config);
    let opts = StreamOptions { on_bad_input: BadInputPolicy::Fail, in_flight: 1, ..StreamOptions::from_config(config) };
    let mut out = Vec::new();
    score_stream(&scorer, records.as_bytes(), &mut out, &opts, &|_| {}, &|_| {})
        .map_err(|e| format!("        records: {e}"))?;
    let verdicts: Vec<Verdict> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("the scorer writes verdicts"))
        .collect();
    let mut report = String::new();
    for v in &verdicts {
        for s in v.signals.iter().filter(|s| s.error.is_some()) {
            let e = s.error.as_ref().expect("filtered");
            let _ = writeln!(report, "        record {}: {} failed: {}: {}", v.id, s.plugin, e.kind, e.message);
        }
    }
    for (i, e) in case.expect.iter().enumerate() {
        if let Err(diff) = check(e, &verdicts) {
            let _ = write!(report, "        expect #{} {}\n{diff}", i + 1, target(e));
        }
    }
    if report.is_empty() { Ok(verdicts.len()) } else { Err(report.trim_end().to_string()) }
}

/// The manifest with `over` laid over its `[config]` table.
fn with_config(manifest: &str, over: &toml::Table) -> Result<String, String> {
    crate::plugins::edit_manifest(manifest, |m| {
        let cfg = m.entry("config").or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let cfg = cfg.as_table_mut().ok_or("manifest: `config` is not a table")?;
        cfg.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    })
}

fn target(e: &Expect) -> String {
    let who = match (&e.id, &e.account) {
        (Some(id), _) => format!("record {id}"),
        (None, Some(a)) => format!("account {a}"),
        (None, None) => "?".into(),
    };
    match &e.plugin {
        Some(p) => format!("({who}, plugin {p}):"),
        None => format!("({who}, combined verdict):"),
    }
}

/// What was observed for one expectation: over one record, or every
/// record of an account (peak score, highest decision, labels and reasons
/// of all).
struct Seen {
    score: f64,
    decision: Decision,
    labels: Vec<String>,
    reasons: Vec<String>,
}

fn check(e: &Expect, verdicts: &[Verdict]) -> Result<(), String> {
    let rows: Vec<&Verdict> = match (&e.id, &e.account) {
        (Some(id), None) => verdicts.iter().filter(|v| &v.id == id).collect(),
        (None, Some(a)) => verdicts.iter().filter(|v| &v.account == a).collect(),
        _ => return Err("          - give exactly one of `id` and `account`\n".into()),
    };
    if rows.is_empty() {
        return Err("          - no such record in the verdicts (was it in `records`?)\n".into());
    }
    if e.plugin.is_some() && e.decision.is_some() {
        return Err("          - `decision` is the combined verdict's: drop `plugin` or `decision`\n".into());
    }
    if e.score.is_none() && e.decision.is_none() && e.labels.is_none() && e.reason.is_none() {
        return Err("          - expects nothing: give score, decision, labels or reason\n".into());
    }
    let mut seen = Seen { score: 0.0, decision: Decision::Allow, labels: Vec::new(), reasons: Vec::new() };
    for v in &rows {
        let signals: Vec<_> = match &e.plugin {
            Some(p) => {
                let s: Vec<_> = v.signals.iter().filter(|s| &*s.plugin == p).collect();
                if s.is_empty() {
                    let have: Vec<&str> = v.signals.iter().map(|s| &*s.plugin).collect();
                    return Err(format!("          - no signal from {p} (signals: {})\n", have.join(", ")));
                }
                seen.score = seen.score.max(s[0].score);
                s
            }
            None => {
                seen.score = seen.score.max(v.score);
                seen.decision = seen.decision.max(v.decision);
                v.signals.iter().collect()
            }
        };
        for s in signals {
            for l in &s.labels {
                if !seen.labels.contains(l) {
                    seen.labels.push(l.clone());
                }
            }
            if !s.reason.is_empty() {
                seen.reasons.push(format!("{}: {}", s.plugin, s.reason));
            }
        }
    }
    let mut want = Vec::new();
    let mut ok = true;
    if let Some(s) = e.score {
        ok &= s.holds(seen.score);
        want.push(s.show());
    }
    if let Some(d) = e.decision {
        ok &= d == seen.decision;
        want.push(format!("decision {}", d.as_str()));
    }
    if let Some(ls) = &e.labels {
        ok &= ls.iter().all(|l| seen.labels.contains(l));
        want.push(format!("labels {ls:?}"));
    }
    if let Some(r) = &e.reason {
        ok &= seen.reasons.iter().any(|s| s.contains(r.as_str()));
        want.push(format!("reason containing {r:?}"));
    }
    if ok {
        return Ok(());
    }
    let peak = if rows.len() > 1 { format!("peak of {} records: ", rows.len()) } else { String::new() };
    let mut got = vec![format!("{peak}score {}", seen.score)];
    if e.plugin.is_none() {
        got.push(format!("decision {}", seen.decision.as_str()));
    }
    got.push(format!("labels {:?}", seen.labels));
    got.push(format!("reasons {:?}", seen.reasons));
    Err(format!("          - {}\n          + {}\n", want.join(", "), got.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_runtime::plugin::manifest::Mode;
    use vigil_runtime::score::combine::SignalOut;

    fn verdict(id: &str, account: &str, score: f64, plugin_score: f64, labels: &[&str]) -> Verdict {
        Verdict {
            id: id.into(),
            account: account.into(),
            score,
            decision: if score >= 0.9 {
                Decision::Block
            } else if score >= 0.5 {
                Decision::Flag
            } else {
                Decision::Allow
            },
            signals: vec![SignalOut {
                plugin: "burst".into(),
                version: "0.1.0".into(),
                digest: "d".into(),
                mode: Mode::Enforce,
                score: plugin_score,
                labels: labels.iter().map(|s| s.to_string()).collect(),
                reason: format!("{plugin_score} over"),
                error: None,
            }],
        }
    }

    fn expect(toml: &str) -> Expect {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn a_record_expectation_passes_or_shows_the_difference() {
        let vs = [verdict("a", "x", 0.0, 0.0, &[]), verdict("b", "x", 0.6, 0.6, &["burst"])];
        assert!(
            check(&expect("id = \"b\"\nplugin = \"burst\"\nscore = [0.5, 1.0]\nlabels = [\"burst\"]"), &vs).is_ok()
        );
        assert!(check(&expect("id = \"b\"\ndecision = \"flag\"\nreason = \"over\""), &vs).is_ok());
        let diff = check(&expect("id = \"a\"\nplugin = \"burst\"\nscore = 0.5"), &vs).unwrap_err();
        assert!(diff.contains("- score 0.5") && diff.contains("+ score 0"), "{diff}");
        let diff = check(&expect("id = \"nope\"\nscore = 0"), &vs).unwrap_err();
        assert!(diff.contains("no such record"), "{diff}");
        let diff = check(&expect("id = \"a\"\nplugin = \"other\"\nscore = 0"), &vs).unwrap_err();
        assert!(diff.contains("no signal from other (signals: burst)"), "{diff}");
    }

    #[test]
    fn an_account_expectation_reads_its_peak_and_highest_decision() {
        let vs = [
            verdict("a", "x", 0.2, 0.2, &[]),
            verdict("b", "x", 0.95, 0.95, &["card:1"]),
            verdict("c", "y", 0.0, 0.0, &[]),
        ];
        assert!(
            check(&expect("account = \"x\"\nscore = 0.95\ndecision = \"block\"\nlabels = [\"card:1\"]"), &vs).is_ok()
        );
        assert!(check(&expect("account = \"y\"\ndecision = \"allow\"\nscore = [0, 0]"), &vs).is_ok());
        let diff = check(&expect("account = \"x\"\ndecision = \"allow\""), &vs).unwrap_err();
        assert!(diff.contains("peak of 2 records") && diff.contains("decision block"), "{diff}");
    }

    #[test]
    fn malformed_expectations_are_reported_not_passed() {
        let vs = [verdict("a", "x", 0.0, 0.0, &[])];
        for bad in [
            "score = 0",
            "id = \"a\"\naccount = \"x\"\nscore = 0",
            "id = \"a\"",
            "id = \"a\"\nplugin = \"burst\"\ndecision = \"allow\"",
        ] {
            assert!(check(&expect(bad), &vs).is_err(), "{bad}");
        }
        assert!(toml::from_str::<Expect>("id = \"a\"\nscroe = 1").is_err(), "a misspelt key is refused");
    }

    #[test]
    fn config_overrides_lay_over_the_manifest() {
        let m = "version = \"1\"\n[config]\nwindow_ms = 60000\nmax_requests = 100\n";
        let over: toml::Table = toml::from_str("max_requests = 3").unwrap();
        let out: toml::Table = toml::from_str(&with_config(m, &over).unwrap()).unwrap();
        assert_eq!(out["config"]["max_requests"].as_integer(), Some(3));
        assert_eq!(out["config"]["window_ms"].as_integer(), Some(60000));
        assert_eq!(out["version"].as_str(), Some("1"));
    }
}
