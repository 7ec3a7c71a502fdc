//! Who owns which partition. Live nodes renew a key each in the nodes
//! bucket; each partition goes to the live node that ranks highest for it
//! (rendezvous hashing, so a node joining or leaving moves only its share).
//! Ownership itself is a lease in the leases bucket, written only with the
//! revision last read (compare-and-set): the lease also points at the
//! partition's latest snapshot, so a node that lost a partition (a zombie
//! that was paused past its lease) fails on its next write and can no
//! longer commit state.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// Wall-clock milliseconds (leases compare wall clocks across nodes: keep
/// them in sync to well within `cluster.lease_ms`).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// This process: a node name and a number drawn at start, so a restarted
/// node is told apart from its previous life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub node: String,
    pub incarnation: u64,
}

/// Where a partition's state was last snapshotted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// Object name in the snapshot store.
    pub object: String,
    /// The last record stream sequence the snapshot includes.
    pub seq: u64,
}

/// A partition's lease, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: Option<Me>,
    /// Bumped by every takeover.
    pub epoch: u64,
    pub expires_ms: i64,
    pub snapshot: Option<SnapshotRef>,
}

/// A lease this node holds, with the revision its next write must match.
#[derive(Debug, Clone)]
pub struct Held {
    pub partition: u32,
    pub revision: u64,
    pub lease: Lease,
}

/// Why a write over a held lease did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// Someone else wrote the lease since we did: the partition is not ours.
    Lost,
    /// The bus did not answer, and the lease as stored is still our
    /// previous write: it is ours until it expires, and the write can be
    /// tried again.
    Unsure(anyhow::Error),
}

/// Longest wait for one lease write or read.
const CALL: Duration = Duration::from_millis(1500);

fn key(p: u32) -> String {
    format!("p{p}")
}

/// Reads partition `p`'s lease and its revision (none if never written).
pub async fn read(leases: &kv::Store, p: u32) -> anyhow::Result<(Option<u64>, Lease)> {
    match leases.entry(key(p)).await.context("reading a lease")? {
        Some(e) if e.operation == kv::Operation::Put => {
            let l = serde_json::from_slice(&e.value).context("a lease that is not vigil's")?;
            Ok((Some(e.revision), l))
        }
        Some(e) => Ok((Some(e.revision), Lease::default())),
        None => Ok((None, Lease::default())),
    }
}

/// Takes partition `p` if its lease is free, expired or our own (called
/// only for partitions no runner of ours holds); `None` if another node holds it or won the race.
pub async fn acquire(leases: &kv::Store, p: u32, me: &Me, lease_ms: u64) -> anyhow::Result<Option<Held>> {
    let (rev, old) = read(leases, p).await?;
    let free = match &old.owner {
        None => true,
        // Our own: a previous life's, or a runner of ours that ended.
        Some(o) => old.expires_ms < now_ms() || o.node == me.node,
    };
    if !free {
        return Ok(None);
    }
    let lease = Lease {
        owner: Some(me.clone()),
        epoch: old.epoch + 1,
        expires_ms: now_ms() + lease_ms as i64,
        snapshot: old.snapshot,
    };
    let value = Bytes::from(serde_json::to_vec(&lease)?);
    let written = match rev {
        None => leases.create(key(p), value).await.ok(),
        Some(r) => leases.update(key(p), value, r).await.ok(),
    };
    Ok(written.map(|revision| Held { partition: p, revision, lease }))
}

/// Writes `next` over a lease we hold (renewal, snapshot commit, release).
///
/// A write whose answer never came may still have landed, leaving
/// `held.revision` stale; every later write would then fail the revision
/// check although nobody else wrote. So any failure reads the lease back:
/// if it holds what we wrote, the write landed (its revision is adopted);
/// if it holds what we wrote before, nothing happened; anything else is
/// another node's write.
pub async fn write(leases: &kv::Store, held: &mut Held, next: Lease) -> Result<(), WriteError> {
    let value = Bytes::from(serde_json::to_vec(&next).map_err(|e| WriteError::Unsure(e.into()))?);
    let failure = match tokio::time::timeout(CALL, leases.update(key(held.partition), value, held.revision)).await {
        Ok(Ok(r)) => {
            held.revision = r;
            held.lease = next;
            return Ok(());
        }
        Ok(Err(e)) => anyhow::Error::from(e),
        Err(_) => anyhow::anyhow!("no answer within {CALL:?}"),
    };
    let stored = match tokio::time::timeout(CALL, read(leases, held.partition)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(WriteError::Unsure(failure.context(format!("and reading it back: {e:#}")))),
        Err(_) => return Err(WriteError::Unsure(failure.context("and no answer reading it back"))),
    };
    match stored {
        (Some(r), l) if l == next => {
            held.revision = r;
            held.lease = next;
            Ok(())
        }
        (Some(r), l) if r == held.revision && l == held.lease => Err(WriteError::Unsure(failure)),
        (r, l) => {
            tracing::warn!(
                partition = held.partition,
                held_revision = held.revision,
                stored_revision = ?r,
                stored_owner = ?l.owner,
                stored_epoch = l.epoch,
                "lease written by another node ({failure:#})"
            );
            Err(WriteError::Lost)
        }
    }
}

