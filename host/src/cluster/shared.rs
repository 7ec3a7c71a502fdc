//! What partitions share: each scored batch's window-set additions and
//! campaign evidence, and how far the partition has got in event time. One
//! message per batch on `vigil.s.<partition>`; every node applies every
//! message to its own copy of the cross-account state. Both are unions, so
//! a message applied twice (a replay after a crash) or late changes
//! nothing the end state holds.
//!
//! Event-time progress keeps the partitions together: a partition does not
//! score a batch that starts more than `align_slack_ms` after the slowest
//! partition (a dead node's partitions hold the others until they are
//! taken over). So what a partition reads of the others' sets is what one
//! process would read, up to the slack.

use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use vigil_runtime::score::campaigns::Evidence;
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::{SetAdd, StateStore};
use vigil_runtime::util::lock;

use super::SHARED;
use super::lease::Me;

/// A partition's progress in event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Progress {
    /// Everything before this time it has shared.
    At(i64),
    /// Nothing left to score: it holds nobody back.
    Idle,
}

/// One shared message.
#[derive(Debug, Clone, PartialEq)]
pub struct Shared {
    pub partition: u32,
    pub from: Me,
    pub progress: Progress,
    pub adds: Vec<(Arc<str>, SetAdd)>,
    pub evidence: Vec<Evidence>,
}

#[derive(Serialize, Deserialize)]
struct Head {
    partition: u32,
    from: Me,
    progress: Progress,
    plugins: Vec<String>,
    adds: u32,
    evidence: Vec<Evidence>,
}

const ADD_BYTES: usize = 2 + 8 + 8 + 1 + 8 + 4 + 2;

impl Shared {
    /// A JSON head (length first), then the additions packed in 33 bytes
    /// each: they are most of the volume.
    pub fn encode(&self) -> Vec<u8> {
        let mut plugins: Vec<String> = Vec::new();
        let mut packed = Vec::with_capacity(self.adds.len() * ADD_BYTES);
        for (p, a) in &self.adds {
            let i = match plugins.iter().position(|x| **x == **p) {
                Some(i) => i,
                None => {
                    plugins.push(p.to_string());
                    plugins.len() - 1
                }
            };
            packed.extend_from_slice(&(i as u16).to_le_bytes());
            packed.extend_from_slice(&a.key.to_le_bytes());
            packed.extend_from_slice(&a.member.to_le_bytes());
            packed.push(a.tags);
            packed.extend_from_slice(&a.now_ms.to_le_bytes());
            packed.extend_from_slice(&a.bucket_ms.to_le_bytes());
            packed.extend_from_slice(&a.buckets.to_le_bytes());
        }
        let head = Head {
            partition: self.partition,
            from: self.from.clone(),
            progress: self.progress,
            plugins,
            adds: self.adds.len() as u32,
            evidence: self.evidence.clone(),
        };
        let head = serde_json::to_vec(&head).expect("serializable");
        let mut out = Vec::with_capacity(4 + head.len() + packed.len());
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&packed);
        out
    }

    pub fn decode(b: &[u8]) -> anyhow::Result<Shared> {
        let n = u32::from_le_bytes(b.get(..4).context("truncated")?.try_into()?) as usize;
        let head: Head = serde_json::from_slice(b.get(4..4 + n).context("truncated head")?)?;
        let packed = &b[4 + n..];
        if packed.len() != head.adds as usize * ADD_BYTES {
            bail!("{} bytes of additions for {} additions", packed.len(), head.adds);
        }
        let plugins: Vec<Arc<str>> = head.plugins.iter().map(|p| Arc::from(p.as_str())).collect();
        let mut adds = Vec::with_capacity(head.adds as usize);
        for c in packed.chunks_exact(ADD_BYTES) {
            let u64_at = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().unwrap());
            let plugin = plugins.get(u16::from_le_bytes([c[0], c[1]]) as usize).context("plugin index")?.clone();
            adds.push((
                plugin,
                SetAdd {
                    key: u64_at(2),
                    member: u64_at(10),
                    tags: c[18],
                    now_ms: u64_at(19) as i64,
                    bucket_ms: u32::from_le_bytes(c[27..31].try_into().unwrap()),
                    buckets: u16::from_le_bytes([c[31], c[32]]),
                },
            ));
        }
        Ok(Shared {
            partition: head.partition,
            from: head.from,
            progress: head.progress,
            adds,
            evidence: head.evidence,
        })
    }
}

/// Every partition's progress as this node has applied it.
pub struct Progresses {
    by_partition: Mutex<Vec<Option<Progress>>>,
    /// Wakes the partitions waiting for the slowest one.
    moved: tokio::sync::Notify,
}

