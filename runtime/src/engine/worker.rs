//! One long-lived instance per plugin version, on its own thread. A batch
//! goes in, one signal per request (or a typed error) comes out. A trap,
//! timeout or memory fault ends that batch for this plugin only; the
//! instance is then replaced with a fresh one from the pre-linked component.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::{Store, Trap};

use crate::batch::Batch;
use crate::config::{Config, Limits};
use crate::engine::store::StoreData;
use crate::engine::world::{Bound, Refusal};
use crate::engine::{Contract, EPOCH_TICK, Info, Linked, Runtime, Signal, block_on, first_line};
use crate::error::{ErrorKind, PluginError};
use crate::plugin::manifest::{Grants, PluginManifest};
use crate::state::Namespace;
use crate::util::{lock, sha256_hex};

/// An immutable, loaded plugin version: what its signals name.
pub struct PluginVersion {
    /// The file name `NAME`, assigned by the host.
    pub name: Arc<str>,
    /// The version its manifest gives.
    pub version: Arc<str>,
    /// First 16 hex digits of sha256(wasm sha256 || manifest sha256).
    pub digest: Arc<str>,
    /// sha256 (hex) of its `.wasm`.
    pub wasm_sha256: String,
    /// sha256 (hex) of its manifest.
    pub manifest_sha256: String,
    /// Its manifest, checked and resolved against the host's limits.
    pub manifest: PluginManifest,
    /// What the plugin's `info()` said about itself.
    pub info: Info,
    /// The `vigil:detector` version it was built against.
    pub contract: Contract,
    grants: Arc<Grants>,
    pre: Linked,
    runtime: Runtime,
}

struct Instance {
    store: Store<StoreData>,
    detector: Bound,
}

/// A plugin's verdict on a batch, and how long it took.
pub struct Outcome {
    /// One signal per request, in order, or why there are none.
    pub result: Result<Vec<Signal>, PluginError>,
    /// Time the worker spent on the batch (zero if it did not run it).
    pub elapsed: Duration,
}

impl PluginVersion {
    /// Compiles, links, instantiates and initialises a plugin once, as a
    /// check; the worker then keeps its own instance.
    pub fn load(
        runtime: &Runtime,
        name: &str,
        wasm: &[u8],
        manifest_text: &str,
        config: &Config,
        state: Arc<Mutex<Namespace>>,
    ) -> Result<(Arc<Self>, InstanceSeed), PluginError> {
        // The manifest first: it is cheap, and its errors are the clearest.
        PluginManifest::parse(name, manifest_text, &config.limits, &config.ceilings)?;
        let pre = runtime.prepare(wasm).map_err(|m| PluginError::new(name, ErrorKind::Load, m))?;
        Self::load_prepared(runtime, name, pre, sha256_hex(wasm), manifest_text, config, state)
    }

    /// Like `load`, with the component already compiled (a manifest-only
    /// change reuses it).
    pub fn load_prepared(
        runtime: &Runtime,
        name: &str,
        pre: Linked,
        wasm_sha256: String,
        manifest_text: &str,
        config: &Config,
        state: Arc<Mutex<Namespace>>,
    ) -> Result<(Arc<Self>, InstanceSeed), PluginError> {
        let manifest = PluginManifest::parse(name, manifest_text, &config.limits, &config.ceilings)?;
        let manifest_sha256 = hex::encode(Sha256::digest(manifest_text.as_bytes()));
        let digest = {
            let mut h = Sha256::new();
            h.update(wasm_sha256.as_bytes());
            h.update(manifest_sha256.as_bytes());
            hex::encode(h.finalize())[..16].to_string()
        };
        let mut v = PluginVersion {
            name: name.into(),
            version: manifest.raw.version.as_str().into(),
            digest: digest.into(),
            wasm_sha256,
            manifest_sha256,
            grants: Arc::new(manifest.grants.clone()),
            manifest,
            info: Info::default(),
            contract: pre.contract.clone(),
            pre,
            runtime: runtime.clone(),
        };
        let mut inst = v.instantiate(state.clone())?;
        v.info = block_on(inst.detector.info(&mut inst.store)).map_err(|e| {
            PluginError::new(name, ErrorKind::Init, format!("info(): {}", first_line(&format!("{e:#}"))))
        })?;
        Ok((Arc::new(v), InstanceSeed(inst)))
    }

