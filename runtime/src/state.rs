//! Per-plugin durable state kept by the host: key-value entries with
//! event-time expiry and sliding-window counters. One namespace per plugin
//! name, so it survives new versions of the plugin; bounded in entries and
//! bytes, evicting the least recently used; never shared across plugins.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use lru::LruCache;
use vigil_sdk::sets::{SetView, WindowSet};
use vigil_sdk::window::SlidingCounter;

use crate::config::StateBounds;
use crate::util::lock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Value(u64),
    Counter(u64, u32),
    Set(u64),
}

#[derive(Debug, Clone)]
enum Entry {
    Value {
        data: Vec<u8>,
        expires_at_ms: Option<i64>,
    },
    Counter(SlidingCounter),
    /// Cross-account state that merges exactly (see `vigil_sdk::sets`).
    Set(WindowSet),
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
                Entry::Set(s) => s.cost(),
            }
    }
}

/// One plugin's state.
pub struct Namespace {
    entries: LruCache<Key, Entry>,
    bytes: usize,
    bounds: StateBounds,
    /// The host's bounds, for a manifest that sets none.
    defaults: StateBounds,
    /// Entries dropped to stay within bounds, since start.
    pub evictions: u64,
    /// Values refused for being over `max_value_bytes`, since start.
    pub refused: u64,
}

impl Namespace {
    /// An empty namespace within `bounds`, the host's bounds that
    /// `set_bounds` falls back to.
    pub fn new(bounds: StateBounds) -> Self {
        Self { entries: LruCache::unbounded(), bytes: 0, defaults: bounds.clone(), bounds, evictions: 0, refused: 0 }
    }

    /// Entries held: values and counters.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The bounds of the manifest now running: its own, or the host's
    /// where it sets none (so a bound one version set does not outlive it).
    /// Shrinking evicts at once.
    pub fn set_bounds(&mut self, entries: Option<usize>, bytes: Option<usize>) {
        self.bounds.max_entries_per_plugin = entries.unwrap_or(self.defaults.max_entries_per_plugin);
        self.bounds.max_bytes_per_plugin = bytes.unwrap_or(self.defaults.max_bytes_per_plugin);
        self.evict();
    }

    /// (max entries, max bytes) in force.
    pub fn bounds(&self) -> (usize, usize) {
        (self.bounds.max_entries_per_plugin, self.bounds.max_bytes_per_plugin)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate bytes held, as counted against the byte bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every stored value (not counters), most recent first.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().filter_map(|(_, e)| match e {
            Entry::Value { data, .. } => Some(data.as_slice()),
            Entry::Counter(_) | Entry::Set(_) => None,
        })
    }

    /// The value under `key`, unless it expired by event time `now_ms`
    /// (an expired one is removed).
    pub fn get(&mut self, key: u64, now_ms: i64) -> Option<Vec<u8>> {
        let k = Key::Value(key);
        match self.entries.get(&k)? {
            Entry::Value { expires_at_ms: Some(exp), .. } if *exp <= now_ms => {
                self.remove_key(&k);
                None
            }
            Entry::Value { data, .. } => Some(data.clone()),
            Entry::Counter(_) | Entry::Set(_) => None,
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

    /// Removes the value under `key`, if any.
    pub fn remove(&mut self, key: u64) {
        self.remove_key(&Key::Value(key));
    }

    /// Adds `delta` to the sliding-window counter `(key, window_ms)` at event
    /// time `now_ms`; returns its total over the window.
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

    /// One `sets-update` op: adds `member` (unless 0) under `tags` at
    /// `now_ms` to the set under `key` (created with this shape; a set of
    /// another shape is replaced), then reads it from `since_ms` to `now_ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn set_update(
        &mut self,
        key: u64,
        member: u64,
        tags: u8,
        now_ms: i64,
        (bucket_ms, buckets): (u32, u16),
        since_ms: i64,
        members: bool,
    ) -> SetView {
        let k = Key::Set(key);
        let shape = (bucket_ms.max(1), buckets.max(1));
        if let Some(Entry::Set(s)) = self.entries.get_mut(&k)
            && s.shape() == shape
        {
            let before = s.cost();
            if member != 0 {
                s.add(member, tags, now_ms);
            }
            let view = s.view(since_ms, now_ms, members);
            let after = s.cost();
            self.bytes = self.bytes + after - before;
            if after > before {
                self.evict();
            }
            return view;
        }
        let mut s = WindowSet::new(shape.0, shape.1);
        if member != 0 {
            s.add(member, tags, now_ms);
        }
        let view = s.view(since_ms, now_ms, members);
        if member != 0 {
            self.insert(k, Entry::Set(s));
        }
        view
    }

    /// Every window set, encoded, by key: equal sets give equal bytes.
    pub fn sets(&self) -> Vec<(u64, Vec<u8>)> {
        let mut v: Vec<(u64, Vec<u8>)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| match (k, e) {
                (Key::Set(key), Entry::Set(s)) => Some((*key, s.encode())),
                _ => None,
            })
            .collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }

