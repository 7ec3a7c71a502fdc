//! `vigil serve`: the HTTP service over a hot-reloaded plugin set.
//!
//! [`Server`] wires the runtime's pieces (state restored from its snapshot,
//! the registry kept in line with the plugin directory by [`reload`], a
//! scorer) to the [`routes`]. Below them: [`score`] (log scoring over
//! HTTP), [`guardrail`] (LiteLLM's guardrail API), [`admin`] (tokens, API
//! changes kept across restarts), [`audit`] (the log of reloads and admin
//! actions), [`http`] (the listener and its limits), [`api`] (the one error
//! type every route answers with).

pub mod admin;
pub mod api;
pub mod audit;
pub mod guardrail;
pub mod http;
pub mod reload;
pub mod remote;
pub mod routes;
pub mod score;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Semaphore, oneshot};
use vigil_runtime::config::Config;
use vigil_runtime::engine::Runtime;
use vigil_runtime::error::Error;
use vigil_runtime::metrics::Metrics;
use vigil_runtime::registry::Registry;
use vigil_runtime::registry::reconcile::Reconciler;
use vigil_runtime::score::cases::CaseBook;
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::{STATE_FILE, StateStore};

use crate::service::admin::{Overrides, Tokens};
use crate::service::audit::Audit;
use crate::service::guardrail::Gateway;
use crate::service::http::{BodyBudget, ConnLimits};
use crate::service::reload::Trigger;
use crate::service::remote::{Remote, Slot};
use crate::service::routes::{App, router};
use crate::service::score::LogScoring;

/// A running server. `stop` drains in-flight requests and saves state.
pub struct Server {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub state: StateStore,
    pub scorer: Arc<Scorer>,
    pub reload: std::sync::mpsc::Sender<Trigger>,
    /// Where inline calls are scored (a cluster node sets its owners).
    remote: Arc<Slot>,
    state_path: PathBuf,
    removed_grace: Duration,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Restores state, loads the plugin directory, starts the watcher and
    /// the HTTP listener. Returns once it is serving.
    pub fn start(config: Config, plugins: &Path, listen: &str) -> anyhow::Result<Server> {
        Self::start_as(config, plugins, listen, false)
    }

    /// As [`Server::start`], for a cluster node: inline calls are answered
    /// 503 until [`Server::set_remote`] gives the owners to send them to.
    pub fn start_clustered(config: Config, plugins: &Path, listen: &str) -> anyhow::Result<Server> {
        Self::start_as(config, plugins, listen, true)
    }

