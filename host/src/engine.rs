//! One wasmtime `Engine` per process, the linker with the host interface and
//! an empty WASI, and the per-store data a plugin instance runs against.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config as WasmConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::batch::{Batch, Resolver};
use crate::compile_cache::CompileCache;
use crate::config::EngineConfig;
use crate::handles::IdField;
use crate::manifest::Grants;
use crate::state::Namespace;

pub mod bindings {
    // Exports are async so a plugin blocked in a host call (a WASI sleep or
    // poll) can be cut off at its deadline by dropping the call's future;
    // epoch interruption covers guest code. Host imports stay synchronous.
    wasmtime::component::bindgen!({ world: "detector", path: "../wit", exports: { default: async } });
}

pub use bindings::vigil::detector::types::{CounterOp, Field, Level, StateEntry};
pub use bindings::{Detector, DetectorPre, Info, Request, Signal};

/// How often the epoch advances; time limits are multiples of it.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide engine and linker. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub linker: Arc<Linker<StoreData>>,
    /// Compiled plugins on disk, if configured.
    pub cache: Option<Arc<CompileCache>>,
}

impl Runtime {
    /// Defaults: pooled instances, parallel compilation, no disk cache.
    pub fn new() -> anyhow::Result<Self> {
        let cfg = EngineConfig { cache: false, ..Default::default() };
        Self::with_config(&cfg, true)
    }

    /// `vigil serve` compiles on its reload thread alone (`parallel` off),
    /// at lower priority, so a new plugin version never competes with
    /// scoring for every core.
    pub fn with_config(config: &EngineConfig, parallel: bool) -> anyhow::Result<Self> {
        let engine = if config.pooling {
            match Engine::new(&wasm_config(Some(config.max_instances), parallel)) {
                Ok(e) => e,
                // The pool reserves address space up front; where that is
                // refused (a ulimit -v), run without it rather than not at all.
                Err(e) => {
                    tracing::warn!("pooling allocator unavailable ({e:#}); allocating instances on demand");
                    Engine::new(&wasm_config(None, parallel)).map_err(|e| anyhow::anyhow!("{e:#}"))?
                }
            }
        } else {
            Engine::new(&wasm_config(None, parallel)).map_err(|e| anyhow::anyhow!("{e:#}"))?
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Detector::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let cache = match config.cache_dir() {
            Some(dir) => match CompileCache::open(&dir, &engine) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "compiled-plugin cache unavailable: {e}");
                    None
                }
            },
            None => None,
        };
        start_epoch_ticker(&engine);
        Ok(Self { engine, linker: Arc::new(linker), cache })
    }

    /// Compiles (or loads from the cache) and links a component, checking
    /// it is of the detector world.
    pub fn prepare(&self, wasm: &[u8]) -> Result<DetectorPre<StoreData>, String> {
        let compiled = match &self.cache {
            Some(c) => c.load_or_compile(&self.engine, wasm).map(|(c, _)| c),
            None => Component::from_binary(&self.engine, wasm),
        };
        let component =
            compiled.map_err(|e| format!("not a valid WebAssembly component: {}", first_line(&format!("{e:#}"))))?;
        self.link(&component)
    }

    pub fn link(&self, component: &Component) -> Result<DetectorPre<StoreData>, String> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| format!("imports something vigil does not provide (wrong world?): {e:#}"))?;
        DetectorPre::new(pre).map_err(|e| format!("does not export the vigil:detector world: {e:#}"))
    }
}

fn wasm_config(pool: Option<u32>, parallel: bool) -> WasmConfig {
    let mut cfg = WasmConfig::new();
    cfg.parallel_compilation(parallel);
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        // Deep recursion traps cleanly instead of exhausting the host stack.
        .max_wasm_stack(1 << 20);
    if let Some(n) = pool {
        // Sized by instance count; memory size is left at the 4 GiB wasm32
        // maximum (virtual reservations) because each plugin's own limit
        // is enforced by its store's limiter, with a clear error.
        let mut p = PoolingAllocationConfig::new();
        p.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n)
            .total_tables(n * 4)
            .total_stacks(n)
            .table_elements(100_000);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
        // Memory images are mapped copy-on-write (the default, said here
        // because instantiation speed depends on it).
        cfg.memory_init_cow(true);
    }
    // `VIGIL_PERFMAP=1` names JIT-compiled plugin functions for `perf`
    // (see BENCHMARKS.md); off by default, it writes /tmp/perf-PID.map.
    if std::env::var_os("VIGIL_PERFMAP").is_some_and(|v| v == "1") {
        cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    cfg
}

