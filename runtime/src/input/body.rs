//! `POST /v1/score` bodies: a JSON array of request records, or NDJSON.
//! Work and memory per body are bounded whatever it holds: records are
//! visited one at a time (never all turned into values first), parsing
//! stops at the first bad record when that ends the request anyway, and a
//! body with more records or bad records than the limits is refused whole.

use std::ops::ControlFlow;

use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::Input;
use crate::error::BadInput;
use crate::input::lines::BOM;
use crate::input::record::Record;

/// Bounds on one body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Records in one body; past it the body is refused.
    pub max_records: usize,
    /// Bad records tolerated (reported) before the body is refused.
    pub max_errors: usize,
    /// Stop at the first bad record (the request fails on it anyway).
    pub stop_at_first_error: bool,
}

/// Why a body was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// No records: nothing but whitespace, or an empty array.
    #[error("empty body: send a JSON array or NDJSON of request records")]
    Empty,
    /// Starts with `[` but is not a valid JSON array (the parser's message).
    #[error("body is not a JSON array of records: {0}")]
    NotAnArray(String),
    /// More records than `max_records` (the limit).
    #[error("more than {0} records in one body: split it")]
    TooManyRecords(usize),
    /// More bad records than `max_errors` (the limit).
    #[error("more than {0} bad records in one body: nothing was scored")]
    TooManyErrors(usize),
}

/// Each record of the body, in order, as parsed (index = 0-based position
/// among the body's records). Stops early as `limits` say.
pub fn parse_body(body: &[u8], input: &Input, limits: &BodyLimits) -> Result<Vec<Result<Record, BadInput>>, BodyError> {
    let body = body.strip_prefix(BOM).unwrap_or(body);
    let mut out = Vec::new();
    let mut errors = 0usize;
    let mut overflow = None;
    let mut take = |i: u64, text: &[u8]| -> ControlFlow<()> {
        if out.len() >= limits.max_records {
            overflow = Some(BodyError::TooManyRecords(limits.max_records));
            return ControlFlow::Break(());
        }
        let r = Record::parse(text, i, input);
        let bad = r.is_err();
        out.push(r);
        if bad {
            errors += 1;
            if errors > limits.max_errors {
                overflow = Some(BodyError::TooManyErrors(limits.max_errors));
                return ControlFlow::Break(());
            }
            if limits.stop_at_first_error {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        each_array_item(body, &mut take)?;
    } else {
        let lines = body.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace));
        for (i, l) in lines.enumerate() {
            if take(i as u64, l).is_break() {
                break;
            }
        }
    }
    if let Some(e) = overflow {
        return Err(e);
    }
    if out.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(out)
}

/// Calls `f` with each element of a JSON array, as raw text, until it
/// breaks. Only the array's syntax is checked here; each element is the
/// caller's to parse.
fn each_array_item(body: &[u8], f: &mut dyn FnMut(u64, &[u8]) -> ControlFlow<()>) -> Result<(), BodyError> {
    struct Items<'f> {
        f: &'f mut dyn FnMut(u64, &[u8]) -> ControlFlow<()>,
        stopped: bool,
    }
    impl<'de> Visitor<'de> for &mut Items<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0u64;
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                if (self.f)(i, raw.get().as_bytes()).is_break() {
                    self.stopped = true;
                    return Ok(());
                }
                i += 1;
            }
            Ok(())
        }
    }
    let mut items = Items { f, stopped: false };
    let mut de = serde_json::Deserializer::from_slice(body);
    let res = de.deserialize_seq(&mut items);
    if items.stopped {
        // The rest of the array was not read: its syntax does not matter.
        return Ok(());
    }
    res.and_then(|()| de.end()).map_err(|e| BodyError::NotAnArray(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(stop: bool) -> BodyLimits {
        BodyLimits { max_records: 100, max_errors: 3, stop_at_first_error: stop }
    }

    #[test]
    fn arrays_and_ndjson_parse_record_by_record() {
        let rec = |id: &str| format!(r#"{{"id":"{id}","ts_ms":1,"account":"a"}}"#);
        let arr = format!("[{}, {{\"id\":\"x\"}}, {}]", rec("a"), rec("b"));
        let p = parse_body(arr.as_bytes(), &Input::default(), &limits(false)).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p[0].is_ok() && p[2].is_ok());
        assert_eq!(p[1].as_ref().unwrap_err().line, 1);
        let nd = format!("\u{feff}{}\n\n{}\n", rec("a"), rec("b"));
        assert_eq!(parse_body(nd.as_bytes(), &Input::default(), &limits(false)).unwrap().len(), 2);
        // Two records on one line: one bad line, not one silently dropped.
        let two = format!("{} {}\n", rec("a"), rec("b"));
        let p = parse_body(two.as_bytes(), &Input::default(), &limits(false)).unwrap();
        assert!(p[0].as_ref().unwrap_err().message.contains("exactly one record"));
    }

    #[test]
    fn work_stops_at_the_limits() {
        // A huge array of junk stops after max_errors + 1 items.
        let junk = format!("[{}1]", "1,".repeat(1_000_000));
        let e = parse_body(junk.as_bytes(), &Input::default(), &limits(false)).unwrap_err();
        assert_eq!(e, BodyError::TooManyErrors(3));
        // Under fail, the first bad record ends it.
        let p = parse_body(junk.as_bytes(), &Input::default(), &limits(true)).unwrap();
        assert_eq!(p.len(), 1);
        let many = format!("[{}]", vec![r#"{"id":"a","ts_ms":1,"account":"a"}"#; 101].join(","));
        assert_eq!(
            parse_body(many.as_bytes(), &Input::default(), &limits(false)).unwrap_err(),
            BodyError::TooManyRecords(100)
        );
        assert!(matches!(parse_body(b"[{\"id\":", &Input::default(), &limits(false)), Err(BodyError::NotAnArray(_))));
        assert!(matches!(parse_body(b"[] x", &Input::default(), &limits(false)), Err(BodyError::NotAnArray(_))));
        assert_eq!(parse_body(b" \n ", &Input::default(), &limits(false)).unwrap_err(), BodyError::Empty);
        assert_eq!(parse_body(b"[]", &Input::default(), &limits(false)).unwrap_err(), BodyError::Empty);
    }
}
