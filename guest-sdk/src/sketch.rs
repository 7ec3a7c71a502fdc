//! Bounded sketches the detectors share. Each states its memory ceiling and
//! error bound, and the tests assert both. All are plain Rust, usable
//! natively and in a plugin, and (where they live in host state) encode to
//! a fixed number of bytes.

use crate::hash::mix;

/// HyperLogLog distinct counter with 2^P one-byte registers: `P` = 7 is 128
/// bytes and a standard error of about 1.04 / sqrt(128) = 9%.
#[derive(Clone, Debug)]
pub struct HyperLogLog<const P: u32> {
    regs: Vec<u8>,
    // Kept up to date on every change so `estimate` is O(1): detectors ask
    // for it on every request, and summing 2^P powers each time dominated
    // their cost.
    sum: f64,
    zeros: u32,
}

impl<const P: u32> PartialEq for HyperLogLog<P> {
    fn eq(&self, other: &Self) -> bool {
        self.regs == other.regs
    }
}

impl<const P: u32> Eq for HyperLogLog<P> {}

impl<const P: u32> Default for HyperLogLog<P> {
    fn default() -> Self {
        Self { regs: vec![0; 1 << P], sum: (1u64 << P) as f64, zeros: 1 << P }
    }
}

/// 2^-r exactly, without a pow call.
fn inv_pow2(r: u8) -> f64 {
    f64::from_bits((1023 - r as u64) << 52)
}

impl<const P: u32> HyperLogLog<P> {
    pub const BYTES: usize = 1 << P;

    /// Adds an item by its 64-bit hash (mixed again, so handles can be fed
    /// directly). Returns whether a register changed.
    pub fn add(&mut self, item: u64) -> bool {
        let (idx, rank) = Self::slot(item);
        let old = self.regs[idx];
        if rank > old {
            self.regs[idx] = rank;
            self.sum += inv_pow2(rank) - inv_pow2(old);
            self.zeros -= u32::from(old == 0);
            true
        } else {
            false
        }
    }

    /// The register an item goes to, and its rank there.
    fn slot(item: u64) -> (usize, u8) {
        let h = mix(item ^ 0x9e37_79b9_7f4a_7c15);
        let idx = (h >> (64 - P)) as usize;
        let rank = ((h << P) | (1 << (P - 1))).leading_zeros() as u8 + 1;
        (idx, rank)
    }

    pub fn estimate(&self) -> f64 {
        Self::estimate_from(self.sum, self.zeros)
    }

    fn estimate_from(sum: f64, zeros: u32) -> f64 {
        let m = Self::BYTES as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw }
    }

    /// `union(parts)` with `members` added, estimated, without building
    /// it: registers on the stack, the sum of 2^-register taken as an exact
    /// integer. Equal to the built union's estimate (whose float sum is
    /// exact too while registers stay under 46, that is always in
    /// practice: a register reaches 46 once in 2^45 adds); what reading a
    /// window of sketched buckets costs.
    pub fn union_estimate<'a>(
        parts: impl IntoIterator<Item = &'a Self>,
        members: impl IntoIterator<Item = u64>,
    ) -> f64 {
        const MAX: usize = 256;
        if Self::BYTES > MAX {
            let mut h = Self::union(parts);
            members.into_iter().for_each(|m| {
                h.add(m);
            });
            return h.estimate();
        }
        let mut buf = [0u8; MAX];
        let regs = &mut buf[..Self::BYTES];
        for p in parts {
            for (r, o) in regs.iter_mut().zip(&p.regs) {
                *r = (*r).max(*o);
            }
        }
        for m in members {
            let (idx, rank) = Self::slot(m);
            regs[idx] = regs[idx].max(rank);
        }
        // Fixed point, 2^-56 a unit: 256 registers of 2^0 still fit a u64,
        // and the loop vectorises (a float sum is one long dependency chain).
        let sum: u64 = regs.iter().map(|&r| 1u64 << (56 - u32::from(r.min(56)))).sum();
        let zeros = regs.iter().filter(|&&r| r == 0).count() as u32;
        Self::estimate_from(sum as f64 / 72_057_594_037_927_936.0, zeros)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.regs
    }

    /// Takes the union with `other` (the register-wise maximum): the sketch
    /// of the union of both sets, whatever the order.
    pub fn merge(&mut self, other: &Self) {
        for (r, o) in self.regs.iter_mut().zip(&other.regs) {
            if *o > *r {
                self.sum += inv_pow2(*o) - inv_pow2(*r);
                self.zeros -= u32::from(*r == 0);
                *r = *o;
            }
        }
    }

    /// The union of `parts` in one pass (a register-wise maximum the
    /// compiler vectorises, the estimate's sums taken once at the end):
    /// what reading a window of sketched buckets costs.
    pub fn union<'a>(parts: impl IntoIterator<Item = &'a Self>) -> Self {
        let mut regs = vec![0u8; Self::BYTES];
        for p in parts {
            for (r, o) in regs.iter_mut().zip(&p.regs) {
                *r = (*r).max(*o);
            }
        }
        let sum = regs.iter().map(|&r| inv_pow2(r)).sum();
        let zeros = regs.iter().filter(|&&r| r == 0).count() as u32;
        Self { regs, sum, zeros }
    }

    /// From `as_bytes`; anything of the wrong length is an empty sketch.
    pub fn from_bytes(b: &[u8]) -> Self {
        if b.len() != Self::BYTES {
            return Self::default();
        }
        // Registers hold ranks up to 64 - P + 1; clamp anything else (the
        // bytes come from host state, written by some earlier version).
        let regs: Vec<u8> = b.iter().map(|&r| r.min(64)).collect();
        let sum = regs.iter().map(|&r| inv_pow2(r)).sum();
        let zeros = regs.iter().filter(|&&r| r == 0).count() as u32;
        Self { regs, sum, zeros }
    }
}

