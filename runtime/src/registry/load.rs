//! Loading a plugin set: each plugin checked against the trust policy, then
//! compiled, instantiated and initialised on its own, so one bad plugin
//! never stops the others.

use std::path::Path;

use crate::config::Config;
use crate::engine::Runtime;
use crate::engine::worker::{PluginVersion, Worker};
use crate::error::{Error, PluginError};
use crate::plugin::files::{PluginFiles, read_dir};
use crate::plugin::trust::Trust;
use crate::state::StateStore;

/// Loaded plugins, sorted by name, and the ones that failed to load.
pub struct PluginSet {
    /// A running worker per loaded plugin.
    pub workers: Vec<Worker>,
    /// Why each of the others did not load.
    pub failures: Vec<PluginError>,
}

impl PluginSet {
    /// The loaded plugins' names.
    pub fn names(&self) -> Vec<&str> {
        self.workers.iter().map(|w| &*w.plugin.name).collect()
    }
}

/// Loads each plugin and starts its worker, after checking `trust` (`dir`:
/// where the files came from, for per-directory signature policies).
pub fn load(
    runtime: &Runtime,
    config: &Config,
    state: &StateStore,
    files: Vec<PluginFiles>,
    trust: &Trust,
    dir: Option<&Path>,
) -> PluginSet {
    let mut set = PluginSet { workers: Vec::new(), failures: Vec::new() };
    for f in files {
        if let Err(e) = trust.check(&f.name, dir, &f.wasm, f.manifest.as_bytes(), f.sig.as_deref()) {
            tracing::error!(plugin = %e.plugin, kind = %e.kind, "not loaded: {}", e.message);
            set.failures.push(e);
            continue;
        }
        let ns = state.namespace(&f.name);
        match PluginVersion::load(runtime, &f.name, &f.wasm, &f.manifest, config, ns.clone()) {
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

/// Reads and loads every plugin of `dir`; a plugin whose files cannot be
/// read is a failure like any other.
pub fn load_dir(
    runtime: &Runtime,
    config: &Config,
    state: &StateStore,
    dir: &Path,
    trust: &Trust,
) -> Result<PluginSet, Error> {
    let (files, failures) =
        read_dir(dir, &config.plugin_files).map_err(|e| Error::io(format!("plugin directory {}", dir.display()), e))?;
    for e in &failures {
        tracing::error!(plugin = %e.plugin, kind = %e.kind, "not loaded: {}", e.message);
    }
    let mut set = load(runtime, config, state, files, trust, Some(dir));
    set.failures.splice(0..0, failures);
    Ok(set)
}
