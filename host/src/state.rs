//! Per-plugin durable state kept by the host: key-value entries with
//! event-time expiry and sliding-window counters. One namespace per plugin
//! name, so it survives new versions of the plugin; bounded in entries and
//! bytes, evicting the least recently used; never shared across plugins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use vigil_sdk::window::SlidingCounter;

use crate::config::StateBounds;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Value(u64),
    Counter(u64, u32),
}

#[derive(Debug, Clone)]
enum Entry {
    Value { data: Vec<u8>, expires_at_ms: Option<i64> },
    Counter(SlidingCounter),
}

/// Approximate bytes an entry holds, for the byte bound.
const ENTRY_OVERHEAD: usize = 48;
const COUNTER_BYTES: usize = std::mem::size_of::<SlidingCounter>();

impl Entry {
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD
            + match self {
                Entry::Value { data, .. } => data.len(),
                Entry::Counter(_) => COUNTER_BYTES,
            }
    }
}

/// One plugin's state.
pub struct Namespace {
    entries: LruCache<Key, Entry>,
    bytes: usize,
    bounds: StateBounds,
    /// Entries dropped to stay within bounds, since start.
    pub evictions: u64,
    /// Values refused for being over `max_value_bytes`, since start.
    pub refused: u64,
}

impl Namespace {
    pub fn new(bounds: StateBounds) -> Self {
        Self { entries: LruCache::unbounded(), bytes: 0, bounds, evictions: 0, refused: 0 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every stored value (not counters), most recent first.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().filter_map(|(_, e)| match e {
            Entry::Value { data, .. } => Some(data.as_slice()),
            Entry::Counter(_) => None,
        })
    }

    pub fn get(&mut self, key: u64, now_ms: i64) -> Option<Vec<u8>> {
        let k = Key::Value(key);
        match self.entries.get(&k)? {
            Entry::Value { expires_at_ms: Some(exp), .. } if *exp <= now_ms => {
                self.remove_key(&k);
                None
            }
            Entry::Value { data, .. } => Some(data.clone()),
            Entry::Counter(_) => None,
        }
    }

    /// Returns false if the value was refused as too large.
    pub fn set(&mut self, key: u64, value: Vec<u8>, expires_at_ms: Option<i64>) -> bool {
        if value.len() > self.bounds.max_value_bytes {
            self.refused += 1;
            return false;
        }
        self.insert(Key::Value(key), Entry::Value { data: value, expires_at_ms });
        true
    }

    pub fn remove(&mut self, key: u64) {
        self.remove_key(&Key::Value(key));
    }

    pub fn counter_add(&mut self, key: u64, now_ms: i64, window_ms: u32, delta: u32) -> u64 {
        let k = Key::Counter(key, window_ms);
        if let Some(Entry::Counter(c)) = self.entries.get_mut(&k) {
            return c.add(now_ms, window_ms, u64::from(delta));
        }
        let mut c = SlidingCounter::default();
        let total = c.add(now_ms, window_ms, u64::from(delta));
        self.insert(k, Entry::Counter(c));
        total
    }

    fn insert(&mut self, k: Key, e: Entry) {
        self.bytes += e.cost();
        if let Some(old) = self.entries.put(k, e) {
            self.bytes -= old.cost();
        }
        while self.entries.len() > self.bounds.max_entries_per_plugin || self.bytes > self.bounds.max_bytes_per_plugin
        {
            match self.entries.pop_lru() {
                Some((_, old)) => {
                    self.bytes -= old.cost();
                    self.evictions += 1;
                }
                None => break,
            }
        }
    }

    fn remove_key(&mut self, k: &Key) {
        if let Some(old) = self.entries.pop(k) {
            self.bytes -= old.cost();
        }
    }
}

/// Every plugin's namespace, by plugin name.
#[derive(Clone)]
pub struct StateStore {
    inner: Arc<Mutex<HashMap<String, Arc<Mutex<Namespace>>>>>,
    bounds: StateBounds,
}

impl StateStore {
    pub fn new(bounds: StateBounds) -> Self {
        Self { inner: Arc::default(), bounds }
    }

    /// The namespace of `plugin`, created on first use. Every version of a
    /// plugin gets the same one.
    pub fn namespace(&self, plugin: &str) -> Arc<Mutex<Namespace>> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(plugin.to_string()).or_insert_with(|| Arc::new(Mutex::new(Namespace::new(self.bounds.clone())))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(entries: usize, bytes: usize) -> StateBounds {
        StateBounds { max_entries_per_plugin: entries, max_bytes_per_plugin: bytes, max_value_bytes: 100 }
    }

    #[test]
    fn values_expire_on_event_time() {
        let mut ns = Namespace::new(bounds(10, 1 << 20));
        ns.set(1, b"x".to_vec(), Some(1_000));
        assert_eq!(ns.get(1, 999), Some(b"x".to_vec()));
        assert_eq!(ns.get(1, 1_000), None);
        assert!(ns.is_empty());
    }

    #[test]
    fn bounded_by_entries_and_bytes_evicting_least_recent() {
        let mut ns = Namespace::new(bounds(3, 1 << 20));
        for k in 0..3 {
            ns.set(k, vec![0; 10], None);
        }
        ns.get(0, 0); // 0 is now the most recent
        ns.set(3, vec![0; 10], None);
        assert_eq!(ns.len(), 3);
        assert!(ns.get(1, 0).is_none() && ns.get(0, 0).is_some());
        assert_eq!(ns.evictions, 1);

        let mut ns = Namespace::new(bounds(1000, 500));
        for k in 0..100 {
            ns.set(k, vec![0; 90], None);
        }
        assert!(ns.bytes() <= 500, "{}", ns.bytes());
        assert!(!ns.set(1000, vec![0; 101], None));
        assert_eq!(ns.refused, 1);
    }

    #[test]
    fn counters_and_values_do_not_collide() {
        let mut ns = Namespace::new(bounds(10, 1 << 20));
        ns.set(7, b"v".to_vec(), None);
        assert_eq!(ns.counter_add(7, 0, 60_000, 2), 2);
        assert_eq!(ns.counter_add(7, 1, 60_000, 3), 5);
        assert_eq!(ns.counter_add(7, 1, 120_000, 1), 1);
        assert_eq!(ns.get(7, 0), Some(b"v".to_vec()));
    }

    #[test]
    fn namespaces_are_per_plugin_and_shared_across_versions() {
        let s = StateStore::new(StateBounds::default());
        s.namespace("a").lock().unwrap().set(1, b"a".to_vec(), None);
        assert!(s.namespace("b").lock().unwrap().get(1, 0).is_none());
        assert_eq!(s.namespace("a").lock().unwrap().get(1, 0), Some(b"a".to_vec()));
    }
}
