//! The live plugin set ([`Registry`]), swapped whole; loading a set
//! ([`load`]) and the reconciler that keeps it in line with a plugin
//! directory ([`reconcile`]).

pub mod load;
pub mod reconcile;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::worker::Worker;
use crate::error::RegistryError;
use crate::metrics::PluginGauge;
use crate::plugin::files::Fingerprint;
use crate::plugin::manifest::Mode;
use crate::util::{lock, now_ms};

/// One plugin as the scoring path sees it: a running version and its mode.
#[derive(Clone)]
pub struct LivePlugin {
    pub(crate) worker: Arc<Worker>,
    pub(crate) mode: Mode,
}

/// The live plugin set: immutable, swapped whole. A batch scores against
/// one snapshot from start to end, so each verdict comes from exactly one
/// version of each plugin.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// The live plugins, sorted by name.
    pub plugins: Vec<LivePlugin>,
    /// Candidates in shadow, sorted by name: they score every batch beside
    /// the live set; their signals are compared, never counted.
    pub shadows: Vec<LivePlugin>,
}

impl Snapshot {
    /// What `/metrics` shows of each live plugin.
    pub fn gauges(&self) -> Vec<PluginGauge> {
        self.plugins
            .iter()
            .map(|p| {
                let v = &p.worker.plugin;
                PluginGauge {
                    plugin: v.name.to_string(),
                    version: v.version.to_string(),
                    sha256: v.wasm_sha256.clone(),
                    manifest_sha256: v.manifest_sha256.clone(),
                    digest: v.digest.to_string(),
                    mode: p.mode.as_str(),
                    quarantined: lock(&p.worker.health).quarantined(),
                }
            })
            .collect()
    }
}

/// Whether a plugin is serving, as the admin API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Serving.
    Active,
    /// No version could be loaded; not serving.
    Failed,
    /// Sitting out after repeated failures.
    Quarantined,
    /// Only a candidate in shadow (`shadow/NAME.wasm`), nothing live.
    Shadow,
}

/// What the admin API says about a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// The plugin's name.
    pub name: String,
    /// The active version, as its manifest gives it.
    pub version: Option<String>,
    /// sha256 of the active `.wasm`.
    pub sha256: Option<String>,
    /// sha256 of the active manifest.
    pub manifest_sha256: Option<String>,
    /// The active build's digest, as its signals carry it.
    pub digest: Option<String>,
    /// The `vigil:detector` version the active build targets (`0.2.0`).
    pub contract: Option<String>,
    /// The mode in force: the manifest's, or one set through the API.
    pub mode: Option<Mode>,
    /// Serving, failed or quarantined.
    pub state: PluginState,
    /// When the active version went live (or was rolled back to), Unix
    /// milliseconds.
    pub loaded_at: Option<i64>,
    /// Why the last attempt to load the plugin failed; cleared by a
    /// successful load.
    pub last_error: Option<String>,
    /// A previous version is kept to roll back to.
    pub rollback_available: bool,
    /// A candidate version in shadow, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
}

/// A candidate in shadow, as the admin API reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowStatus {
    /// Its version, as its manifest gives it (none if it failed to load).
    pub version: Option<String>,
    /// Its build's digest.
    pub digest: Option<String>,
    /// When it started scoring in shadow, Unix milliseconds.
    pub since: Option<i64>,
    /// Why the last attempt to load it failed.
    pub last_error: Option<String>,
}

/// The state namespace of `name`'s candidate in shadow: its own, so that
/// it never writes the live version's counters.
pub fn shadow_namespace(name: &str) -> String {
    // '@' is not allowed in plugin names: no plugin can own this one.
    format!("{name}@shadow")
}

