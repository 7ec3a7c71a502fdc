//! Hot reload: one path for start-up, file changes and SIGHUP. A changed
//! plugin is compiled, instantiated, initialised and run on a smoke batch
//! off the scoring path, then swapped in atomically; a version that fails
//! any step never replaces the running one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::batch::Batch;
use crate::check::smoke_records;
use crate::config::Config;
use crate::engine::{DetectorPre, Runtime, StoreData};
use crate::error::{ErrorKind, PluginError};
use crate::handles::Hasher64;
use crate::metrics::Metrics;
use crate::pipeline::run_plugins;
use crate::registry::{Fingerprint, PluginFiles, Registry, now_ms, read_dir};
use crate::state::{Namespace, StateStore};
use crate::trust::Trust;
use crate::worker::{PluginVersion, Worker, sha256_hex};

/// An append-only NDJSON log of reloads and admin actions.
pub struct Audit {
    file: Mutex<Option<std::fs::File>>,
}

impl Audit {
    pub fn open(path: &Path) -> Result<Self, crate::error::Error> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| crate::error::Error::io(format!("audit log {}", path.display()), e))?;
        Ok(Self { file: Mutex::new(Some(f)) })
    }

    pub fn disabled() -> Self {
        Self { file: Mutex::new(None) }
    }

    pub fn record(&self, mut event: serde_json::Value) {
        use std::io::Write;
        event["time_ms"] = json!(now_ms());
        tracing::info!(target: "vigil::audit", "{event}");
        if let Some(f) = self.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = writeln!(f, "{event}");
        }
    }
}

/// The outcome of one plugin's reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Loaded,
    Failed(ErrorKind),
    Removed,
}

pub struct Reloader {
    pub dir: PathBuf,
    runtime: Runtime,
    config: Config,
    state: StateStore,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
    hasher: Hasher64,
    trust: Trust,
    /// Compiled components by wasm sha256: a manifest-only change reuses one.
    compiled: Mutex<HashMap<String, DetectorPre<StoreData>>>,
    /// Serialises reloads: one at a time, whatever triggered them.
    busy: Mutex<()>,
}

const COMPILED_CACHE: usize = 32;

