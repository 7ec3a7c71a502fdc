//! Per-batch view of host state: each key is read at most once per batch and
//! written back once at the end, so a batch costs one boundary crossing per
//! distinct key, not per request.

use std::collections::HashMap;

use crate::Host;

pub struct BatchState<T> {
    entries: HashMap<u64, T>,
    decode: fn(&[u8]) -> T,
    encode: fn(&T) -> Vec<u8>,
}

impl<T: Default> BatchState<T> {
    pub fn new(decode: fn(&[u8]) -> T, encode: fn(&T) -> Vec<u8>) -> Self {
        Self { entries: HashMap::new(), decode, encode }
    }

    /// The value under `key`, read from the host on first use in this batch.
    pub fn get(&mut self, host: &mut dyn Host, key: u64, now_ms: i64) -> &mut T {
        let decode = self.decode;
        self.entries.entry(key).or_insert_with(|| host.get(key, now_ms).map(|b| decode(&b)).unwrap_or_default())
    }

    /// Writes every value touched back to the host, expiring at `expires_at_ms`.
    pub fn flush(&mut self, host: &mut dyn Host, expires_at_ms: Option<i64>) {
        for (k, v) in self.entries.drain() {
            host.set(k, &(self.encode)(&v), expires_at_ms);
        }
    }
}

/// Days between an account's creation and `ts_ms`, if known.
pub fn account_age_days(ts_ms: i64, created_ms: Option<i64>) -> Option<f64> {
    created_ms.map(|c| (ts_ms - c) as f64 / 86_400_000.0)
}
