//! Section 3: what it costs to get a plugin instance ready to score.
//!
//! (a) cold: compile the wasm with Cranelift, link, instantiate, init;
//! (b) from the compiled-plugin disk cache: deserialize, link, instantiate, init;
//! both through `PluginVersion::load`, the path `vigil score` and reloads take.
//! (c) and (d): instantiate + init from the already linked component
//! (`InstancePre`), as a worker does after a trap, with the pooling
//! allocator vs on-demand allocation.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_runtime::config::{EngineConfig, StateBounds};
use vigil_runtime::engine::Runtime;
use vigil_runtime::engine::worker::PluginVersion;
use vigil_runtime::plugin::files::PluginFiles;
use vigil_runtime::state::Namespace;

use crate::progress;
use crate::stats::{median, timed, us};

pub struct Counts {
    pub cold: usize,
    pub cache: usize,
    pub prelinked: usize,
}

pub struct Row {
    pub what: &'static str,
    pub iterations: usize,
    /// Median time to a ready instance, microseconds.
    pub median_us: f64,
    /// Median time to drop it (return the slot or unmap), microseconds; NaN if not measured.
    pub drop_us: f64,
}

pub struct Measured {
    pub plugin: String,
    pub wasm_bytes: usize,
    pub rows: Vec<Row>,
}

fn runtime(pooling: bool, cache_dir: Option<&Path>) -> anyhow::Result<Runtime> {
    let cfg = EngineConfig {
        pooling,
        cache: cache_dir.is_some(),
        cache_dir: cache_dir.map(Path::to_path_buf).unwrap_or_default(),
        ..Default::default()
    };
    Runtime::with_config(&cfg, true)
}

fn state() -> Arc<Mutex<Namespace>> {
    Arc::new(Mutex::new(Namespace::new(StateBounds::default())))
}

pub fn run(
    config: &vigil_runtime::Config,
    plugin: &PluginFiles,
    cache_dir: &Path,
    n: &Counts,
) -> anyhow::Result<Measured> {
    let err = |e: vigil_runtime::PluginError| anyhow::anyhow!("{e}");
    let limits = &config;
    let load =
        |rt: &Runtime| timed(|| PluginVersion::load(rt, &plugin.name, &plugin.wasm, &plugin.manifest, limits, state()));

    // (a) vs (b), alternating while both have iterations left.
    let cold_rt = runtime(true, None)?;
    let cache_rt = runtime(true, Some(cache_dir))?;
    progress!("instantiation: {} cold compiles, {} cache loads of {}", n.cold, n.cache, plugin.name);
    let (loaded, _) = load(&cache_rt); // fills the cache
    drop(loaded.map_err(err)?);
    let (mut cold, mut cache) = (Vec::new(), Vec::new());
    for i in 0..n.cold.max(n.cache) {
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            match side {
                0 if i < n.cold => {
                    let (v, t) = load(&cold_rt);
                    drop(v.map_err(err)?);
                    cold.push(us(t));
                }
                1 if i < n.cache => {
                    let (v, t) = load(&cache_rt);
                    drop(v.map_err(err)?);
                    cache.push(us(t));
                }
                _ => {}
            }
        }
    }
    drop(cold_rt);

    // (c) vs (d): one loaded version per allocator, fresh instances from it.
    progress!("instantiation: {} pre-linked instances, pooling vs on demand", n.prelinked);
    let ondemand_rt = runtime(false, Some(cache_dir))?;
    let (pooled, _) =
        PluginVersion::load(&cache_rt, &plugin.name, &plugin.wasm, &plugin.manifest, limits, state()).map_err(err)?;
    let (ondemand, _) =
        PluginVersion::load(&ondemand_rt, &plugin.name, &plugin.wasm, &plugin.manifest, limits, state())
            .map_err(err)?;
    let fresh = |v: &PluginVersion| -> anyhow::Result<(Duration, Duration)> {
        let st = state();
        let (inst, t) = timed(|| v.fresh_instance(st));
        let inst = inst.map_err(err)?;
        let ((), d) = timed(|| drop(inst));
        Ok((t, d))
    };
    let (mut pool, mut pool_drop, mut demand, mut demand_drop) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n.prelinked {
        let order: [(&PluginVersion, bool); 2] =
            if i % 2 == 0 { [(&pooled, true), (&ondemand, false)] } else { [(&ondemand, false), (&pooled, true)] };
        for (v, is_pool) in order {
            let (t, d) = fresh(v)?;
            if is_pool {
                pool.push(us(t));
                pool_drop.push(us(d));
            } else {
                demand.push(us(t));
                demand_drop.push(us(d));
            }
        }
    }
    Ok(Measured {
        plugin: plugin.name.clone(),
        wasm_bytes: plugin.wasm.len(),
        rows: vec![
            Row {
                what: "(a) cold: compile + link + instantiate + init",
                iterations: n.cold,
                median_us: median(&cold),
                drop_us: f64::NAN,
            },
            Row {
                what: "(b) disk cache: deserialize + link + instantiate + init",
                iterations: n.cache,
                median_us: median(&cache),
                drop_us: f64::NAN,
            },
            Row {
                what: "(c) pre-linked, pooling allocator: instantiate + init",
                iterations: n.prelinked,
                median_us: median(&pool),
                drop_us: median(&pool_drop),
            },
            Row {
                what: "(d) pre-linked, on-demand allocation: instantiate + init",
                iterations: n.prelinked,
                median_us: median(&demand),
                drop_us: median(&demand_drop),
            },
        ],
    })
}
