//! One request as a detector sees it, and small questions detectors ask
//! of it.

/// One request record (docs/contract.md). Only `ts_ms` is always present;
/// everything else is filled only when the plugin's manifest grants it
/// (handles are 0 and options `None` otherwise). The SDK fills these from
/// the host's columns, reusing their buffers from batch to batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// Request time, Unix milliseconds. Use it as "now" for state calls.
    pub ts_ms: i64,
    pub account: u64,
    pub org: u64,
    pub api_key: u64,
    pub ip: u64,
    pub ip_prefix: u64,
    pub asn: Option<u32>,
    pub user_agent: u64,
    pub model: u64,
    pub payment_fingerprint: u64,
    pub conversation: u64,
    pub turn: Option<u32>,
    pub prompt: Option<String>,
    pub system_prompt: Option<String>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub max_tokens: Option<u32>,
    pub account_created_ms: Option<i64>,
    /// Only the attribute keys the manifest grants.
    pub attrs: Vec<(String, String)>,
}

/// Questions about a request that several detectors ask.
pub trait RequestExt {
    /// Days between the account's creation and this request, if the
    /// creation time is granted and known.
    fn account_age_days(&self) -> Option<f64>;

    /// Whether the account is known to be younger than `days`.
    fn young(&self, days: f64) -> bool {
        self.account_age_days().is_some_and(|d| d < days)
    }
}

impl RequestExt for Request {
    fn account_age_days(&self) -> Option<f64> {
        self.account_created_ms.map(|c| (self.ts_ms - c) as f64 / 86_400_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::request;

    #[test]
    fn age_and_youth_come_from_the_creation_time() {
        let mut r = request(10 * 86_400_000);
        assert_eq!(r.account_age_days(), None);
        assert!(!r.young(30.0), "unknown age is not young");
        r.account_created_ms = Some(86_400_000);
        assert_eq!(r.account_age_days(), Some(9.0));
        assert!(r.young(14.0) && !r.young(9.0));
    }
}
