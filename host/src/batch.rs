//! A batch: records scored together, with their identity handles computed
//! once for every plugin.

use std::collections::HashMap;

use crate::handles::{Handles, Hasher64, IdField, field_text};
use crate::manifest::Grants;
use crate::record::Record;

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

/// `resolve` for one plugin on one batch: the text behind a handle of a
/// granted field. The index is built on the first call, over granted
/// fields only; start a new `Resolver` for each batch.
#[derive(Default)]
pub struct Resolver {
    index: Option<HashMap<(IdField, u64), usize>>,
}

impl Resolver {
    pub fn resolve(&mut self, batch: &Batch, grants: &Grants, f: IdField, handle: u64) -> Option<String> {
        if handle == 0 || !grants.id_field(f) {
            return None;
        }
        let index = self.index.get_or_insert_with(|| {
            let mut index = HashMap::new();
            for (i, h) in batch.handles.iter().enumerate() {
                for g in IdField::ALL.into_iter().filter(|g| grants.id_field(*g)) {
                    let v = h.get(g);
                    if v != 0 {
                        index.entry((g, v)).or_insert(i);
                    }
                }
            }
            index
        });
        let i = *index.get(&(f, handle))?;
        field_text(&batch.records[i], f)
    }
}