// Advances the epoch while the engine lives; a store's deadline is a number
// of ticks, so a runaway plugin is interrupted within one tick of its limit.
fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("vigil-epoch".into())
        .spawn(move || {
            // Stops when the engine is dropped.
            while let Some(e) = engine.upgrade() {
                e.increment_epoch();
                drop(e);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn epoch thread");
}

thread_local! {
    // Each thread that drives plugin calls (workers, the reloader, `check`)
    // has its own small runtime for their futures and WASI timers.
    static LOCAL_RT: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime");
}

/// Runs a plugin call's future to completion on this thread.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    LOCAL_RT.with(|rt| rt.block_on(f))
}

pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Per-batch bounds on what a plugin may log (host `log` and stdout/stderr).
#[derive(Debug, Default)]
pub struct LogBudget {
    pub lines_left: u32,
    pub bytes_left: u32,
    pub dropped: u64,
}

impl LogBudget {
    /// Takes room for one line of `len` bytes; false if over budget.
    pub fn take_line(&mut self, len: usize) -> bool {
        if self.lines_left == 0 || (self.bytes_left as usize) < len {
            self.dropped += 1;
            return false;
        }
        self.lines_left -= 1;
        self.bytes_left -= len as u32;
        true
    }
}

/// Resource limits for one store, remembering whether memory ran out.
pub struct Limiter {
    pub memory_bytes: usize,
    pub tables: usize,
    pub table_elements: usize,
    pub instances: usize,
    pub hit: bool,
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
    pub limiter: Limiter,
    pub plugin: Arc<str>,
    grants: Arc<Grants>,
    state: Arc<Mutex<Namespace>>,
    pub log: Arc<Mutex<LogBudget>>,
    batch: Option<Arc<Batch>>,
    resolver: Resolver,
}

impl StoreData {
    pub fn new(
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
            .stdout(crate::output::PluginOutput::new(plugin.clone(), "stdout", log.clone()))
            .stderr(crate::output::PluginOutput::new(plugin.clone(), "stderr", log.clone()))
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
            state,
            log,
            batch: None,
            resolver: Resolver::default(),
        }
    }

    /// Makes `batch` the one `resolve` answers for, and resets the log budget.
    pub fn begin_batch(&mut self, batch: Option<Arc<Batch>>, lines: u32, bytes: u32) {
        self.batch = batch;
        self.resolver = Resolver::default();
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.lines_left = lines;
        log.bytes_left = bytes;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Namespace> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::vigil::detector::types::Host for StoreData {}

fn id_field(f: Field) -> IdField {
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

impl bindings::vigil::detector::host::Host for StoreData {
    fn log(&mut self, level: Level, message: String) {
        if !self.log.lock().unwrap_or_else(|e| e.into_inner()).take_line(message.len()) {
            return;
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn resolve(&mut self, field: Field, handle: u64) -> Option<String> {
        let batch = self.batch.as_ref()?;
        self.resolver.resolve(batch, &self.grants, id_field(field), handle)
    }

    fn state_get(&mut self, key: u64, now_ms: i64) -> Option<Vec<u8>> {
        self.state().get(key, now_ms)
    }

    fn state_set(&mut self, key: u64, value: Vec<u8>, expires_at_ms: Option<i64>) {
        let len = value.len();
        if !self.state().set(key, value, expires_at_ms) {
            let plugin = &*self.plugin;
            tracing::debug!(plugin, "state value of {len} bytes refused: over the per-value limit");
        }
    }

    fn state_remove(&mut self, key: u64) {
        self.state().remove(key)
    }

    fn state_get_many(&mut self, keys: Vec<u64>, now_ms: i64) -> Vec<Option<Vec<u8>>> {
        let mut ns = self.state();
        keys.iter().map(|&k| ns.get(k, now_ms)).collect()
    }

    fn state_set_many(&mut self, entries: Vec<StateEntry>) {
        let mut ns = self.state();
        let mut refused = 0usize;
        for e in entries {
            if !ns.set(e.key, e.value, e.expires_at_ms) {
                refused += 1;
            }
        }
        if refused > 0 {
            let plugin = &*self.plugin;
            tracing::debug!(plugin, refused, "state values refused: over the per-value limit");
        }
    }

    fn counter_add(&mut self, ops: Vec<CounterOp>) -> Vec<u64> {
        let mut ns = self.state();
        ops.iter().map(|op| ns.counter_add(op.key, op.now_ms, op.window_ms, op.delta)).collect()
    }
}
