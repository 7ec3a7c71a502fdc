//! A plugin sees only the fields its manifest grants. The raw-canary plugin
//! (no SDK) pushes everything it receives or can resolve into every channel
//! it has: logs, stdout, host state and signal reasons. A granted value shows
//! up in all of them (so the channels work); a canary in every ungranted
//! field shows up in none.

use vigil_runtime::state::StateStore;
use vigil_tests::{LogCapture, T0, files, record, scorer, wasm};

#[test]
fn ungranted_fields_never_reach_the_plugin() {
    let logs = LogCapture::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();

    const CANARY: &str = "CANARY-7f3a";
    let manifest = "version = \"0.1.0\"\ngrants = [\"account\", \"model\"]\n";
    let state = StateStore::new(Default::default());
    let s = scorer(vec![files("raw-canary", wasm::RAW_CANARY, manifest)], &state);

    let extra = format!(
        r#""prompt":"please {CANARY} prompt","system_prompt":"sys {CANARY}","org":"{CANARY}-org",
           "api_key":"{CANARY}-key","ip":"203.0.113.77","user_agent":"{CANARY}-ua","model":"model-visible",
           "payment_fingerprint":"{CANARY}-pf","conversation_id":"{CANARY}-conv","asn":64999,
           "prompt_tokens":7777,"attrs":{{"note":"{CANARY}-attr"}}"#
    );
    let records = (0..5).map(|i| record(i, T0 + i as i64, "acct-visible", &extra)).collect();
    let (verdicts, outcomes) = s.score(s.batch(records));
    assert!(outcomes[0].result.is_ok(), "{:?}", outcomes[0].result.as_ref().err());

    let reasons: String = verdicts.iter().map(|v| v.signals[0].reason.clone()).collect();
    let state_dump: String = state
        .namespace("raw-canary")
        .lock()
        .unwrap()
        .values()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();

    for (channel, text) in [("signal reasons", &reasons), ("host state", &state_dump), ("logs", &log_text)] {
        // Positive control: granted values travel through this channel...
        assert!(text.contains("acct-visible"), "granted account missing from {channel}: {text:.400}");
        assert!(text.contains("model-visible"), "granted model missing from {channel}");
        // ...and nothing ungranted does.
        // (Numbers as the plugin's Debug output would show them: handles are
        // long decimals that may contain any digit run by chance.)
        for needle in [CANARY, "203.0.113", "Some(64999)", "Some(7777)"] {
            assert!(!text.contains(needle), "{needle} leaked into {channel}");
        }
    }
    // stdout of the plugin went to the log under its name.
    assert!(log_text.contains("stream=\"stdout\""), "{log_text:.400}");
}
