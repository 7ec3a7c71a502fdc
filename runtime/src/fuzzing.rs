//! Entry points for the fuzz targets (`fuzz/`) and for the test that
//! replays their corpus in CI: parse arbitrary bytes, check the invariants.

use crate::config::{Config, Input, Limits};
use crate::input::lines::{Line, LineReader};
use crate::input::record::Record;
use crate::plugin::manifest::PluginManifest;

/// Request parsing never panics; an error names a line; a record that
/// parses respects the limits.
pub fn record(data: &[u8]) {
    let limits = Input { max_line_bytes: 4096, max_prompt_bytes: 512, max_field_bytes: 64, ..Input::default() };
    let mut reader = LineReader::new(data, limits.max_line_bytes);
    let mut buf = Vec::new();
    while let Ok(Some(line)) = reader.next_line(&mut buf) {
        let Line::Text(n) = line else { continue };
        match Record::parse(&buf, n, &limits) {
            Ok(r) => {
                assert!(!r.id.is_empty() && !r.account.is_empty());
                assert!(r.prompt.as_ref().is_none_or(|p| p.len() <= limits.max_prompt_bytes));
            }
            Err(e) => assert_eq!(e.line, n),
        }
    }
    let body = crate::input::body::BodyLimits { max_records: 64, max_errors: 8, stop_at_first_error: false };
    if let Ok(records) = crate::input::body::parse_body(data, &limits, &body) {
        assert!(!records.is_empty() && records.len() <= body.max_records);
        assert!(records.iter().filter(|r| r.is_err()).count() <= body.max_errors);
    }
}

/// Manifest and config parsing never panic; accepted values are in range.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = PluginManifest::parse("fuzz", text, &Limits::default(), &Default::default()) {
        assert!((0.0..=1.0).contains(&m.raw.weight));
        assert!(m.limits.time_per_batch_ms > 0);
        assert!(serde_json::from_str::<serde_json::Value>(&m.config_json).is_ok());
    }
    if let Ok(c) = Config::parse(text) {
        assert!(c.scoring.flag_threshold <= c.scoring.block_threshold);
    }
}