    /// Takes in `other`'s window sets (their union, set by set); values and
    /// counters, which are per account, are left alone.
    pub fn merge_sets(&mut self, other: &Namespace) {
        for (k, e) in other.entries.iter() {
            let (Key::Set(key), Entry::Set(o)) = (k, e) else { continue };
            match self.entries.get_mut(k) {
                Some(Entry::Set(s)) => {
                    let before = s.cost();
                    s.merge(o);
                    self.bytes = self.bytes + s.cost() - before;
                }
                _ => self.insert(Key::Set(*key), Entry::Set(o.clone())),
            }
        }
        self.evict();
    }

    fn insert(&mut self, k: Key, e: Entry) {
        self.bytes += e.cost();
        if let Some(old) = self.entries.put(k, e) {
            self.bytes -= old.cost();
        }
        self.evict();
    }

    fn evict(&mut self) {
        while self.entries.len() > self.bounds.max_entries_per_plugin || self.bytes > self.bounds.max_bytes_per_plugin {
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

const MAGIC: &[u8; 8] = b"VIGILST1";

/// The snapshot's file name in a state directory (`vigil serve` and
/// `vigil score --state-dir` share it, so one can warm the other).
pub const STATE_FILE: &str = "state.bin";

// Snapshot encoding: little-endian, namespaces by name, entries oldest
// first (so a restore rebuilds the same LRU order), a sha256 trailer so a
// torn or corrupted file is detected instead of half-loaded.
impl Namespace {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (k, e) in self.entries.iter().rev() {
            match (k, e) {
                (Key::Value(key), Entry::Value { data, expires_at_ms }) => {
                    out.push(0);
                    out.extend_from_slice(&key.to_le_bytes());
                    out.extend_from_slice(&expires_at_ms.unwrap_or(i64::MIN).to_le_bytes());
                    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                    out.extend_from_slice(data);
                }
                (Key::Set(key), Entry::Set(set)) => {
                    out.push(2);
                    out.extend_from_slice(&key.to_le_bytes());
                    let b = set.encode();
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    out.extend_from_slice(&b);
                }
                (Key::Counter(key, window), Entry::Counter(c)) => {
                    out.push(1);
                    out.extend_from_slice(&key.to_le_bytes());
                    out.extend_from_slice(&window.to_le_bytes());
                    let (head, counts) = c.to_parts();
                    out.extend_from_slice(&head.to_le_bytes());
                    for n in counts {
                        out.extend_from_slice(&n.to_le_bytes());
                    }
                }
                _ => unreachable!("keys and entries are created in matching pairs"),
            }
        }
    }

    fn decode(r: &mut Reader<'_>, bounds: StateBounds) -> Result<Self, String> {
        let mut ns = Namespace::new(bounds);
        let n = r.u64()?;
        for _ in 0..n {
            match r.u8()? {
                0 => {
                    let key = r.u64()?;
                    let exp = r.i64()?;
                    let len = r.u32()? as usize;
                    let data = r.bytes(len)?.to_vec();
                    let expires_at_ms = (exp != i64::MIN).then_some(exp);
                    ns.insert(Key::Value(key), Entry::Value { data, expires_at_ms });
                }
                1 => {
                    let key = r.u64()?;
                    let window = r.u32()?;
                    let head = r.i64()?;
                    let mut counts = [0u64; vigil_sdk::window::BUCKETS];
                    for c in counts.iter_mut() {
                        *c = r.u64()?;
                    }
                    ns.insert(Key::Counter(key, window), Entry::Counter(SlidingCounter::from_parts(head, counts)));
                }
                2 => {
                    let key = r.u64()?;
                    let len = r.u32()? as usize;
                    let set = WindowSet::decode(r.bytes(len)?).ok_or("a window set that does not decode")?;
                    ns.insert(Key::Set(key), Entry::Set(set));
                }
                t => return Err(format!("unknown entry tag {t}")),
            }
        }
        Ok(ns)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or("truncated")?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().unwrap()))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.bytes(8)?.try_into().unwrap()))
    }
}

