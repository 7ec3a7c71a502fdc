//! A batch: records scored together, with their identity handles computed
//! once for every plugin.

pub mod handles;

use crate::batch::handles::{Handles, Hasher64};
use crate::input::record::Record;

pub struct Batch {
    pub records: Vec<Record>,
    pub handles: Vec<Handles>,
}

impl Batch {
    pub fn new(records: Vec<Record>, hasher: &Hasher64) -> Self {
        let handles = records.iter().map(|r| hasher.handles(r)).collect();
        Self { records, handles }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
