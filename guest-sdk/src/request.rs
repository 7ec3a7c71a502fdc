//! Small questions detectors ask of a request.

use crate::Request;

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
