//! Section 7: one detector, `velocity`, as the bundled Rust plugin, as its
//! Python port (`examples/python-detector`, componentize-py) and as its
//! JavaScript port (`examples/js-detector`, componentize-js), on the same
//! batches through the same host path (a worker each, `run_all`), the
//! order rotating per batch. Each side has its own fresh state namespace;
//! the ports' signals are compared with the Rust plugin's bit for bit.
//!
//! The ports are built here, from the repository's sources in a scratch
//! copy: componentize-py from PATH, else pip-installed into
//! `target/tmp/componentize-py` (where the host's tests put it);
//! componentize-js with npm. A tool that is missing or fails leaves its
//! row out with the reason, the rest still runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_runtime::config::EngineConfig;
use vigil_runtime::engine::Runtime;
use vigil_runtime::engine::worker::{PluginVersion, Worker};
use vigil_runtime::plugin::files::PluginFiles;
use vigil_runtime::state::Namespace;

use crate::progress;
use crate::stats::{median, timed};

/// A build of the detector, or why there is none.
pub struct Build {
    pub lang: &'static str,
    /// The tool and its version.
    pub tool: String,
    pub name: String,
    pub result: Result<Built, String>,
}

pub struct Built {
    pub wasm: Vec<u8>,
    pub manifest: String,
    /// Wall time of the build command (NaN when not timed here).
    pub build_s: f64,
    /// `PluginVersion::load` without the compiled-plugin cache (compile +
    /// link + instantiate + init), and with it warm.
    pub cold_ms: f64,
    pub cached_ms: f64,
}

/// One workload's rows, a row per language.
pub struct Table {
    pub name: &'static str,
    pub batches: usize,
    pub batch_size: usize,
    pub rows: Vec<Row>,
}

pub struct Row {
    pub lang: &'static str,
    pub ns_per_record: f64,
    pub ms_per_batch: f64,
    /// Median over batches of this side's time / Rust's on the same batch.
    pub vs_rust: f64,
    pub signals: usize,
    pub flagged: usize,
    /// Signals whose score bits, labels or reason differ from Rust's.
    pub mismatches: usize,
    pub errors: usize,
}

pub struct Measured {
    pub builds: Vec<Build>,
    pub tables: Vec<Table>,
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).trim().to_string()
}

