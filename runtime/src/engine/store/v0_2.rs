//! `vigil:detector@0.2.x`: every state call takes many keys; counters and
//! window sets take columns.

use super::{SetOp, StoreData};
use crate::batch::handles::IdField;
use crate::engine::bindings::v0_2::vigil::detector::{host, types};
use types::{CounterSteps, Field, Level, SetOps, SetViews, StateEntry};

/// Refuses (traps) a call whose columns differ in length from `n`.
fn same_length(call: &str, n: usize, lens: &[usize]) -> wasmtime::Result<()> {
    if lens.iter().any(|&l| l != n) {
        wasmtime::bail!("{call}: columns of unequal length ({n} keys, others {lens:?})");
    }
    Ok(())
}

impl types::Host for StoreData {}

conversions!(types);

impl host::Host for StoreData {
    fn log(&mut self, l: Level, message: String) {
        StoreData::log(self, level(l), &message)
    }
    fn resolve(&mut self, f: Field, handle: u64) -> Option<String> {
        StoreData::resolve(self, field(f), handle)
    }
    fn state_get(&mut self, keys: Vec<u64>, now_ms: i64) -> Vec<Option<Vec<u8>>> {
        StoreData::state_get(self, &keys, now_ms)
    }
    fn state_set(&mut self, entries: Vec<StateEntry>) {
        StoreData::state_set(self, entries.into_iter().map(|e| (e.key, e.value, e.expires_at_ms)))
    }
    fn state_remove(&mut self, keys: Vec<u64>) {
        StoreData::state_remove(self, &keys)
    }
    fn counter_add(&mut self, s: CounterSteps) -> wasmtime::Result<Vec<u64>> {
        let n = s.keys.len();
        same_length("counter-add", n, &[s.now_ms.len(), s.window_ms.len(), s.deltas.len()])?;
        Ok(StoreData::counter_add(self, (0..n).map(|i| (s.keys[i], s.now_ms[i], s.window_ms[i], s.deltas[i]))))
    }
    fn sets_update(&mut self, o: SetOps) -> wasmtime::Result<SetViews> {
        let n = o.keys.len();
        let lens = [
            o.members.len(),
            o.tags.len(),
            o.now_ms.len(),
            o.bucket_ms.len(),
            o.buckets.len(),
            o.since_ms.len(),
            o.list_members.len(),
        ];
        same_length("sets-update", n, &lens)?;
        let ops: Vec<SetOp> = (0..n)
            .map(|i| SetOp {
                key: o.keys[i],
                member: o.members[i],
                tags: o.tags[i],
                now_ms: o.now_ms[i],
                bucket_ms: o.bucket_ms[i],
                buckets: o.buckets[i],
                since_ms: o.since_ms[i],
                members: o.list_members[i],
            })
            .collect();
        let views = StoreData::sets_update(self, &ops);
        let mut out = SetViews {
            counts: Vec::with_capacity(n),
            tagged: Vec::with_capacity(4 * n),
            active_buckets: Vec::with_capacity(n),
            members: Vec::new(),
            member_ends: Vec::with_capacity(n),
        };
        for v in views {
            out.counts.push(v.count);
            out.tagged.extend_from_slice(&v.tagged);
            out.active_buckets.push(v.active_buckets);
            out.members.extend(v.members.into_iter().flatten());
            out.member_ends.push(out.members.len() as u32);
        }
        Ok(out)
    }
}
