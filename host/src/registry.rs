//! The plugin set: every `NAME.wasm` + `NAME.toml` of a directory (or the
//! bundled set), each loaded on its own so one bad plugin never stops the
//! others.

use std::path::Path;
use crate::config::Config;
use crate::engine::Runtime;
use crate::error::{ErrorKind, PluginError};
use crate::state::StateStore;
use crate::worker::{PluginVersion, Worker};

/// Loaded plugins, sorted by name, and the ones that failed to load.
pub struct PluginSet {
    pub workers: Vec<Worker>,
    pub failures: Vec<PluginError>,
}

impl PluginSet {
    pub fn names(&self) -> Vec<&str> {
        self.workers.iter().map(|w| &*w.plugin.name).collect()
    }
}

/// A plugin's files, read but not yet loaded.
pub struct PluginFiles {
    pub name: String,
    pub wasm: Vec<u8>,
    pub manifest: String,
}

/// Is `name` usable as a plugin identity (file stem)?
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reads the plugin pairs of `dir`. A `.wasm` without a manifest (or the
/// reverse), or an unreadable file, is a failure naming the plugin.
pub fn read_dir(dir: &Path) -> Result<(Vec<PluginFiles>, Vec<PluginError>), std::io::Error> {
    let mut names = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str());
        if matches!(ext, Some("wasm") | Some("toml"))
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.insert(stem.to_string());
        }
    }
    let mut files = Vec::new();
    let mut failures = Vec::new();
    for name in names {
        let fail = |kind, m: String| PluginError::new(&name, kind, m);
        if !valid_name(&name) {
            failures.push(fail(ErrorKind::Load, "plugin names are letters, digits, '-' and '_' (at most 64)".into()));
            continue;
        }
        let wasm_path = dir.join(format!("{name}.wasm"));
        let toml_path = dir.join(format!("{name}.toml"));
        let wasm = match std::fs::read(&wasm_path) {
            Ok(w) => w,
            Err(e) => {
                failures.push(fail(ErrorKind::Load, format!("{}: {e}", wasm_path.display())));
                continue;
            }
        };
        let manifest = match std::fs::read_to_string(&toml_path) {
            Ok(m) => m,
            Err(e) => {
                failures.push(fail(ErrorKind::Manifest, format!("{}: {e}", toml_path.display())));
                continue;
            }
        };
        files.push(PluginFiles { name, wasm, manifest });
    }
    Ok((files, failures))
}

/// The plugins built into this binary.
pub fn bundled() -> Vec<PluginFiles> {
    crate::bundled::BUNDLED
        .iter()
        .map(|(name, wasm, manifest)| PluginFiles {
            name: name.to_string(),
            wasm: wasm.to_vec(),
            manifest: manifest.to_string(),
        })
        .collect()
}

/// Loads each plugin and starts its worker.
pub fn load(runtime: &Runtime, config: &Config, state: &StateStore, files: Vec<PluginFiles>) -> PluginSet {
    let mut set = PluginSet { workers: Vec::new(), failures: Vec::new() };
    for f in files {
        let ns = state.namespace(&f.name);
        match PluginVersion::load(runtime, &f.name, &f.wasm, &f.manifest, &config.limits, ns.clone()) {
            Ok((plugin, seed)) => {
                let name = &*plugin.name;
                tracing::info!(plugin = name, version = &*plugin.version, digest = &*plugin.digest, "loaded");
                set.workers.push(Worker::spawn(plugin, seed, ns));
            }
            Err(e) => {
                tracing::error!(plugin = %e.plugin, kind = %e.kind, "not loaded: {}", e.message);
                set.failures.push(e);
            }
        }
    }
    set.workers.sort_by(|a, b| a.plugin.name.cmp(&b.plugin.name));
    set
}

/// Loads a directory (or the bundled set when `dir` is `None`).
pub fn load_dir(
    runtime: &Runtime,
    config: &Config,
    state: &StateStore,
    dir: Option<&Path>,
) -> Result<PluginSet, crate::error::Error> {
    let (files, failures) = match dir {
        Some(d) => read_dir(d).map_err(|e| crate::error::Error::io(format!("plugin directory {}", d.display()), e))?,
        None => (bundled(), Vec::new()),
    };
    for e in &failures {
        tracing::error!(plugin = %e.plugin, kind = %e.kind, "not loaded: {}", e.message);
    }
    let mut set = load(runtime, config, state, files);
    set.failures.splice(0..0, failures);
    Ok(set)
}
