//! Cross-account state stays correct when the log is split by account
//! (several processes, each scoring its partitions): merging the parts'
//! window sets gives exactly the sets built from the whole log, sketch
//! registers byte-equal, with the real bundled plugins deciding what goes
//! in. And merging in what is already there changes nothing.

use vigil_runtime::Config;
use vigil_runtime::config::EngineConfig;
use vigil_runtime::engine::Runtime;
use vigil_runtime::input::record::Record;
use vigil_runtime::registry::load;
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::StateStore;
use vigil_tests::{files, wasm};

/// The plugins that keep window sets.
const SET_USERS: [&str; 3] = ["fanout", "shared-infra", "template-fleet"];

/// A small mimicry log: fan-out, sweep, proxy pool and card campaigns
/// among benign users with their NATs, classes and popular prompts.
fn log() -> Vec<Record> {
    vigil_tests::sim_log("mimicry", 11, 500, 12)
}

/// Scores `records` in batches into a fresh store.
fn score(runtime: &Runtime, records: &[Record]) -> StateStore {
    let config = Config::default();
    let state = StateStore::new(Default::default());
    let plugins = SET_USERS.iter().map(|n| files(n, wasm::bundled(n), wasm::bundled_manifest(n))).collect();
    let set = load::load(runtime, &config, &state, plugins, &Default::default(), None);
    assert!(set.failures.is_empty(), "{:?}", set.failures);
    let scorer = Scorer::new(set, &config);
    for chunk in records.chunks(256) {
        scorer.score(scorer.batch(chunk.to_vec()));
    }
    state
}

fn lcg(x: &mut u64) -> u64 {
    *x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    *x >> 33
}

#[test]
fn any_split_by_account_merges_to_the_state_of_the_whole_log() {
    let cache = tempfile::tempdir().unwrap();
    let cfg = EngineConfig { cache_dir: cache.path().to_path_buf(), ..Default::default() };
    let runtime = Runtime::with_config(&cfg, true).unwrap();
    let records = log();
    let whole = score(&runtime, &records);
    let expected = whole.window_sets();
    let count = |name: &str| expected.iter().find(|e| e.0 == name).map_or(0, |e| e.1.len());
    for name in SET_USERS {
        assert!(count(name) > 50, "{name} keeps only {} sets: the log does not exercise it", count(name));
    }
    // Past 16 members a set is a sketch: some must be, to test registers.
    let largest = expected.iter().flat_map(|e| e.1.iter().map(|s| s.1.len())).max().unwrap();
    assert!(largest > 200, "no set became a sketch (largest encodes to {largest} bytes)");

    let mut seed = 0x5eed_u64;
    for parts in [2u64, 3, 5] {
        // Each account to a random part (as a partitioner hashing account ids would).
        let salt = lcg(&mut seed);
        let part = |r: &Record| (account_hash(&r.account) ^ salt) % parts;
        let stores: Vec<StateStore> = (0..parts)
            .map(|p| score(&runtime, &records.iter().filter(|r| part(r) == p).cloned().collect::<Vec<_>>()))
            .collect();
        let merged = StateStore::new(Default::default());
        for s in &stores {
            merged.merge_sets(s);
        }
        assert!(
            merged.window_sets() == expected,
            "a split into {parts} parts merged to other sets than the whole log's"
        );
        // Merging a part again (a replayed partition) changes nothing.
        merged.merge_sets(&stores[0]);
        whole.merge_sets(&stores[parts as usize - 1]);
        assert!(
            merged.window_sets() == expected && whole.window_sets() == expected,
            "a replayed part changed the sets"
        );
    }
}

fn account_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}