    /// A worker with a fresh instance of this version, on `state`.
    pub fn start(self: &Arc<Self>, state: Arc<Mutex<Namespace>>) -> Result<Worker, PluginError> {
        let inst = self.instantiate(state.clone())?;
        Ok(Worker::spawn(self.clone(), InstanceSeed(inst), state))
    }

    /// A fresh instance from the pre-linked component, initialised: what a
    /// worker makes after a trap (public for the instantiation benchmark).
    pub fn fresh_instance(&self, state: Arc<Mutex<Namespace>>) -> Result<InstanceSeed, PluginError> {
        self.instantiate(state).map(InstanceSeed)
    }

    fn deadline_ticks(&self) -> u64 {
        self.manifest.limits.time_per_batch_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1
    }

    fn instantiate(&self, state: Arc<Mutex<Namespace>>) -> Result<Instance, PluginError> {
        let name = &*self.name;
        let o = &self.manifest.raw.limits;
        lock(&state).set_bounds(o.state_entries, o.state_bytes);
        let data = StoreData::new(self.name.clone(), self.grants.clone(), state, &self.manifest.limits);
        let mut store = Store::new(&self.runtime.engine, data);
        store.limiter(|d| &mut d.limiter);
        store.set_epoch_deadline(self.deadline_ticks());
        store.epoch_deadline_trap();
        let limit = Duration::from_millis(self.manifest.limits.time_per_batch_ms);
        let detector = block_on(self.pre.instantiate(&mut store)).map_err(|e| {
            let msg = format!("instantiate: {}", first_line(&format!("{e:#}")));
            if store.data().limiter.hit {
                PluginError::new(name, ErrorKind::Memory, msg)
            } else {
                // The component is compiled and linked: what is left to
                // fail is resources (a full instance pool), which free up.
                PluginError::new(name, ErrorKind::Load, msg).transient()
            }
        })?;
        let init = block_on(async {
            tokio::time::timeout(limit, detector.init(&mut store, &self.manifest.config_json)).await
        });
        let Ok(init) = init else {
            return Err(PluginError::new(
                name,
                ErrorKind::Init,
                format!("init timeout: still running after {limit:?}"),
            ));
        };
        match init {
            Ok(Ok(())) => Ok(Instance { store, detector }),
            Ok(Err(msg)) => Err(PluginError::new(name, ErrorKind::Init, format!("init refused its config: {msg}"))),
            Err(e) => {
                let kind = classify(&e, &store);
                Err(PluginError::new(name, ErrorKind::Init, format!("init {kind}: {}", first_line(&format!("{e:#}")))))
            }
        }
    }

    /// Scores a batch on `inst`. `Err` with a kind that poisons the instance
    /// (trap, timeout, memory) tells the caller to replace it.
    fn score(&self, inst: &mut Instance, batch: &Arc<Batch>) -> Result<Vec<Signal>, PluginError> {
        let name = &*self.name;
        let limits = &self.manifest.limits;
        inst.store.data_mut().begin_batch(Some(batch.clone()), limits.log_lines_per_batch, limits.log_bytes_per_batch);
        inst.store.set_epoch_deadline(self.deadline_ticks());
        // Epoch interruption stops guest code at the deadline; the timeout
        // stops a guest blocked in a host call (a WASI sleep).
        let limit = Duration::from_millis(limits.time_per_batch_ms) + EPOCH_TICK;
        let res = block_on(async {
            tokio::time::timeout(limit, inst.detector.score(&mut inst.store, &self.grants, batch)).await
        });
        inst.store.data_mut().begin_batch(None, 0, 0);
        let Ok(res) = res else {
            return Err(PluginError::new(name, ErrorKind::Timeout, format!("still running after {limit:?}")));
        };
        match res {
            Ok(Ok(signals)) => validate(name, signals, batch.len(), limits),
            Ok(Err(Refusal::Plugin(msg))) => Err(PluginError::new(name, ErrorKind::PluginError, truncate(&msg, 512))),
            Ok(Err(Refusal::Invalid(msg))) => Err(PluginError::new(name, ErrorKind::InvalidOutput, msg)),
            Err(e) => {
                let kind = classify(&e, &inst.store);
                Err(PluginError::new(name, kind, truncate(&format!("{e:#}"), 512)))
            }
        }
    }
}

/// The first instance, made by `load`, handed to the worker.
pub struct InstanceSeed(Instance);

