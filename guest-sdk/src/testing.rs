//! An in-memory [`Host`] for a detector's native unit tests, with the same
//! state semantics as the vigil host (event-time TTLs, sliding counters).

use std::collections::HashMap;

use crate::sets::WindowSet;
use crate::window::SlidingCounter;
use crate::{CounterOp, Field, Host, Level, Request, SetOp, SetView};

#[derive(Default, Debug)]
pub struct MemHost {
    kv: HashMap<u64, (Vec<u8>, Option<i64>)>,
    counters: HashMap<(u64, u32), SlidingCounter>,
    /// The window sets, by key (what the host would merge).
    pub sets: HashMap<u64, WindowSet>,
    names: HashMap<(u8, u64), String>,
    /// Every line logged, in order.
    pub logs: Vec<(Level, String)>,
}

impl MemHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle for `text` in `field`, remembered so `resolve` finds it.
    /// (The real host uses a keyed hash; tests only need equality.)
    pub fn handle(&mut self, field: Field, text: &str) -> u64 {
        let h = crate::hash::key(crate::hash::tag(text), field as u64) | 1;
        self.names.insert((field as u8, h), text.to_string());
        h
    }

    /// Number of live key-value entries, counters and sets.
    pub fn entries(&self) -> usize {
        self.kv.len() + self.counters.len() + self.sets.len()
    }
}

impl Host for MemHost {
    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_string()));
    }
    fn resolve(&mut self, field: Field, handle: u64) -> Option<String> {
        self.names.get(&(field as u8, handle)).cloned()
    }
    fn get(&mut self, key: u64, now_ms: i64) -> Option<Vec<u8>> {
        match self.kv.get(&key) {
            Some((_, Some(exp))) if *exp <= now_ms => None,
            Some((v, _)) => Some(v.clone()),
            None => None,
        }
    }
    fn set(&mut self, key: u64, value: &[u8], expires_at_ms: Option<i64>) {
        self.kv.insert(key, (value.to_vec(), expires_at_ms));
    }
    fn remove(&mut self, key: u64) {
        self.kv.remove(&key);
    }
    fn sets_update(&mut self, ops: &[SetOp]) -> Vec<SetView> {
        ops.iter()
            .map(|op| {
                let shape = (op.bucket_ms.max(1), op.buckets.max(1));
                let set = self.sets.entry(op.key).or_insert_with(|| WindowSet::new(shape.0, shape.1));
                if set.shape() != shape {
                    *set = WindowSet::new(shape.0, shape.1);
                }
                if op.member != 0 {
                    set.add(op.member, op.tags, op.now_ms);
                }
                set.view(op.since_ms, op.now_ms, op.members).into()
            })
            .collect()
    }

    fn counter_add(&mut self, ops: &[CounterOp]) -> Vec<u64> {
        ops.iter()
            .map(|op| {
                self.counters.entry((op.key, op.window_ms)).or_default().add(
                    op.now_ms,
                    op.window_ms,
                    u64::from(op.delta),
                )
            })
            .collect()
    }
}

/// A detector built from its default config, as a native test wants it.
pub fn detector<D: crate::Detector>() -> D
where
    D::Config: Default,
{
    D::new(D::Config::default()).expect("the default config is accepted")
}

/// A detector built from a manifest `[config]` table given as JSON, as the
/// host builds it at `init`: `Err` is what `vigil check` would report.
pub fn configured<D: crate::Detector>(config_json: &str) -> Result<D, String> {
    D::new(crate::parse_config(config_json)?)
}

/// A request at `ts_ms` with every other field empty, as a plugin granted
/// nothing would see it. Fill in what a test needs.
pub fn request(ts_ms: i64) -> Request {
    Request { ts_ms, ..Request::default() }
}
