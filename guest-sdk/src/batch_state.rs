//! A write-back cache of host state for one plugin instance. Each key is
//! read from the host once (not once per request or per batch), changes are
//! written back at the end of each batch, and an unchanged value is
//! rewritten at most daily (event time) to keep its host expiry fresh. The
//! host copy stays the durable one: a new instance (a new version, a
//! restart) starts cold and reads it back. Bounded: when the cache passes
//! its capacity it is emptied after a flush (every entry is clean then).

use crate::Host;
use crate::hash::U64Map;

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

    /// Writes changed values back to the host, expiring at `expires_at_ms`.
    pub fn flush(&mut self, host: &mut dyn Host, expires_at_ms: Option<i64>, now_ms: i64) {
        for (k, e) in self.entries.iter_mut().filter(|(_, e)| e.dirty) {
            host.set(*k, &(self.encode)(&e.value), expires_at_ms);
            e.dirty = false;
            e.written_ms = now_ms;
        }
        if self.entries.len() > self.capacity {
            self.entries.clear();
        }
    }
}

/// Days between an account's creation and `ts_ms`, if known.
pub fn account_age_days(ts_ms: i64, created_ms: Option<i64>) -> Option<f64> {
    created_ms.map(|c| (ts_ms - c) as f64 / 86_400_000.0)
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
}
