//! A plugin built against an older WIT (vigil:detector@0.1.0, before
//! `sets-update`) keeps working on this host: it loads, scores exactly as
//! the same detector rebuilt today, and its host state carries over to the
//! new build (and back) as a plugin update would.

use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::StateStore;
use vigil_tests::{T0, files, record, scorer, wasm};

const OLD_WASM: &[u8] = include_bytes!("../fixtures/v0_1_0/velocity.wasm");
const OLD_MANIFEST: &str = include_str!("../fixtures/v0_1_0/velocity.toml");

/// A young account's burst: past velocity's hourly budget half-way.
fn burst(from: usize, n: usize) -> Vec<vigil_runtime::input::record::Record> {
    let created = format!(r#""account_created_ms":{}"#, T0 - 86_400_000);
    (from..from + n).map(|i| record(i, T0 + i as i64 * 1_000, "acct-burst", &created)).collect()
}

fn scores(s: &Scorer, records: Vec<vigil_runtime::input::record::Record>) -> Vec<(f64, String)> {
    let (out, _) = s.score(s.batch(records));
    out.iter()
        .map(|v| {
            let sig = &v.signals[0];
            assert!(sig.error.is_none(), "{:?}", sig.error);
            (sig.score, sig.reason.clone())
        })
        .collect()
}

#[test]
fn a_0_1_0_plugin_loads_and_scores_as_todays_build() {
    let old_state = StateStore::new(Default::default());
    let new_state = StateStore::new(Default::default());
    let old = scorer(vec![files("velocity", OLD_WASM, OLD_MANIFEST)], &old_state);
    let new =
        scorer(vec![files("velocity", wasm::bundled("velocity"), wasm::bundled_manifest("velocity"))], &new_state);
    let before = scores(&old, burst(0, 400));
    assert_eq!(before, scores(&new, burst(0, 400)));
    assert!(before[0].0 == 0.0 && before[399].0 >= 0.4, "the burst scores: {:?}", before[399]);
}

#[test]
fn state_carries_across_an_update_from_0_1_0_and_back() {
    let state = StateStore::new(Default::default());
    let old = scorer(vec![files("velocity", OLD_WASM, OLD_MANIFEST)], &state);
    let first = scores(&old, burst(0, 200));
    drop(old);
    let new = scorer(vec![files("velocity", wasm::bundled("velocity"), wasm::bundled_manifest("velocity"))], &state);
    let second = scores(&new, burst(200, 200));
    drop(new);
    let old = scorer(vec![files("velocity", OLD_WASM, OLD_MANIFEST)], &state);
    let third = scores(&old, burst(400, 10));
    // One log scored by one build, for comparison.
    let whole = scorer(vec![files("velocity", OLD_WASM, OLD_MANIFEST)], &StateStore::new(Default::default()));
    let expected = scores(&whole, burst(0, 410));
    assert_eq!([first, second, third].concat(), expected, "the counters went on across the versions");
}
