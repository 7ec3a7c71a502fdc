//! Admission: what a parsed record must pass against the stream so far
//! before it is scored. Detectors remember by event time, so one record
//! with a wild timestamp (9e18, or microseconds) would drag every window it
//! touches into the future and blind them for its whole TTL: such a record
//! is bad input, reported and refused, never state. Ids must be unique in
//! the stream; the last `recent_ids` are remembered to catch a repeat
//! across batches and requests in bounded memory.

use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;

use siphasher::sip::SipHasher13;

use crate::config::Input;
use crate::error::BadInput;
use crate::input::record::Record;

/// Where a record came from, for messages: a line of a stream, or a record
/// of one HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A line number in a stream (1-based).
    Line(u64),
    /// (request number, 0-based index in its body)
    Record(u64, u64),
}

impl Origin {
    /// The number a `BadInput` carries (line, or index in the body).
    pub fn number(self) -> u64 {
        match self {
            Origin::Line(n) => n,
            Origin::Record(_, i) => i,
        }
    }
}

/// The stream's event-time window and recent ids. One per stream (`vigil
/// score`) or per server (every `POST /v1/score` shares it).
pub struct Admission {
    max_future_ms: i64,
    max_lateness_ms: Option<i64>,
    /// The latest event time admitted so far.
    watermark: Option<i64>,
    ids: RecentIds,
    wall_ms: fn() -> i64,
}

impl Admission {
    /// Nothing seen yet; "now" is the wall clock.
    pub fn new(input: &Input) -> Self {
        Self::with_clock(input, wall_ms)
    }

    /// With a given wall clock (tests).
    pub fn with_clock(input: &Input, wall_ms: fn() -> i64) -> Self {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Self {
            max_future_ms: ms(input.max_future_ms),
            max_lateness_ms: (input.max_lateness_ms > 0).then(|| ms(input.max_lateness_ms)),
            watermark: None,
            ids: RecentIds::new(input.recent_ids),
            wall_ms,
        }
    }

    /// Admits `r` (or says why not) and remembers it.
    pub fn admit(&mut self, r: &Record, at: Origin) -> Result<(), BadInput> {
        let bad = |field: &str, message: String| BadInput { line: at.number(), field: Some(field.into()), message };
        let ts = r.ts_ms;
        if ts < 0 {
            return Err(bad("ts_ms", format!("{ts} is before 1970: event time must not be negative")));
        }
        let now = (self.wall_ms)();
        if ts > now.saturating_add(self.max_future_ms) {
            let hint =
                if ts > 100_000_000_000_000 { "; microseconds or nanoseconds instead of milliseconds?" } else { "" };
            return Err(bad(
                "ts_ms",
                format!(
                    "{ts} is {} ahead of the wall clock, over input.max_future_ms ({}){hint}",
                    span(ts - now),
                    span(self.max_future_ms)
                ),
            ));
        }
        if let (Some(w), Some(late)) = (self.watermark, self.max_lateness_ms)
            && ts < w.saturating_sub(late)
        {
            return Err(bad(
                "ts_ms",
                format!(
                    "{ts} is {} behind the stream's latest event time ({w}), over input.max_lateness_ms ({})",
                    span(w - ts),
                    span(late)
                ),
            ));
        }
        if let Some(first) = self.ids.insert(&r.id, at) {
            let seen = match (first, at) {
                (Origin::Line(n), _) => format!("first at line {n}"),
                (Origin::Record(q, i), Origin::Record(now_q, _)) if q == now_q => format!("first at record {i}"),
                (Origin::Record(..), _) => "first seen in an earlier request".to_string(),
            };
            return Err(bad("id", format!("duplicate id {:?} ({seen})", r.id)));
        }
        self.watermark = Some(self.watermark.map_or(ts, |w| w.max(ts)));
        Ok(())
    }

    /// The latest event time admitted so far.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// A point to return to: a request refused as a whole must leave no
    /// trace (its ids are not "seen", its times do not move the watermark).
    pub fn mark(&self) -> Mark {
        Mark { watermark: self.watermark, seq: self.ids.seq }
    }

    /// Forgets everything admitted since `mark`.
    pub fn rollback(&mut self, mark: Mark) {
        self.watermark = mark.watermark;
        self.ids.forget_since(mark.seq);
    }
}

/// See [`Admission::mark`].
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    watermark: Option<i64>,
    seq: u64,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// "3.2 days", "41 min", "12 s": for messages.
