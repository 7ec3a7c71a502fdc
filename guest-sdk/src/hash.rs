//! Stable 64-bit keys for host state.
//!
//! State outlives a plugin version, so a new version must derive the same
//! keys as the old one: these functions are fixed forever (FNV-1a and the
//! SplitMix64 finaliser), never seeded per process.

/// A 64-bit tag for a name, usable in `const` position:
/// `const REQS: u64 = tag("requests");`.
pub const fn tag(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    mix(h)
}

/// The state key for `(tag, value)`, for example a counter per account
/// handle: `key(REQS, req.account)`.
pub const fn key(tag: u64, value: u64) -> u64 {
    mix(tag ^ mix(value))
}

/// The SplitMix64 finaliser: a bijection on u64 with good avalanche.
pub const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A `HashMap` for keys that are already hashes (state keys, handles, word
/// hashes). std's default SipHash costs more than the rest of a lookup,
/// especially in Wasm; one `mix` is enough for keys like these. Not for
/// keys an attacker picks freely: those want SipHash's flood resistance.
pub type U64Map<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<MixHasher>>;

#[derive(Default, Clone, Copy)]
pub struct MixHasher(u64);

impl std::hash::Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = mix(self.0 ^ v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_across_builds() {
        // Pinned values: changing them would orphan every plugin's state.
        // (FNV-1a 64 then SplitMix64, checked against an independent implementation.)
        assert_eq!(tag("requests"), 0x0f6c_0520_bde9_cc7e);
    }

    #[test]
    fn distinct_tags_give_distinct_keys() {
        assert_ne!(key(tag("a"), 1), key(tag("b"), 1));
        assert_ne!(key(tag("a"), 1), key(tag("a"), 2));
    }
}
