//! One partition, owned: its state from the last snapshot, then its
//! records in stream order from the next sequence, each batch scored by the
//! live plugin set against the partition's state, verdicts published keyed
//! by record id, what the batch shares published, and every
//! `snapshot_interval_ms` a snapshot committed through the lease (and the
//! records acked up to it). Records at or below the position already
//! scored are skipped, so a redelivery never scores a record twice into
//! state; after a crash, the records since the last snapshot are scored
//! again from that snapshot (their verdicts repeat, with the same ids).

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::{StreamExt, TryFutureExt};
use tokio::io::AsyncReadExt;
use vigil_runtime::config::{Config, StateBounds};
use vigil_runtime::input::record::Record;
use vigil_runtime::metrics::Metrics;
use vigil_runtime::score::pipeline::Scorer;
use vigil_runtime::state::{Scope, StateStore};

use super::REQUESTS;
use super::inline::{REPLY_HEADER, reply_allowed};
use super::lease::{self, Held, Me, SnapshotRef};
use super::setup::Cluster;
use super::shared::{Progress, Progresses, Shared};

/// Longest wait on any one call to the bus: past it the runner gives the
/// partition up (its lease runs out and it moves) rather than hang.
const BUS_TIMEOUT: Duration = Duration::from_secs(10);

async fn bounded<T, E: Into<anyhow::Error>>(
    f: impl std::future::Future<Output = Result<T, E>>,
    what: &str,
) -> anyhow::Result<T> {
    match tokio::time::timeout(BUS_TIMEOUT, f).await {
        Ok(r) => r.map_err(Into::into).with_context(|| what.to_string()),
        Err(_) => anyhow::bail!("{what}: no answer within {BUS_TIMEOUT:?}"),
    }
}

/// What a runner needs, shared by a node's runners.
pub struct Ctx {
    pub cluster: Cluster,
    pub me: Me,
    pub scorer: Arc<Scorer>,
    pub config: Config,
    pub progress: Arc<Progresses>,
    pub metrics: Arc<Metrics>,
}

/// How a runner ended.
#[derive(Debug)]
pub enum End {
    /// Snapshotted and handed back (another node should own it now).
    Released,
    /// Someone else holds the lease: nothing was committed after that.
    Lost,
}

/// Flags the node sets for a runner.
#[derive(Default)]
pub struct Signals {
    /// Hand the partition back after the batch at hand.
    pub release: AtomicBool,
    /// The lease is gone: stop without writing anything.
    pub lost: AtomicBool,
}

impl Signals {
    fn stopping(&self) -> bool {
        self.lost.load(Ordering::Acquire) || self.release.load(Ordering::Acquire)
    }
}

struct Pending {
    seq: u64,
    record: Record,
    msg: Message,
    /// An inline call's inbox, waiting for this record's verdict.
    reply: Option<String>,
}

/// Each partition's bounds: the host's, shared out, so a node holding every
/// partition holds what one process would.
fn partition_bounds(config: &Config, partitions: u32) -> StateBounds {
    let mut b = config.state.clone();
    let n = partitions.max(1) as usize;
    b.max_entries_per_plugin = (b.max_entries_per_plugin / n).max(1_000);
    b.max_bytes_per_plugin = (b.max_bytes_per_plugin / n).max(1 << 20);
    b
}

