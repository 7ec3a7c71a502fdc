//! `vigil:detector@0.1.x`: one key per state call, plus the batched calls
//! added in 0.1.1.

use super::{SetOp, StoreData};
use crate::batch::handles::IdField;
use crate::engine::bindings::v0_1::vigil::detector::{host, types};
use types::{CounterOp, Field, Level, StateEntry};

impl types::Host for StoreData {}

conversions!(types);

fn op(o: &types::SetOp) -> SetOp {
    SetOp {
        key: o.key,
        member: o.member,
        tags: o.tags,
        now_ms: o.now_ms,
        bucket_ms: o.bucket_ms,
        buckets: o.buckets,
        since_ms: o.since_ms,
        members: o.members,
    }
}

impl host::Host for StoreData {
    fn log(&mut self, l: Level, message: String) {
        StoreData::log(self, level(l), &message)
    }
    fn resolve(&mut self, f: Field, handle: u64) -> Option<String> {
        StoreData::resolve(self, field(f), handle)
    }
    fn state_get(&mut self, key: u64, now_ms: i64) -> Option<Vec<u8>> {
        StoreData::state_get(self, &[key], now_ms).pop().flatten()
    }
    fn state_set(&mut self, key: u64, value: Vec<u8>, expires_at_ms: Option<i64>) {
        StoreData::state_set(self, std::iter::once((key, value, expires_at_ms)))
    }
    fn state_remove(&mut self, key: u64) {
        StoreData::state_remove(self, &[key])
    }
    fn state_get_many(&mut self, keys: Vec<u64>, now_ms: i64) -> Vec<Option<Vec<u8>>> {
        StoreData::state_get(self, &keys, now_ms)
    }
    fn state_set_many(&mut self, entries: Vec<StateEntry>) {
        StoreData::state_set(self, entries.into_iter().map(|e| (e.key, e.value, e.expires_at_ms)))
    }
    fn counter_add(&mut self, ops: Vec<CounterOp>) -> Vec<u64> {
        StoreData::counter_add(self, ops.iter().map(|o| (o.key, o.now_ms, o.window_ms, o.delta)))
    }
    fn sets_update(&mut self, ops: Vec<types::SetOp>) -> Vec<types::SetView> {
        let ops: Vec<SetOp> = ops.iter().map(op).collect();
        StoreData::sets_update(self, &ops)
            .into_iter()
            .map(|v| types::SetView {
                count: v.count,
                tagged: (v.tagged[0], v.tagged[1], v.tagged[2], v.tagged[3]),
                active_buckets: v.active_buckets,
                members: v.members.unwrap_or_default(),
            })
            .collect()
    }
}
