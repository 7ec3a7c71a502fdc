use std::sync::Mutex;

use crate::bindings::vigil::detector::host as imports;
use crate::bindings::vigil::detector::types as wit;
use crate::{Batch, Field, Level, StateEntry};

/// One step on a sliding-window counter (`Host::counter_add`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterOp {
    pub key: u64,
    /// Event time of the step (the record's `ts_ms`).
    pub now_ms: i64,
    pub window_ms: u32,
    pub delta: u32,
}

/// One add to, or read of, a window set (`Host::sets_update`; build them
/// with `sets::Shape`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOp {
    pub key: u64,
    /// The member to add (an account handle, say); 0 only reads.
    pub member: u64,
    /// Tags it is added under, bit i for tag i (0 to 3).
    pub tags: u8,
    /// Event time of the add, and the end of the read.
    pub now_ms: i64,
    pub bucket_ms: u32,
    pub buckets: u16,
    /// The read covers the buckets from this time to `now_ms`.
    pub since_ms: i64,
    /// List the members read (while few enough to be known exactly).
    pub members: bool,
}

/// What a read of a window set says, after the op's add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetView {
    /// Distinct members read (exact while small, else estimated).
    pub count: u32,
    /// The same, per tag.
    pub tagged: (u32, u32, u32, u32),
    /// Buckets read that hold any member.
    pub active_buckets: u16,
    /// The members read, if asked for and known exactly; else empty.
    pub members: Vec<u64>,
}

/// A detector's opinion of one request. `score` is in [0, 1]; 0 with no
/// labels means "nothing to say".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signal {
    pub score: f32,
    /// Short machine-readable tags, for example `template:ab12`.
    pub labels: Vec<String>,
    /// One line for an analyst: what matched and why it matters.
    pub reason: String,
}

/// A detection plugin: scores a batch of requests, one signal per request.
///
/// Once per instance the host hands it the manifest's `[config]` table,
/// parsed into [`Detector::Config`], and [`Detector::new`] builds it.
pub trait Detector: Sized + 'static {
    /// One line for `vigil check` and `/v1/plugins`.
    const DESCRIPTION: &'static str;

    /// The manifest's `[config]` table, typed. Mark it
    /// `#[serde(default, deny_unknown_fields)]` so every key has a default
    /// and a typo fails `vigil check` instead of silently using one; a
    /// detector with nothing to configure uses [`NoConfig`].
    type Config: serde::de::DeserializeOwned;

    /// The detector, from its config; `Err` refuses the config (the plugin
    /// then does not load, and the message says why).
    fn new(config: Self::Config) -> Result<Self, String>;

    /// One signal per request, in order (`batch` derefs to `[Request]`;
    /// `batch.prompt_text()` has the prompts' word features). Keep anything
    /// that must survive a new version or a restart in `host` state, not in
    /// `self`.
    fn score(&mut self, batch: &Batch, host: &mut dyn Host) -> Vec<Signal>;
}

/// The config of a detector that takes none: only an empty table.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// Parses the manifest config into a plugin's own type; unknown keys and
/// wrong types are errors that name the key, so a typo fails `vigil check`
/// instead of silently using a default.
pub fn parse_config<C: serde::de::DeserializeOwned>(config: &str) -> Result<C, String> {
    let json = if config.trim().is_empty() { "{}" } else { config };
    serde_json::from_str(json).map_err(|e| format!("config: {e}"))
}

/// What the host offers a detector. See `wit/detector.wit` for the contract.
pub trait Host {
    fn log(&mut self, level: Level, message: &str);
    /// The text behind a handle of the current batch, if the field is granted.
    fn resolve(&mut self, field: Field, handle: u64) -> Option<String>;
    fn get(&mut self, key: u64, now_ms: i64) -> Option<Vec<u8>>;
    fn set(&mut self, key: u64, value: &[u8], expires_at_ms: Option<i64>);
    fn remove(&mut self, key: u64);
    /// Applies the steps in order; one total per step.
    fn counter_add(&mut self, ops: &[CounterOp]) -> Vec<u64>;
    /// `get` for many keys at once: one boundary crossing instead of one
    /// per key.
    fn get_many(&mut self, keys: &[u64], now_ms: i64) -> Vec<Option<Vec<u8>>> {
        keys.iter().map(|&k| self.get(k, now_ms)).collect()
    }
    /// `set` for many entries at once, in order.
    fn set_many(&mut self, entries: Vec<StateEntry>) {
        for e in entries {
            self.set(e.key, &e.value, e.expires_at_ms);
        }
    }
    /// Window sets (see `vigil_sdk::sets` and the WIT): each op's add, then
    /// its read; one view per op.
    fn sets_update(&mut self, ops: &[SetOp]) -> Vec<SetView>;
}