/// Runs partition `held.partition` until released or lost. An error is a
/// failure of the bus or store: the caller gives the lease up.
pub async fn run(ctx: Arc<Ctx>, held: Arc<tokio::sync::Mutex<Held>>, sig: Arc<Signals>) -> anyhow::Result<End> {
    let (p, epoch, snap) = {
        let h = held.lock().await;
        (h.partition, h.lease.epoch, h.lease.snapshot.clone())
    };
    let bounds = partition_bounds(&ctx.config, ctx.cluster.partitions);
    let (kv, mut position) = match &snap {
        Some(s) => (load(&ctx.cluster, s, bounds).await?, s.seq),
        None => (StateStore::new(bounds), 0),
    };
    let scope = Arc::new(Scope::new(kv));
    tracing::info!(partition = p, epoch, from_seq = position + 1, "partition taken");
    let stream = ctx.cluster.js.get_stream(REQUESTS).await.context("opening the record stream")?;
    let mut feed = Feed::open(stream, p, position).await?;

    let cfg = &ctx.config.cluster;
    let batch_size = ctx.config.scoring.batch_size;
    let mut buf: VecDeque<Pending> = VecDeque::new();
    let mut last_msg: Option<Message> = None;
    let mut snapshotted = position;
    let mut last_snapshot = Instant::now();
    let mut shown: Option<Progress> = None;
    let mut acks: Vec<PublishAckFuture> = Vec::new();
    // Woken from idle by a record: score it at once (an inline call may be
    // waiting on it) rather than wait for a fuller batch.
    let mut woke = false;
    loop {
        if sig.lost.load(Ordering::Acquire) {
            return Ok(End::Lost);
        }
        let due = last_snapshot.elapsed() >= Duration::from_millis(cfg.snapshot_interval_ms);
        let release = sig.release.load(Ordering::Acquire);
        if release || (due && position > snapshotted) {
            settle(&mut acks).await?;
            let ok = commit(&ctx, &held, &scope.kv, position, last_msg.as_ref(), release).await?;
            if !ok {
                return Ok(End::Lost);
            }
            snapshotted = position;
            last_snapshot = Instant::now();
            if release {
                return Ok(End::Released);
            }
        }
        if buf.len() < batch_size && !woke {
            let room = batch_size * 2 - buf.len();
            feed.fill(&ctx, &mut buf, position, room, false).await?;
        }
        woke = false;
        if buf.is_empty() {
            if shown != Some(Progress::Idle) {
                shown = Some(Progress::Idle);
                ctx.progress.set(p, Progress::Idle);
                publish_shared(&ctx, p, Progress::Idle, &scope, Vec::new(), &mut acks).await?;
            }
            // A pull of one ends as soon as a record arrives.
            feed.fill(&ctx, &mut buf, position, 1, true).await?;
            woke = !buf.is_empty();
            continue;
        }
        let first_ts = buf[0].record.ts_ms;
        let span_end = first_ts.saturating_add(cfg.batch_span_ms as i64);
        let n = buf.iter().take(batch_size).take_while(|r| r.record.ts_ms <= span_end).count().max(1);
        // Event-time alignment: wait for the slowest partition.
        let at = Progress::At(first_ts);
        if shown != Some(at) {
            shown = Some(at);
            ctx.progress.set(p, at);
            publish_shared(&ctx, p, at, &scope, Vec::new(), &mut acks).await?;
        }
        let low = ctx.progress.wait_low(first_ts.saturating_sub(cfg.align_slack_ms as i64), || sig.stopping()).await;
        if sig.stopping() {
            continue;
        }
        let lead_ms = low.map_or(0, |low| (first_ts - low).max(0));
        ctx.metrics.add("vigil_cluster_lead_seconds_total", vec![], lead_ms as f64 / 1000.0);
        ctx.metrics.add("vigil_cluster_batches_total", vec![], 1.0);
        let batch: Vec<Pending> = buf.drain(..n).collect();
        let last_seq = batch.last().expect("non-empty").seq;
        let mut records = Vec::with_capacity(n);
        let mut replies = Vec::with_capacity(n);
        for b in batch {
            records.push(b.record);
            replies.push(b.reply);
            last_msg = Some(b.msg);
        }
        let max_ts = records.iter().map(|r| r.ts_ms).max().unwrap_or(first_ts);
        let (scorer, sc) = (ctx.scorer.clone(), scope.clone());
        let (verdicts, evidence) = tokio::task::spawn_blocking(move || {
            let batch = scorer.batch_in(records, sc);
            let f = scorer.submit(scorer.registry.snapshot(), batch);
            let (v, _, e) = scorer.finish_with_evidence(f);
            (v, e)
        })
        .await
        .context("scoring a batch")?;
        let client = ctx.cluster.js.client();
        for (v, reply) in verdicts.iter().zip(replies) {
            let body = Bytes::from(serde_json::to_vec(v)?);
            if let Some(r) = reply {
                // Best effort: the verdict stream has it either way.
                if let Err(e) = client.publish(r, body.clone()).await {
                    tracing::debug!("answering an inline call: {e}");
                }
            }
            let msg = PublishMessage::build().payload(body).message_id(&v.id);
            acks.push(bounded(ctx.cluster.js.send_publish(format!("vigil.v.{p}"), msg), "publishing a verdict").await?);
        }
        let at = Progress::At(max_ts);
        shown = Some(at);
        ctx.progress.set(p, at);
        publish_shared(&ctx, p, at, &scope, evidence, &mut acks).await?;
        ctx.metrics.add("vigil_cluster_records_scored_total", vec![], verdicts.len() as f64);
        position = last_seq;
        // The client admits a bounded number of unconfirmed publishes, shared
        // by every runner: each runner confirms its batch before the next.
        settle(&mut acks).await?;
    }
}

