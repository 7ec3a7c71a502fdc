//! What a plugin instance's store holds (its empty WASI, its limits, the
//! batch it may resolve, its state namespace) and the host interface it
//! calls: logging, `resolve`, state and counters.

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

/// `vigil:detector@0.1.x`: one key per state call, plus the batched calls
/// added in 0.1.1.
mod v0_1 {
    use super::*;
    use crate::engine::bindings::v0_1::vigil::detector::{host, types};
    use types::{CounterOp, Field, Level, StateEntry};

    impl types::Host for StoreData {}

    conversions!(types);

    fn op(o: &types::SetOp) -> SetOp {
        SetOp {
            key: o.key,
            member: o.member,
            tags: o.tags,
            now_ms: o.now_ms,
            bucket_ms: o.bucket_ms,
            buckets: o.buckets,
            since_ms: o.since_ms,
            members: o.members,
        }
    }

    impl host::Host for StoreData {
        fn log(&mut self, l: Level, message: String) {
            StoreData::log(self, level(l), &message)
        }
        fn resolve(&mut self, f: Field, handle: u64) -> Option<String> {
            StoreData::resolve(self, field(f), handle)
        }
        fn state_get(&mut self, key: u64, now_ms: i64) -> Option<Vec<u8>> {
            StoreData::state_get(self, &[key], now_ms).pop().flatten()
        }
        fn state_set(&mut self, key: u64, value: Vec<u8>, expires_at_ms: Option<i64>) {
            StoreData::state_set(self, std::iter::once((key, value, expires_at_ms)))
        }
        fn state_remove(&mut self, key: u64) {
            StoreData::state_remove(self, &[key])
        }
        fn state_get_many(&mut self, keys: Vec<u64>, now_ms: i64) -> Vec<Option<Vec<u8>>> {
            StoreData::state_get(self, &keys, now_ms)
        }
        fn state_set_many(&mut self, entries: Vec<StateEntry>) {
            StoreData::state_set(self, entries.into_iter().map(|e| (e.key, e.value, e.expires_at_ms)))
        }
        fn counter_add(&mut self, ops: Vec<CounterOp>) -> Vec<u64> {
            StoreData::counter_add(self, ops.iter().map(|o| (o.key, o.now_ms, o.window_ms, o.delta)))
        }
        fn sets_update(&mut self, ops: Vec<types::SetOp>) -> Vec<types::SetView> {
            let ops: Vec<SetOp> = ops.iter().map(op).collect();
            StoreData::sets_update(self, &ops)
                .into_iter()
                .map(|v| types::SetView {
                    count: v.count,
                    tagged: (v.tagged[0], v.tagged[1], v.tagged[2], v.tagged[3]),
                    active_buckets: v.active_buckets,
                    members: v.members.unwrap_or_default(),
                })
                .collect()
        }
    }
}

/// `vigil:detector@0.2.x`: every state call takes many keys; counters and
/// window sets take columns.
mod v0_2 {
    use super::*;
    use crate::engine::bindings::v0_2::vigil::detector::{host, types};
    use types::{CounterSteps, Field, Level, SetOps, SetViews, StateEntry};

    /// Refuses (traps) a call whose columns differ in length from `n`.
    fn same_length(call: &str, n: usize, lens: &[usize]) -> wasmtime::Result<()> {
        if lens.iter().any(|&l| l != n) {
            wasmtime::bail!("{call}: columns of unequal length ({n} keys, others {lens:?})");
        }
        Ok(())
    }

    impl types::Host for StoreData {}

    conversions!(types);

    impl host::Host for StoreData {
        fn log(&mut self, l: Level, message: String) {
            StoreData::log(self, level(l), &message)
        }
        fn resolve(&mut self, f: Field, handle: u64) -> Option<String> {
            StoreData::resolve(self, field(f), handle)
        }
        fn state_get(&mut self, keys: Vec<u64>, now_ms: i64) -> Vec<Option<Vec<u8>>> {
            StoreData::state_get(self, &keys, now_ms)
        }
        fn state_set(&mut self, entries: Vec<StateEntry>) {
            StoreData::state_set(self, entries.into_iter().map(|e| (e.key, e.value, e.expires_at_ms)))
        }
        fn state_remove(&mut self, keys: Vec<u64>) {
            StoreData::state_remove(self, &keys)
        }
        fn counter_add(&mut self, s: CounterSteps) -> wasmtime::Result<Vec<u64>> {
            let n = s.keys.len();
            same_length("counter-add", n, &[s.now_ms.len(), s.window_ms.len(), s.deltas.len()])?;
            Ok(StoreData::counter_add(self, (0..n).map(|i| (s.keys[i], s.now_ms[i], s.window_ms[i], s.deltas[i]))))
        }
        fn sets_update(&mut self, o: SetOps) -> wasmtime::Result<SetViews> {
            let n = o.keys.len();
            let lens = [
                o.members.len(),
                o.tags.len(),
                o.now_ms.len(),
                o.bucket_ms.len(),
                o.buckets.len(),
                o.since_ms.len(),
                o.list_members.len(),
            ];
            same_length("sets-update", n, &lens)?;
            let ops: Vec<SetOp> = (0..n)
                .map(|i| SetOp {
                    key: o.keys[i],
                    member: o.members[i],
                    tags: o.tags[i],
                    now_ms: o.now_ms[i],
                    bucket_ms: o.bucket_ms[i],
                    buckets: o.buckets[i],
                    since_ms: o.since_ms[i],
                    members: o.list_members[i],
                })
                .collect();
            let views = StoreData::sets_update(self, &ops);
            let mut out = SetViews {
                counts: Vec::with_capacity(n),
                tagged: Vec::with_capacity(4 * n),
                active_buckets: Vec::with_capacity(n),
                members: Vec::new(),
                member_ends: Vec::with_capacity(n),
            };
            for v in views {
                out.counts.push(v.count);
                out.tagged.extend_from_slice(&v.tagged);
                out.active_buckets.push(v.active_buckets);
                out.members.extend(v.members.into_iter().flatten());
                out.member_ends.push(out.members.len() as u32);
            }
            Ok(out)
        }
    }
}
