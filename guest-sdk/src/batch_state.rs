//! A write-back cache of host state for one plugin instance. Each key is
//! read from the host once (not once per request or per batch), changes are
//! written back at the end of each batch, and an unchanged value is
//! rewritten at most daily (event time) to keep its host expiry fresh. The
//! host copy stays the durable one: a new instance (a new version, a
//! restart) starts cold and reads it back. Bounded: when the cache passes
//! its capacity it is emptied after a flush (every entry is clean then).

use crate::hash::U64Map;
use crate::{Host, StateEntry};

/// Milliseconds in a day, for TTLs.
pub const DAY_MS: i64 = 86_400_000;

struct Cached<T> {
    value: T,
    dirty: bool,
    written_ms: i64,
}

pub struct BatchState<T> {
    entries: U64Map<Cached<T>>,
    decode: fn(&[u8]) -> T,
    encode: fn(&T) -> Vec<u8>,
    capacity: usize,
}

const REFRESH_MS: i64 = 86_400_000;

impl<T: Default> BatchState<T> {
    pub fn new(decode: fn(&[u8]) -> T, encode: fn(&T) -> Vec<u8>) -> Self {
        Self::with_capacity(decode, encode, 50_000)
    }

    pub fn with_capacity(decode: fn(&[u8]) -> T, encode: fn(&T) -> Vec<u8>, capacity: usize) -> Self {
        Self { entries: U64Map::default(), decode, encode, capacity }
    }

    fn entry(&mut self, host: &mut dyn Host, key: u64, now_ms: i64) -> &mut Cached<T> {
        let decode = self.decode;
        self.entries.entry(key).or_insert_with(|| Cached {
            value: host.get(key, now_ms).map(|b| decode(&b)).unwrap_or_default(),
            dirty: false,
            written_ms: now_ms,
        })
    }

    /// The value under `key` if it is cached (after `prefetch`), to read
    /// only.
    pub fn cached(&self, key: u64) -> Option<&T> {
        self.entries.get(&key).map(|e| &e.value)
    }

    /// The value under `key`, to change: it will be written back.
    pub fn get(&mut self, host: &mut dyn Host, key: u64, now_ms: i64) -> &mut T {
        let e = self.entry(host, key, now_ms);
        e.dirty = true;
        &mut e.value
    }

    /// Applies `f`, which says whether it changed the value; only a changed
    /// (or long unwritten) value is written back.
    pub fn update(&mut self, host: &mut dyn Host, key: u64, now_ms: i64, f: impl FnOnce(&mut T) -> bool) -> &T {
        let e = self.entry(host, key, now_ms);
        if f(&mut e.value) || now_ms - e.written_ms > REFRESH_MS {
            e.dirty = true;
        }
        &e.value
    }

    /// Reads every key of `keys` not cached yet from the host in one call,
    /// so a batch's reads cross the boundary once (call it with the keys
    /// the batch will touch before updating them).
    pub fn prefetch(&mut self, host: &mut dyn Host, keys: &[u64], now_ms: i64) {
        let mut missing: Vec<u64> = keys.iter().copied().filter(|k| !self.entries.contains_key(k)).collect();
        missing.sort_unstable();
        missing.dedup();
        let values = host.get_many(&missing, now_ms);
        for (k, v) in missing.into_iter().zip(values) {
            let value = v.map(|b| (self.decode)(&b)).unwrap_or_default();
            self.entries.insert(k, Cached { value, dirty: false, written_ms: now_ms });
        }
    }

