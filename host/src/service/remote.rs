//! Where inline calls are scored. A single process scores them itself; a
//! cluster node hands them to a [`Remote`] that reaches each account's
//! partition owner (the cluster sets one, docs/cluster.md), because the
//! account's state lives there and nowhere else.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use vigil_runtime::input::record::Record;
use vigil_runtime::score::combine::Verdict;

/// What became of one record sent to its owner.
#[derive(Debug)]
pub enum Answer {
    Verdict(Box<Verdict>),
    /// The record id is already on the record stream (within its
    /// duplicate window): this copy was not stored or scored.
    Duplicate,
    /// Stored on the record stream, but no verdict within the deadline: the
    /// owner is busy, dead or being replaced. It will still be scored, and
    /// its verdict published on the verdict stream.
    Late,
    /// Not stored: the bus refused or did not confirm it.
    Failed(String),
}

/// Scores records on their partitions' owners.
pub trait Remote: Send + Sync {
    /// One answer per record, in order, within `deadline`.
    fn score(&self, records: Vec<Record>, deadline: Duration) -> BoxFuture<'static, Vec<Answer>>;
}

/// Where this server's inline calls go.
pub enum Route {
    /// Scored here, against this process's state.
    Here,
    There(Arc<dyn Remote>),
    /// A cluster node that has not joined yet: nothing can be scored.
    NotYet,
}

/// Set once, when a cluster node has joined.
#[derive(Default)]
pub struct Slot {
    clustered: bool,
    remote: OnceLock<Arc<dyn Remote>>,
}

impl Slot {
    /// `clustered`: calls wait for a [`Remote`] and are never scored here.
    pub fn new(clustered: bool) -> Self {
        Self { clustered, remote: OnceLock::new() }
    }

    pub fn set(&self, remote: Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    pub fn route(&self) -> Route {
        match (self.clustered, self.remote.get()) {
            (false, _) => Route::Here,
            (true, Some(r)) => Route::There(r.clone()),
            (true, None) => Route::NotYet,
        }
    }
}
