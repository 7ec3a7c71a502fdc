//! Window sets: who shares something, over a sliding window of event time,
//! in a form that merges exactly.
//!
//! A [`WindowSet`] keeps, for each time bucket of `bucket_ms`, the members
//! (account handles, say) added in it: exactly while there are at most
//! [`EXACT`], else as a HyperLogLog; and the same again for each of up to
//! four tags a member is added under ("young", "focused", ...). It keeps
//! the newest `buckets` buckets. Its state depends only on *which*
//! (member, tags, bucket) were added, never on their order or on how often:
//! adding is idempotent and commutative, and [`WindowSet::merge`] is the
//! union. So the set built from a whole log equals the merge of the sets
//! built from the parts of any split of it, register for register: what
//! lets several vigil processes, each scoring some accounts, share it.
//!
//! The host keeps these sets (the `sets-update` import); detectors' native
//! tests get the same type from `testing::MemHost`.

use crate::sketch::HyperLogLog;

/// Members a bucket holds exactly; one more turns it into HyperLogLogs
/// (128 bytes each, about 9% standard error).
pub const EXACT: usize = 16;

/// Tags a member can be added under.
pub const TAGS: usize = 4;

/// One time bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Bucket {
    /// (member, tag bits), sorted by member, at most [`EXACT`]: a member's
    /// tags are every tag it was added under in this bucket.
    Exact(Vec<(u64, u8)>),
    /// All members, and the members of each tag seen (as HyperLogLogs);
    /// boxed, so that the many small buckets stay small.
    Sketch(Box<Sketch>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Sketch {
    all: HyperLogLog<7>,
    tagged: [Option<HyperLogLog<7>>; TAGS],
}

impl Sketch {
    fn add(&mut self, m: u64, tags: u8) -> bool {
        let mut changed = self.all.add(m);
        for (t, h) in self.tagged.iter_mut().enumerate() {
            if tags & (1 << t) != 0 {
                changed |= h.get_or_insert_with(HyperLogLog::default).add(m);
            }
        }
        changed
    }

    fn merge(&mut self, o: &Sketch) {
        self.all.merge(&o.all);
        for (h, o) in self.tagged.iter_mut().zip(&o.tagged) {
            if let Some(o) = o {
                h.get_or_insert_with(HyperLogLog::default).merge(o);
            }
        }
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::Exact(Vec::new())
    }
}

impl Bucket {
    /// Adds `m` under `tags`; returns whether anything changed.
    fn add(&mut self, m: u64, tags: u8) -> bool {
        let tags = tags & ((1 << TAGS) - 1);
        match self {
            Bucket::Exact(v) => match v.binary_search_by_key(&m, |e| e.0) {
                Ok(i) => {
                    let old = v[i].1;
                    v[i].1 |= tags;
                    v[i].1 != old
                }
                Err(i) => {
                    v.insert(i, (m, tags));
                    if v.len() > EXACT {
                        *self = Bucket::Sketch(Box::new(Bucket::sketch_of(v)));
                    }
                    true
                }
            },
            Bucket::Sketch(s) => s.add(m, tags),
        }
    }

    fn sketch_of(members: &[(u64, u8)]) -> Sketch {
        let mut s = Sketch::default();
        for &(m, tags) in members {
            s.add(m, tags);
        }
        s
    }

    fn merge(&mut self, other: &Bucket) {
        match other {
            Bucket::Exact(v) => {
                for &(m, t) in v {
                    self.add(m, t);
                }
            }
            Bucket::Sketch(o) => {
                if let Bucket::Exact(v) = self {
                    *self = Bucket::Sketch(Box::new(Bucket::sketch_of(v)));
                }
                if let Bucket::Sketch(s) = self {
                    s.merge(o);
                }
            }
        }
    }

    /// Bytes held: the slot, and what it points to.
    fn cost(&self) -> usize {
        match self {
            Bucket::Exact(v) => 32 + 16 * v.capacity(),
            Bucket::Sketch(s) => 48 + HyperLogLog::<7>::BYTES * (1 + s.tagged.iter().filter(|h| h.is_some()).count()),
        }
    }
}

/// A window set's shape: buckets of `bucket_ms`, the newest `buckets` kept.
/// One key has one shape; a detector names its shapes as constants and
/// builds its `sets-update` ops from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub bucket_ms: u32,
    pub buckets: u16,
}

impl Shape {
    /// `buckets` buckets of `bucket_ms` each.
    pub const fn new(bucket_ms: i64, buckets: u16) -> Self {
        Self { bucket_ms: bucket_ms as u32, buckets }
    }

