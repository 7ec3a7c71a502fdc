//! The plugin set: every `NAME.wasm` + `NAME.toml` of a directory (or the
//! bundled set), each loaded on its own so one bad plugin never stops the
//! others.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::{Config, PluginFiles as PluginFilesConfig};
use crate::engine::Runtime;
use crate::error::{ErrorKind, PluginError};
use crate::manifest::Mode;
use crate::state::StateStore;
use crate::trust::Trust;
use crate::worker::{PluginVersion, Worker, sha256_hex};
use serde::Serialize;

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
    /// `NAME.sig`, if present.
    pub sig: Option<Vec<u8>>,
}

/// Which files a plugin version was made from (sha256 hex of each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Fingerprint {
    pub wasm: String,
    pub manifest: String,
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

/// The plugins built into this binary.
pub fn bundled() -> Vec<PluginFiles> {
    crate::bundled::BUNDLED
        .iter()
        .map(|(name, wasm, manifest)| PluginFiles {
            name: name.to_string(),
            wasm: wasm.to_vec(),
            manifest: manifest.to_string(),
            sig: None,
        })
        .collect()
}

/// The config's trust policy, with the bundled plugins trusted as built
/// (the same name, wasm and manifest; a changed manifest needs a signature
/// where signatures are required).
pub fn trust_policy(config: &Config) -> Result<Trust, crate::error::Error> {
    let builtin = crate::bundled::BUNDLED
        .iter()
        .map(|(name, wasm, manifest)| (name.to_string(), sha256_hex(wasm), sha256_hex(manifest.as_bytes())))
        .collect();
    Ok(Trust::from_config(&config.trust)?.with_builtin(builtin))
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

/// Loads a directory (or the bundled set when `dir` is `None`).
pub fn load_dir(
    runtime: &Runtime,
    config: &Config,
    state: &StateStore,
    dir: Option<&Path>,
) -> Result<PluginSet, crate::error::Error> {
    let trust = trust_policy(config)?;
    let (files, failures) = match dir {
        Some(d) => read_dir(d, &config.plugin_files)
            .map_err(|e| crate::error::Error::io(format!("plugin directory {}", d.display()), e))?,
        None => (bundled(), Vec::new()),
    };
    for e in &failures {
        tracing::error!(plugin = %e.plugin, kind = %e.kind, "not loaded: {}", e.message);
    }
    let mut set = load(runtime, config, state, files, &trust, dir);
    set.failures.splice(0..0, failures);
    Ok(set)
}

/// One plugin as the scoring path sees it: a running version and its mode.
#[derive(Clone)]
pub struct LivePlugin {
    pub worker: Arc<Worker>,
    pub mode: Mode,
}

/// The live plugin set: immutable, swapped whole. A batch scores against
/// one snapshot from start to end, so each verdict comes from exactly one
/// version of each plugin.
#[derive(Clone, Default)]
pub struct Snapshot {
    pub plugins: Vec<LivePlugin>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Serving.
    Active,
    /// No version could be loaded; not serving.
    Failed,
    /// Sitting out after repeated failures.
    Quarantined,
}

/// What the admin API says about a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub version: Option<String>,
    pub sha256: Option<String>,
    pub manifest_sha256: Option<String>,
    pub digest: Option<String>,
    pub mode: Option<Mode>,
    pub state: PluginState,
    /// Unix milliseconds.
    pub loaded_at: Option<u64>,
    pub last_error: Option<String>,
    pub rollback_available: bool,
}

#[derive(Default)]
struct Slot {
    active: Option<Arc<Worker>>,
    previous: Option<Arc<Worker>>,
    /// An API mode change; cleared when the plugin's files change.
    mode_override: Option<Mode>,
    loaded_at: Option<u64>,
    last_error: Option<String>,
    /// The files last tried, good or bad, so unchanged broken files are
    /// not tried again on every event.
    tried: Option<Fingerprint>,
    /// When a failure that may pass (a full instance pool, a timeout under
    /// load) is to be tried again, and the backoff after that.
    retry: Option<(Instant, Duration)>,
}

