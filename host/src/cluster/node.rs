//! A cluster node: `vigil serve --source nats://...`. Beside the service
//! (same plugins, hot reload, admin API, metrics), it applies the shared
//! stream, renews its liveness, takes the partitions rendezvous hashing
//! gives it, hands back those it no longer should have (a node joined),
//! and runs one [`partition`] runner per partition held.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;
use vigil_runtime::config::Config;
use vigil_runtime::metrics::Metrics;
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::StateStore;

use super::SHARED;
use super::inline::Router;
use super::lease::{self, Held, Me, WriteError};
use super::partition::{self, Ctx, End, Signals};
use super::setup;
use super::shared::{self, Progresses};

/// A running node; `stop` hands its partitions back.
pub struct Node {
    pub me: Me,
    /// Sends this node's inline calls to their partitions' owners.
    pub router: Arc<Router>,
    /// Answers if the node stops by itself (its name taken by another
    /// process, or the bus gone for good).
    pub failed: Option<oneshot::Receiver<anyhow::Error>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Running {
    held: Arc<Mutex<Held>>,
    sig: Arc<Signals>,
    task: JoinHandle<anyhow::Result<End>>,
}

impl Node {
    /// Connects, catches up on the shared stream, and starts taking
    /// partitions. Returns once caught up (an error if the cluster is not
    /// reachable or not set up).
    pub fn start(
        url: &str,
        config: Config,
        scorer: Arc<Scorer>,
        home: StateStore,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Node> {
        let node = config.cluster.node_id.clone().unwrap_or_else(default_name);
        let me = Me { node: lease::node_name(&node), incarnation: rand::random() };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<Router>>();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (failed_tx, failed_rx) = oneshot::channel();
        let (url, me2) = (url.to_string(), me.clone());
        let thread = std::thread::Builder::new().name("vigil-cluster".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let joined = match join(&url, config, me2, scorer, home, metrics.clone()).await {
                    Ok((ctx, revision)) => {
                        Router::start(ctx.cluster.clone(), metrics).await.map(|r| (ctx, revision, r))
                    }
                    Err(e) => Err(e),
                };
                let (ctx, revision) = match joined {
                    Ok((ctx, revision, router)) => {
                        let _ = ready_tx.send(Ok(router));
                        (ctx, revision)
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if let Err(e) = own(ctx, revision, stop_rx).await {
                    tracing::error!("cluster node stopped: {e:#}");
                    let _ = failed_tx.send(e);
                }
            });
        })?;
        let router = Arc::new(ready_rx.recv().context("the cluster thread ended")??);
        Ok(Node { me, router, failed: Some(failed_rx), stop: Some(stop_tx), thread: Some(thread) })
    }

