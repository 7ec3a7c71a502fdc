//! The detectors bundled with vigil (`plugins/NAME`), compiled to
//! components by this crate's build script and embedded: the default plugin
//! set of `vigil score` and `vigil demo`, trusted as built.

use vigil_runtime::plugin::files::PluginFiles;
use vigil_runtime::util::sha256_hex;

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The bundled plugins' names, in bundle order.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUNDLED.iter().map(|b| b.0)
}

/// The bundled plugins as files, as if read from a plugin directory.
pub fn files() -> Vec<PluginFiles> {
    BUNDLED
        .iter()
        .map(|(name, wasm, manifest)| PluginFiles {
            name: name.to_string(),
            wasm: wasm.to_vec(),
            manifest: manifest.to_string(),
            sig: None,
        })
        .collect()
}

/// One bundled plugin's component and manifest.
pub fn get(name: &str) -> Option<(&'static [u8], &'static str)> {
    BUNDLED.iter().find(|b| b.0 == name).map(|b| (b.1, b.2))
}

/// (name, wasm sha256, manifest sha256) of each: what a trust policy
/// accepts unsigned as built into this binary.
pub fn digests() -> Vec<(String, String, String)> {
    BUNDLED.iter().map(|(n, w, m)| (n.to_string(), sha256_hex(w), sha256_hex(m.as_bytes()))).collect()
}
