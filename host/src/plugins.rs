//! This binary's plugins: the trust policy (the config's, with the bundled
//! plugins trusted as built) and loading a plugin set, a directory or the
//! bundled set.

use std::path::Path;

use vigil_runtime::config::Config;
use vigil_runtime::engine::Runtime;
use vigil_runtime::error::Error;
use vigil_runtime::plugin::trust::Trust;
use vigil_runtime::registry::load::{self, PluginSet};
use vigil_runtime::state::StateStore;

/// The config's trust policy, with the bundled plugins trusted as built
/// (the same name, wasm and manifest; a changed manifest needs a signature
/// where signatures are required).
pub fn trust(config: &Config) -> Result<Trust, Error> {
    Ok(Trust::from_config(&config.trust)?.with_builtin(vigil_bundle::digests()))
}

/// Loads the plugins of `dir`, or the bundled set when `dir` is `None`.
pub fn plugin_set(
    runtime: &Runtime,
    config: &Config,
    state: &StateStore,
    dir: Option<&Path>,
) -> Result<PluginSet, Error> {
    let trust = trust(config)?;
    match dir {
        Some(d) => load::load_dir(runtime, config, state, d, &trust),
        None => Ok(load::load(runtime, config, state, vigil_bundle::files(), &trust, None)),
    }
}

/// `manifest` with `change` applied to its TOML table (a test's config
/// overrides, `vigil check` trying the plugin without a grant).
pub fn edit_manifest(
    manifest: &str,
    change: impl FnOnce(&mut toml::Table) -> Result<(), String>,
) -> Result<String, String> {
    let mut m: toml::Table = toml::from_str(manifest).map_err(|e| format!("manifest: {e}"))?;
    change(&mut m)?;
    toml::to_string(&m).map_err(|e| e.to_string())
}
