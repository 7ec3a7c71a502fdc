//! Replays the committed fuzz corpus (fuzz/corpus, grown by `cargo fuzz`)
//! through the same checks as the fuzz targets, so CI keeps what fuzzing
//! found without running the fuzzer.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{} fails the {target} checks", path.display());
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}

#[test]
fn record_corpus() {
    replay("record", vigil_runtime::fuzzing::record);
}

#[test]
fn manifest_corpus() {
    replay("manifest", vigil_runtime::fuzzing::manifest);
}