/// One window-set addition a plugin made. A cluster node ships these to
/// the other nodes, which apply them to their copy of the sets: additions
/// are a union, so applying one twice or out of order changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetAdd {
    /// The set's key.
    pub key: u64,
    /// The member added (never 0).
    pub member: u64,
    /// Its tag bits.
    pub tags: u8,
    /// Event time of the addition.
    pub now_ms: i64,
    /// The set's shape: bucket width...
    pub bucket_ms: u32,
    /// ...and bucket count.
    pub buckets: u16,
}

impl Namespace {
    /// Applies an addition made elsewhere (see [`SetAdd`]).
    pub fn set_add(&mut self, a: &SetAdd) {
        let _ = self.set_update(a.key, a.member, a.tags, a.now_ms, (a.bucket_ms, a.buckets), a.now_ms, false);
    }
}

/// The state one partition's batches score against, in a cluster: the
/// partition's own values and counters (per account, so they move with the
/// partition), while window sets stay in the node's shared store. The
/// window-set additions its batches make are kept here until the node ships
/// them.
pub struct Scope {
    /// Values and counters, one namespace per plugin.
    pub kv: StateStore,
    adds: Mutex<Vec<(Arc<str>, SetAdd)>>,
}

impl Scope {
    /// A scope over `kv`.
    pub fn new(kv: StateStore) -> Self {
        Self { kv, adds: Mutex::default() }
    }

    /// Notes additions `plugin` made.
    pub fn record(&self, plugin: &Arc<str>, adds: impl Iterator<Item = SetAdd>) {
        let mut v = lock(&self.adds);
        v.extend(adds.map(|a| (plugin.clone(), a)));
    }

    /// The additions noted since the last call, in order.
    pub fn take_adds(&self) -> Vec<(Arc<str>, SetAdd)> {
        std::mem::take(&mut *lock(&self.adds))
    }
}

/// One namespace's window sets: (key, encoded set), by key.
pub type EncodedSets = Vec<(u64, Vec<u8>)>;

/// Every plugin's namespace, by plugin name.
#[derive(Clone)]
pub struct StateStore {
    inner: Arc<Mutex<HashMap<String, Arc<Mutex<Namespace>>>>>,
    /// Namespaces whose plugin left the directory, and since when.
    retired: Arc<Mutex<HashMap<String, std::time::Instant>>>,
    bounds: StateBounds,
}

impl StateStore {
    /// No namespaces yet; each new one gets `bounds`.
    pub fn new(bounds: StateBounds) -> Self {
        Self { inner: Arc::default(), retired: Arc::default(), bounds }
    }