#[derive(Default)]
struct Slot {
    active: Option<Arc<Worker>>,
    previous: Option<Arc<Worker>>,
    /// An API mode change; cleared when the plugin's files change.
    mode_override: Option<Mode>,
    loaded_at: Option<i64>,
    last_error: Option<String>,
    /// The files last tried, good or bad, so unchanged broken files are
    /// not tried again on every event.
    tried: Option<Fingerprint>,
    /// When a failure that may pass (a full instance pool, a timeout under
    /// load) is to be tried again, and the backoff after that.
    retry: Option<(Instant, Duration)>,
    /// A candidate version in shadow, when `shadow/NAME.wasm` is present.
    shadow: Option<Arc<Worker>>,
    shadow_since: Option<i64>,
    shadow_tried: Option<Fingerprint>,
    shadow_error: Option<String>,
}

/// The plugin set of a running host: the snapshot scoring reads, and the
/// per-plugin status the reloader and the admin API write.
pub struct Registry {
    live: RwLock<Arc<Snapshot>>,
    slots: Mutex<BTreeMap<String, Slot>>,
    /// Bumped after every reload attempt and admin action; `changed`
    /// wakes whoever waits for one (`wait_until`), so nobody polls.
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Registry {
    /// No plugins.
    pub fn new() -> Self {
        Self {
            live: RwLock::new(Arc::default()),
            slots: Mutex::new(BTreeMap::new()),
            generation: Mutex::new(0),
            changed: Condvar::new(),
        }
    }

    /// A registry serving a fixed set (the `score` command).
    pub fn fixed(set: crate::registry::load::PluginSet) -> Self {
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

    /// The live set now; it stays as it is while the caller holds it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many changes the registry has seen (reload attempts, swaps,
    /// admin actions).
    pub fn generation(&self) -> u64 {
        *lock(&self.generation)
    }

    fn bump(&self) {
        *lock(&self.generation) += 1;
        self.changed.notify_all();
    }

    /// Waits until `done` holds, checking it again after every change;
    /// false if `timeout` passes first.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&Registry) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            // `done` may lock the slots, which `bump` is called under: never
            // hold the generation lock while calling it.
            let seen = self.generation();
            if done(self) {
                return true;
            }
            let mut g = lock(&self.generation);
            while *g == seen {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    drop(g);
                    return done(self);
                }
                g = self.changed.wait_timeout(g, left).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        lock(&self.slots)
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
        let shadows = slots
            .values()
            .filter_map(|s| {
                let w = s.shadow.clone()?;
                let mode = w.plugin.manifest.raw.mode;
                Some(LivePlugin { worker: w, mode })
            })
            .collect();
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot { plugins, shadows });
        self.bump();
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

    /// The version of `name` now serving, if any.
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
        self.bump();
    }

    /// The plugin's files are gone: stop serving it (a candidate in shadow
    /// stays).
    pub fn remove(&self, name: &str) -> Option<Arc<Worker>> {
        let mut slots = self.slots();
        let old = match slots.get_mut(name) {
            Some(s) if s.shadow_tried.is_some() => {
                // Only the live side goes; the candidate in shadow stays.
                let kept = Slot {
                    shadow: s.shadow.take(),
                    shadow_since: s.shadow_since,
                    shadow_tried: s.shadow_tried.take(),
                    shadow_error: s.shadow_error.take(),
                    ..Slot::default()
                };
                std::mem::replace(s, kept).active
            }
            _ => slots.remove(name).and_then(|s| s.active),
        };
        self.publish(&slots);
        old
    }

    /// Every plugin the registry knows of with files in the directory,
    /// serving or not, sorted.
    pub fn names(&self) -> Vec<String> {
        self.slots().iter().filter(|(_, s)| s.tried.is_some() || s.active.is_some()).map(|(n, _)| n.clone()).collect()
    }

    /// Plugins with a candidate in shadow (or one that failed to load).
    pub fn shadow_names(&self) -> Vec<String> {
        self.slots().iter().filter(|(_, s)| s.shadow_tried.is_some()).map(|(n, _)| n.clone()).collect()
    }

    /// The candidate of `name` in shadow, if one is scoring.
    pub fn shadow(&self, name: &str) -> Option<Arc<Worker>> {
        self.slots().get(name).and_then(|s| s.shadow.clone())
    }

    /// The shadow files last tried for `name`, if any.
    pub fn shadow_tried(&self, name: &str) -> Option<Fingerprint> {
        self.slots().get(name).and_then(|s| s.shadow_tried.clone())
    }