    /// The time the set covers.
    pub const fn window_ms(&self) -> i64 {
        self.bucket_ms as i64 * self.buckets as i64
    }

    /// Adds `member` under `tags` at `now_ms`, then reads the whole window.
    #[cfg(feature = "guest")]
    pub fn add(&self, key: u64, member: u64, tags: u8, now_ms: i64) -> crate::SetOp {
        self.op(key, member, tags, now_ms, now_ms - self.window_ms(), false)
    }

    /// Adds `member` under `tags` at `now_ms`, reading only the bucket of
    /// `now_ms` (the cheapest read, for when only the add matters).
    #[cfg(feature = "guest")]
    pub fn insert(&self, key: u64, member: u64, tags: u8, now_ms: i64) -> crate::SetOp {
        self.op(key, member, tags, now_ms, now_ms, false)
    }

    /// Adds `member` under `tags` at `now_ms` and reads nothing (the view
    /// comes back empty): for a big set read once per batch instead of once
    /// per add, since reading a sketched week costs a merge of seven.
    #[cfg(feature = "guest")]
    pub fn put(&self, key: u64, member: u64, tags: u8, now_ms: i64) -> crate::SetOp {
        self.op(key, member, tags, now_ms, i64::MAX, false)
    }

    /// Reads `since_ms..=now_ms`, listing the members if asked (and known).
    #[cfg(feature = "guest")]
    pub fn read(&self, key: u64, since_ms: i64, now_ms: i64, members: bool) -> crate::SetOp {
        self.op(key, 0, 0, now_ms, since_ms, members)
    }

    #[cfg(feature = "guest")]
    fn op(&self, key: u64, member: u64, tags: u8, now_ms: i64, since_ms: i64, members: bool) -> crate::SetOp {
        crate::SetOp { key, member, tags, now_ms, bucket_ms: self.bucket_ms, buckets: self.buckets, since_ms, members }
    }
}

/// A read as the WIT carries it (for hosts written in Rust against the
/// SDK: `testing::MemHost`, the benchmark's native host).
#[cfg(feature = "guest")]
impl From<SetView> for crate::SetView {
    fn from(v: SetView) -> Self {
        crate::SetView {
            count: v.count,
            tagged: (v.tagged[0], v.tagged[1], v.tagged[2], v.tagged[3]),
            active_buckets: v.active_buckets,
            members: v.members.unwrap_or_default(),
        }
    }
}

/// Reading a `sets-update` view by tag.
#[cfg(feature = "guest")]
pub trait SetViewExt {
    /// Members added under `tag` (one bit, `1 << i`).
    fn tagged_with(&self, tag: u8) -> u32;
}

#[cfg(feature = "guest")]
impl SetViewExt for crate::SetView {
    fn tagged_with(&self, tag: u8) -> u32 {
        let t = self.tagged;
        match tag.trailing_zeros() {
            0 => t.0,
            1 => t.1,
            2 => t.2,
            3 => t.3,
            _ => 0,
        }
    }
}

/// How suspicious a crowd is by its young members: none under `min`
/// members or over `cap`; else the young share, squared (a few young
/// accounts in a big crowd are normal), growing to full weight at twice
/// `min` members.
pub fn crowd_suspicion(all: f64, young: f64, min: f64, cap: f64) -> f32 {
    if all < min || all > cap || all <= 0.0 {
        return 0.0;
    }
    let share = (young / all).min(1.0);
    (share * share * (all / (2.0 * min)).min(1.0)) as f32
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct WindowSet {
    bucket_ms: u32,
    buckets: u16,
    /// (bucket index, bucket), oldest first, only the newest `buckets`.
    slots: Vec<(i64, Bucket)>,
    /// `cost()`, kept up to date by every change: the host asks for it
    /// around every update, and summing the buckets each time dominated
    /// the cost of sets with many.
    cost: usize,
}

/// Equal members in equal buckets (the cost, which depends on how the
/// buffers grew, is not part of the set).
impl PartialEq for WindowSet {
    fn eq(&self, o: &Self) -> bool {
        (self.bucket_ms, self.buckets) == (o.bucket_ms, o.buckets) && self.slots == o.slots
    }
}

impl Eq for WindowSet {}

/// Bytes of a set with no bucket, and of a bucket's slot.
const SET_COST: usize = 32;
const SLOT_COST: usize = 8;

/// What a read of a set says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetView {
    /// Distinct members in the buckets read (exact while small, else
    /// estimated).
    pub count: u32,
    /// The same per tag.
    pub tagged: [u32; TAGS],
    /// Buckets read that hold any member.
    pub active_buckets: u16,
    /// The members themselves, when known exactly and asked for.
    pub members: Option<Vec<u64>>,
}