fn classify(e: &wasmtime::Error, store: &Store<StoreData>) -> ErrorKind {
    if store.data().limiter.hit {
        ErrorKind::Memory
    } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        ErrorKind::Timeout
    } else {
        ErrorKind::Trap
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The plugin's output must match the contract exactly; anything else is a
/// plugin error, never a silently wrong verdict.
fn validate(plugin: &str, signals: Vec<Signal>, expected: usize, limits: &Limits) -> Result<Vec<Signal>, PluginError> {
    let bad = |m: String| Err(PluginError::new(plugin, ErrorKind::InvalidOutput, m));
    if signals.len() != expected {
        return bad(format!("returned {} signals for {expected} requests", signals.len()));
    }
    for (i, s) in signals.iter().enumerate() {
        if !s.score.is_finite() || !(0.0..=1.0).contains(&s.score) {
            return bad(format!("signal {i}: score {} is not in [0, 1]", s.score));
        }
        if s.labels.len() > limits.max_labels as usize {
            return bad(format!("signal {i}: {} labels, over the limit of {}", s.labels.len(), limits.max_labels));
        }
        if let Some(l) = s.labels.iter().find(|l| l.len() > limits.max_label_bytes as usize) {
            return bad(format!(
                "signal {i}: a label of {} bytes, over the limit of {}",
                l.len(),
                limits.max_label_bytes
            ));
        }
        if s.reason.len() > limits.max_reason_bytes as usize {
            return bad(format!(
                "signal {i}: reason of {} bytes, over the limit of {}",
                s.reason.len(),
                limits.max_reason_bytes
            ));
        }
    }
    Ok(signals)
}

struct Job {
    batch: Arc<Batch>,
    slot: usize,
    reply: mpsc::Sender<(usize, Outcome)>,
}

/// A plugin's recent record: repeated failures put it in quarantine, with a
/// backoff that doubles on each failed retry; one good batch ends it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Failed batches in a row.
    pub consecutive_failures: u32,
    /// When the current (or last) quarantine ends; cleared by a good batch.
    pub quarantined_until: Option<Instant>,
    /// The last quarantine's length; zero after a good batch.
    pub backoff: Duration,
    /// Times quarantined since the worker started.
    pub quarantines: u64,
}

impl Health {
    /// Whether it is in quarantine now.
    pub(crate) fn quarantined(&self) -> bool {
        self.quarantined_until.is_some_and(|t| Instant::now() < t)
    }
}

/// A plugin version's worker thread. Dropping it stops the thread once the
/// batches already queued are done.
pub struct Worker {
    /// The version it runs.
    pub plugin: Arc<PluginVersion>,
    /// Its failures and quarantine, shared with its thread.
    pub health: Arc<Mutex<Health>>,
    tx: SyncSender<Job>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    /// Starts the thread, with `seed` as its first instance and `state` as
    /// the plugin's host state.
    pub fn spawn(plugin: Arc<PluginVersion>, seed: InstanceSeed, state: Arc<Mutex<Namespace>>) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Job>(2);
        let p = plugin.clone();
        let health = Arc::new(Mutex::new(Health::default()));
        let h = health.clone();
        let thread = std::thread::Builder::new()
            .name(format!("plugin-{}", plugin.name))
            .spawn(move || worker_loop(p, seed.0, state, h, rx))
            .expect("spawn plugin worker");
        Worker { plugin, health, tx, thread }
    }

    /// Stops the worker once its queued batches are done, and waits: its
    /// instance is freed when this returns (dropping a worker frees it
    /// later, on the worker's own thread).
    pub fn stop(self) {
        let Worker { tx, thread, .. } = self;
        drop(tx);
        let _ = thread.join();
    }

    /// Queues a batch; the outcome arrives on `reply` tagged with `slot`.
    pub fn submit(&self, batch: Arc<Batch>, slot: usize, reply: mpsc::Sender<(usize, Outcome)>) {
        let job = Job { batch, slot, reply };
        if let Err(mpsc::SendError(job)) = self.tx.send(job) {
            let err = PluginError::new(&*self.plugin.name, ErrorKind::Trap, "worker thread is gone");
            let _ = job.reply.send((job.slot, Outcome { result: Err(err), elapsed: Duration::ZERO }));
        }
    }
}