/// The node name is in use by another live process: two processes with one
/// name would each take the other's partitions as "a previous life's".
#[derive(Debug)]
pub struct NameTaken(pub Me);

impl std::fmt::Display for NameTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node name `{}` is in use by another live process (incarnation {}): give each node its own --node-id",
            self.0.node, self.0.incarnation
        )
    }
}

impl std::error::Error for NameTaken {}

/// The node entry's revision (also of a deleted one, which a create cannot
/// write over) and, if it is live data, whose it is and until when.
async fn read_node(nodes: &kv::Store, node: &str) -> anyhow::Result<(Option<u64>, Option<(Me, i64)>)> {
    match nodes.entry(node_key(node)).await.context("reading node liveness")? {
        Some(e) if e.operation == kv::Operation::Put => {
            let v = serde_json::from_slice::<(Me, i64)>(&e.value).context("a node entry that is not vigil's")?;
            Ok((Some(e.revision), Some(v)))
        }
        Some(e) => Ok((Some(e.revision), None)),
        None => Ok((None, None)),
    }
}

/// Takes this node's name in the nodes bucket and returns the revision the
/// first [`heartbeat`] writes over. A previous life's entry (a restart
/// after a crash) is waited out; an entry another process keeps renewing is
/// [`NameTaken`].
pub async fn claim(nodes: &kv::Store, me: &Me, lease_ms: u64) -> anyhow::Result<u64> {
    let value = || serde_json::to_vec(&(me, now_ms() + lease_ms as i64)).map(Bytes::from);
    loop {
        let written = match read_node(nodes, &me.node).await? {
            (Some(rev), Some((other, until))) if other != *me && until >= now_ms() => {
                // Alive, or a crashed life whose entry has not run out yet.
                tokio::time::sleep(Duration::from_millis((until - now_ms()).max(0) as u64 + 50)).await;
                match read_node(nodes, &me.node).await? {
                    (Some(r), Some((o, _))) if r != rev && o != *me => return Err(NameTaken(o).into()),
                    _ => continue,
                }
            }
            (Some(rev), _) => nodes.update(node_key(&me.node), value()?, rev).await.ok(),
            (None, _) => nodes.create(node_key(&me.node), value()?).await.ok(),
        };
        if let Some(r) = written {
            return Ok(r);
        }
        // Lost a race for the key: look again.
    }
}

/// Says this node is alive until `lease_ms` from now, over the revision it
/// wrote last; [`NameTaken`] if another process has written our name since.
pub async fn heartbeat(nodes: &kv::Store, me: &Me, lease_ms: u64, revision: &mut u64) -> anyhow::Result<()> {
    let v = Bytes::from(serde_json::to_vec(&(me, now_ms() + lease_ms as i64))?);
    let failure = match nodes.update(node_key(&me.node), v, *revision).await {
        Ok(r) => {
            *revision = r;
            return Ok(());
        }
        Err(e) => e,
    };
    // A write that landed without its answer reaching us is ours too.
    match read_node(nodes, &me.node).await? {
        (Some(r), Some((m, _))) if m == *me => {
            *revision = r;
            Ok(())
        }
        (_, Some((other, _))) => Err(NameTaken(other).into()),
        _ => Err(anyhow::Error::from(failure).context("renewing node liveness")),
    }
}

/// Leaves at once (a clean stop), so partitions move without waiting for
/// the lease to run out.
pub async fn leave(nodes: &kv::Store, me: &Me) {
    let _ = nodes.delete(node_key(&me.node)).await;
}

fn node_key(node: &str) -> String {
    format!("n.{node}")
}

/// Names of the nodes alive now, sorted.
pub async fn live_nodes(nodes: &kv::Store) -> anyhow::Result<Vec<String>> {
    let mut keys = nodes.keys().await.context("listing nodes")?;
    let mut live = Vec::new();
    let now = now_ms();
    while let Some(k) = keys.next().await {
        let Ok(k) = k else { continue };
        let Ok(Some(v)) = nodes.get(&k).await else { continue };
        if let Ok((me, until)) = serde_json::from_slice::<(Me, i64)>(&v)
            && until >= now
        {
            live.push(me.node);
        }
    }
    live.sort();
    live.dedup();
    Ok(live)
}

/// The node that should own partition `p` among `live` (rendezvous
/// hashing: the highest hash of node and partition).
pub fn owner_of(p: u32, live: &[String]) -> Option<&str> {
    live.iter().max_by_key(|n| rank(n, p)).map(String::as_str)
}

fn rank(node: &str, p: u32) -> u64 {
    vigil_sdk::hash::key(vigil_sdk::hash::tag(node), u64::from(p))
}

/// A name usable as a key (letters, digits, `-` and `_`).
pub fn node_name(raw: &str) -> String {
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joining_node_takes_only_partitions_from_others_and_about_its_share() {
        let two: Vec<String> = vec!["a".into(), "b".into()];
        let three: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let mut moved = 0;
        let mut to_c = 0;
        for p in 0..256 {
            let before = owner_of(p, &two).unwrap();
            let after = owner_of(p, &three).unwrap();
            if before != after {
                moved += 1;
                assert_eq!(after, "c", "partition {p} moved between the old nodes");
            }
            to_c += usize::from(after == "c");
        }
        assert_eq!(moved, to_c);
        assert!((60..=110).contains(&to_c), "c got {to_c} of 256");
    }
}