impl WindowSet {
    /// An empty set of `buckets` buckets of `bucket_ms` (both at least 1).
    pub fn new(bucket_ms: u32, buckets: u16) -> Self {
        Self { bucket_ms: bucket_ms.max(1), buckets: buckets.max(1), slots: Vec::new(), cost: SET_COST }
    }

    /// (bucket_ms, buckets).
    pub fn shape(&self) -> (u32, u16) {
        (self.bucket_ms, self.buckets)
    }

    fn index(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(i64::from(self.bucket_ms))
    }

    fn oldest_kept(&self) -> Option<i64> {
        self.slots.last().map(|(newest, _)| newest - i64::from(self.buckets) + 1)
    }

    /// Applies `f` to bucket `idx` (made if new), keeping `cost` true.
    fn with_slot<R>(&mut self, idx: i64, f: impl FnOnce(&mut Bucket) -> R) -> R {
        let pos = match self.slots.binary_search_by_key(&idx, |s| s.0) {
            Ok(p) => p,
            Err(p) => {
                let b = Bucket::default();
                self.cost += SLOT_COST + b.cost();
                self.slots.insert(p, (idx, b));
                p
            }
        };
        let b = &mut self.slots[pos].1;
        let before = b.cost();
        let r = f(b);
        self.cost = self.cost + b.cost() - before;
        r
    }

    /// Adds `member` at `ts_ms` under `tags` (bit i: tag i). A member too
    /// old for the window is not kept. Returns whether anything changed.
    pub fn add(&mut self, member: u64, tags: u8, ts_ms: i64) -> bool {
        let idx = self.index(ts_ms);
        if self.oldest_kept().is_some_and(|o| idx < o) {
            return false;
        }
        let changed = self.with_slot(idx, |b| b.add(member, tags));
        self.prune();
        changed
    }

    /// Takes in everything `other` holds: the union, then the window kept
    /// from the newest bucket of either. A set of another shape is taken as
    /// it is when this one is empty, else ignored (a key has one shape).
    pub fn merge(&mut self, other: &WindowSet) {
        if self.shape() != other.shape() {
            if self.slots.is_empty() {
                *self = other.clone();
            }
            return;
        }
        for (idx, ob) in &other.slots {
            self.with_slot(*idx, |b| b.merge(ob));
        }
        self.prune();
    }

    fn prune(&mut self) {
        if let Some(oldest) = self.oldest_kept() {
            let drop = self.slots.iter().take_while(|s| s.0 < oldest).count();
            for (_, b) in self.slots.drain(..drop) {
                self.cost -= SLOT_COST + b.cost();
            }
        }
    }

    /// The newest bucket's start, if any member was added.
    pub fn newest_ms(&self) -> Option<i64> {
        self.slots.last().map(|(i, _)| i * i64::from(self.bucket_ms))
    }

