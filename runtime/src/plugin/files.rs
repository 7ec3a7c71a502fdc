//! A plugin's files in a plugin directory: `NAME.wasm`, `NAME.toml` and
//! `NAME.sig`, read with bounds, and what identifies them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::PluginFiles as PluginFilesConfig;
use crate::error::{ErrorKind, PluginError};
use crate::util::sha256_hex;

/// A plugin's files, read but not yet loaded.
#[derive(Clone)]
pub struct PluginFiles {
    /// The plugin's name: the files' stem.
    pub name: String,
    /// The bytes of `NAME.wasm`.
    pub wasm: Vec<u8>,
    /// The text of `NAME.toml`.
    pub manifest: String,
    /// `NAME.sig`, if present.
    pub sig: Option<Vec<u8>>,
}

/// Which files a plugin version was made from (sha256 hex of each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// sha256 of `NAME.wasm`.
    pub wasm: String,
    /// sha256 of `NAME.toml`.
    pub manifest: String,
    /// sha256 of `NAME.sig`, if present.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sig: Option<String>,
}

impl PluginFiles {
    /// Identifies exactly these files (wasm, manifest and signature).
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            wasm: sha256_hex(&self.wasm),
            manifest: sha256_hex(self.manifest.as_bytes()),
            sig: self.sig.as_deref().map(sha256_hex),
        }
    }
}

/// Names the host's own stages sign their signals with: a plugin under one
/// would be mistaken for them.
pub const RESERVED_NAMES: [&str; 1] = ["campaign"];

/// Is `name` usable as a plugin identity (file stem)?
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reads one plugin file: only a regular file, at most `max` bytes, and
/// (unless `limits.follow_links_outside`) not through a link that leads out
/// of `dir`. A FIFO, a device or a directory under a plugin's name is
/// refused without being read, so it cannot wedge or flood the reader.
/// `Ok(None)`: no such file.
pub fn read_plugin_file(
    dir: &Path,
    file: &str,
    max: u64,
    limits: &PluginFilesConfig,
) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(file);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{file}: {e}")),
    };
    let target = if meta.file_type().is_symlink() {
        let target = std::fs::canonicalize(&path).map_err(|e| format!("{file}: a link that does not resolve ({e})"))?;
        let root = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !target.starts_with(&root) && !limits.follow_links_outside {
            return Err(format!(
                "{file} is a link that leads out of the plugin directory: refused \
                 (set plugin_files.follow_links_outside = true to allow)"
            ));
        }
        target
    } else {
        path
    };
    // Non-blocking, so opening a FIFO returns at once instead of waiting
    // for a writer; the type check below then refuses it.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(&target)
        .map_err(|e| format!("{file}: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("{file}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{file} is not a regular file: refused"));
    }
    if meta.len() > max {
        return Err(format!("{file} is {} bytes, over the limit of {max}", meta.len()));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(max + 1).read_to_end(&mut buf).map_err(|e| format!("{file}: {e}"))?;
    if buf.len() as u64 > max {
        return Err(format!("{file} grew past the limit of {max} bytes while being read: refused"));
    }
    Ok(Some(buf))
}

/// Reads the plugin pairs of `dir`. A `.wasm` without a manifest (or the
/// reverse), or an unreadable file, is a failure naming the plugin.
pub fn read_dir(
    dir: &Path,
    limits: &PluginFilesConfig,
) -> Result<(Vec<PluginFiles>, Vec<PluginError>), std::io::Error> {
    let mut names = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str());
        if matches!(ext, Some("wasm") | Some("toml") | Some("sig"))
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.insert(stem.to_string());
        }
    }
    let mut files = Vec::new();
    let mut failures = Vec::new();
    for name in names {
        match read_plugin(dir, &name, limits) {
            Ok(f) => files.push(f),
            Err(e) => failures.push(e),
        }
    }
    Ok((files, failures))
}

/// Reads `NAME.wasm`, `NAME.toml` and (if present) `NAME.sig` from `dir`.
pub fn read_plugin(dir: &Path, name: &str, limits: &PluginFilesConfig) -> Result<PluginFiles, PluginError> {
    let fail = |kind, m: String| PluginError::new(name, kind, m);
    if !valid_name(name) {
        return Err(fail(ErrorKind::Load, "plugin names are letters, digits, '-' and '_' (at most 64)".into()));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(fail(
            ErrorKind::Load,
            format!("{name:?} is the name of the host's campaign stage; rename the plugin"),
        ));
    }
    let read = |ext: &str, max: u64| read_plugin_file(dir, &format!("{name}.{ext}"), max, limits);
    let wasm = read("wasm", limits.max_wasm_bytes)
        .map_err(|m| fail(ErrorKind::Load, m))?
        .ok_or_else(|| fail(ErrorKind::Load, format!("{name}.wasm is missing")))?;
    let manifest = read("toml", limits.max_manifest_bytes)
        .map_err(|m| fail(ErrorKind::Manifest, m))?
        .ok_or_else(|| fail(ErrorKind::Manifest, format!("{name}.toml is missing: a plugin needs its manifest")))?;
    let manifest =
        String::from_utf8(manifest).map_err(|_| fail(ErrorKind::Manifest, format!("{name}.toml is not UTF-8 text")))?;
    let sig = read("sig", limits.max_manifest_bytes).map_err(|m| fail(ErrorKind::Signature, m))?;
    Ok(PluginFiles { name: name.to_string(), wasm, manifest, sig })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_cannot_take_the_campaign_stage_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("campaign.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.path().join("campaign.toml"), "version = \"1.0.0\"\n").unwrap();
        let Err(e) = read_plugin(dir.path(), "campaign", &Default::default()) else { panic!("loaded as campaign") };
        assert!(e.to_string().contains("campaign stage"), "{e}");
    }
}