    /// Snapshots and hands back every partition held, and leaves.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// Connects, claims the node name, and applies the shared stream up to
/// where it was when we joined, so this node's cross-account state is
/// current before it scores. Returns the name's revision.
async fn join(
    url: &str,
    config: Config,
    me: Me,
    scorer: Arc<Scorer>,
    home: StateStore,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Arc<Ctx>, u64)> {
    let cluster = setup::open(url).await?;
    let revision = lease::claim(&cluster.nodes, &me, config.cluster.lease_ms).await?;
    let progress = Arc::new(Progresses::new(cluster.partitions));
    let applied = Arc::new(AtomicU64::new(0));
    let mut stream = cluster.js.get_stream(SHARED).await.context("opening the shared stream")?;
    let backlog = stream.info().await.context("reading the shared stream")?.state.messages;
    tokio::spawn(shared::apply_forever(
        cluster.js.clone(),
        me.clone(),
        home,
        scorer.clone(),
        progress.clone(),
        applied.clone(),
        metrics.clone(),
    ));
    let started = std::time::Instant::now();
    while applied.load(Ordering::Relaxed) < backlog {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(
        node = me.node,
        messages = backlog,
        seconds = started.elapsed().as_secs_f64(),
        "caught up on the shared stream"
    );
    Ok((Arc::new(Ctx { cluster, me, scorer, config, progress, metrics }), revision))
}

/// The ownership loop, every quarter lease.
async fn own(ctx: Arc<Ctx>, mut revision: u64, mut stop: oneshot::Receiver<()>) -> anyhow::Result<()> {
    let lease_ms = ctx.config.cluster.lease_ms;
    let mut running: HashMap<u32, Running> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(lease_ms / 4));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        // Every call on the bus is bounded: a stuck one must not stop the
        // renewals of the partitions held.
        let limit = Duration::from_millis(lease_ms / 4);
        match tokio::time::timeout(limit, lease::heartbeat(&ctx.cluster.nodes, &ctx.me, lease_ms, &mut revision)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is::<lease::NameTaken>() => {
                // Another process is this node now: write nothing more.
                for r in running.values() {
                    r.sig.lost.store(true, Ordering::Release);
                }
                return Err(e);
            }
            Ok(Err(e)) => tracing::warn!("{e:#}"),
            Err(_) => tracing::warn!("liveness not renewed within {limit:?}"),
        }
        let live = match tokio::time::timeout(limit, lease::live_nodes(&ctx.cluster.nodes)).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::warn!("{e:#}");
                continue;
            }
            Err(_) => {
                tracing::warn!("live nodes not listed within {limit:?}");
                continue;
            }
        };
        running.retain(|p, r| {
            if !r.task.is_finished() {
                return true;
            }
            tracing::info!(partition = p, "partition runner ended");
            false
        });
        for p in 0..ctx.cluster.partitions {
            let mine = lease::owner_of(p, &live) == Some(ctx.me.node.as_str());
            match running.get(&p) {
                Some(r) => {
                    // A runner committing a snapshot holds the lease and
                    // extends it itself.
                    let Ok(mut h) = r.held.try_lock() else { continue };
                    let mut next = h.lease.clone();
                    next.expires_ms = lease::now_ms() + lease_ms as i64;
                    match lease::write(&ctx.cluster.leases, &mut h, next).await {
                        Err(WriteError::Lost) => {
                            tracing::warn!(partition = p, "lease lost to another node: stopping without writing");
                            r.sig.lost.store(true, Ordering::Release);
                            continue;
                        }
                        // Still ours until it expires: the next tick tries again.
                        Err(WriteError::Unsure(e)) => tracing::warn!(partition = p, "lease not renewed: {e:#}"),
                        Ok(()) => {}
                    }
                    if !mine {
                        r.sig.release.store(true, Ordering::Release);
                    }
                }
                None if mine => {
                    match tokio::time::timeout(limit, lease::acquire(&ctx.cluster.leases, p, &ctx.me, lease_ms))
                        .await
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("lease not taken within {limit:?}")))
                    {
                        Ok(Some(held)) => {
                            ctx.metrics.add("vigil_cluster_partitions_taken_total", vec![], 1.0);
                            let held = Arc::new(Mutex::new(held));
                            let sig = Arc::new(Signals::default());
                            let task = tokio::spawn(run_partition(ctx.clone(), held.clone(), sig.clone()));
                            running.insert(p, Running { held, sig, task });
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(partition = p, "{e:#}"),
                    }
                }
                None => {}
            }
        }
        // Those being handed back do not count: the gauges of all nodes
        // sum to the partition count once ownership has settled.
        let kept = running.values().filter(|r| !r.sig.release.load(Ordering::Acquire)).count();
        ctx.metrics.set("vigil_cluster_partitions_owned", vec![], kept as f64);
    }
    // A clean stop: every partition snapshotted and handed back at once.
    for r in running.values() {
        r.sig.release.store(true, Ordering::Release);
    }
    for (_, r) in running.drain() {
        let _ = tokio::time::timeout(Duration::from_secs(30), r.task).await;
    }
    lease::leave(&ctx.cluster.nodes, &ctx.me).await;
    Ok(())
}

async fn run_partition(ctx: Arc<Ctx>, held: Arc<Mutex<Held>>, sig: Arc<Signals>) -> anyhow::Result<End> {
    let p = held.lock().await.partition;
    let end = partition::run(ctx, held, sig).await;
    match &end {
        Ok(e) => tracing::info!(partition = p, "partition {e:?}"),
        Err(e) => tracing::error!(partition = p, "partition runner failed: {e:#}"),
    }
    end
}
