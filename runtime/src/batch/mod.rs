//! A batch: records scored together, with their identity handles and the
//! prompt's word features computed once for every plugin.

pub mod handles;

use std::sync::{Arc, OnceLock};

use vigil_sdk::text::TextFeatures;

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
    /// Word features of the prompts and system prompts, computed on first
    /// use (by the first plugin granted the text) and shared by the rest.
    prompt_features: OnceLock<TextFeatures>,
    system_features: OnceLock<TextFeatures>,
}

impl Batch {
    /// Computes every record's handles with `hasher`.
    pub fn new(records: Vec<Record>, hasher: &Hasher64) -> Self {
        let handles = records.iter().map(|r| hasher.handles(r)).collect();
        Self { records, handles, scope: None, prompt_features: OnceLock::new(), system_features: OnceLock::new() }
    }

    /// A batch of one partition's records, scored against `scope`.
    pub fn scoped(records: Vec<Record>, hasher: &Hasher64, scope: Arc<Scope>) -> Self {
        Self { scope: Some(scope), ..Self::new(records, hasher) }
    }

    /// The word features of every record's prompt.
    pub fn prompt_features(&self) -> &TextFeatures {
        self.prompt_features.get_or_init(|| TextFeatures::compute(self.records.iter().map(|r| r.prompt.as_deref())))
    }

    /// The word features of every record's system prompt.
    pub fn system_features(&self) -> &TextFeatures {
        self.system_features
            .get_or_init(|| TextFeatures::compute(self.records.iter().map(|r| r.system_prompt.as_deref())))
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
