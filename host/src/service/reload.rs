//! Hot reload: the reconciler runs on its own idle-priority thread, woken
//! by file events (gathered until quiet), SIGHUP, a periodic rescan, or a
//! failed plugin's retry time. Each reload's events go to the audit log
//! and the metrics.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde_json::json;
use vigil_runtime::config::Server as ServerConfig;
use vigil_runtime::metrics::Metrics;
use vigil_runtime::registry::reconcile::{Reconciler, ReloadEvent};

use crate::service::audit::Audit;

/// What wakes the reload thread.
pub enum Trigger {
    /// Something changed in the directory (debounced).
    Files,
    /// SIGHUP or an explicit request: reload now, and try every plugin that
    /// failed again even if its files did not change.
    Now(&'static str),
    /// Promote the plugin's candidate in shadow (on this thread, so no
    /// reload sees the files half moved); the reload's events, or why not.
    Promote(String, Sender<Result<Vec<ReloadEvent>, String>>),
    Stop,
}

/// Runs the reconciler once and records what it did.
pub fn reconcile(r: &Reconciler, audit: &Audit, metrics: &Metrics, cause: &str, force: bool) {
    record(&r.reload_all(cause, force), audit, metrics);
}

/// A reload's events into the audit log and the metrics.
fn record(events: &[ReloadEvent], audit: &Audit, metrics: &Metrics) {
    for e in events {
        let outcome = e.outcome.as_str().to_string();
        let metric = if e.shadow { "vigil_shadow_reloads_total" } else { "vigil_reloads_total" };
        metrics.add(metric, vec![("plugin", e.plugin.clone()), ("outcome", outcome)], 1.0);
        let mut event = serde_json::to_value(e).unwrap_or_default();
        event["event"] = json!("reload");
        audit.record(event);
    }
}

/// Starts the reload thread: file events are gathered until quiet for
/// `reload_debounce_ms`, then one reconcile. Returns the sender for other
/// triggers (SIGHUP, stop).
pub fn spawn(r: Reconciler, audit: Arc<Audit>, metrics: Arc<Metrics>, cfg: &ServerConfig) -> Sender<Trigger> {
    let (tx, rx) = mpsc::channel::<Trigger>();
    start_watcher(&r.dir, tx.clone());
    let debounce = Duration::from_millis(cfg.reload_debounce_ms);
    let rescan = (cfg.rescan_interval_s > 0).then(|| Duration::from_secs(cfg.rescan_interval_s));
    std::thread::Builder::new()
        .name("vigil-reload".into())
        .spawn(move || {
            lower_priority();
            reload_loop(&r, &audit, &metrics, rx, debounce, rescan)
        })
        .expect("spawn reload thread");
    tx
}

fn reload_loop(
    r: &Reconciler,
    audit: &Audit,
    metrics: &Metrics,
    rx: Receiver<Trigger>,
    debounce: Duration,
    rescan: Option<Duration>,
) {
    let rescan = rescan.unwrap_or(Duration::from_secs(3600 * 24 * 365));
    let mut next_scan = Instant::now() + rescan;
    // A trigger that arrived while file events were being gathered.
    let mut pending: Option<Trigger> = None;
    loop {
        // Wake for the next rescan, or sooner for a failure due a retry.
        let now = Instant::now();
        let wake = r.next_retry().map_or(next_scan, |t| t.min(next_scan));
        let next = match pending.take() {
            Some(t) => Ok(t),
            None => rx.recv_timeout(wake.saturating_duration_since(now)),
        };
        let (cause, force) = match next {
            Ok(Trigger::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Trigger::Now(c)) => (c, true),
            Ok(Trigger::Promote(name, reply)) => {
                let result = r.promote(&name);
                if let Ok(events) = &result {
                    record(events, audit, metrics);
                }
                let _ = reply.send(result);
                continue;
            }
            Err(RecvTimeoutError::Timeout) if Instant::now() >= next_scan => {
                next_scan = Instant::now() + rescan;
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
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                    }
                }
                ("files changed", false)
            }
        };
        reconcile(r, audit, metrics, cause, force);
    }
}

// The directory is watched, not the files, so rename-on-save, new and
// deleted plugins all show up; recursively, for the candidates in shadow/. A watcher error is logged and the periodic
// rescan covers what it may have missed.
fn start_watcher(dir: &Path, tx: Sender<Trigger>) {
    use notify::{RecursiveMode, Watcher};
    // Only plugin files (and shadow/ itself) wake the reloader: a state
    // directory or an exchange log kept under the plugin directory must not
    // keep it gathering events forever.
    let plugin_file = |p: &Path| {
        p.extension().is_some_and(|e| e == "wasm" || e == "toml" || e == "sig")
            || p.file_name().is_some_and(|n| n == vigil_runtime::registry::reconcile::SHADOW_DIR)
    };
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) if !ev.kind.is_access() && ev.paths.iter().any(|p| plugin_file(p)) => {
            let _ = tx.send(Trigger::Files);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("plugin directory watcher: {e}"),
    };
    match notify::recommended_watcher(handler) {
        Ok(mut w) => match w.watch(dir, RecursiveMode::Recursive) {
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