impl Reloader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dir: PathBuf,
        runtime: Runtime,
        config: Config,
        state: StateStore,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        audit: Arc<Audit>,
    ) -> Result<Self, crate::error::Error> {
        let hasher = Hasher64::new(config.handle_key().expect("validated config"));
        let trust = crate::registry::trust_policy(&config)?;
        Ok(Self {
            dir,
            runtime,
            config,
            state,
            registry,
            metrics,
            audit,
            hasher,
            trust,
            compiled: Mutex::new(HashMap::new()),
            busy: Mutex::new(()),
        })
    }

    /// Brings the registry in line with the directory. Unchanged files are
    /// not tried again, except a failure that may pass once its backoff is
    /// over, or any failure when `force` (SIGHUP). Returns what changed.
    pub fn reload_all(&self, cause: &str, force: bool) -> Vec<(String, Outcome)> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let mut outcomes = Vec::new();
        let (files, read_failures) = match read_dir(&self.dir, &self.config.plugin_files) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), "cannot read the plugin directory: {e}");
                return outcomes;
            }
        };
        let present: Vec<String> =
            files.iter().map(|f| f.name.clone()).chain(read_failures.iter().map(|e| e.plugin.clone())).collect();
        for name in self.registry.names() {
            if !present.contains(&name) {
                let old = self.registry.remove(&name);
                // Kept for a grace period in case the plugin comes back.
                self.state.retire(&name);
                self.audit.record(json!({"event": "reload", "cause": cause, "plugin": name, "outcome": "removed",
                    "old_sha256": old.as_ref().map(|w| w.plugin.wasm_sha256.clone())}));
                self.metrics.add(
                    "vigil_reloads_total",
                    vec![("plugin", name.clone()), ("outcome", "removed".into())],
                    1.0,
                );
                outcomes.push((name, Outcome::Removed));
            }
        }
        let now = std::time::Instant::now();
        for e in read_failures {
            // No files to hash: remember the error itself, to report it once.
            let tried =
                Fingerprint { wasm: "unreadable".into(), manifest: sha256_hex(e.message.as_bytes()), sig: None };
            if self.registry.tried(&e.plugin).as_ref() != Some(&tried) || force {
                self.fail(cause, &e, Some(tried));
                outcomes.push((e.plugin.clone(), Outcome::Failed(e.kind)));
            }
        }
        for f in files {
            let shas = f.fingerprint();
            let unchanged = self.registry.tried(&f.name).as_ref() == Some(&shas);
            let again = (force && self.registry.failed(&f.name)) || self.registry.retry_due(&f.name, now);
            if unchanged && !again {
                continue;
            }
            match self.load_one(&f, &shas.wasm) {
                Ok(worker) => {
                    let new = worker.plugin.clone();
                    let old = self.registry.install(Arc::new(worker), shas.clone());
                    self.audit.record(json!({"event": "reload", "cause": cause, "plugin": f.name, "outcome": "loaded",
                        "old_sha256": old.as_ref().map(|w| w.plugin.wasm_sha256.clone()),
                        "old_manifest_sha256": old.as_ref().map(|w| w.plugin.manifest_sha256.clone()),
                        "new_sha256": shas.wasm, "new_manifest_sha256": shas.manifest, "new_sig_sha256": shas.sig,
                        "version": &*new.version, "digest": &*new.digest}));
                    self.metrics.add(
                        "vigil_reloads_total",
                        vec![("plugin", f.name.clone()), ("outcome", "loaded".into())],
                        1.0,
                    );
                    tracing::info!(plugin = %f.name, version = %new.version, digest = %new.digest, "plugin live");
                    outcomes.push((f.name, Outcome::Loaded));
                }
                Err(e) => {
                    self.fail(cause, &e, Some(shas));
                    outcomes.push((f.name, Outcome::Failed(e.kind)));
                }
            }
        }
        outcomes
    }

    /// When the next failed plugin is due to be tried again.
    pub fn next_retry(&self) -> Option<std::time::Instant> {
        self.registry.next_retry()
    }

    fn fail(&self, cause: &str, e: &PluginError, shas: Option<Fingerprint>) {
        let serving = self.registry.active(&e.plugin);
        tracing::error!(plugin = %e.plugin, kind = %e.kind, still_serving = serving.is_some(), retry = e.transient,
            "reload failed: {}", e.message);
        self.audit.record(json!({"event": "reload", "cause": cause, "plugin": e.plugin, "outcome": "failed",
            "kind": e.kind, "error": e.message, "will_retry": e.transient,
            "new_sha256": shas.as_ref().map(|s| s.wasm.clone()),
            "new_manifest_sha256": shas.as_ref().map(|s| s.manifest.clone()),
            "new_sig_sha256": shas.as_ref().and_then(|s| s.sig.clone()),
            "still_serving": serving.as_ref().map(|w| w.plugin.wasm_sha256.clone())}));
        self.metrics.add("vigil_reloads_total", vec![("plugin", e.plugin.clone()), ("outcome", "failed".into())], 1.0);
        self.registry.record_failure(&e.plugin, &format!("{}: {}", e.kind, e.message), shas, e.transient);
    }

    /// Compile (or reuse), instantiate, init and smoke-test a candidate on a
    /// throwaway state namespace, then start its real worker.
    fn load_one(&self, f: &PluginFiles, wasm_sha: &str) -> Result<Worker, PluginError> {
        // Before anything from the files runs, or is even compiled.
        self.trust.check(&f.name, Some(&self.dir), &f.wasm, f.manifest.as_bytes(), f.sig.as_deref())?;
        crate::manifest::PluginManifest::parse(&f.name, &f.manifest, &self.config.limits, &self.config.ceilings)?;
        let cached = self.compiled.lock().unwrap_or_else(|e| e.into_inner()).get(wasm_sha).cloned();
        let pre = match cached {
            Some(p) => p,
            None => {
                let p = self.runtime.prepare(&f.wasm).map_err(|m| PluginError::new(&f.name, ErrorKind::Load, m))?;
                let mut c = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
                if c.len() >= COMPILED_CACHE {
                    c.clear();
                }
                c.insert(wasm_sha.to_string(), p.clone());
                p
            }
        };
        let scratch = Arc::new(Mutex::new(Namespace::new(self.config.state.clone())));
        let (version, seed) = PluginVersion::load_prepared(
            &self.runtime,
            &f.name,
            pre,
            wasm_sha.to_string(),
            &f.manifest,
            &self.config,
            scratch.clone(),
        )?;
        let trial = Worker::spawn(version.clone(), seed, scratch);
        let batch = Arc::new(Batch::new(smoke_records(), &self.hasher));
        let outcome = run_plugins(std::iter::once(&trial), &batch).pop().expect("one outcome");
        // The trial's instance is freed before the real one is made, so a
        // reload never needs more than one spare pool slot.
        trial.stop();
        if let Err(mut e) = outcome.result {
            e.message = format!("smoke batch: {}", e.message);
            return Err(e);
        }
        version.start(self.state.namespace(&f.name))
    }
}