fn span(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s >= 86_400.0 {
        format!("{:.1} days", s / 86_400.0)
    } else if s >= 3_600.0 {
        format!("{:.1} h", s / 3_600.0)
    } else if s >= 60.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// The last `cap` ids, as keyed 64-bit hashes (the key is random per
/// process, so nobody can craft a collision; by chance one in about 10^13
/// at a million ids).
struct RecentIds {
    /// id hash -> (where first seen, insertion number)
    first: HashMap<u64, (Origin, u64)>,
    /// (id hash, insertion number), oldest first.
    order: VecDeque<(u64, u64)>,
    cap: usize,
    key: [u8; 16],
    seq: u64,
}

impl RecentIds {
    fn new(cap: usize) -> Self {
        Self { first: HashMap::new(), order: VecDeque::new(), cap, key: rand::random(), seq: 0 }
    }

    fn forget_since(&mut self, seq: u64) {
        while let Some(&(k, s)) = self.order.back()
            && s >= seq
        {
            self.order.pop_back();
            self.first.remove(&k);
        }
    }

    /// Remembers `id`; if it was already there, where it was first seen.
    fn insert(&mut self, id: &str, at: Origin) -> Option<Origin> {
        if self.cap == 0 {
            return None;
        }
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write(id.as_bytes());
        let k = h.finish();
        if let Some((first, _)) = self.first.get(&k) {
            return Some(*first);
        }
        self.first.insert(k, (at, self.seq));
        self.order.push_back((k, self.seq));
        self.seq += 1;
        if self.order.len() > self.cap
            && let Some((old, _)) = self.order.pop_front()
        {
            self.first.remove(&old);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_760_000_000_000;

    fn rec(id: &str, ts: i64) -> Record {
        let line = format!(r#"{{"id":"{id}","ts_ms":{ts},"account":"a"}}"#);
        Record::parse(line.as_bytes(), 1, &Input::default()).unwrap()
    }

    fn admission(input: Input) -> Admission {
        Admission::with_clock(&input, || NOW)
    }

    #[test]
    fn wild_timestamps_are_refused_and_do_not_move_the_watermark() {
        let mut a = admission(Input::default());
        a.admit(&rec("1", NOW - 1000), Origin::Line(1)).unwrap();
        let e = a.admit(&rec("2", 9_000_000_000_000_000_000), Origin::Line(2)).unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (2, Some("ts_ms")));
        assert!(e.message.contains("ahead of the wall clock") && e.message.contains("microseconds"), "{e}");
        let e = a.admit(&rec("3", NOW * 1000), Origin::Line(3)).unwrap_err();
        assert!(e.message.contains("microseconds"), "{e}");
        assert_eq!(a.watermark(), Some(NOW - 1000));
        // Ahead of the wall clock, but within a day: clocks drift.
        a.admit(&rec("4", NOW + 3_600_000), Origin::Line(4)).unwrap();
        let e = a.admit(&rec("5", -1), Origin::Line(5)).unwrap_err();
        assert!(e.message.contains("negative"), "{e}");
    }

    #[test]
    fn records_far_behind_the_watermark_are_refused() {
        let mut a = admission(Input { max_lateness_ms: 3_600_000, ..Input::default() });
        a.admit(&rec("1", NOW), Origin::Line(1)).unwrap();
        a.admit(&rec("2", NOW - 3_000_000), Origin::Line(2)).unwrap();
        let e = a.admit(&rec("3", 1_760_000_000), Origin::Line(3)).unwrap_err();
        assert!(e.message.contains("behind the stream's latest event time"), "{e}");
        // Lateness off: only the wall clock bounds.
        let mut a = admission(Input { max_lateness_ms: 0, ..Input::default() });
        a.admit(&rec("1", NOW), Origin::Line(1)).unwrap();
        a.admit(&rec("2", 5), Origin::Line(2)).unwrap();
    }

    #[test]
    fn duplicates_are_caught_across_batches_within_the_bound() {
        let mut a = admission(Input { recent_ids: 3, ..Input::default() });
        a.admit(&rec("x", NOW), Origin::Line(1)).unwrap();
        for (i, id) in ["b", "c"].iter().enumerate() {
            a.admit(&rec(id, NOW), Origin::Line(i as u64 + 2)).unwrap();
        }
        let e = a.admit(&rec("x", NOW), Origin::Line(9)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("id"));
        assert!(e.message.contains("duplicate id \"x\" (first at line 1)"), "{e}");
        // Three newer ids push "x" out: the memory is bounded.
        a.admit(&rec("d", NOW), Origin::Line(10)).unwrap();
        a.admit(&rec("x", NOW), Origin::Line(11)).unwrap();
        // Across requests the message says so.
        let mut a = admission(Input::default());
        a.admit(&rec("y", NOW), Origin::Record(1, 0)).unwrap();
        let e = a.admit(&rec("y", NOW), Origin::Record(1, 4)).unwrap_err();
        assert!(e.message.contains("first at record 0"), "{e}");
        let e = a.admit(&rec("y", NOW), Origin::Record(2, 0)).unwrap_err();
        assert!(e.message.contains("earlier request"), "{e}");
    }

    #[test]
    fn a_refused_request_leaves_no_trace() {
        let mut a = admission(Input::default());
        a.admit(&rec("kept", NOW - 5), Origin::Record(1, 0)).unwrap();
        let mark = a.mark();
        a.admit(&rec("dropped", NOW), Origin::Record(2, 0)).unwrap();
        assert_eq!(a.watermark(), Some(NOW));
        a.rollback(mark);
        assert_eq!(a.watermark(), Some(NOW - 5));
        a.admit(&rec("dropped", NOW), Origin::Record(3, 0)).unwrap();
        assert!(a.admit(&rec("kept", NOW), Origin::Record(3, 1)).is_err());
    }
}
