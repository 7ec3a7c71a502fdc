//! How long a trapped plugin takes to be serving again (run with
//! `cargo bench -p vigil-tests --bench recovery`). A plugin that panics on
//! every other batch: each trap ends its batch, the worker rebuilds the
//! instance from the pre-linked component, and the next batch is served.
//! Reports the time from the trap to a fresh instance being ready (the
//! failed batch's time minus a normal batch's), and the whole failed batch.

use std::time::Duration;

use vigil_runtime::Config;
use vigil_runtime::state::StateStore;
use vigil_tests::{T0, files, record, scorer_with, wasm};

fn main() {
    let mut config = Config::default();
    // Quarantine would hold it out after 3 failures in a row; here each
    // failure is followed by a success, so it never triggers.
    config.limits.quarantine_after = 1_000;
    let state = StateStore::new(Default::default());
    let manifest =
        format!("version = \"0.1.0\"\ngrants = [\"account\"]\n[config]\nbehaviour = {{ panic-at = {T0} }}\n");
    let s = scorer_with(vec![files("flaky", wasm::BEHAVE, &manifest)], &state, config);
    let batch = |ts: i64| (0..64).map(|i| record(i, ts, &format!("a{}", i % 8), "")).collect::<Vec<_>>();
    let (mut failed, mut ok) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let (_, o) = s.score(s.batch(batch(T0)));
        assert!(o[0].result.is_err());
        failed.push(o[0].elapsed);
        let (_, o) = s.score(s.batch(batch(T0 + 1 + i)));
        assert!(o[0].result.is_ok(), "serving again right after the trap");
        ok.push(o[0].elapsed);
    }
    failed.sort();
    ok.sort();
    let med = |v: &[Duration]| v[v.len() / 2];
    let p99 = |v: &[Duration]| v[v.len() * 99 / 100];
    println!("trapped batch (trap + fresh instance + init), median {:?}, p99 {:?}", med(&failed), p99(&failed));
    println!("next batch, served by the fresh instance,        median {:?}, p99 {:?}", med(&ok), p99(&ok));
    println!(
        "back in service after a trap (median, trapped batch minus a normal one): {:?}",
        med(&failed).saturating_sub(med(&ok))
    );
}