/// Runs `cmd`; its output, or an error naming the command and what it said.
fn run(cmd: &mut Command) -> Result<String, String> {
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(text(&o)),
        Ok(o) => {
            let t = text(&o);
            let tail: Vec<&str> = t.lines().rev().take(6).collect();
            Err(format!("`{cmd:?}` failed: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" / ")))
        }
        Err(e) => Err(format!("`{cmd:?}`: {e}")),
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is in the workspace").to_path_buf()
}

/// Copies `files` of `examples/NAME` to `scratch/examples/NAME`, beside a
/// copy of `wit/`, so the examples' `../../wit` holds.
fn scratch_copy(scratch: &Path, name: &str, files: &[&str]) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| format!("{}: {e}", scratch.display());
    let wit = scratch.join("wit");
    if !wit.exists() {
        std::fs::create_dir_all(&wit).map_err(io)?;
        for f in std::fs::read_dir(workspace().join("wit")).map_err(io)? {
            let f = f.map_err(io)?;
            if f.file_type().map_err(io)?.is_file() {
                std::fs::copy(f.path(), wit.join(f.file_name())).map_err(io)?;
            }
        }
    }
    let dir = scratch.join("examples").join(name);
    std::fs::create_dir_all(&dir).map_err(io)?;
    for f in files {
        std::fs::copy(workspace().join("examples").join(name).join(f), dir.join(f)).map_err(io)?;
    }
    Ok(dir)
}

/// componentize-py: on PATH, else the host tests' pip install under
/// `target/tmp`, made if missing (the tests' own helper).
fn componentize_py() -> Result<Command, String> {
    python::componentize_py(&workspace().join("target/tmp/componentize-py"))
}

#[path = "../../host/tests/common/python.rs"]
mod python;

fn build_python(scratch: &Path) -> (String, Result<(Vec<u8>, f64), String>) {
    let mut tool = "componentize-py".to_string();
    let result = (|| {
        let dir = scratch_copy(scratch, "python-detector", &["velocity.py", "app.py", "velocity-py.toml"])?;
        tool = run(componentize_py()?.arg("--version"))?;
        let (out, t) = timed(|| {
            run(componentize_py()?
                .args(["-d", "../../wit", "-w", "detector", "componentize", "app", "-o", "velocity-py.wasm"])
                .current_dir(&dir))
        });
        out?;
        let wasm = std::fs::read(dir.join("velocity-py.wasm")).map_err(|e| e.to_string())?;
        Ok((wasm, t.as_secs_f64()))
    })();
    (tool, result)
}

fn build_js(scratch: &Path) -> (String, Result<(Vec<u8>, f64), String>) {
    let mut tool = "componentize-js".to_string();
    let result = (|| {
        let node = run(Command::new("node").arg("--version")).map_err(|e| format!("no Node.js: {e}"))?;
        let dir = scratch_copy(scratch, "js-detector", &["velocity.js", "app.js", "package.json", "velocity-js.toml"])?;
        progress!("languages: npm install in {}", dir.display());
        run(Command::new("npm").args(["install", "--no-audit", "--no-fund"]).current_dir(&dir))?;
        let pkg = std::fs::read_to_string(dir.join("node_modules/@bytecodealliance/componentize-js/package.json"))
            .map_err(|e| e.to_string())?;
        let version = serde_json::from_str::<serde_json::Value>(&pkg).map_err(|e| e.to_string())?["version"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        tool = format!("componentize-js {version} (Node.js {node})");
        let (out, t) = timed(|| run(Command::new("npm").args(["run", "build"]).current_dir(&dir)));
        out?;
        let wasm = std::fs::read(dir.join("velocity-js.wasm")).map_err(|e| e.to_string())?;
        Ok((wasm, t.as_secs_f64()))
    })();
    (tool, result)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Loads a build twice through `PluginVersion::load`: without the cache,
/// and with it (filled by a first load, the second timed).
fn load_times(
    config: &vigil_runtime::Config,
    name: &str,
    wasm: &[u8],
    manifest: &str,
    cache: &Path,
) -> Result<(f64, f64), String> {
    let state = || Arc::new(Mutex::new(Namespace::new(config.state.clone())));
    let rt = |cache: Option<&Path>| {
        let cfg = EngineConfig {
            cache: cache.is_some(),
            cache_dir: cache.map(Path::to_path_buf).unwrap_or_default(),
            ..Default::default()
        };
        Runtime::with_config(&cfg, true).map_err(|e| e.to_string())
    };
    let err = |e: vigil_runtime::PluginError| e.to_string();
    let cold_rt = rt(None)?;
    let (v, cold) = timed(|| PluginVersion::load(&cold_rt, name, wasm, manifest, config, state()));
    drop(v.map_err(err)?);
    let cache_rt = rt(Some(cache))?;
    drop(PluginVersion::load(&cache_rt, name, wasm, manifest, config, state()).map_err(err)?);
    let (v, cached) = timed(|| PluginVersion::load(&cache_rt, name, wasm, manifest, config, state()));
    drop(v.map_err(err)?);
    Ok((ms(cold), ms(cached)))
}

/// Builds the ports, then scores every workload with the three side by side.
pub fn run_all(
    config: &vigil_runtime::Config,
    runtime: &Runtime,
    bundled: &[PluginFiles],
    workloads: &[crate::native::Workload],
    warmup: usize,
    scratch: &Path,
) -> anyhow::Result<Measured> {
    let rust = bundled.iter().find(|p| p.name == "velocity").ok_or_else(|| anyhow::anyhow!("no bundled velocity"))?;
    let mut builds = vec![Build {
        lang: "Rust",
        tool: format!("cargo, {} (the host's build.rs)", env!("BENCH_RUSTC_VERSION")),
        name: "velocity".into(),
        result: Ok(Built {
            wasm: rust.wasm.clone(),
            manifest: rust.manifest.clone(),
            build_s: f64::NAN,
            cold_ms: 0.0,
            cached_ms: 0.0,
        }),
    }];
    progress!("languages: building velocity-py with componentize-py");
    let (tool, py) = build_python(scratch);
    let manifest = |dir: &str, name: &str| std::fs::read_to_string(workspace().join("examples").join(dir).join(name));
    builds.push(Build {
        lang: "Python",
        tool,
        name: "velocity-py".into(),
        result: py.and_then(|(wasm, build_s)| {
            let manifest = manifest("python-detector", "velocity-py.toml").map_err(|e| e.to_string())?;
            Ok(Built { wasm, manifest, build_s, cold_ms: 0.0, cached_ms: 0.0 })
        }),
    });
    progress!("languages: building velocity-js with componentize-js");
    let (tool, js) = build_js(scratch);
    builds.push(Build {
        lang: "JavaScript",
        tool,
        name: "velocity-js".into(),
        result: js.and_then(|(wasm, build_s)| {
            let manifest = manifest("js-detector", "velocity-js.toml").map_err(|e| e.to_string())?;
            Ok(Built { wasm, manifest, build_s, cold_ms: 0.0, cached_ms: 0.0 })
        }),
    });

    for b in &mut builds {
        if let Ok(built) = &mut b.result {
            progress!("languages: compiling {} ({} bytes)", b.name, built.wasm.len());
            match load_times(config, &b.name, &built.wasm, &built.manifest, &scratch.join("cache")) {
                Ok((cold, cached)) => (built.cold_ms, built.cached_ms) = (cold, cached),
                Err(e) => b.result = Err(format!("does not load: {e}")),
            }
        }
    }
    for b in &builds {
        if let Err(e) = &b.result {
            progress!("languages: {} left out: {e}", b.lang);
        }
    }

    let mut tables = Vec::new();
    for w in workloads {
        progress!("languages, {}: {} batches", w.name, w.batches.len());
        tables.push(score(config, runtime, &builds, w, warmup)?);
    }
    Ok(Measured { builds, tables })
}

/// One side's signals on a batch (or why none), and the time it took.
type Ran = (Result<Vec<vigil_runtime::engine::world::Signal>, String>, Duration);

fn score(
    config: &vigil_runtime::Config,
    runtime: &Runtime,
    builds: &[Build],
    w: &crate::native::Workload,
    warmup: usize,
) -> anyhow::Result<Table> {
    let err = |e: vigil_runtime::PluginError| anyhow::anyhow!("{e}");
    let mut sides = Vec::new();
    for b in builds {
        let Ok(built) = &b.result else { continue };
        let state = Arc::new(Mutex::new(Namespace::new(config.state.clone())));
        let (version, seed) =
            PluginVersion::load(runtime, &b.name, &built.wasm, &built.manifest, config, state.clone()).map_err(err)?;
        sides.push((b.lang, Worker::spawn(version, seed, state)));
    }
    let n = sides.len();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut rows: Vec<Row> = sides
        .iter()
        .map(|(lang, _)| Row {
            lang,
            ns_per_record: 0.0,
            ms_per_batch: 0.0,
            vs_rust: 0.0,
            signals: 0,
            flagged: 0,
            mismatches: 0,
            errors: 0,
        })
        .collect();
    for (i, batch) in w.batches.iter().enumerate() {
        // Who goes first rotates per batch.
        let mut out: Vec<Option<Ran>> = (0..n).map(|_| None).collect();
        for k in 0..n {
            let s = (i + k) % n;
            let (outcome, t) =
                timed(|| vigil_runtime::engine::worker::run_all(std::iter::once(&sides[s].1), batch).remove(0));
            out[s] = Some((outcome.result.map_err(|e| e.to_string()), t));
        }
        let out: Vec<_> = out.into_iter().map(|o| o.expect("every side ran")).collect();
        let rust = out[0].0.as_ref().ok();
        for (s, (result, t)) in out.iter().enumerate() {
            let row = &mut rows[s];
            match result {
                Ok(signals) => {
                    row.signals += signals.len();
                    row.flagged += signals.iter().filter(|x| x.score > 0.0).count();
                    if let Some(rust) = rust {
                        row.mismatches += signals
                            .iter()
                            .zip(rust)
                            .filter(|(a, b)| {
                                a.score.to_bits() != b.score.to_bits() || a.labels != b.labels || a.reason != b.reason
                            })
                            .count();
                    }
                }
                Err(e) => {
                    row.errors += 1;
                    progress!("  {}: batch {i} failed: {e}", row.lang);
                }
            }
            if i >= warmup {
                times[s].push(t.as_secs_f64());
                ratios[s].push(t.as_secs_f64() / out[0].1.as_secs_f64().max(1e-12));
            }
        }
    }
    let batch_size = w.batches.first().map_or(0, |b| b.len());
    for (s, row) in rows.iter_mut().enumerate() {
        let m = median(&times[s]);
        row.ms_per_batch = m * 1e3;
        row.ns_per_record = m * 1e9 / batch_size.max(1) as f64;
        row.vs_rust = median(&ratios[s]);
    }
    Ok(Table { name: w.name, batches: w.batches.len().saturating_sub(warmup), batch_size, rows })
}