/// The partition's records, pulled from its durable consumer in stream
/// order.
struct Feed {
    stream: async_nats::jetstream::stream::Stream,
    partition: u32,
    consumer: consumer::PullConsumer,
    /// The consumer sequence of the last delivery received: deliveries
    /// are numbered one by one, so a jump means one went astray.
    delivered: u64,
}

impl Feed {
    /// (Re)creates the partition's consumer to start after `position`;
    /// the previous owner's consumer goes.
    async fn open(
        stream: async_nats::jetstream::stream::Stream,
        partition: u32,
        position: u64,
    ) -> anyhow::Result<Feed> {
        let name = format!("vigil-p{partition}");
        let _ = stream.delete_consumer(&name).await;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: format!("vigil.p.{partition}.*"),
                deliver_policy: if position == 0 {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::ByStartSequence { start_sequence: position + 1 }
                },
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(300),
                max_ack_pending: 1 << 20,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating consumer {name}"))?;
        Ok(Feed { stream, partition, consumer, delivered: 0 })
    }

    /// Takes up to `max` records after `position` into `buf` (waiting a
    /// little for the first if `wait`).
    async fn fill(
        &mut self,
        ctx: &Ctx,
        buf: &mut VecDeque<Pending>,
        position: u64,
        max: usize,
        wait: bool,
    ) -> anyhow::Result<()> {
        // A pull with a short expiry ends with what is there, or after the
        // expiry when nothing is. nats-server 2.9.10 sometimes drops an
        // expired pull without the 408 that says so (fixed in 2.9.15,
        // nats-server#3942), so the wait also ends on our own clock: once
        // the expiry is past and no record came for `GRACE`. A pull given up
        // that way may still deliver, to an inbox nobody reads, so the
        // consumer is then recreated from the first record not taken; a
        // jump in the consumer sequence (deliveries are numbered one by
        // one) is handled the same way.
        const GRACE: Duration = Duration::from_millis(25);
        let expires = Duration::from_millis(if wait { 200 } else { 20 });
        let mut msgs =
            bounded(self.consumer.batch().max_messages(max).expires(expires).messages(), "fetching records").await?;
        let mut deadline = tokio::time::Instant::now() + expires + GRACE;
        loop {
            let after = buf.back().map_or(position, |b| b.seq);
            let m = match tokio::time::timeout_at(deadline, msgs.next()).await {
                Ok(None) => return Ok(()), // the server ended the pull
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return self.reopen(after, &format!("the pull failed: {e}")).await,
                Err(_) => return self.reopen(after, "the pull's expiry notice did not come").await,
            };
            deadline = deadline.max(tokio::time::Instant::now() + GRACE);
            let info = m.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (seq, delivered) = (info.stream_sequence, info.consumer_sequence);
            if delivered != self.delivered + 1 {
                let why = format!("a delivery was missed (consumer sequence {delivered} after {})", self.delivered);
                return self.reopen(after, &why).await;
            }
            self.delivered = delivered;
            if seq <= after {
                continue; // scored already (a redelivery)
            }
            let reply = match m.headers.as_ref().and_then(|h| h.get(REPLY_HEADER)).map(|v| v.to_string()) {
                Some(r) if !reply_allowed(&r) => {
                    tracing::warn!(
                        "record at stream sequence {seq}: reply subject {r:?} is not an inbox: not answered"
                    );
                    None
                }
                r => r,
            };
            match Record::parse(&m.payload, seq, &ctx.config.input) {
                Ok(record) => buf.push_back(Pending { seq, record, msg: m, reply }),
                Err(e) => {
                    // Not from `vigil publish`, which checks every record.
                    tracing::error!("record at stream sequence {seq} skipped: {e}");
                    ctx.metrics.add("vigil_cluster_bad_records_total", vec![], 1.0);
                }
            }
        }
    }

