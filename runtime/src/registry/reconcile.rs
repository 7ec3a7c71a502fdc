//! The reconciler: brings the registry in line with a plugin directory,
//! for start-up, file changes, retries and SIGHUP alike. A changed plugin
//! is checked against the trust policy, compiled (a manifest-only change
//! reuses the compiled component), instantiated, initialised and run on a
//! smoke batch off the scoring path, then swapped in atomically; a version
//! that fails any step never replaces the running one. Each call reports
//! what it did as events, for the caller's audit log and metrics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::batch::Batch;
use crate::batch::handles::Hasher64;
use crate::config::Config;
use crate::engine::worker::{PluginVersion, Worker, run_all};
use crate::engine::{Linked, Runtime};
use crate::error::{ErrorKind, PluginError};
use crate::plugin::files::{Fingerprint, PluginFiles, read_dir};
use crate::plugin::smoke::smoke_records;
use crate::plugin::trust::Trust;
use crate::registry::Registry;
use crate::state::{Namespace, StateStore};
use crate::util::{lock, sha256_hex};

/// What a reload did to a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A new version is live.
    Loaded,
    /// The files did not load; the running version (if any) keeps serving.
    Failed,
    /// The files are gone; the plugin stopped serving.
    Removed,
}

impl Outcome {
    /// `loaded`, `failed` or `removed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Loaded => "loaded",
            Outcome::Failed => "failed",
            Outcome::Removed => "removed",
        }
    }
}

/// One plugin's reload, as the audit log records it.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadEvent {
    /// What triggered it: start-up, files changed, rescan, retry, SIGHUP.
    pub cause: String,
    /// The plugin's name.
    pub plugin: String,
    /// What happened.
    pub outcome: Outcome,
    /// On failures: the kind of error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ErrorKind>,
    /// On failures: the error message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set on failures: whether it is tried again without its files changing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub will_retry: Option<bool>,
    /// The wasm sha256 of the version this replaced or removed, if any.
    pub old_sha256: Option<String>,
    /// On loads: the manifest sha256 of the version replaced, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_manifest_sha256: Option<String>,
    /// The sha256 of the `.wasm` tried, or `unreadable` if the plugin's
    /// files could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_sha256: Option<String>,
    /// The sha256 of the manifest tried (of the error message, if the
    /// files could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_manifest_sha256: Option<String>,
    /// The sha256 of the `.sig` tried, if there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_sig_sha256: Option<String>,
    /// On loads: the new version, as its manifest gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// On loads: the new build's digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// On failures: the wasm sha256 of the version still serving, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub still_serving: Option<String>,
    /// The plugin's candidate in shadow (`shadow/NAME.*`), not its live
    /// version.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

impl ReloadEvent {
    fn new(cause: &str, plugin: &str, outcome: Outcome) -> Self {
        Self {
            cause: cause.to_string(),
            plugin: plugin.to_string(),
            outcome,
            kind: None,
            error: None,
            will_retry: None,
            old_sha256: None,
            old_manifest_sha256: None,
            new_sha256: None,
            new_manifest_sha256: None,
            new_sig_sha256: None,
            version: None,
            digest: None,
            still_serving: None,
            shadow: false,
        }
    }

    fn files(mut self, f: &Fingerprint) -> Self {
        self.new_sha256 = Some(f.wasm.clone());
        self.new_manifest_sha256 = Some(f.manifest.clone());
        self.new_sig_sha256 = f.sig.clone();
        self
    }
}

/// A plugin directory kept in line with a registry.
pub struct Reconciler {
    /// The watched plugin directory.
    pub dir: PathBuf,
    runtime: Runtime,
    config: Config,
    state: StateStore,
    registry: Arc<Registry>,
    hasher: Hasher64,
    trust: Trust,
    /// Compiled components by wasm sha256: a manifest-only change reuses one.
    compiled: Mutex<HashMap<String, Linked>>,
    /// Serialises reloads: one at a time, whatever triggered them.
    busy: Mutex<()>,
}

const COMPILED_CACHE: usize = 32;

/// The subdirectory of the plugin directory that holds candidates in
/// shadow: `shadow/NAME.wasm` + `NAME.toml` runs beside the live `NAME`.
pub const SHADOW_DIR: &str = "shadow";

impl Reconciler {
    /// A reconciler of `dir` into `registry`, with plugin state from `state`.
    pub fn new(
        dir: PathBuf,
        runtime: Runtime,
        config: Config,
        state: StateStore,
        registry: Arc<Registry>,
        trust: Trust,
    ) -> Self {
        let hasher = Hasher64::new(config.handle_key().expect("validated config"));
        Self {
            dir,
            runtime,
            config,
            state,
            registry,
            hasher,
            trust,
            compiled: Mutex::new(HashMap::new()),
            busy: Mutex::new(()),
        }
    }

