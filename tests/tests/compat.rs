//! Plugins built against the 0.1 contract keep working beside 0.2 ones:
//! velocity as built for vigil:detector@0.1.0 (before `sets-update`) and
//! fanout as built for 0.1.1 (the last 0.1 SDK) load, score exactly as the
//! same detectors rebuilt against 0.2.0 today, and their host state carries
//! over to the new build (and back) as a plugin update would.

use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::StateStore;
use vigil_tests::{T0, files, record, scorer, wasm};

const OLD_WASM: &[u8] = include_bytes!("../fixtures/v0_1_0/velocity.wasm");
const OLD_MANIFEST: &str = include_str!("../fixtures/v0_1_0/velocity.toml");
const FANOUT_0_1_1: &[u8] = include_bytes!("../fixtures/v0_1_1/fanout.wasm");
const FANOUT_0_1_1_MANIFEST: &str = include_str!("../fixtures/v0_1_1/fanout.toml");

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

/// A small log of the mimicry-fanout preset, where fanout fires.
fn fanout_log() -> Vec<vigil_runtime::input::record::Record> {
    vigil_tests::sim_log("mimicry-fanout", 3, 300, 12)
}

/// Every signal of `s` on `records` in batches of 256: (score, labels, reason).
fn signals(s: &Scorer, records: &[vigil_runtime::input::record::Record]) -> Vec<(f64, Vec<String>, String)> {
    let mut out = Vec::new();
    for chunk in records.chunks(256) {
        let (verdicts, _) = s.score(s.batch(chunk.to_vec()));
        for v in verdicts {
            let sig = &v.signals[0];
            assert!(sig.error.is_none(), "{:?}", sig.error);
            out.push((sig.score, sig.labels.clone(), sig.reason.clone()));
        }
    }
    out
}

#[test]
fn a_0_1_1_plugin_with_window_sets_scores_as_its_0_2_rebuild() {
    let records = fanout_log();
    let old = scorer(vec![files("fanout", FANOUT_0_1_1, FANOUT_0_1_1_MANIFEST)], &StateStore::new(Default::default()));
    let new = scorer(
        vec![files("fanout", wasm::bundled("fanout"), wasm::bundled_manifest("fanout"))],
        &StateStore::new(Default::default()),
    );
    let (a, b) = (signals(&old, &records), signals(&new, &records));
    let fired = a.iter().filter(|s| s.0 > 0.0).count();
    assert!(fired > 20, "fanout fires on this log ({fired} of {})", a.len());
    assert!(a == b, "the 0.1.1 build and the 0.2.0 build disagree");
}

#[test]
fn versions_run_side_by_side_in_one_set() {
    let state = StateStore::new(Default::default());
    let s = scorer(
        vec![
            files("velocity", OLD_WASM, OLD_MANIFEST),
            files("fanout", FANOUT_0_1_1, FANOUT_0_1_1_MANIFEST),
            files("template-fleet", wasm::bundled("template-fleet"), wasm::bundled_manifest("template-fleet")),
        ],
        &state,
    );
    let contracts: Vec<(String, String)> =
        s.registry.status().into_iter().map(|p| (p.name, p.contract.unwrap_or_default())).collect();
    assert_eq!(
        contracts,
        [
            ("fanout".into(), "0.1.1".into()),
            ("template-fleet".into(), "0.2.0".into()),
            ("velocity".into(), "0.1.0".into())
        ]
    );
    let records = fanout_log();
    for chunk in records.chunks(512).take(4) {
        let (verdicts, outcomes) = s.score(s.batch(chunk.to_vec()));
        assert!(outcomes.iter().all(|o| o.result.is_ok()));
        assert!(verdicts.iter().all(|v| v.signals.len() == 3));
    }
}
