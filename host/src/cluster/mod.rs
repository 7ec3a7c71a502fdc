//! vigil as several processes on NATS JetStream (docs/cluster.md).
//!
//! Records go to one stream, partitioned by account: `vigil publish` (or a
//! gateway through the server's subject mapping) puts a record of account
//! `a` on `vigil.p.<fnv1a32(a) mod N>.<token>`. Each node ([`node`]) holds
//! leases on some partitions ([`lease`]), scores each one's records in
//! stream order against that partition's own state ([`partition`]), and
//! publishes verdicts keyed by record id. What detectors share across
//! accounts (window sets, campaign evidence) is exchanged on a second
//! stream that every node applies ([`shared`]): it is a union, so order and
//! repeats do not matter. [`inline`] sends a node's inline calls to their
//! accounts' owners. [`setup`] creates the streams and buckets.

pub mod inline;
pub mod lease;
pub mod node;
pub mod partition;
pub mod publish;
pub mod setup;
pub mod shared;

/// The stream of request records.
pub const REQUESTS: &str = "VIGIL_REQUESTS";
/// The stream of verdicts, one message per record, id = record id.
pub const VERDICTS: &str = "VIGIL_VERDICTS";
/// The stream of what partitions share: window-set additions, campaign
/// evidence, event-time progress.
pub const SHARED: &str = "VIGIL_SHARED";
/// Key-value bucket: the cluster's fixed settings (`partitions`).
pub const SETTINGS: &str = "vigil_cluster";
/// Key-value bucket: one lease per partition (owner, expiry, snapshot).
pub const LEASES: &str = "vigil_leases";
/// Key-value bucket: live nodes, each renewing its own key.
pub const NODES: &str = "vigil_nodes";
/// Object store: partition state snapshots.
pub const SNAPSHOTS: &str = "vigil_snapshots";

/// Partition of `account` among `n`: FNV-1a 32 of its bytes, mod `n` (what
/// nats-server's `{{partition(n,1)}}` mapping computes for a subject token).
pub fn partition_of(account: &str, n: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in account.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % n
}

/// The account as a subject token: itself when it is one (so a server
/// mapping partitions it the same way), otherwise a hex digest. Either way
/// vigil partitions by the account itself, not the token.
pub fn subject_token(account: &str) -> String {
    let plain = !account.is_empty()
        && account.len() <= 128
        && account.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain { account.to_string() } else { format!("x{:016x}", vigil_sdk::hash::tag(account)) }
}

/// The subject a record of `account` is published on.
pub fn request_subject(account: &str, partitions: u32) -> String {
    format!("vigil.p.{}.{}", partition_of(account, partitions), subject_token(account))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_32_matches_the_published_vectors() {
        // FNV-1a 32 test vectors (Fowler/Noll/Vo): "" and "a", "foobar".
        assert_eq!(partition_of("", u32::MAX), 0x811c_9dc5);
        assert_eq!(partition_of("a", u32::MAX), 0xe40c_292c);
        assert_eq!(partition_of("foobar", u32::MAX), 0xbf9c_f968);
    }

    #[test]
    fn accounts_that_are_not_subject_tokens_get_a_stable_one() {
        assert_eq!(subject_token("acct-1_x"), "acct-1_x");
        let t = subject_token("a.b *>");
        assert!(t.starts_with('x') && t.len() == 17, "{t}");
        assert_eq!(t, subject_token("a.b *>"));
        assert_ne!(t, subject_token("a.b *"));
    }
}