    /// Puts `worker` in shadow beside its plugin's live version; returns
    /// the candidate it replaces.
    pub fn install_shadow(&self, worker: Arc<Worker>, tried: Fingerprint) -> Option<Arc<Worker>> {
        let mut slots = self.slots();
        let slot = slots.entry(worker.plugin.name.to_string()).or_default();
        let old = slot.shadow.replace(worker);
        slot.shadow_since = Some(now_ms());
        slot.shadow_tried = Some(tried);
        slot.shadow_error = None;
        self.publish(&slots);
        old
    }

    /// A candidate that failed to load: none is in shadow until it is fixed.
    pub fn shadow_failed(&self, name: &str, error: &str, tried: Fingerprint) -> Option<Arc<Worker>> {
        let mut slots = self.slots();
        let slot = slots.entry(name.to_string()).or_default();
        let old = slot.shadow.take();
        slot.shadow_since = None;
        slot.shadow_tried = Some(tried);
        slot.shadow_error = Some(error.to_string());
        self.publish(&slots);
        old
    }

    /// The shadow files are gone (removed, or promoted).
    pub fn remove_shadow(&self, name: &str) -> Option<Arc<Worker>> {
        let mut slots = self.slots();
        let slot = slots.get_mut(name)?;
        let old = slot.shadow.take();
        (slot.shadow_since, slot.shadow_tried, slot.shadow_error) = (None, None, None);
        if slot.tried.is_none() && slot.active.is_none() {
            slots.remove(name);
        }
        self.publish(&slots);
        old
    }

    /// Swaps back to the previous version (the current one becomes the
    /// previous, so a second rollback undoes the first). Returns (from, to).
    pub fn rollback(&self, name: &str) -> Result<(Arc<Worker>, Arc<Worker>), RegistryError> {
        let mut slots = self.slots();
        let slot = slots.get_mut(name).ok_or_else(|| RegistryError::NotFound(name.into()))?;
        let cur = slot.active.clone().ok_or_else(|| RegistryError::NotActive(name.into()))?;
        let prev = slot.previous.take().ok_or_else(|| RegistryError::NoPrevious(name.into()))?;
        slot.active = Some(prev.clone());
        slot.previous = Some(cur.clone());
        slot.loaded_at = Some(now_ms());
        self.publish(&slots);
        Ok((cur, prev))
    }

    /// Sets the plugin's mode until its files change. Returns the mode it
    /// had and the version it applies to.
    pub fn set_mode(&self, name: &str, mode: Mode) -> Result<(Mode, Arc<Worker>), RegistryError> {
        let mut slots = self.slots();
        let slot = slots.get_mut(name).ok_or_else(|| RegistryError::NotFound(name.into()))?;
        let w = slot.active.clone().ok_or_else(|| RegistryError::NotActive(name.into()))?;
        let old = slot.mode_override.unwrap_or(w.plugin.manifest.raw.mode);
        slot.mode_override = Some(mode);
        self.publish(&slots);
        Ok((old, w))
    }

    /// Every plugin's status, sorted by name (what the admin API shows).
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
                    contract: p.map(|p| p.contract.0.clone()),
                    mode: p.map(|p| s.mode_override.unwrap_or(p.manifest.raw.mode)),
                    state: match &s.active {
                        None if s.tried.is_none() && s.shadow_tried.is_some() => PluginState::Shadow,
                        None => PluginState::Failed,
                        Some(w) if lock(&w.health).quarantined() => PluginState::Quarantined,
                        Some(_) => PluginState::Active,
                    },
                    loaded_at: s.loaded_at,
                    last_error: s.last_error.clone(),
                    rollback_available: s.previous.is_some(),
                    shadow: s.shadow_tried.as_ref().map(|_| ShadowStatus {
                        version: s.shadow.as_ref().map(|w| w.plugin.version.to_string()),
                        digest: s.shadow.as_ref().map(|w| w.plugin.digest.to_string()),
                        since: s.shadow_since,
                        last_error: s.shadow_error.clone(),
                    }),
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
