//! wasmtime: one `Engine` per process and the linker with the host
//! interface of every contract version and an empty WASI ([`Runtime`]); the
//! versions side by side ([`world`]); what a plugin instance's store holds
//! ([`store`]); a plugin's grants applied to a batch ([`grants`]); a worker
//! thread per loaded plugin version ([`worker`]); compiled plugins cached
//! on disk ([`compile_cache`]); plugin stdout/stderr ([`output`]).

// Generated from wit/detector.wit by `bindgen!`: documented there, not here.
#[allow(missing_docs)]
pub mod bindings;
pub mod compile_cache;
pub mod grants;
pub mod output;
pub mod store;
pub mod worker;
pub mod world;

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config as WasmConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::EngineConfig;
use crate::engine::compile_cache::CompileCache;
use crate::engine::store::StoreData;

pub use world::{Contract, Info, Linked, Signal};

/// How often the epoch advances; time limits are multiples of it.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide engine and linker. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    /// The wasmtime engine every plugin is compiled and run with.
    pub engine: Engine,
    /// WASI and the host interface: what every plugin is linked against.
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
            match Engine::new(&wasm_config(Some(config.max_instances), parallel, config.perfmap)) {
                Ok(e) => e,
                // The pool reserves address space up front; where that is
                // refused (a ulimit -v), run without it rather than not at all.
                Err(e) => {
                    tracing::warn!("pooling allocator unavailable ({e:#}); allocating instances on demand");
                    Engine::new(&wasm_config(None, parallel, config.perfmap)).map_err(|e| anyhow::anyhow!("{e:#}"))?
                }
            }
        } else {
            Engine::new(&wasm_config(None, parallel, config.perfmap)).map_err(|e| anyhow::anyhow!("{e:#}"))?
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // Every version's host interface: a component links against the
        // one it imports, so 0.1 and 0.2 plugins run side by side.
        bindings::v0_1::Detector::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        bindings::v0_2::Detector::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |s| s)
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
    /// it is of a detector world this host serves.
    pub fn prepare(&self, wasm: &[u8]) -> Result<Linked, String> {
        let compiled = match &self.cache {
            Some(c) => c.load_or_compile(&self.engine, wasm).map(|(c, _)| c),
            None => Component::from_binary(&self.engine, wasm),
        };
        let component =
            compiled.map_err(|e| format!("not a valid WebAssembly component: {}", first_line(&format!("{e:#}"))))?;
        self.link(&component)
    }

    /// Links a compiled component, checking it is of a detector world.
    pub(crate) fn link(&self, component: &Component) -> Result<Linked, String> {
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            let served = format!("0.1.x and {}", Contract::CURRENT);
            match Contract::of(component) {
                Some(c) => format!("imports something vigil does not provide ({c}; this host serves {served}): {e:#}"),
                None => format!("imports something vigil does not provide (wrong world?): {e:#}"),
            }
        })?;
        Linked::new(component, pre)
    }
}

fn wasm_config(pool: Option<u32>, parallel: bool, perfmap: bool) -> WasmConfig {
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
    if perfmap {
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

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
