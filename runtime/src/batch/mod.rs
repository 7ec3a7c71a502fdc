//! A batch: records scored together, with their identity handles computed
//! once for every plugin.

pub mod handles;

use crate::batch::handles::{Handles, Hasher64};
use crate::input::record::Record;

/// Records scored together, each with its identity handles.
pub struct Batch {
    /// The records, in input order.
    pub records: Vec<Record>,
    /// The handles of each record, by the same index.
    pub handles: Vec<Handles>,
}

impl Batch {
    /// Computes every record's handles with `hasher`.
    pub fn new(records: Vec<Record>, hasher: &Hasher64) -> Self {
        let handles = records.iter().map(|r| hasher.handles(r)).collect();
        Self { records, handles }
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