    /// The per-batch loop of a detector that keeps this state: reads every
    /// key the batch will touch (`keys` lists an item's) from the host in
    /// one call, at the batch's earliest time; runs `each` on every item in
    /// order; then writes the changed values back in one call, expiring
    /// `ttl_ms` after the batch's latest time (so state quiet for that long
    /// is forgotten). `time` is an item's event time. Items are usually the
    /// requests, or requests paired with what was computed from them.
    pub fn for_batch<I, R>(
        &mut self,
        host: &mut dyn Host,
        items: &[I],
        time: impl Fn(&I) -> i64,
        mut keys: impl FnMut(&I, &mut Vec<u64>),
        ttl_ms: i64,
        mut each: impl FnMut(&mut Self, &mut dyn Host, &I) -> R,
    ) -> Vec<R> {
        let (Some(earliest), Some(latest)) = (items.iter().map(&time).min(), items.iter().map(&time).max()) else {
            return Vec::new();
        };
        let mut wanted = Vec::new();
        for item in items {
            keys(item, &mut wanted);
        }
        self.prefetch(host, &wanted, earliest);
        let out = items.iter().map(|item| each(self, host, item)).collect();
        self.flush(host, Some(latest.saturating_add(ttl_ms)), latest);
        out
    }

    /// Writes changed values back to the host in one call, expiring at
    /// `expires_at_ms`.
    pub fn flush(&mut self, host: &mut dyn Host, expires_at_ms: Option<i64>, now_ms: i64) {
        let mut writes = Vec::new();
        for (k, e) in self.entries.iter_mut().filter(|(_, e)| e.dirty) {
            writes.push(StateEntry { key: *k, value: (self.encode)(&e.value), expires_at_ms });
            e.dirty = false;
            e.written_ms = now_ms;
        }
        host.set_many(writes);
        if self.entries.len() > self.capacity {
            self.entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemHost;

    #[test]
    fn reads_once_writes_changes_and_survives_a_cold_start() {
        let mut h = MemHost::new();
        let enc = |v: &u32| v.to_le_bytes().to_vec();
        let dec = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
        let mut s = BatchState::new(dec, enc);
        *s.get(&mut h, 1, 0) += 5;
        s.update(&mut h, 2, 0, |_| false);
        s.flush(&mut h, None, 0);
        assert_eq!(h.get(1, 0), Some(5u32.to_le_bytes().to_vec()));
        assert_eq!(h.get(2, 0), None, "an unchanged value is not written");
        // A new instance (new version) reads the durable copy.
        let mut cold = BatchState::new(dec, enc);
        assert_eq!(*cold.get(&mut h, 1, 0), 5);
    }

    #[test]
    fn for_batch_reads_once_runs_in_order_and_writes_changes_with_a_ttl() {
        let mut h = MemHost::new();
        let enc = |v: &u32| v.to_le_bytes().to_vec();
        let dec = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
        h.set(1, &5u32.to_le_bytes(), None);
        let mut s = BatchState::new(dec, enc);
        // (key, time) items; each adds one to its key and returns the total.
        let items = [(1u64, 100i64), (2, 50), (1, 200)];
        let out = s.for_batch(
            &mut h,
            &items,
            |i| i.1,
            |i, k| k.push(i.0),
            1_000,
            |st, host, i| {
                let v = st.get(host, i.0, i.1);
                *v += 1;
                *v
            },
        );
        assert_eq!(out, vec![6, 1, 7]);
        // Written back, expiring 1 s after the batch's latest time.
        assert_eq!(h.get(1, 1_199), Some(7u32.to_le_bytes().to_vec()));
        assert_eq!(h.get(1, 1_200), None);
        assert!(s.for_batch(&mut h, &[] as &[(u64, i64)], |i| i.1, |_, _| {}, 1, |_, _, _| 0).is_empty());
    }

    #[test]
    fn prefetch_reads_missing_keys_once_and_keeps_cached_values() {
        let mut h = MemHost::new();
        let enc = |v: &u32| v.to_le_bytes().to_vec();
        let dec = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
        h.set(7, &9u32.to_le_bytes(), None);
        let mut s = BatchState::new(dec, enc);
        *s.get(&mut h, 1, 0) = 3; // cached and dirty, not yet written
        s.prefetch(&mut h, &[1, 7, 7, 8], 0);
        assert_eq!(*s.get(&mut h, 1, 0), 3, "a cached value is not overwritten by the host's");
        assert_eq!(*s.get(&mut h, 7, 0), 9);
        assert_eq!(*s.get(&mut h, 8, 0), 0);
        s.flush(&mut h, None, 0);
        assert_eq!(h.get(1, 0), Some(3u32.to_le_bytes().to_vec()));
    }
}