/// Which keys an account used lately: two Bloom filters of `BYTES` bytes,
/// one per epoch of `epoch_ms` (the current and the one before), so a key
/// is remembered for one to two epochs. Three probes per key: with `BYTES`
/// = 128 and 100 keys an epoch, about 1.6% false "seen".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recent<const BYTES: usize> {
    epoch: i64,
    cur: [u8; BYTES],
    prev: [u8; BYTES],
}

impl<const BYTES: usize> Default for Recent<BYTES> {
    fn default() -> Self {
        Self { epoch: i64::MIN, cur: [0; BYTES], prev: [0; BYTES] }
    }
}

impl<const BYTES: usize> Recent<BYTES> {
    /// Encoded size.
    pub const ENCODED: usize = 8 + 2 * BYTES;

    fn bits(key: u64) -> [usize; 3] {
        let h = mix(key ^ 0x5bd1_e995);
        let n = (BYTES * 8) as u64;
        [(h % n) as usize, ((h >> 21) % n) as usize, ((h >> 42) % n) as usize]
    }

    fn holds(f: &[u8; BYTES], key: u64) -> bool {
        Self::bits(key).iter().all(|&b| f[b / 8] & (1 << (b % 8)) != 0)
    }

    /// Moves to the epoch of `now_ms` (older epochs are forgotten).
    fn roll(&mut self, now_ms: i64, epoch_ms: i64) {
        let e = now_ms.div_euclid(epoch_ms.max(1));
        if e == self.epoch {
            return;
        }
        // Time going backwards (a late record) keeps what there is.
        if e < self.epoch {
            return;
        }
        self.prev = if e == self.epoch.saturating_add(1) { self.cur } else { [0; BYTES] };
        self.cur = [0; BYTES];
        self.epoch = e;
    }

    /// Whether `key` was used in this epoch or the one before; then
    /// remembers it.
    pub fn seen_then_add(&mut self, key: u64, now_ms: i64, epoch_ms: i64) -> bool {
        self.roll(now_ms, epoch_ms);
        let seen = Self::holds(&self.cur, key) || Self::holds(&self.prev, key);
        for b in Self::bits(key) {
            self.cur[b / 8] |= 1 << (b % 8);
        }
        seen
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::ENCODED);
        v.extend_from_slice(&self.epoch.to_le_bytes());
        v.extend_from_slice(&self.cur);
        v.extend_from_slice(&self.prev);
        v
    }

    /// From `encode`; anything else is empty.
    pub fn decode(b: &[u8]) -> Self {
        if b.len() != Self::ENCODED {
            return Self::default();
        }
        let mut r = Self { epoch: i64::from_le_bytes(b[..8].try_into().expect("8 bytes")), ..Self::default() };
        r.cur.copy_from_slice(&b[8..8 + BYTES]);
        r.prev.copy_from_slice(&b[8 + BYTES..]);
        r
    }
}

/// Count-min sketch: `D` rows of `W` u32 counters (4·D·W bytes). An
/// estimate never undercounts, and overcounts by more than 2N/W with
/// probability at most 2^-D (N = total added).
#[derive(Clone, Debug)]
pub struct CountMin<const D: usize, const W: usize> {
    rows: Vec<[u32; W]>,
}