fn worker_loop(
    p: Arc<PluginVersion>,
    first: Instance,
    state: Arc<Mutex<Namespace>>,
    health: Arc<Mutex<Health>>,
    rx: Receiver<Job>,
) {
    let mut inst: Option<Instance> = Some(first);
    let limits = &p.manifest.limits;
    let plugin = &*p.name;
    for job in rx {
        let start = Instant::now();
        let sitting_out = {
            let h = lock(&health);
            h.quarantined_until.filter(|t| Instant::now() < *t).map(|t| (t - Instant::now(), h.consecutive_failures))
        };
        if let Some((left, failures)) = sitting_out {
            let msg =
                format!("quarantined after {failures} consecutive failures; next try in {:.1} s", left.as_secs_f64());
            let err = PluginError::new(plugin, ErrorKind::Quarantined, msg);
            let _ = job.reply.send((job.slot, Outcome { result: Err(err), elapsed: Duration::ZERO }));
            continue;
        }
        let result = match inst.as_mut() {
            Some(i) => p.score(i, &job.batch),
            None => match p.instantiate(state.clone()) {
                Ok(mut fresh) => {
                    let r = p.score(&mut fresh, &job.batch);
                    inst = Some(fresh);
                    r
                }
                Err(e) => Err(e),
            },
        };
        {
            let mut h = lock(&health);
            match &result {
                Ok(_) => {
                    if h.quarantined_until.take().is_some() {
                        tracing::warn!(plugin, "back in service after quarantine");
                    }
                    h.consecutive_failures = 0;
                    h.backoff = Duration::ZERO;
                }
                Err(e) => {
                    tracing::warn!(plugin, kind = %e.kind, "batch failed: {}", e.message);
                    h.consecutive_failures += 1;
                    if h.consecutive_failures >= limits.quarantine_after {
                        let first = Duration::from_millis(limits.quarantine_backoff_ms);
                        let max = Duration::from_millis(limits.quarantine_max_backoff_ms);
                        h.backoff = if h.backoff.is_zero() { first } else { (h.backoff * 2).min(max) };
                        h.quarantined_until = Some(Instant::now() + h.backoff);
                        h.quarantines += 1;
                        tracing::error!(
                            plugin,
                            failures = h.consecutive_failures,
                            backoff_ms = h.backoff.as_millis() as u64,
                            "quarantined: repeated failures"
                        );
                    }
                }
            }
        }
        if let Err(e) = &result
            && matches!(e.kind, ErrorKind::Trap | ErrorKind::Timeout | ErrorKind::Memory)
        {
            // The instance may be mid-way through anything: replace it.
            inst = p.instantiate(state.clone()).ok();
        }
        let _ = job.reply.send((job.slot, Outcome { result, elapsed: start.elapsed() }));
    }
}

/// Sends the batch to each worker and waits for all of them; one outcome
/// per worker, in order.
pub fn run_all<'a>(workers: impl Iterator<Item = &'a Worker> + Clone, batch: &Arc<Batch>) -> Vec<Outcome> {
    let replies = submit_all(workers.clone(), batch);
    collect_all(workers, replies)
}

/// Hands the batch to each worker; the outcomes arrive on the receiver,
/// tagged with the worker's position.
pub fn submit_all<'a>(
    workers: impl Iterator<Item = &'a Worker>,
    batch: &Arc<Batch>,
) -> mpsc::Receiver<(usize, Outcome)> {
    let (tx, rx) = mpsc::channel();
    for (slot, w) in workers.enumerate() {
        w.submit(batch.clone(), slot, tx.clone());
    }
    rx
}

/// Waits for every worker's outcome on `rx` (a missing one is an error).
pub fn collect_all<'a>(
    workers: impl Iterator<Item = &'a Worker>,
    rx: mpsc::Receiver<(usize, Outcome)>,
) -> Vec<Outcome> {
    let workers: Vec<&Worker> = workers.collect();
    let mut outcomes: Vec<Option<Outcome>> = (0..workers.len()).map(|_| None).collect();
    // Ends when every worker has answered (each drops its sender).
    for (slot, o) in rx {
        outcomes[slot] = Some(o);
    }
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            o.unwrap_or_else(|| Outcome {
                result: Err(PluginError::new(
                    &*workers[i].plugin.name,
                    ErrorKind::Trap,
                    "worker stopped without an answer",
                )),
                elapsed: Duration::ZERO,
            })
        })
        .collect()
}