    /// Reads the buckets from `since_ms` to `until_ms` (inclusive);
    /// `members`: also list the members, if known exactly.
    pub fn view(&self, since_ms: i64, until_ms: i64, members: bool) -> SetView {
        let (lo, hi) = (self.index(since_ms), self.index(until_ms));
        let range = self.slots.iter().filter(|s| s.0 >= lo && s.0 <= hi).map(|s| &s.1);
        let mut view = SetView::default();
        // The common case, one exact bucket, costs no allocation beyond
        // the member list asked for.
        let mut exact: Vec<(u64, u8)> = Vec::new();
        let mut sketches: Vec<&Sketch> = Vec::new();
        let mut single: Option<&Vec<(u64, u8)>> = None;
        let mut n = 0;
        for b in range {
            n += 1;
            match b {
                Bucket::Exact(v) => {
                    if n == 1 {
                        single = Some(v);
                    } else {
                        if let Some(s) = single.take() {
                            exact.extend_from_slice(s);
                        }
                        exact.extend_from_slice(v);
                    }
                }
                Bucket::Sketch(s) => {
                    if let Some(e) = single.take() {
                        exact.extend_from_slice(e);
                    }
                    sketches.push(s);
                }
            }
        }
        view.active_buckets = n;
        if !sketches.is_empty() {
            // Exact members go into the union as a sketch would hold them.
            let exact: Vec<(u64, u8)> = exact.into_iter().chain(single.into_iter().flatten().copied()).collect();
            let all = HyperLogLog::union_estimate(sketches.iter().map(|s| &s.all), exact.iter().map(|e| e.0));
            view.count = all.round() as u32;
            for (t, c) in view.tagged.iter_mut().enumerate() {
                let parts = sketches.iter().filter_map(|s| s.tagged[t].as_ref());
                let members = exact.iter().filter(|e| e.1 & (1 << t) != 0).map(|e| e.0);
                if parts.clone().next().is_none() && members.clone().next().is_none() {
                    continue;
                }
                *c = HyperLogLog::union_estimate(parts, members).round() as u32;
            }
            return view;
        }
        let merged: &[(u64, u8)] = match single {
            Some(v) => v,
            None => {
                // Several exact buckets: a member's tags are all it had.
                exact.sort_unstable_by_key(|e| e.0);
                exact.dedup_by(|b, a| {
                    let same = a.0 == b.0;
                    if same {
                        a.1 |= b.1;
                    }
                    same
                });
                &exact
            }
        };
        view.count = merged.len() as u32;
        for (t, c) in view.tagged.iter_mut().enumerate() {
            *c = merged.iter().filter(|e| e.1 & (1 << t) != 0).count() as u32;
        }
        if members {
            view.members = Some(merged.iter().map(|e| e.0).collect());
        }
        view
    }