impl<const D: usize, const W: usize> Default for CountMin<D, W> {
    fn default() -> Self {
        Self { rows: vec![[0; W]; D] }
    }
}

impl<const D: usize, const W: usize> CountMin<D, W> {
    fn slot(item: u64, row: usize) -> usize {
        (mix(item.wrapping_add(0x632b_e59b_d9b4_e019u64.wrapping_mul(row as u64 + 1))) % W as u64) as usize
    }

    /// Adds `n` and returns the new estimate.
    pub fn add(&mut self, item: u64, n: u32) -> u32 {
        let mut est = u32::MAX;
        for (r, row) in self.rows.iter_mut().enumerate() {
            let c = &mut row[Self::slot(item, r)];
            *c = c.saturating_add(n);
            est = est.min(*c);
        }
        est
    }

    pub fn estimate(&self, item: u64) -> u32 {
        self.rows.iter().enumerate().map(|(r, row)| row[Self::slot(item, r)]).min().unwrap_or(0)
    }
}

/// Top-K heavy hitters (Space-Saving): exactly `K` slots; any item whose
/// true count exceeds N/K is present, and each count overestimates by at
/// most the smallest count held.
#[derive(Clone, Debug, Default)]
pub struct TopK<const K: usize> {
    items: Vec<(u64, u32)>,
}

impl<const K: usize> TopK<K> {
    pub fn add(&mut self, item: u64) {
        if let Some(e) = self.items.iter_mut().find(|e| e.0 == item) {
            e.1 += 1;
        } else if self.items.len() < K {
            self.items.push((item, 1));
        } else if let Some(min) = self.items.iter_mut().min_by_key(|e| e.1) {
            *min = (item, min.1 + 1);
        }
    }