/// What wakes the reload thread.
pub enum Trigger {
    /// Something changed in the directory (debounced).
    Files,
    /// SIGHUP or an explicit request: reload now, and try every plugin that
    /// failed again even if its files did not change.
    Now(&'static str),
    Stop,
}

/// Runs reloads on a dedicated, lower-priority thread: file events are
/// gathered until quiet for `debounce`, then one `reload_all`. Returns the
/// sender for other triggers (SIGHUP).
pub fn spawn(reloader: Arc<Reloader>, debounce: Duration, rescan: Option<Duration>) -> Sender<Trigger> {
    let (tx, rx) = mpsc::channel::<Trigger>();
    start_watcher(&reloader.dir, tx.clone());
    std::thread::Builder::new()
        .name("vigil-reload".into())
        .spawn(move || {
            lower_priority();
            reload_loop(&reloader, rx, debounce, rescan)
        })
        .expect("spawn reload thread");
    tx
}

fn reload_loop(r: &Reloader, rx: Receiver<Trigger>, debounce: Duration, rescan: Option<Duration>) {
    let rescan = rescan.unwrap_or(Duration::from_secs(3600 * 24 * 365));
    let mut next_scan = std::time::Instant::now() + rescan;
    loop {
        // Wake for the next rescan, or sooner for a failure due a retry.
        let now = std::time::Instant::now();
        let wake = r.next_retry().map_or(next_scan, |t| t.min(next_scan));
        let (cause, force) = match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(Trigger::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Trigger::Now(c)) => (c, true),
            Err(RecvTimeoutError::Timeout) if std::time::Instant::now() >= next_scan => {
                next_scan = std::time::Instant::now() + rescan;
                ("rescan", false)
            }
            Err(RecvTimeoutError::Timeout) => ("retry", false),
            Ok(Trigger::Files) => {
                // An editor's save is several events (write temp, rename,
                // chmod): wait until they stop.
                loop {
                    match rx.recv_timeout(debounce) {
                        Ok(Trigger::Files) => continue,
                        Ok(Trigger::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                        Ok(Trigger::Now(_)) | Err(RecvTimeoutError::Timeout) => break,
                    }
                }
                ("files changed", false)
            }
        };
        r.reload_all(cause, force);
    }
}

// The directory is watched, not the files, so rename-on-save, new and
// deleted plugins all show up. A watcher error is logged and the periodic
// rescan covers what it may have missed.
fn start_watcher(dir: &Path, tx: Sender<Trigger>) {
    use notify::{RecursiveMode, Watcher};
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) if !ev.kind.is_access() => {
            let _ = tx.send(Trigger::Files);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("plugin directory watcher: {e}"),
    };
    match notify::recommended_watcher(handler) {
        Ok(mut w) => match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                // The watcher lives as long as the process.
                std::mem::forget(w);
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), "cannot watch the plugin directory: {e}; relying on rescans")
            }
        },
        Err(e) => tracing::error!("no file watcher: {e}; relying on rescans"),
    }
}

/// Compiling a new plugin version must not starve scoring: the reload
/// thread runs under SCHED_IDLE (only when a core has nothing else to do),
/// or failing that at the lowest nice level.
fn lower_priority() {
    // SAFETY: plain syscalls on the current thread; failure is harmless.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        }
    }
}