impl Progresses {
    pub fn new(partitions: u32) -> Self {
        Self { by_partition: Mutex::new(vec![None; partitions as usize]), moved: tokio::sync::Notify::new() }
    }

    pub fn set(&self, p: u32, at: Progress) {
        if let Some(slot) = lock(&self.by_partition).get_mut(p as usize) {
            *slot = Some(at);
        }
        self.moved.notify_waiters();
    }

    /// Waits until `low()` is at least `t`, and returns it; `None` if
    /// `give_up` said stop first (checked at least every 100 ms).
    pub async fn wait_low(&self, t: i64, give_up: impl Fn() -> bool) -> Option<i64> {
        loop {
            let moved = self.moved.notified();
            if let Some(low) = self.low().filter(|low| *low >= t) {
                return Some(low);
            }
            if give_up() {
                return None;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), moved).await;
        }
    }

    /// The slowest partition's time: `None` while some partition has not
    /// been heard from (nobody runs ahead of a partition not yet started).
    pub fn low(&self) -> Option<i64> {
        let v = lock(&self.by_partition);
        let mut low = i64::MAX;
        for p in v.iter() {
            match p {
                None => return None,
                Some(Progress::At(t)) => low = low.min(*t),
                Some(Progress::Idle) => {}
            }
        }
        Some(low)
    }
}

/// Applies every shared message, from the stream's start, to `home` (the
/// node's window sets) and the scorer's campaign graph; updates
/// `progress`. Runs until the connection ends.
pub async fn apply_forever(
    js: jetstream::Context,
    me: Me,
    home: StateStore,
    scorer: Arc<Scorer>,
    progress: Arc<Progresses>,
    applied: Arc<std::sync::atomic::AtomicU64>,
    metrics: Arc<vigil_runtime::metrics::Metrics>,
) -> anyhow::Result<()> {
    let stream = js.get_stream(SHARED).await.context("opening the shared stream")?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("consuming the shared stream")?;
    let mut messages = consumer.messages().await.context("consuming the shared stream")?;
    while let Some(m) = messages.next().await {
        let m = m.context("reading the shared stream")?;
        let s = match Shared::decode(&m.payload) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("a shared message that is not vigil's, skipped: {e:#}");
                continue;
            }
        };
        // Our own additions are in `home` already.
        if s.from != me {
            let mut ns: Option<(Arc<str>, Arc<Mutex<vigil_runtime::state::Namespace>>)> = None;
            for (plugin, a) in &s.adds {
                if ns.as_ref().is_none_or(|(p, _)| p != plugin) {
                    ns = Some((plugin.clone(), home.namespace(plugin)));
                }
                lock(&ns.as_ref().expect("set").1).set_add(a);
            }
            let mut c = lock(&scorer.campaigns);
            for e in &s.evidence {
                c.take(e);
            }
        }
        if s.from != me
            && let Ok(info) = m.info()
        {
            let now_ns = super::lease::now_ms() as i128 * 1_000_000;
            let lag = (now_ns - info.published.unix_timestamp_nanos()).max(0) as f64 / 1e9;
            metrics.add("vigil_cluster_shared_applied_total", vec![], 1.0);
            metrics.add("vigil_cluster_shared_lag_seconds_total", vec![], lag);
        }
        progress.set(s.partition, s.progress);
        applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_message_decodes_to_what_was_encoded() {
        let s = Shared {
            partition: 7,
            from: Me { node: "n1".into(), incarnation: 42 },
            progress: Progress::At(1_700_000_000_000),
            adds: vec![
                ("fanout".into(), SetAdd { key: 1, member: 2, tags: 3, now_ms: -4, bucket_ms: 5, buckets: 6 }),
                (
                    "template-fleet".into(),
                    SetAdd { key: u64::MAX, member: 9, tags: 0, now_ms: 8, bucket_ms: 7, buckets: 1 },
                ),
                ("fanout".into(), SetAdd { key: 0, member: 1, tags: 255, now_ms: i64::MAX, bucket_ms: 0, buckets: 0 }),
            ],
            evidence: vec![Evidence { account: "a".into(), ts_ms: 1, labels: vec!["card:x".into()], flagged: true }],
        };
        let b = s.encode();
        assert_eq!(Shared::decode(&b).unwrap(), s);
        assert!(Shared::decode(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn nobody_runs_ahead_of_a_partition_not_heard_from_and_idle_ones_hold_nobody() {
        let p = Progresses::new(3);
        p.set(0, Progress::At(10));
        p.set(1, Progress::Idle);
        assert_eq!(p.low(), None);
        p.set(2, Progress::At(5));
        assert_eq!(p.low(), Some(5));
        p.set(2, Progress::Idle);
        assert_eq!(p.low(), Some(10));
    }
}
