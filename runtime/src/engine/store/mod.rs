//! What a plugin instance's store holds (its empty WASI, its limits, the
//! batch it may resolve, its state namespace) and the host interface it
//! calls: logging, `resolve`, state, counters and window sets, written once
//! here; each contract version's imports (`v0_1`, `v0_2`) convert to it.

use std::sync::{Arc, Mutex};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::batch::Batch;
use crate::batch::handles::IdField;
use crate::engine::grants::Resolver;
use crate::engine::output::{LogBudget, PluginOutput};
use crate::plugin::manifest::Grants;
use crate::state::{Namespace, Scope, SetAdd};
use crate::util::lock;
use vigil_sdk::sets::SetView;

/// Resource limits for one store, remembering whether memory ran out.
pub struct Limiter {
    pub(crate) memory_bytes: usize,
    pub(crate) tables: usize,
    pub(crate) table_elements: usize,
    pub(crate) instances: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = true;
            wasmtime::bail!("memory limit of {} MiB exceeded (wanted {desired} bytes)", self.memory_bytes >> 20);
        }
        Ok(true)
    }
    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }
    fn instances(&self) -> usize {
        self.instances
    }
    fn tables(&self) -> usize {
        self.tables
    }
    fn memories(&self) -> usize {
        16
    }
}

/// What a plugin instance's store holds: its WASI (empty), its limits, and
/// the host-side context its imports act on.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) plugin: Arc<str>,
    grants: Arc<Grants>,
    /// The plugin's own namespace: window sets always, values and counters
    /// unless a batch's scope holds them.
    state: Arc<Mutex<Namespace>>,
    /// Where values and counters go for the batch at hand.
    kv: Arc<Mutex<Namespace>>,
    scope: Option<Arc<Scope>>,
    pub(crate) log: Arc<Mutex<LogBudget>>,
    batch: Option<Arc<Batch>>,
    resolver: Resolver,
}

impl StoreData {
    pub(crate) fn new(
        plugin: Arc<str>,
        grants: Arc<Grants>,
        state: Arc<Mutex<Namespace>>,
        limits: &crate::config::Limits,
    ) -> Self {
        let log = Arc::new(Mutex::new(LogBudget::default()));
        // No preopens, environment, arguments, network or inherited stdio:
        // the only way out of the sandbox is the host interface. Output goes
        // to the log under the plugin's name, within the same budget.
        let wasi = WasiCtx::builder()
            .stdout(PluginOutput::new(plugin.clone(), "stdout", log.clone()))
            .stderr(PluginOutput::new(plugin.clone(), "stderr", log.clone()))
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: (limits.memory_mb as usize).saturating_mul(1 << 20),
                tables: limits.max_tables as usize,
                table_elements: limits.max_table_elements as usize,
                instances: limits.max_instances as usize,
                hit: false,
            },
            plugin,
            grants,
            kv: state.clone(),
            state,
            scope: None,
            log,
            batch: None,
            resolver: Resolver::default(),
        }
    }

    /// Makes `batch` the one `resolve` answers for, and resets the log budget.
    pub fn begin_batch(&mut self, batch: Option<Arc<Batch>>, lines: u32, bytes: u32) {
        self.scope = batch.as_ref().and_then(|b| b.scope.clone());
        self.kv = match &self.scope {
            Some(s) => s.kv.namespace(&self.plugin),
            None => self.state.clone(),
        };
        self.batch = batch;
        self.resolver = Resolver::default();
        let mut log = lock(&self.log);
        log.lines_left = lines;
        log.bytes_left = bytes;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Namespace> {
        lock(&self.kv)
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// One add to, or read of, a window set, in the host's terms.
struct SetOp {
    key: u64,
    member: u64,
    tags: u8,
    now_ms: i64,
    bucket_ms: u32,
    buckets: u16,
    since_ms: i64,
    members: bool,
}

// The host interface, once, in the host's own terms; each contract
// version's imports (below) only convert their types to these.
impl StoreData {
    fn log(&mut self, level: tracing::Level, message: &str) {
        if !lock(&self.log).take_line(message.len()) {
            return;
        }
        let plugin = &*self.plugin;
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, "{message}"),
            tracing::Level::ERROR => tracing::error!(plugin, "{message}"),
        }
    }

    fn resolve(&mut self, field: IdField, handle: u64) -> Option<String> {
        let batch = self.batch.as_ref()?;
        self.resolver.resolve(batch, &self.grants, field, handle)
    }

    fn state_get(&mut self, keys: &[u64], now_ms: i64) -> Vec<Option<Vec<u8>>> {
        let mut ns = self.state();
        keys.iter().map(|&k| ns.get(k, now_ms)).collect()
    }

    fn state_set(&mut self, entries: impl Iterator<Item = (u64, Vec<u8>, Option<i64>)>) {
        let mut ns = self.state();
        let mut refused = 0usize;
        for (key, value, expires_at_ms) in entries {
            if !ns.set(key, value, expires_at_ms) {
                refused += 1;
            }
        }
        drop(ns);
        if refused > 0 {
            let plugin = &*self.plugin;
            tracing::debug!(plugin, refused, "state values refused: over the per-value limit");
        }
    }

    fn state_remove(&mut self, keys: &[u64]) {
        let mut ns = self.state();
        for &k in keys {
            ns.remove(k)
        }
    }

    fn counter_add(&mut self, ops: impl Iterator<Item = (u64, i64, u32, u32)>) -> Vec<u64> {
        let mut ns = self.state();
        ops.map(|(key, now_ms, window_ms, delta)| ns.counter_add(key, now_ms, window_ms, delta)).collect()
    }

    fn sets_update(&mut self, ops: &[SetOp]) -> Vec<SetView> {
        if let Some(scope) = &self.scope {
            let adds = ops.iter().filter(|op| op.member != 0).map(|op| SetAdd {
                key: op.key,
                member: op.member,
                tags: op.tags,
                now_ms: op.now_ms,
                bucket_ms: op.bucket_ms,
                buckets: op.buckets,
            });
            scope.record(&self.plugin, adds);
        }
        let mut ns = lock(&self.state);
        ops.iter()
            .map(|op| {
                let shape = (op.bucket_ms, op.buckets);
                ns.set_update(op.key, op.member, op.tags, op.now_ms, shape, op.since_ms, op.members)
            })
            .collect()
    }
}

/// `field` and `level` for one contract version's copies of the enums.
macro_rules! conversions {
    ($types:ident) => {
        fn field(f: $types::Field) -> IdField {
            use $types::Field;
            match f {
                Field::Account => IdField::Account,
                Field::Org => IdField::Org,
                Field::ApiKey => IdField::ApiKey,
                Field::Ip => IdField::Ip,
                Field::IpPrefix => IdField::IpPrefix,
                Field::UserAgent => IdField::UserAgent,
                Field::Model => IdField::Model,
                Field::PaymentFingerprint => IdField::PaymentFingerprint,
                Field::Conversation => IdField::Conversation,
            }
        }

        fn level(l: $types::Level) -> tracing::Level {
            use $types::Level;
            match l {
                Level::Trace => tracing::Level::TRACE,
                Level::Debug => tracing::Level::DEBUG,
                Level::Info => tracing::Level::INFO,
                Level::Warn => tracing::Level::WARN,
                Level::Error => tracing::Level::ERROR,
            }
        }
    };
}

mod v0_1;
mod v0_2;