    /// The namespace of `plugin`, created on first use. Every version of a
    /// plugin gets the same one; a retired one is back in use.
    pub fn namespace(&self, plugin: &str) -> Arc<Mutex<Namespace>> {
        lock(&self.retired).remove(plugin);
        let mut map = lock(&self.inner);
        map.entry(plugin.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(Namespace::new(self.bounds.clone()))))
            .clone()
    }

    /// Takes in `other`'s window sets, namespace by namespace (the union:
    /// what several hosts scoring parts of one log merge into the state of
    /// the whole).
    pub fn merge_sets(&self, other: &StateStore) {
        for name in other.names() {
            let theirs = other.namespace(&name);
            let theirs = lock(&theirs);
            lock(&self.namespace(&name)).merge_sets(&theirs);
        }
    }

    /// Every plugin's window sets, encoded, by key, in name order (plugins
    /// without any left out): what two stores that should agree on
    /// cross-account state are compared by.
    pub fn window_sets(&self) -> Vec<(String, EncodedSets)> {
        let map = lock(&self.inner);
        let mut v: Vec<_> =
            map.iter().map(|(n, ns)| (n.clone(), lock(ns).sets())).filter(|(_, sets)| !sets.is_empty()).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Names of every namespace held.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.inner).keys().cloned().collect();
        v.sort();
        v
    }

    /// `plugin` left the directory: its state is dropped by a `sweep` after
    /// the grace period unless the plugin comes back first.
    pub fn retire(&self, plugin: &str) {
        if lock(&self.inner).contains_key(plugin) {
            lock(&self.retired).entry(plugin.to_string()).or_insert_with(std::time::Instant::now);
        }
    }

    /// Drops the namespaces retired longer than `grace` ago; returns their names.
    pub fn sweep(&self, grace: std::time::Duration) -> Vec<String> {
        let mut retired = lock(&self.retired);
        let gone: Vec<String> = retired.iter().filter(|(_, t)| t.elapsed() >= grace).map(|(n, _)| n.clone()).collect();
        let mut map = lock(&self.inner);
        for n in &gone {
            retired.remove(n);
            map.remove(n);
        }
        gone
    }
}