    /// Bytes it takes (about, without allocating): for memory bounds.
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// A canonical encoding: equal sets, equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.cost());
        out.extend_from_slice(&self.bucket_ms.to_le_bytes());
        out.extend_from_slice(&self.buckets.to_le_bytes());
        out.extend_from_slice(&(self.slots.len() as u16).to_le_bytes());
        for (idx, b) in &self.slots {
            out.extend_from_slice(&idx.to_le_bytes());
            match b {
                Bucket::Exact(v) => {
                    out.push(v.len() as u8);
                    for (m, t) in v {
                        out.extend_from_slice(&m.to_le_bytes());
                        out.push(*t);
                    }
                }
                Bucket::Sketch(s) => {
                    // 0x80 | which tags have a sketch.
                    let present = s.tagged.iter().enumerate().fold(0u8, |p, (t, h)| p | (u8::from(h.is_some()) << t));
                    out.push(0x80 | present);
                    out.extend_from_slice(s.all.as_bytes());
                    for h in s.tagged.iter().flatten() {
                        out.extend_from_slice(h.as_bytes());
                    }
                }
            }
        }
        out
    }

    /// From `encode`; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut r = b;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, rest) = r.split_at_checked(n)?;
            r = rest;
            Some(head)
        };
        let bucket_ms = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let buckets = u16::from_le_bytes(take(2)?.try_into().ok()?);
        let n = u16::from_le_bytes(take(2)?.try_into().ok()?);
        let mut set = WindowSet::new(bucket_ms, buckets);
        const HLL: usize = HyperLogLog::<7>::BYTES;
        for _ in 0..n {
            let idx = i64::from_le_bytes(take(8)?.try_into().ok()?);
            let head = take(1)?[0];
            let bucket = if head & 0x80 == 0 {
                let mut v = Vec::with_capacity(head as usize);
                for _ in 0..head {
                    let m = u64::from_le_bytes(take(8)?.try_into().ok()?);
                    v.push((m, take(1)?[0]));
                }
                if v.len() > EXACT || v.windows(2).any(|w| w[0].0 >= w[1].0) {
                    return None;
                }
                Bucket::Exact(v)
            } else {
                let all = HyperLogLog::from_bytes(take(HLL)?);
                let mut tagged: [Option<HyperLogLog<7>>; TAGS] = Default::default();
                for (t, h) in tagged.iter_mut().enumerate() {
                    if head & (1 << t) != 0 {
                        *h = Some(HyperLogLog::from_bytes(take(HLL)?));
                    }
                }
                Bucket::Sketch(Box::new(Sketch { all, tagged }))
            };
            if set.slots.last().is_some_and(|s| s.0 >= idx) {
                return None;
            }
            set.cost += SLOT_COST + bucket.cost();
            set.slots.push((idx, bucket));
        }
        if !r.is_empty() {
            return None;
        }
        set.prune();
        Some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// What `cost()` must equal: every bucket's cost, summed now.
    fn recomputed(s: &WindowSet) -> usize {
        SET_COST + s.slots.iter().map(|(_, b)| SLOT_COST + b.cost()).sum::<usize>()
    }

    #[test]
    fn the_kept_cost_is_the_sum_of_the_buckets_through_adds_merges_and_pruning() {
        let (mut a, mut b) = (WindowSet::new(MIN as u32, 6), WindowSet::new(MIN as u32, 6));
        let mut x = 1u64;
        for i in 0..3_000i64 {
            x = crate::hash::mix(x);
            let (s, t) = if i % 3 == 0 { (&mut b, i / 2) } else { (&mut a, i) };
            s.add(x % 50 + 1, (x >> 8) as u8, t / 40 * MIN);
            assert_eq!(s.cost(), recomputed(s), "after add {i}");
            if i % 500 == 499 {
                a.merge(&b);
                assert_eq!(a.cost(), recomputed(&a), "after merge {i}");
            }
        }
        let back = WindowSet::decode(&a.encode()).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.cost(), recomputed(&back));
    }

    #[test]
    fn counts_members_per_window_and_tag_exactly_then_estimated() {
        let mut s = WindowSet::new(MIN as u32, 10);
        for a in 1..=5u64 {
            s.add(a, if a % 2 == 0 { 0b01 } else { 0 }, a as i64 * MIN);
        }
        assert!(!s.add(3, 0, 3 * MIN), "the same member again changes nothing");
        let v = s.view(0, 10 * MIN, true);
        assert_eq!((v.count, v.tagged[0], v.active_buckets), (5, 2, 5));
        assert_eq!(v.members, Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(s.view(4 * MIN, 10 * MIN, true).members, Some(vec![4, 5]));
        // Past EXACT members a bucket is a sketch: counts estimated, no list.
        for a in 100..200u64 {
            s.add(a, 0, 6 * MIN);
        }
        let v = s.view(0, 10 * MIN, true);
        assert!((v.count as f64 - 105.0).abs() < 105.0 * 0.3, "{}", v.count);
        assert_eq!(v.members, None);
    }

    #[test]
    fn keeps_only_the_newest_buckets() {
        let mut s = WindowSet::new(MIN as u32, 3);
        s.add(1, 0, 0);
        s.add(2, 0, 2 * MIN);
        s.add(3, 0, 3 * MIN); // bucket 0 falls out
        assert_eq!(s.view(0, 10 * MIN, false).count, 2);
        assert!(!s.add(9, 0, 0), "too old for the window");
        assert_eq!(s.newest_ms(), Some(3 * MIN));
    }

    /// Deterministic pseudo-random numbers for the property tests.
    fn lcg(x: &mut u64) -> u64 {
        *x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *x >> 11
    }

    #[test]
    fn any_split_merges_to_the_whole_and_replays_change_nothing() {
        let mut seed = 42u64;
        for round in 0..50 {
            // (member, tags, ts) adds with members reused, across the window.
            let adds: Vec<(u64, u8, i64)> = (0..(round * 7 + 5))
                .map(|_| (lcg(&mut seed) % 40 + 1, (lcg(&mut seed) % 16) as u8, (lcg(&mut seed) % 30) as i64 * MIN))
                .collect();
            let mut whole = WindowSet::new(MIN as u32, 12);
            for &(m, t, ts) in &adds {
                whole.add(m, t, ts);
            }
            // Split by member (as logs are split by account) into k parts,
            // each folded in its own order.
            let k = 1 + (lcg(&mut seed) % 4) as usize;
            let mut parts = vec![WindowSet::new(MIN as u32, 12); k];
            for &(m, t, ts) in adds.iter().rev() {
                parts[(m as usize * 7 + round) % k].add(m, t, ts);
            }
            let mut merged = WindowSet::new(MIN as u32, 12);
            for p in parts.iter().rev() {
                merged.merge(p);
            }
            assert_eq!(merged.encode(), whole.encode(), "round {round}");
            // Replaying everything again: no change.
            let before = whole.encode();
            for &(m, t, ts) in &adds {
                whole.add(m, t, ts);
            }
            assert_eq!(whole.encode(), before);
            assert_eq!(WindowSet::decode(&before), Some(whole.clone()));
        }
    }

    #[test]
    fn decoding_refuses_what_encode_never_writes() {
        assert_eq!(WindowSet::decode(&[1, 2, 3]), None);
        let mut s = WindowSet::new(1000, 4);
        s.add(5, 1, 0);
        let mut b = s.encode();
        b.push(0);
        assert_eq!(WindowSet::decode(&b), None, "trailing bytes");
    }
}
