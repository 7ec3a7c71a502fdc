//! Who owns which partition. Live nodes renew a key each in the nodes
//! bucket; each partition goes to the live node that ranks highest for it
//! (rendezvous hashing, so a node joining or leaving moves only its share).
//! Ownership itself is a lease in the leases bucket, written only with the
//! revision last read (compare-and-set): the lease also points at the
//! partition's latest snapshot, so a node that lost a partition (a zombie
//! that was paused past its lease) fails on its next write and can no
//! longer commit state.

use std::time::{SystemTime, UNIX_EPOCH};

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

/// Someone else wrote the lease since we did: the partition is not ours.
#[derive(Debug)]
pub struct Lost;

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

/// Takes partition `p` if its lease is free, expired or our own previous
/// life's; `None` if another node holds it or won the race.
pub async fn acquire(leases: &kv::Store, p: u32, me: &Me, lease_ms: u64) -> anyhow::Result<Option<Held>> {
    let (rev, old) = read(leases, p).await?;
    let free = match &old.owner {
        None => true,
        Some(o) => old.expires_ms < now_ms() || (o.node == me.node && o.incarnation != me.incarnation),
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
pub async fn write(leases: &kv::Store, held: &mut Held, next: Lease) -> Result<(), Lost> {
    let value = Bytes::from(serde_json::to_vec(&next).map_err(|_| Lost)?);
    match leases.update(key(held.partition), value, held.revision).await {
        Ok(r) => {
            held.revision = r;
            held.lease = next;
            Ok(())
        }
        Err(_) => Err(Lost),
    }
}

/// Says this node is alive until `lease_ms` from now.
pub async fn heartbeat(nodes: &kv::Store, me: &Me, lease_ms: u64) -> anyhow::Result<()> {
    let v = serde_json::to_vec(&(me, now_ms() + lease_ms as i64))?;
    nodes.put(node_key(&me.node), Bytes::from(v)).await.context("renewing node liveness")?;
    Ok(())
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