/// The real host, across the component boundary. Contract 0.2's state
/// calls all take many keys; the one-key methods are one-element calls.
pub struct WasmHost;

impl Host for WasmHost {
    fn log(&mut self, level: Level, message: &str) {
        imports::log(level, message)
    }
    fn resolve(&mut self, field: Field, handle: u64) -> Option<String> {
        imports::resolve(field, handle)
    }
    fn get(&mut self, key: u64, now_ms: i64) -> Option<Vec<u8>> {
        imports::state_get(&[key], now_ms).pop().flatten()
    }
    fn set(&mut self, key: u64, value: &[u8], expires_at_ms: Option<i64>) {
        imports::state_set(&[StateEntry { key, value: value.to_vec(), expires_at_ms }])
    }
    fn remove(&mut self, key: u64) {
        imports::state_remove(&[key])
    }
    fn counter_add(&mut self, ops: &[CounterOp]) -> Vec<u64> {
        if ops.is_empty() {
            return Vec::new();
        }
        imports::counter_add(&wit::CounterSteps {
            keys: ops.iter().map(|o| o.key).collect(),
            now_ms: ops.iter().map(|o| o.now_ms).collect(),
            window_ms: ops.iter().map(|o| o.window_ms).collect(),
            deltas: ops.iter().map(|o| o.delta).collect(),
        })
    }
    fn get_many(&mut self, keys: &[u64], now_ms: i64) -> Vec<Option<Vec<u8>>> {
        if keys.is_empty() {
            return Vec::new();
        }
        imports::state_get(keys, now_ms)
    }
    fn set_many(&mut self, entries: Vec<StateEntry>) {
        if entries.is_empty() {
            return;
        }
        imports::state_set(&entries)
    }
    fn sets_update(&mut self, ops: &[SetOp]) -> Vec<SetView> {
        if ops.is_empty() {
            return Vec::new();
        }
        let v = imports::sets_update(&wit::SetOps {
            keys: ops.iter().map(|o| o.key).collect(),
            members: ops.iter().map(|o| o.member).collect(),
            tags: ops.iter().map(|o| o.tags).collect(),
            now_ms: ops.iter().map(|o| o.now_ms).collect(),
            bucket_ms: ops.iter().map(|o| o.bucket_ms).collect(),
            buckets: ops.iter().map(|o| o.buckets).collect(),
            since_ms: ops.iter().map(|o| o.since_ms).collect(),
            list_members: ops.iter().map(|o| o.members).collect(),
        });
        // One view per op, as the contract says (a host that broke it
        // would trap the plugin here, not pass for an empty answer).
        let mut start = 0usize;
        (0..ops.len())
            .map(|i| {
                let end = v.member_ends[i] as usize;
                let t = &v.tagged[4 * i..4 * i + 4];
                let view = SetView {
                    count: v.counts[i],
                    tagged: (t[0], t[1], t[2], t[3]),
                    active_buckets: v.active_buckets[i],
                    members: v.members[start..end].to_vec(),
                };
                start = end;
                view
            })
            .collect()
    }
}

impl Signal {
    /// Nothing to say about this request.
    pub fn none() -> Self {
        Signal { score: 0.0, labels: Vec::new(), reason: String::new() }
    }

    pub fn new(score: f32, labels: &[&str], reason: impl Into<String>) -> Self {
        Signal {
            score: score.clamp(0.0, 1.0),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            reason: reason.into(),
        }
    }
}

/// What the export shell keeps between calls: the detector, and the batch
/// whose buffers each call refills.
#[doc(hidden)]
pub type Slot<D> = Mutex<Option<(D, Batch)>>;

#[doc(hidden)]
pub fn run_init<D: Detector>(slot: &Slot<D>, config: &str) -> Result<(), String> {
    let d = D::new(parse_config(config)?)?;
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((d, Batch::default()));
    Ok(())
}

#[doc(hidden)]
pub fn run_score<D: Detector>(slot: &Slot<D>, columns: wit::Batch) -> Result<wit::Signals, String> {
    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    let (d, batch) = guard.as_mut().ok_or("score called before init")?;
    batch.refill(columns)?;
    let out = d.score(batch, &mut WasmHost);
    if out.len() != batch.len() {
        return Err(format!("detector returned {} signals for {} requests", out.len(), batch.len()));
    }
    Ok(parallel(out))
}

/// Signals as contract 0.2's parallel arrays: a score per request, a note
/// only for those with labels or a reason.
fn parallel(signals: Vec<Signal>) -> wit::Signals {
    let scores = signals.iter().map(|s| s.score).collect();
    let notes = signals
        .into_iter()
        .enumerate()
        .filter(|(_, s)| !s.labels.is_empty() || !s.reason.is_empty())
        .map(|(i, s)| wit::Note { index: i as u32, labels: s.labels, reason: s.reason })
        .collect();
    wit::Signals { scores, notes }
}
