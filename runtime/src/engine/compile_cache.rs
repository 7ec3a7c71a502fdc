//! Compiled plugins on disk, so a restart or a second `vigil score` skips
//! Cranelift. Loading a compiled artifact runs it as native code with no
//! validation, so only artifacts this host wrote may ever be loaded: each
//! entry carries an HMAC-SHA256 under a key that never leaves the cache
//! directory's `key` file (created 0600). A planted, corrupted or stale
//! entry fails the check and is compiled again from the `.wasm`.
//!
//! Entries are keyed by the wasm's sha256 and the engine's compatibility
//! hash (wasmtime version and every setting that changes code), so a host
//! upgrade or a different engine configuration never reuses an entry.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 8] = b"VIGILC1\0";
const MAC_LEN: usize = 32;

/// What happened on a lookup (for tests, logs and the benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A good entry was loaded; nothing was compiled.
    Hit,
    /// No entry: compiled, and an entry written if possible.
    Miss,
    /// An entry was there but failed the check; it was compiled again.
    Rejected,
}

/// A directory of compiled plugins, each entry authenticated with the
/// directory's key.
pub struct CompileCache {
    dir: PathBuf,
    key: [u8; 32],
    engine_id: String,
}

impl CompileCache {
    /// Opens (creating) the cache directory and its key.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let key_path = dir.join("key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 32 => k.try_into().expect("32 bytes"),
            _ => {
                let mut k = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
                write_private(&key_path, &k)?;
                k
            }
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_id = format!("{:016x}", h.finish());
        Ok(Self { dir: dir.to_path_buf(), key, engine_id })
    }

    /// The entry's file for a wasm with this sha256 (hex).
    pub fn entry_path(&self, wasm_sha256: &str) -> PathBuf {
        let name = hex::encode(Sha256::digest(format!("{wasm_sha256}/{}", self.engine_id)));
        self.dir.join(format!("{}.cwasm", &name[..32]))
    }

    fn mac(&self, path: &Path, artifact: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("any key length");
        // Bound to the entry's name, so a valid entry cannot be moved under
        // another plugin's name.
        m.update(path.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        m.update(artifact);
        m
    }

    /// The component for `wasm`, from the cache if a valid entry is there,
    /// else compiled (and stored).
    pub fn load_or_compile(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Component, Lookup)> {
        let path = self.entry_path(&hex::encode(Sha256::digest(wasm)));
        let mut lookup = Lookup::Miss;
        if let Ok(bytes) = std::fs::read(&path) {
            match self.verified(&path, &bytes) {
                Some(artifact) => {
                    // SAFETY: the artifact carries our MAC: this host wrote
                    // it with `Component::serialize` for this wasm, and the
                    // file name pins the engine configuration.
                    match unsafe { Component::deserialize(engine, artifact) } {
                        Ok(c) => return Ok((c, Lookup::Hit)),
                        Err(e) => tracing::warn!(path = %path.display(), "compiled cache entry unusable: {e:#}"),
                    }
                }
                None => tracing::warn!(path = %path.display(), "compiled cache entry failed its check; recompiling"),
            }
            lookup = Lookup::Rejected;
            let _ = std::fs::remove_file(&path);
        }
        let component = Component::from_binary(engine, wasm)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), "could not write the compiled cache: {e}");
        }
        Ok((component, lookup))
    }

    fn verified<'a>(&self, path: &Path, bytes: &'a [u8]) -> Option<&'a [u8]> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        if rest.len() < MAC_LEN {
            return None;
        }
        let (tag, artifact) = rest.split_at(MAC_LEN);
        self.mac(path, artifact).verify_slice(tag).ok()?;
        Some(artifact)
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        let artifact = component.serialize().map_err(std::io::Error::other)?;
        let tag = self.mac(path, &artifact).finalize().into_bytes();
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&tag)?;
            f.write_all(&artifact)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(bytes)
}
