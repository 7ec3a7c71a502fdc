//! Sliding-window counters over event time.
//!
//! The host keeps one of these per `counter-add` key and window, and the SDK's
//! test host uses the same type, so a detector's native unit tests see exactly
//! the arithmetic it will see in production.

/// Buckets per window: the window slides in steps of a sixteenth of its width
/// (at least 1 ms, so windows under 16 ms act as 16 ms).
pub const BUCKETS: usize = 16;

/// A counter of events in the last `window` of event time, in a fixed 136
/// bytes whatever the rate. Events older than the window are forgotten; an
/// event that arrives late but still inside the window is counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlidingCounter {
    /// Index (in bucket widths since the epoch) of the newest bucket.
    head: i64,
    counts: [u64; BUCKETS],
}

impl SlidingCounter {
    /// Adds `delta` at event time `now_ms` and returns the total over the
    /// window ending at `now_ms` (between 15/16 and 16/16 of the window,
    /// depending on where `now_ms` falls inside its bucket).
    pub fn add(&mut self, now_ms: i64, window_ms: u32, delta: u64) -> u64 {
        let idx = now_ms.div_euclid(bucket_width(window_ms));
        if self.counts.iter().all(|&c| c == 0) {
            self.head = idx;
        }
        if idx > self.head {
            // Clear the buckets the window slid past, at most all of them.
            let steps = (idx - self.head).min(BUCKETS as i64);
            for k in 1..=steps {
                self.counts[slot(self.head + k)] = 0;
            }
            self.head = idx;
        }
        if idx > self.head - BUCKETS as i64 {
            let c = &mut self.counts[slot(idx)];
            *c = c.saturating_add(delta);
        }
        self.total_at(idx)
    }

    /// The total over the window ending in bucket `idx`, without adding.
    pub fn total(&self, now_ms: i64, window_ms: u32) -> u64 {
        self.total_at(now_ms.div_euclid(bucket_width(window_ms)))
    }

    /// The raw state, for the host's snapshots.
    pub fn to_parts(&self) -> (i64, [u64; BUCKETS]) {
        (self.head, self.counts)
    }

    pub fn from_parts(head: i64, counts: [u64; BUCKETS]) -> Self {
        Self { head, counts }
    }

    fn total_at(&self, idx: i64) -> u64 {
        let lo = (idx - BUCKETS as i64 + 1).max(self.head - BUCKETS as i64 + 1);
        let hi = idx.min(self.head);
        (lo..=hi).map(|b| self.counts[slot(b)]).fold(0u64, u64::saturating_add)
    }
}

fn bucket_width(window_ms: u32) -> i64 {
    (i64::from(window_ms) / BUCKETS as i64).max(1)
}

fn slot(idx: i64) -> usize {
    idx.rem_euclid(BUCKETS as i64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u32 = 3_600_000;

    #[test]
    fn counts_inside_the_window_and_forgets_outside() {
        let mut c = SlidingCounter::default();
        let t0 = 1_700_000_000_000;
        for i in 0..10 {
            c.add(t0 + i * 1000, HOUR, 1);
        }
        assert_eq!(c.total(t0 + 10_000, HOUR), 10);
        // Just over an hour later the old events have slid out.
        assert_eq!(c.add(t0 + i64::from(HOUR) + 300_000, HOUR, 1), 1);
    }

    #[test]
    fn late_events_inside_the_window_count() {
        let mut c = SlidingCounter::default();
        let t0 = 1_700_000_000_000;
        c.add(t0 + 600_000, HOUR, 1);
        // The late event's own window ends before the newer one...
        assert_eq!(c.add(t0, HOUR, 1), 1);
        // ...and the newer window includes it.
        assert_eq!(c.total(t0 + 600_000, HOUR), 2);
        // Far too late: not counted, total at its own time is what is retained.
        let mut c2 = SlidingCounter::default();
        c2.add(t0 + 10 * i64::from(HOUR), HOUR, 5);
        assert_eq!(c2.add(t0, HOUR, 1), 0);
        assert_eq!(c2.total(t0 + 10 * i64::from(HOUR), HOUR), 5);
    }

    #[test]
    fn error_is_at_most_one_bucket() {
        // Uniform stream, one event per second: the total is the window's
        // event count minus at most one bucket's worth.
        let mut c = SlidingCounter::default();
        let mut last = 0;
        for s in 0..10_000i64 {
            last = c.add(s * 1000, HOUR, 1);
        }
        let exact = 3600;
        assert!(last <= exact && last >= exact - exact / BUCKETS as u64, "{last}");
    }

    #[test]
    fn negative_times_and_tiny_windows_do_not_panic() {
        let mut c = SlidingCounter::default();
        // Windows shorter than 16 ms are 16 ms: one bucket is at least 1 ms.
        assert_eq!(c.add(-5, 1, 1), 1);
        assert_eq!(c.add(-4, 0, 1), 2);
        assert_eq!(c.add(i64::MAX, u32::MAX, u64::MAX), u64::MAX);
    }
}
