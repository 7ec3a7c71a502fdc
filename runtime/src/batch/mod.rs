//! A batch: records scored together, with their identity handles computed
//! once for every plugin.

pub mod handles;

use std::sync::Arc;

use crate::batch::handles::{Handles, Hasher64};
use crate::input::record::Record;
use crate::state::Scope;

/// Records scored together, each with its identity handles.
pub struct Batch {
    /// The records, in input order.
    pub records: Vec<Record>,
    /// The handles of each record, by the same index.
    pub handles: Vec<Handles>,
    /// In a cluster, the partition state the batch scores against; `None`
    /// scores against each plugin's own namespace.
    pub scope: Option<Arc<Scope>>,
}

impl Batch {
    /// Computes every record's handles with `hasher`.
    pub fn new(records: Vec<Record>, hasher: &Hasher64) -> Self {
        let handles = records.iter().map(|r| hasher.handles(r)).collect();
        Self { records, handles, scope: None }
    }

    /// A batch of one partition's records, scored against `scope`.
    pub fn scoped(records: Vec<Record>, hasher: &Hasher64, scope: Arc<Scope>) -> Self {
        Self { scope: Some(scope), ..Self::new(records, hasher) }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