    /// (item, count) by count, highest first.
    pub fn top(&self) -> Vec<(u64, u32)> {
        let mut v = self.items.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// 64-bit SimHash of a sequence of feature hashes (for example word
/// shingles): near-duplicate texts differ in few bits.
pub fn simhash(features: impl IntoIterator<Item = u64>) -> u64 {
    let mut acc = [0i32; 64];
    let mut any = false;
    for f in features {
        any = true;
        let h = mix(f);
        for (i, a) in acc.iter_mut().enumerate() {
            *a += if h >> i & 1 == 1 { 1 } else { -1 };
        }
    }
    if !any {
        return 0;
    }
    acc.iter().enumerate().fold(0u64, |s, (i, &a)| if a > 0 { s | 1 << i } else { s })
}

/// Union-find over at most `cap` nodes (by 64-bit id) that refuses to join
/// any node whose degree (unions it took part in) reached `max_degree`: a
/// big office or a cloud egress address cannot merge the world. Memory is
/// bounded by `cap` nodes; when full, new nodes are refused.
#[derive(Clone, Debug)]
pub struct CappedUnionFind {
    index: std::collections::HashMap<u64, u32>,
    parent: Vec<u32>,
    size: Vec<u32>,
    degree: Vec<u32>,
    cap: usize,
    max_degree: u32,
}

impl CappedUnionFind {
    pub fn new(cap: usize, max_degree: u32) -> Self {
        Self { index: Default::default(), parent: Vec::new(), size: Vec::new(), degree: Vec::new(), cap, max_degree }
    }

    fn node(&mut self, id: u64) -> Option<u32> {
        if let Some(&i) = self.index.get(&id) {
            return Some(i);
        }
        if self.parent.len() >= self.cap {
            return None;
        }
        let i = self.parent.len() as u32;
        self.index.insert(id, i);
        self.parent.push(i);
        self.size.push(1);
        self.degree.push(0);
        Some(i)
    }

    fn root(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let p = self.parent[i as usize];
            self.parent[i as usize] = self.parent[p as usize];
            i = p;
        }
        i
    }

    /// Joins `a` and `b` unless either is over its degree cap (or the
    /// structure is full). Returns whether they are now together.
    pub fn union(&mut self, a: u64, b: u64) -> bool {
        let (Some(x), Some(y)) = (self.node(a), self.node(b)) else {
            return false;
        };
        if self.degree[x as usize] >= self.max_degree || self.degree[y as usize] >= self.max_degree {
            return self.root(x) == self.root(y);
        }
        self.degree[x as usize] += 1;
        self.degree[y as usize] += 1;
        let (rx, ry) = (self.root(x), self.root(y));
        if rx == ry {
            return true;
        }
        let (big, small) = if self.size[rx as usize] >= self.size[ry as usize] { (rx, ry) } else { (ry, rx) };
        self.parent[small as usize] = big;
        self.size[big as usize] += self.size[small as usize];
        true
    }

    /// The cluster of `id`: (root id, size), if `id` is known.
    pub fn cluster(&mut self, id: u64) -> Option<(u64, u32)> {
        let i = *self.index.get(&id)?;
        let r = self.root(i);
        let root_id = self.index.iter().find(|(_, v)| **v == r).map(|(k, _)| *k).unwrap_or(id);
        Some((root_id, self.size[r as usize]))
    }

    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_is_the_merge_of_its_parts() {
        let parts: Vec<HyperLogLog<7>> = (0..5u64)
            .map(|p| {
                let mut h = HyperLogLog::default();
                (0..p * 40).for_each(|i| {
                    h.add(i * 7 + p);
                });
                h
            })
            .collect();
        let mut merged = HyperLogLog::<7>::default();
        parts.iter().for_each(|p| merged.merge(p));
        let union = HyperLogLog::union(&parts);
        assert!(union == merged);
        assert!((union.estimate() - merged.estimate()).abs() < 1e-6);
    }

    #[test]
    fn hll_error_within_three_standard_errors_and_fixed_size() {
        for n in [10u64, 100, 1_000, 20_000] {
            let mut h = HyperLogLog::<7>::default();
            for i in 0..n {
                h.add(i * 7919 + 13);
                h.add(i * 7919 + 13); // duplicates do not count
            }
            let err = (h.estimate() - n as f64).abs() / n as f64;
            assert!(err < 3.0 * 1.04 / (128f64).sqrt(), "n={n} err={err}");
            assert_eq!(h.as_bytes().len(), 128);
        }
        let h = HyperLogLog::<7>::from_bytes(&[1, 2, 3]);
        assert_eq!(h.estimate(), 0.0);
    }

    #[test]
    fn hll_incremental_estimate_matches_a_fresh_decode() {
        let mut h = HyperLogLog::<7>::default();
        for i in 0..5_000u64 {
            h.add(i.wrapping_mul(0x9e37_79b9));
            if i % 97 == 0 {
                let again = HyperLogLog::<7>::from_bytes(h.as_bytes());
                assert!((again.estimate() - h.estimate()).abs() < 1e-6 * h.estimate().max(1.0), "at {i}");
            }
        }
    }

    #[test]
    fn union_estimate_is_the_built_unions_estimate_bit_for_bit() {
        let mut x = 7u64;
        for round in 0..200u64 {
            let parts: Vec<HyperLogLog<7>> = (0..(round % 7 + 1))
                .map(|p| {
                    let mut h = HyperLogLog::default();
                    for i in 0..(round * 13 + p * 29) % 900 {
                        x = mix(x ^ i);
                        h.add(x);
                    }
                    h
                })
                .collect();
            let members: Vec<u64> = (0..round % 20).map(|i| mix(round * 1000 + i)).collect();
            let mut built = HyperLogLog::union(&parts);
            for &m in &members {
                built.add(m);
            }
            let fast = HyperLogLog::union_estimate(&parts, members.iter().copied());
            assert_eq!(fast.to_bits(), built.estimate().to_bits(), "round {round}");
        }
        assert_eq!(HyperLogLog::<7>::union_estimate([], []), HyperLogLog::<7>::default().estimate());
    }

    #[test]
    fn count_min_never_undercounts_and_stays_within_its_bound() {
        let mut cm = CountMin::<4, 256>::default();
        let n = 10_000u32;
        for i in 0..n {
            cm.add((i % 500) as u64, 1);
        }
        for item in 0..500u64 {
            let est = cm.estimate(item);
            assert!(est >= 20, "undercount");
            assert!(est <= 20 + 2 * n / 256, "{est}");
        }
        assert_eq!(std::mem::size_of::<[u32; 256]>() * 4, 4096);
    }

    #[test]
    fn top_k_finds_heavy_hitters_in_fixed_space() {
        let mut t = TopK::<8>::default();
        for i in 0..10_000u64 {
            t.add(if i % 3 == 0 {
                42
            } else if i % 5 == 0 {
                7
            } else {
                i
            });
        }
        let top = t.top();
        assert_eq!(top.len(), 8);
        assert_eq!(top[0].0, 42);
        assert!(top.iter().any(|e| e.0 == 7));
    }

    #[test]
    fn simhash_near_duplicates_are_close() {
        let words = |s: &str| s.split(' ').map(crate::hash::tag).collect::<Vec<_>>();
        let a = simhash(words("solve the following problem think step by step and show all of your reasoning x"));
        let b = simhash(words("solve the following problem think step by step and show all of your reasoning y"));
        let c = simhash(words("write a haiku about autumn leaves falling on a quiet pond at dusk please"));
        assert!((a ^ b).count_ones() < 12, "{}", (a ^ b).count_ones());
        assert!((a ^ c).count_ones() > 16, "{}", (a ^ c).count_ones());
        assert_eq!(simhash([]), 0);
    }

    #[test]
    fn union_find_caps_degree_and_size() {
        let mut u = CappedUnionFind::new(100, 3);
        assert!(u.union(1, 2) && u.union(2, 3));
        assert_eq!(u.cluster(1).unwrap().1, 3);
        // Node 100 is a hub: after 3 joins it refuses more.
        for leaf in 200..210 {
            u.union(100, leaf);
        }
        assert_eq!(u.cluster(100).unwrap().1, 4);
        for i in 1000..1200 {
            u.union(i, i + 1);
        }
        assert!(u.len() <= 100);
    }
}

/// MinHash signature of a feature set: `K` minima. Two sets with Jaccard
/// similarity `s` agree in each position with probability about `s`, so
/// banding the signature finds near-duplicates (locality-sensitive hashing).
///
/// One-permutation hashing: each feature is hashed once and competes only
/// in the bin its hash selects (K times cheaper than K hash functions);
/// an empty bin borrows the next filled bin's minimum (rotation
/// densification), so short texts still give a full signature.
pub fn minhash<const K: usize>(features: impl IntoIterator<Item = u64>) -> [u64; K] {
    let mut mins = [u64::MAX; K];
    for f in features {
        let h = mix(f ^ 0x9e37_79b9_7f4a_7c15);
        let bin = (((h >> 32) * K as u64) >> 32) as usize;
        // The low bits decide the minimum; the high ones chose the bin.
        let v = h & 0xffff_ffff;
        if v < mins[bin] {
            mins[bin] = v;
        }
    }
    if mins.iter().all(|&m| m == u64::MAX) {
        return mins;
    }
    let filled = mins;
    for (i, m) in mins.iter_mut().enumerate() {
        if *m != u64::MAX {
            continue;
        }
        let hops = (1..K).find(|d| filled[(i + d) % K] != u64::MAX).expect("some bin is filled");
        // Tagged with the distance: two sets agree on a borrowed bin only
        // if the same feature won at the same distance.
        *m = filled[(i + hops) % K] | ((hops as u64) << 32);
    }
    mins
}

#[cfg(test)]
mod minhash_tests {
    use super::*;