impl StateStore {
    /// Every namespace, encoded with a checksum trailer (what `save`
    /// writes and `from_bytes` reads).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::from(&MAGIC[..]);
        let namespaces: Vec<(String, Arc<Mutex<Namespace>>)> = {
            let map = lock(&self.inner);
            let mut v: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        out.extend_from_slice(&(namespaces.len() as u32).to_le_bytes());
        for (name, ns) in namespaces {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            lock(&ns).encode(&mut out);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Writes every namespace to `path` atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let out = self.to_bytes();
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }

    /// Reads a snapshot written by `save`.
    pub fn load(path: &Path, bounds: StateBounds) -> Result<Self, String> {
        let buf = std::fs::read(path).map_err(|e| e.to_string())?;
        Self::from_bytes(&buf, bounds)
    }

    /// Reads what `to_bytes` wrote; a torn or altered snapshot is an error.
    pub fn from_bytes(buf: &[u8], bounds: StateBounds) -> Result<Self, String> {
        if buf.len() < MAGIC.len() + 4 + 32 || &buf[..8] != MAGIC {
            return Err("not a vigil state snapshot".into());
        }
        let (body, digest) = buf.split_at(buf.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err("checksum mismatch: the snapshot is corrupt or torn".into());
        }
        let mut r = Reader { buf: body, pos: 8 };
        let store = StateStore::new(bounds.clone());
        for _ in 0..r.u32()? {
            let len = r.u32()? as usize;
            let name = String::from_utf8(r.bytes(len)?.to_vec()).map_err(|_| "bad namespace name")?;
            let ns = Namespace::decode(&mut r, bounds.clone())?;
            lock(&store.inner).insert(name, Arc::new(Mutex::new(ns)));
        }
        Ok(store)
    }

    /// Restores from `path` if it exists. A corrupt snapshot is set aside
    /// (renamed `.corrupt-<ms>`) and reported, never fatal.
    pub fn restore_or_new(path: &Path, bounds: StateBounds) -> (Self, Option<String>) {
        if !path.exists() {
            return (StateStore::new(bounds), None);
        }
        match StateStore::load(path, bounds.clone()) {
            Ok(s) => (s, None),
            Err(e) => {
                let aside = path.with_extension(format!("corrupt-{}", crate::util::now_ms()));
                let _ = std::fs::rename(path, &aside);
                (StateStore::new(bounds), Some(format!("{}: {e}; set aside as {}", path.display(), aside.display())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(entries: usize, bytes: usize) -> StateBounds {
        StateBounds {
            max_entries_per_plugin: entries,
            max_bytes_per_plugin: bytes,
            max_value_bytes: 100,
            ..Default::default()
        }
    }

    #[test]
    fn set_additions_applied_twice_or_in_another_order_give_the_same_sets() {
        // What a cluster node relies on when it applies other nodes' additions.
        let adds: Vec<SetAdd> = (0..400u64)
            .map(|i| SetAdd {
                key: i % 5,
                member: i * 7 + 1,
                tags: (i % 3) as u8,
                now_ms: 1_000_000 + i as i64 * 997,
                bucket_ms: 60_000,
                buckets: 8,
            })
            .collect();
        let mut a = Namespace::new(bounds(10_000, 1 << 26));
        adds.iter().for_each(|x| a.set_add(x));
        let mut b = Namespace::new(bounds(10_000, 1 << 26));
        adds.iter().rev().chain(&adds).for_each(|x| b.set_add(x));
        assert_eq!(a.sets(), b.sets());
        assert_eq!(a.sets().len(), 5);
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
    fn bounds_follow_the_manifest_now_running() {
        let mut ns = Namespace::new(bounds(1000, 1 << 20));
        ns.set_bounds(Some(10), None);
        assert_eq!(ns.bounds(), (10, 1 << 20));
        // The next version's manifest sets none: the host's bounds again.
        ns.set_bounds(None, None);
        assert_eq!(ns.bounds(), (1000, 1 << 20));
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
    fn snapshots_round_trip_and_corruption_is_set_aside() {
        let dir = std::env::temp_dir().join(format!("vigil-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.bin");
        let s = StateStore::new(StateBounds::default());
        {
            let a = s.namespace("a");
            let mut a = a.lock().unwrap();
            a.set(1, b"one".to_vec(), Some(99));
            a.counter_add(2, 1_000, 60_000, 5);
            s.namespace("b").lock().unwrap().set(1, b"bee".to_vec(), None);
        }
        s.save(&path).unwrap();
        let (r, err) = StateStore::restore_or_new(&path, StateBounds::default());
        assert!(err.is_none());
        assert_eq!(r.namespace("a").lock().unwrap().get(1, 0), Some(b"one".to_vec()));
        assert_eq!(r.namespace("a").lock().unwrap().counter_add(2, 1_001, 60_000, 1), 6);
        assert_eq!(r.namespace("b").lock().unwrap().get(1, 0), Some(b"bee".to_vec()));

        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (r, err) = StateStore::restore_or_new(&path, StateBounds::default());
        assert!(err.unwrap().contains("checksum"));
        assert!(r.namespace("a").lock().unwrap().is_empty());
        assert!(!path.exists(), "the corrupt file was moved aside");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retired_namespaces_are_swept_after_the_grace_unless_revived() {
        let s = StateStore::new(StateBounds::default());
        s.namespace("gone").lock().unwrap().set(1, b"x".to_vec(), None);
        s.namespace("back").lock().unwrap().set(1, b"y".to_vec(), None);
        s.retire("gone");
        s.retire("back");
        assert!(s.sweep(std::time::Duration::from_secs(3600)).is_empty(), "within the grace");
        s.namespace("back");
        assert_eq!(s.sweep(std::time::Duration::ZERO), vec!["gone".to_string()]);
        assert_eq!(s.names(), vec!["back".to_string()]);
        assert_eq!(s.namespace("back").lock().unwrap().get(1, 0), Some(b"y".to_vec()));
    }

    #[test]
    fn namespaces_are_per_plugin_and_shared_across_versions() {
        let s = StateStore::new(StateBounds::default());
        s.namespace("a").lock().unwrap().set(1, b"a".to_vec(), None);
        assert!(s.namespace("b").lock().unwrap().get(1, 0).is_none());
        assert_eq!(s.namespace("a").lock().unwrap().get(1, 0), Some(b"a".to_vec()));
    }
}