/// The plugin set of a running host: the snapshot scoring reads, and the
/// per-plugin status the reloader and the admin API write.
pub struct Registry {
    live: RwLock<Arc<Snapshot>>,
    slots: Mutex<BTreeMap<String, Slot>>,
    /// Bumped after every reload attempt and admin action (tests and
    /// readiness wait on it, never on sleeps).
    generation: AtomicU64,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Registry {
    pub fn new() -> Self {
        Self { live: RwLock::new(Arc::default()), slots: Mutex::new(BTreeMap::new()), generation: AtomicU64::new(0) }
    }

    /// A registry serving a fixed set (the `score` command).
    pub fn fixed(set: PluginSet) -> Self {
        let r = Self::new();
        for w in set.workers {
            let tried = Fingerprint {
                wasm: w.plugin.wasm_sha256.clone(),
                manifest: w.plugin.manifest_sha256.clone(),
                sig: None,
            };
            r.install(Arc::new(w), tried);
        }
        for e in set.failures {
            r.record_failure(&e.plugin, &e.to_string(), None, false);
        }
        r
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    // Rebuilds the snapshot from the slots; called with the slots locked so
    // concurrent changes cannot interleave.
    fn publish(&self, slots: &BTreeMap<String, Slot>) {
        let plugins = slots
            .values()
            .filter_map(|s| {
                let w = s.active.clone()?;
                let mode = s.mode_override.unwrap_or(w.plugin.manifest.raw.mode);
                Some(LivePlugin { worker: w, mode })
            })
            .collect();
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot { plugins });
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The files last tried for `name`, if any.
    pub fn tried(&self, name: &str) -> Option<Fingerprint> {
        self.slots().get(name).and_then(|s| s.tried.clone())
    }

    /// Whether `name`'s last attempt failed in a way worth retrying now.
    pub fn retry_due(&self, name: &str, now: Instant) -> bool {
        self.slots().get(name).and_then(|s| s.retry).is_some_and(|(at, _)| at <= now)
    }

    /// The next time a failed plugin is due to be tried again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.slots().values().filter_map(|s| s.retry.map(|r| r.0)).min()
    }

    /// Whether `name`'s files were tried and did not load (what a forced
    /// reload, SIGHUP, tries again).
    pub fn failed(&self, name: &str) -> bool {
        self.slots().get(name).is_some_and(|s| s.last_error.is_some())
    }

    pub fn active(&self, name: &str) -> Option<Arc<Worker>> {
        self.slots().get(name).and_then(|s| s.active.clone())
    }

    /// Makes `worker` the active version of its plugin; the one it replaces
    /// is kept for rollback. New files supersede any API mode change.
    pub fn install(&self, worker: Arc<Worker>, tried: Fingerprint) -> Option<Arc<Worker>> {
        let mut slots = self.slots();
        let name = worker.plugin.name.to_string();
        let slot = slots.entry(name).or_default();
        let old = slot.active.replace(worker);
        if old.is_some() {
            slot.previous = old.clone();
        }
        slot.mode_override = None;
        slot.loaded_at = Some(now_ms());
        slot.last_error = None;
        slot.tried = Some(tried);
        slot.retry = None;
        self.publish(&slots);
        old
    }

    /// A version that failed to load; the running one (if any) keeps
    /// serving. A `transient` failure is tried again later, with a backoff
    /// that doubles (1 s to 5 min) while it keeps failing.
    pub fn record_failure(&self, name: &str, error: &str, tried: Option<Fingerprint>, transient: bool) {
        let mut slots = self.slots();
        let slot = slots.entry(name.to_string()).or_default();
        let same_files = tried.is_some() && slot.tried == tried;
        slot.last_error = Some(error.to_string());
        slot.retry = transient.then(|| {
            let backoff = match slot.retry {
                Some((_, b)) if same_files => (b * 2).min(Duration::from_secs(300)),
                _ => Duration::from_secs(1),
            };
            (Instant::now() + backoff, backoff)
        });
        if tried.is_some() {
            slot.tried = tried;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The plugin's files are gone: stop serving it.
    pub fn remove(&self, name: &str) -> Option<Arc<Worker>> {
        let mut slots = self.slots();
        let old = slots.remove(name).and_then(|s| s.active);
        self.publish(&slots);
        old
    }

    pub fn names(&self) -> Vec<String> {
        self.slots().keys().cloned().collect()
    }

    /// Swaps back to the previous version. Returns (from, to) digests.
    pub fn rollback(&self, name: &str) -> Result<(Arc<Worker>, Arc<Worker>), String> {
        let mut slots = self.slots();
        let slot = slots.get_mut(name).ok_or_else(|| format!("no plugin named {name:?}"))?;
        let prev = slot.previous.take().ok_or_else(|| format!("{name}: no previous version to roll back to"))?;
        let cur = slot.active.replace(prev.clone());
        slot.previous = cur.clone();
        slot.loaded_at = Some(now_ms());
        let cur = cur.ok_or_else(|| format!("{name}: not active"))?;
        self.publish(&slots);
        Ok((cur, prev))
    }

    pub fn set_mode(&self, name: &str, mode: Mode) -> Result<(Mode, Arc<Worker>), String> {
        let mut slots = self.slots();
        let slot = slots.get_mut(name).ok_or_else(|| format!("no plugin named {name:?}"))?;
        let w = slot.active.clone().ok_or_else(|| format!("{name}: not active"))?;
        let old = slot.mode_override.unwrap_or(w.plugin.manifest.raw.mode);
        slot.mode_override = Some(mode);
        self.publish(&slots);
        Ok((old, w))
    }

    pub fn status(&self) -> Vec<PluginStatus> {
        self.slots()
            .iter()
            .map(|(name, s)| {
                let p = s.active.as_ref().map(|w| &w.plugin);
                PluginStatus {
                    name: name.clone(),
                    version: p.map(|p| p.version.to_string()),
                    sha256: p.map(|p| p.wasm_sha256.clone()),
                    manifest_sha256: p.map(|p| p.manifest_sha256.clone()),
                    digest: p.map(|p| p.digest.to_string()),
                    mode: p.map(|p| s.mode_override.unwrap_or(p.manifest.raw.mode)),
                    state: match &s.active {
                        None => PluginState::Failed,
                        Some(w) if w.health.lock().unwrap_or_else(|e| e.into_inner()).quarantined() => {
                            PluginState::Quarantined
                        }
                        Some(_) => PluginState::Active,
                    },
                    loaded_at: s.loaded_at,
                    last_error: s.last_error.clone(),
                    rollback_available: s.previous.is_some(),
                }
            })
            .collect()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}