    /// Recreates the consumer to start after `after`: what a pull we no
    /// longer read may have taken is delivered again.
    async fn reopen(&mut self, after: u64, why: &str) -> anyhow::Result<()> {
        tracing::debug!(partition = self.partition, from_seq = after + 1, "{why}: re-reading");
        *self = Feed::open(self.stream.clone(), self.partition, after).await?;
        Ok(())
    }
}

async fn publish_shared(
    ctx: &Ctx,
    p: u32,
    progress: Progress,
    scope: &Scope,
    evidence: Vec<vigil_runtime::score::campaigns::Evidence>,
    acks: &mut Vec<PublishAckFuture>,
) -> anyhow::Result<()> {
    let s = Shared { partition: p, from: ctx.me.clone(), progress, adds: scope.take_adds(), evidence };
    let body = Bytes::from(s.encode());
    ctx.metrics.add("vigil_cluster_shared_bytes_total", vec![], body.len() as f64);
    let msg = PublishMessage::build().payload(body);
    acks.push(bounded(ctx.cluster.js.send_publish(format!("vigil.s.{p}"), msg), "publishing shared state").await?);
    Ok(())
}

/// Waits until the stream has every verdict and shared message so far.
async fn settle(acks: &mut Vec<PublishAckFuture>) -> anyhow::Result<()> {
    for a in acks.drain(..) {
        bounded(a.into_future(), "confirming a verdict or shared message").await?;
    }
    Ok(())
}

async fn load(c: &Cluster, s: &SnapshotRef, bounds: StateBounds) -> anyhow::Result<StateStore> {
    let what = format!("reading snapshot {}", s.object);
    let mut obj = bounded(c.snapshots.get(&s.object), &what).await?;
    let mut bytes = Vec::new();
    bounded(obj.read_to_end(&mut bytes), &what).await?;
    StateStore::from_bytes(&bytes, bounds).map_err(|e| anyhow::anyhow!("snapshot {}: {e}", s.object))
}

/// Writes the partition's state and points the lease at it (only if the
/// lease is still ours), then acks the records up to it. False: lost.
async fn commit(
    ctx: &Ctx,
    held: &tokio::sync::Mutex<Held>,
    kv: &StateStore,
    position: u64,
    last: Option<&Message>,
    release: bool,
) -> anyhow::Result<bool> {
    let (p, epoch, prev) = {
        let h = held.lock().await;
        (h.partition, h.lease.epoch, h.lease.snapshot.clone())
    };
    // The state goes up before the lease is touched: the lease is held
    // only for the one compare-and-set that makes the snapshot current.
    let mut new = prev.clone();
    if prev.as_ref().is_none_or(|s| s.seq != position) {
        let bytes = kv.to_bytes();
        let object = format!("p{p}-e{epoch}-s{position}");
        bounded(ctx.cluster.snapshots.put(object.as_str(), &mut bytes.as_slice()), "writing a snapshot").await?;
        ctx.metrics.add("vigil_cluster_snapshot_bytes_total", vec![], bytes.len() as f64);
        new = Some(SnapshotRef { object, seq: position });
    }
    let mut h = held.lock().await;
    let mut next = h.lease.clone();
    next.snapshot = new.clone();
    next.expires_ms = lease::now_ms() + ctx.config.cluster.lease_ms as i64;
    if release {
        next.owner = None;
        next.expires_ms = 0;
    }
    match lease::write(&ctx.cluster.leases, &mut h, next).await {
        Ok(()) => {}
        Err(lease::WriteError::Lost) => {
            // The lease never pointed at the new snapshot: nobody will read it.
            if let Some(s) = new.filter(|n| Some(n) != prev.as_ref()) {
                let _ = ctx.cluster.snapshots.delete(&s.object).await;
            }
            return Ok(false);
        }
        // Neither snapshot can go (either may be current); the runner
        // ends, and its lease runs out unless renewed.
        Err(lease::WriteError::Unsure(e)) => return Err(e.context("committing a snapshot")),
    }
    drop(h);
    if let Some(m) = last {
        bounded(m.ack().map_err(|e| anyhow::anyhow!("{e}")), "acking records").await?;
    }
    if let Some(old) = prev.filter(|o| Some(o) != new.as_ref()) {
        let _ = ctx.cluster.snapshots.delete(&old.object).await;
    }
    Ok(true)
}