    /// From now on inline calls are scored by `remote`.
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        self.remote.set(remote);
    }

    fn start_as(config: Config, plugins: &Path, listen: &str, clustered: bool) -> anyhow::Result<Server> {
        let trust = crate::plugins::trust(&config)?;
        let state_dir = config.server.state_dir.clone();
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| anyhow::anyhow!("state directory {}: {e}", state_dir.display()))?;
        let state_path = state_dir.join(STATE_FILE);
        let (state, corrupt) = StateStore::restore_or_new(&state_path, config.state.clone());
        if let Some(msg) = corrupt {
            tracing::error!("host state snapshot not restored: {msg}");
        }
        let audit = Arc::new(Audit::open(&state_dir.join("audit.ndjson"))?);
        let metrics = Arc::new(Metrics::new());
        let registry = Arc::new(Registry::new());
        let runtime = Runtime::with_config(&config.engine, false)?;
        let reconciler =
            Reconciler::new(plugins.to_path_buf(), runtime, config.clone(), state.clone(), registry.clone(), trust);
        reload::reconcile(&reconciler, &audit, &metrics, "start-up", false);
        // State of plugins no longer in the directory: kept for the grace
        // period, in case they come back, then dropped.
        let mut present = registry.names();
        present.extend(registry.shadow_names().iter().map(|n| vigil_runtime::registry::shadow_namespace(n)));
        for name in state.names().into_iter().filter(|n| !present.contains(n)) {
            state.retire(&name);
        }
        let overrides = Overrides::open(&state_dir.join("overrides.json"));
        overrides.reapply(&registry);
        let reload_tx = reload::spawn(reconciler, audit.clone(), metrics.clone(), &config.server);

        let scorer = Arc::new(Scorer::with_registry(registry.clone(), &config, metrics.clone()));
        let cases = Arc::new(Mutex::new(CaseBook::new(config.server.max_cases)));
        let remote = Arc::new(Slot::new(clustered));
        let gateway =
            Gateway::start(&config, &state_dir, scorer.clone(), metrics.clone(), cases.clone(), remote.clone())?;
        let sv = &config.server;
        let app = Arc::new(App {
            scoring: LogScoring::new(scorer.clone(), &config, cases.clone(), metrics.clone()),
            gateway,
            registry: registry.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
            tokens: Tokens::from_config(&config),
            cases,
            bodies: BodyBudget::new(sv.max_body_bytes.saturating_mul(sv.max_concurrent_requests)),
            scoring_slots: Arc::new(Semaphore::new(sv.max_concurrent_requests)),
            overrides,
            remote: remote.clone(),
            plugins_dir: plugins.to_path_buf(),
            reload: reload_tx.clone(),
            config: config.clone(),
        });
        http::raise_fd_limit();
        let listener = std::net::TcpListener::bind(listen).map_err(|e| anyhow::anyhow!("listen on {listen}: {e}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let removed_grace = Duration::from_secs(config.state.removed_plugin_grace_s);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let snapshots =
            (state.clone(), state_path.clone(), Duration::from_secs(config.state.snapshot_interval_s.max(1)));
        let thread = std::thread::Builder::new()
            .name("vigil-http".into())
            .spawn(move || run_http(listener, app, snapshots, removed_grace, stop_rx))?;
        audit.record(json!({"event": "start", "listen": addr.to_string(), "plugins": plugins.display().to_string()}));
        Ok(Server {
            addr,
            registry,
            metrics,
            state,
            scorer,
            reload: reload_tx,
            remote,
            state_path,
            removed_grace,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops accepting, lets in-flight requests finish (up to
    /// `server.shutdown_grace_ms`), saves host state. An error means the
    /// final state could not be saved.
    pub fn stop(mut self) -> Result<(), Error> {
        self.shutdown_now()
    }

    fn shutdown_now(&mut self) -> Result<(), Error> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.reload.send(Trigger::Stop);
        save_state(&self.state, &self.state_path, self.removed_grace)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some()
            && let Err(e) = self.shutdown_now()
        {
            tracing::error!("{e}");
        }
    }
}

/// The HTTP thread: its own runtime, the periodic snapshots, the listener
/// until `stop` fires.
fn run_http(
    listener: std::net::TcpListener,
    app: Arc<App>,
    (state, path, every): (StateStore, PathBuf, Duration),
    removed_grace: Duration,
    stop: oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let sv = &app.config.server;
    let limits = ConnLimits {
        max_connections: sv.max_connections,
        header_timeout: Duration::from_millis(sv.header_timeout_ms),
        grace: Duration::from_millis(sv.shutdown_grace_ms),
    };
    let metrics = app.metrics.clone();
    rt.block_on(async move {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let (st, sp) = (state.clone(), path.clone());
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || save_state(&st, &sp, removed_grace)).await {
                    tracing::error!("{e}");
                }
            }
        });
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        http::serve(listener, router(app), limits, metrics, async {
            let _ = stop.await;
        })
        .await;
    });
    // Whatever is still running (a request past the grace period) is
    // abandoned: the process is on its way out.
    rt.shutdown_timeout(Duration::from_millis(200));
}

/// Drops the state of plugins gone longer than the grace period, then
/// writes the snapshot.
fn save_state(state: &StateStore, path: &Path, removed_grace: Duration) -> Result<(), Error> {
    for name in state.sweep(removed_grace) {
        tracing::info!(plugin = name, "state of a removed plugin dropped after the grace period");
    }
    state.save(path).map_err(|e| Error::io(format!("saving host state to {}", path.display()), e))?;
    tracing::debug!("host state saved to {}", path.display());
    Ok(())
}