    /// Brings the registry in line with the directory. Unchanged files are
    /// not tried again, except a failure that may pass once its backoff is
    /// over, or any failure when `force` (SIGHUP). Returns what it did.
    pub fn reload_all(&self, cause: &str, force: bool) -> Vec<ReloadEvent> {
        let _one_at_a_time = lock(&self.busy);
        let mut events = Vec::new();
        let (files, read_failures) = match read_dir(&self.dir, &self.config.plugin_files) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), "cannot read the plugin directory: {e}");
                return events;
            }
        };
        let present: Vec<&str> =
            files.iter().map(|f| f.name.as_str()).chain(read_failures.iter().map(|e| e.plugin.as_str())).collect();
        for name in self.registry.names() {
            if !present.contains(&name.as_str()) {
                let old = self.registry.remove(&name);
                // Kept for a grace period in case the plugin comes back.
                self.state.retire(&name);
                let mut e = ReloadEvent::new(cause, &name, Outcome::Removed);
                e.old_sha256 = old.map(|w| w.plugin.wasm_sha256.clone());
                events.push(e);
            }
        }
        let now = Instant::now();
        for e in read_failures {
            // No files to hash: remember the error itself, to report it once.
            let tried =
                Fingerprint { wasm: "unreadable".into(), manifest: sha256_hex(e.message.as_bytes()), sig: None };
            if self.registry.tried(&e.plugin).as_ref() != Some(&tried) || force {
                events.push(self.fail(cause, &e, tried));
            }
        }
        for f in files {
            let shas = f.fingerprint();
            let unchanged = self.registry.tried(&f.name).as_ref() == Some(&shas);
            let again = (force && self.registry.failed(&f.name)) || self.registry.retry_due(&f.name, now);
            if unchanged && !again {
                continue;
            }
            match self.load_one(&f, &shas.wasm, &f.name) {
                Ok(worker) => {
                    let new = worker.plugin.clone();
                    let old = self.registry.install(Arc::new(worker), shas.clone());
                    tracing::info!(plugin = %f.name, version = %new.version, digest = %new.digest, "plugin live");
                    let mut e = ReloadEvent::new(cause, &f.name, Outcome::Loaded).files(&shas);
                    e.old_sha256 = old.as_ref().map(|w| w.plugin.wasm_sha256.clone());
                    e.old_manifest_sha256 = old.as_ref().map(|w| w.plugin.manifest_sha256.clone());
                    e.version = Some(new.version.to_string());
                    e.digest = Some(new.digest.to_string());
                    events.push(e);
                }
                Err(e) => events.push(self.fail(cause, &e, shas)),
            }
        }
        events.extend(self.reload_shadows(cause, force));
        events
    }

    /// Makes `name`'s candidate in shadow its live version: under the
    /// reload lock, checks that `shadow/NAME.*` are still the files that
    /// were loaded and compared, moves them over `NAME.*` (`.sig` and
    /// `.toml` before `.wasm`; the live version's `.sig` goes when the
    /// candidate has none), then reloads, which makes them live (the old
    /// version kept for rollback) and ends the shadow. Returns the reload's
    /// events; the registry says whether the candidate went live.
    pub fn promote(&self, name: &str) -> Result<Vec<ReloadEvent>, String> {
        {
            let _one_at_a_time = lock(&self.busy);
            let (Some(_), Some(tried)) = (self.registry.shadow(name), self.registry.shadow_tried(name)) else {
                return Err(format!("{name} has no loaded candidate in shadow to promote"));
            };
            let shadow = self.dir.join(SHADOW_DIR);
            let files = crate::plugin::files::read_plugin(&shadow, name, &self.config.plugin_files)
                .map_err(|e| format!("shadow/{name}: {}: {}", e.kind, e.message))?;
            if files.fingerprint() != tried {
                return Err(format!(
                    "shadow/{name} changed since the candidate in shadow was loaded: promote it once it has loaded"
                ));
            }
            let file = |dir: &Path, ext: &str| dir.join(format!("{name}.{ext}"));
            let moved = (|| -> std::io::Result<()> {
                if files.sig.is_some() {
                    std::fs::rename(file(&shadow, "sig"), file(&self.dir, "sig"))?;
                } else if let Err(e) = std::fs::remove_file(file(&self.dir, "sig"))
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(e);
                }
                std::fs::rename(file(&shadow, "toml"), file(&self.dir, "toml"))?;
                std::fs::rename(file(&shadow, "wasm"), file(&self.dir, "wasm"))
            })();
            moved.map_err(|e| format!("moving shadow/{name} into {}: {e}", self.dir.display()))?;
        }
        Ok(self.reload_all("promote", false))
    }

    /// Brings the candidates in shadow in line with `DIR/shadow/`: each
    /// scores beside its plugin's live version on its own state, its
    /// signals compared and never counted. Loaded like any version.
    /// A candidate that failed to load is tried again when its files change
    /// or on a forced reload (SIGHUP).
    fn reload_shadows(&self, cause: &str, force: bool) -> Vec<ReloadEvent> {
        let dir = self.dir.join(SHADOW_DIR);
        let (files, read_failures) = match read_dir(&dir, &self.config.plugin_files) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), Vec::new()),
            Err(e) => {
                tracing::error!(dir = %dir.display(), "cannot read the shadow directory: {e}");
                return Vec::new();
            }
        };
        let mut events = Vec::new();
        let shadow_event = |name: &str, outcome| ReloadEvent { shadow: true, ..ReloadEvent::new(cause, name, outcome) };
        for name in self.registry.shadow_names() {
            let present = files.iter().any(|f| f.name == name) || read_failures.iter().any(|e| e.plugin == name);
            if !present {
                let old = self.registry.remove_shadow(&name);
                self.state.retire(&crate::registry::shadow_namespace(&name));
                events.push(ReloadEvent {
                    old_sha256: old.map(|w| w.plugin.wasm_sha256.clone()),
                    ..shadow_event(&name, Outcome::Removed)
                });
            }
        }
        for e in read_failures {
            let tried =
                Fingerprint { wasm: "unreadable".into(), manifest: sha256_hex(e.message.as_bytes()), sig: None };
            if self.registry.shadow_tried(&e.plugin).as_ref() != Some(&tried) || force {
                self.registry.shadow_failed(&e.plugin, &format!("{}: {}", e.kind, e.message), tried.clone());
                events.push(ReloadEvent {
                    kind: Some(e.kind),
                    error: Some(e.message.clone()),
                    ..shadow_event(&e.plugin, Outcome::Failed).files(&tried)
                });
            }
        }
        for f in files {
            let shas = f.fingerprint();
            let unchanged = self.registry.shadow_tried(&f.name).as_ref() == Some(&shas);
            if unchanged && !(force && self.registry.shadow(&f.name).is_none()) {
                continue;
            }
            let ns = crate::registry::shadow_namespace(&f.name);
            match self.load_one(&f, &shas.wasm, &ns) {
                Ok(worker) => {
                    let new = worker.plugin.clone();
                    let old = self.registry.install_shadow(Arc::new(worker), shas.clone());
                    tracing::info!(plugin = %f.name, version = %new.version, digest = %new.digest, "candidate in shadow");
                    events.push(ReloadEvent {
                        old_sha256: old.map(|w| w.plugin.wasm_sha256.clone()),
                        version: Some(new.version.to_string()),
                        digest: Some(new.digest.to_string()),
                        ..shadow_event(&f.name, Outcome::Loaded).files(&shas)
                    });
                }
                Err(e) => {
                    tracing::error!(plugin = %e.plugin, kind = %e.kind, "candidate not loaded: {}", e.message);
                    self.registry.shadow_failed(&f.name, &format!("{}: {}", e.kind, e.message), shas.clone());
                    events.push(ReloadEvent {
                        kind: Some(e.kind),
                        error: Some(e.message.clone()),
                        ..shadow_event(&f.name, Outcome::Failed).files(&shas)
                    });
                }
            }
        }
        events
    }

    /// When the next failed plugin is due to be tried again.
    pub fn next_retry(&self) -> Option<std::time::Instant> {
        self.registry.next_retry()
    }

    fn fail(&self, cause: &str, e: &PluginError, shas: Fingerprint) -> ReloadEvent {
        let serving = self.registry.active(&e.plugin);
        tracing::error!(plugin = %e.plugin, kind = %e.kind, still_serving = serving.is_some(), retry = e.transient,
            "reload failed: {}", e.message);
        self.registry.record_failure(&e.plugin, &format!("{}: {}", e.kind, e.message), Some(shas.clone()), e.transient);
        let mut ev = ReloadEvent::new(cause, &e.plugin, Outcome::Failed).files(&shas);
        ev.kind = Some(e.kind);
        ev.error = Some(e.message.clone());
        ev.will_retry = Some(e.transient);
        ev.still_serving = serving.map(|w| w.plugin.wasm_sha256.clone());
        ev
    }

    /// Compile (or reuse), instantiate, init and smoke-test a candidate on a
    /// throwaway state namespace, then start its real worker on the state
    /// namespace `ns`. A candidate in `shadow/` answers to the plugin
    /// directory's trust policy: it sees live traffic too.
    fn load_one(&self, f: &PluginFiles, wasm_sha: &str, ns: &str) -> Result<Worker, PluginError> {
        // Before anything from the files runs, or is even compiled.
        self.trust.check(&f.name, Some(&self.dir), &f.wasm, f.manifest.as_bytes(), f.sig.as_deref())?;
        crate::plugin::manifest::PluginManifest::parse(
            &f.name,
            &f.manifest,
            &self.config.limits,
            &self.config.ceilings,
        )?;
        let cached = lock(&self.compiled).get(wasm_sha).cloned();
        let pre = match cached {
            Some(p) => p,
            None => {
                let p = self.runtime.prepare(&f.wasm).map_err(|m| PluginError::new(&f.name, ErrorKind::Load, m))?;
                let mut c = lock(&self.compiled);
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
        let outcome = run_all(std::iter::once(&trial), &batch).pop().expect("one outcome");
        // The trial's instance is freed before the real one is made, so a
        // reload never needs more than one spare pool slot.
        trial.stop();
        if let Err(mut e) = outcome.result {
            e.message = format!("smoke batch: {}", e.message);
            return Err(e);
        }
        version.start(self.state.namespace(ns))
    }
}
