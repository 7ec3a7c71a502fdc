//! Identity fields -> 64-bit handles: a keyed SipHash of the field and its
//! text. Keyed, so a plugin cannot precompute the handle of a value it was
//! not given; stateless, so no table grows in a long-running host; stable
//! under one key, so handles can key state across batches and restarts.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

use crate::input::record::Record;

/// Identity fields, in the order of the WIT `field` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdField {
    /// The record's `account`.
    Account,
    /// The record's `org`.
    Org,
    /// The record's `api_key`.
    ApiKey,
    /// The record's `ip`.
    Ip,
    /// The network of `ip`: /24 for IPv4, /48 for IPv6.
    IpPrefix,
    /// The record's `user_agent`.
    UserAgent,
    /// The record's `model`.
    Model,
    /// The record's `payment_fingerprint`.
    PaymentFingerprint,
    /// The record's `conversation_id`.
    Conversation,
}

impl IdField {
    pub(crate) const ALL: [IdField; 9] = [
        IdField::Account,
        IdField::Org,
        IdField::ApiKey,
        IdField::Ip,
        IdField::IpPrefix,
        IdField::UserAgent,
        IdField::Model,
        IdField::PaymentFingerprint,
        IdField::Conversation,
    ];
}

/// Turns identity text into handles, under the deployment's handle key.
#[derive(Clone)]
pub struct Hasher64 {
    key: [u8; 16],
}

/// The handles of one record; 0 where the field is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handles {
    /// Handle of `account`.
    pub account: u64,
    /// Handle of `org`.
    pub org: u64,
    /// Handle of `api_key`.
    pub api_key: u64,
    /// Handle of `ip`.
    pub ip: u64,
    /// Handle of the /24 or /48 network of `ip`.
    pub ip_prefix: u64,
    /// Handle of `user_agent`.
    pub user_agent: u64,
    /// Handle of `model`.
    pub model: u64,
    /// Handle of `payment_fingerprint`.
    pub payment_fingerprint: u64,
    /// Handle of `conversation_id`.
    pub conversation: u64,
}

impl Handles {
    pub(crate) fn get(&self, f: IdField) -> u64 {
        match f {
            IdField::Account => self.account,
            IdField::Org => self.org,
            IdField::ApiKey => self.api_key,
            IdField::Ip => self.ip,
            IdField::IpPrefix => self.ip_prefix,
            IdField::UserAgent => self.user_agent,
            IdField::Model => self.model,
            IdField::PaymentFingerprint => self.payment_fingerprint,
            IdField::Conversation => self.conversation,
        }
    }
}

impl Hasher64 {
    /// A hasher under `key` (`Config::handle_key`).
    pub fn new(key: [u8; 16]) -> Self {
        Self { key }
    }

    pub(crate) fn handle(&self, field: IdField, text: &str) -> u64 {
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write_u8(field as u8);
        h.write(text.as_bytes());
        match h.finish() {
            0 => 1, // 0 means "absent"
            v => v,
        }
    }

    fn opt(&self, field: IdField, text: Option<&str>) -> u64 {
        text.map_or(0, |t| self.handle(field, t))
    }

    pub(crate) fn handles(&self, r: &Record) -> Handles {
        let prefix = r.ip.as_deref().and_then(ip_prefix);
        Handles {
            account: self.handle(IdField::Account, &r.account),
            org: self.opt(IdField::Org, r.org.as_deref()),
            api_key: self.opt(IdField::ApiKey, r.api_key.as_deref()),
            ip: self.opt(IdField::Ip, r.ip.as_deref()),
            ip_prefix: self.opt(IdField::IpPrefix, prefix.as_deref()),
            user_agent: self.opt(IdField::UserAgent, r.user_agent.as_deref()),
            model: self.opt(IdField::Model, r.model.as_deref()),
            payment_fingerprint: self.opt(IdField::PaymentFingerprint, r.payment_fingerprint.as_deref()),
            conversation: self.opt(IdField::Conversation, r.conversation_id.as_deref()),
        }
    }
}

/// The /24 (IPv4) or /48 (IPv6) network of an address, as text.
pub fn ip_prefix(ip: &str) -> Option<String> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
    }
}

/// The text of a record's identity field (what `resolve` returns).
pub fn field_text(r: &Record, field: IdField) -> Option<String> {
    match field {
        IdField::Account => Some(r.account.clone()),
        IdField::Org => r.org.clone(),
        IdField::ApiKey => r.api_key.clone(),
        IdField::Ip => r.ip.clone(),
        IdField::IpPrefix => r.ip.as_deref().and_then(ip_prefix),
        IdField::UserAgent => r.user_agent.clone(),
        IdField::Model => r.model.clone(),
        IdField::PaymentFingerprint => r.payment_fingerprint.clone(),
        IdField::Conversation => r.conversation_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_keyed_distinct_per_field_and_never_zero() {
        let a = Hasher64::new([1; 16]);
        let b = Hasher64::new([2; 16]);
        assert_eq!(a.handle(IdField::Account, "x"), a.handle(IdField::Account, "x"));
        assert_ne!(a.handle(IdField::Account, "x"), b.handle(IdField::Account, "x"));
        assert_ne!(a.handle(IdField::Account, "x"), a.handle(IdField::Org, "x"));
        assert_ne!(a.handle(IdField::Account, ""), 0);
    }

    #[test]
    fn prefixes() {
        assert_eq!(ip_prefix("203.0.113.77").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(ip_prefix("2001:db8:abcd:12::1").as_deref(), Some("2001:db8:abcd::/48"));
        assert_eq!(ip_prefix("nope"), None);
    }
}