    #[test]
    fn agreement_tracks_jaccard_similarity() {
        // Two sets of 100 with 80 in common: Jaccard 80/120 = 0.67.
        let a: Vec<u64> = (0..100).collect();
        let b: Vec<u64> = (20..120).collect();
        let (ma, mb) = (minhash::<256>(a), minhash::<256>(b));
        let agree = ma.iter().zip(&mb).filter(|(x, y)| x == y).count() as f64 / 256.0;
        assert!((agree - 0.667).abs() < 0.1, "{agree}");
        let c: Vec<u64> = (1000..1100).collect();
        let mc = minhash::<256>(c);
        assert!(ma.iter().zip(&mc).filter(|(x, y)| x == y).count() < 8);
    }

    #[test]
    fn recent_remembers_one_to_two_epochs() {
        let mut r = Recent::<128>::default();
        const E: i64 = 1000;
        assert!(!r.seen_then_add(7, 0, E));
        assert!(r.seen_then_add(7, 10, E));
        assert!(r.seen_then_add(7, E + 5, E), "the epoch before is remembered");
        assert!(!r.seen_then_add(8, 2 * E, E));
        assert!(!r.seen_then_add(7, 3 * E + 1, E), "older ones are forgotten");
        assert_eq!(Recent::<128>::decode(&r.encode()), r);
        assert_eq!(Recent::<128>::decode(&[1, 2]), Recent::default());
        // 100 keys an epoch: few false "seen" among 1,000 fresh ones.
        let mut r = Recent::<128>::default();
        for k in 0..100 {
            r.seen_then_add(k, 0, E);
        }
        let false_seen = (1000..2000).filter(|&k| r.clone().seen_then_add(k, 0, E)).count();
        assert!(false_seen < 40, "{false_seen}");
    }
}
