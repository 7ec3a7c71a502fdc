//! The on-disk cache of compiled plugins: a hit skips compilation, and an
//! entry this host did not write is never deserialized (that would run
//! foreign native code), only compiled again from the wasm.

use std::sync::{Arc, Mutex};

use vigil_runtime::config::EngineConfig;
use vigil_runtime::engine::Runtime;
use vigil_runtime::engine::compile_cache::{CompileCache, Lookup};
use vigil_runtime::engine::worker::PluginVersion;
use vigil_runtime::state::Namespace;
use vigil_runtime::util::sha256_hex;

fn runtime(dir: &std::path::Path) -> Runtime {
    let cfg = EngineConfig { cache_dir: dir.to_path_buf(), ..Default::default() };
    Runtime::with_config(&cfg, true).unwrap()
}

fn plugin(name: &str) -> (Vec<u8>, String) {
    let (wasm, manifest) = vigil_bundle::get(name).unwrap();
    (wasm.to_vec(), manifest.to_string())
}

fn description(rt: &Runtime, name: &str, wasm: &[u8], manifest: &str) -> String {
    let state = Arc::new(Mutex::new(Namespace::new(Default::default())));
    let (v, _) = PluginVersion::load(rt, name, wasm, manifest, &vigil_runtime::Config::default(), state).unwrap();
    v.info.description.clone()
}

#[test]
fn second_load_is_a_hit_and_behaves_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let cache = rt.cache.clone().unwrap();
    let (wasm, _) = plugin("velocity");
    assert_eq!(cache.load_or_compile(&rt.engine, &wasm).unwrap().1, Lookup::Miss);
    assert_eq!(cache.load_or_compile(&rt.engine, &wasm).unwrap().1, Lookup::Hit);
    // A new process (a new engine, same configuration) reuses it too.
    let rt2 = runtime(dir.path());
    assert_eq!(rt2.cache.clone().unwrap().load_or_compile(&rt2.engine, &wasm).unwrap().1, Lookup::Hit);
}

#[test]
fn a_planted_entry_is_recompiled_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let cache = rt.cache.clone().unwrap();
    let (velocity, manifest) = plugin("velocity");
    let (other, other_manifest) = plugin("shared-infra");
    let other_description = description(&rt, "shared-infra", &other, &other_manifest);

    // The forger has a perfectly valid compiled artifact (of another
    // plugin, by another host with its own key) and plants it where
    // velocity's entry goes. Loading it would make "velocity" run
    // shared-infra's native code.
    let elsewhere = tempfile::tempdir().unwrap();
    let foreign = CompileCache::open(elsewhere.path(), &rt.engine).unwrap();
    foreign.load_or_compile(&rt.engine, &other).unwrap();
    let planted = std::fs::read(foreign.entry_path(&sha256_hex(&other))).unwrap();
    let target = cache.entry_path(&sha256_hex(&velocity));
    std::fs::write(&target, &planted).unwrap();

    let d = description(&rt, "velocity", &velocity, &manifest);
    assert_ne!(d, other_description, "the planted artifact was loaded");
    assert!(d.to_lowercase().contains("volume"), "{d}");
    // The planted entry was replaced by this host's own.
    assert_eq!(cache.load_or_compile(&rt.engine, &velocity).unwrap().1, Lookup::Hit);
    assert_ne!(std::fs::read(&target).unwrap(), planted);
}

#[test]
fn a_corrupt_or_truncated_entry_falls_back_to_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let cache = rt.cache.clone().unwrap();
    let (wasm, manifest) = plugin("lockstep");
    cache.load_or_compile(&rt.engine, &wasm).unwrap();
    let path = cache.entry_path(&sha256_hex(&wasm));
    let good = std::fs::read(&path).unwrap();

    // One flipped bit deep in the code.
    let mut flipped = good.clone();
    let i = flipped.len() / 2;
    flipped[i] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();
    assert_eq!(cache.load_or_compile(&rt.engine, &wasm).unwrap().1, Lookup::Rejected);

    for bad in [&good[..good.len() / 3], &b"VIGILC1\0"[..], &[][..]] {
        std::fs::write(&path, bad).unwrap();
        assert_eq!(cache.load_or_compile(&rt.engine, &wasm).unwrap().1, Lookup::Rejected);
    }
    // And the plugin still loads and works through the runtime.
    std::fs::write(&path, &good[..100]).unwrap();
    assert!(!description(&rt, "lockstep", &wasm, &manifest).is_empty());
    assert_eq!(cache.load_or_compile(&rt.engine, &wasm).unwrap().1, Lookup::Hit);
}
