//! Cases: what a security team acts on. Verdicts roll up into one case per
//! flagged account and one per cluster (a shared card, network prefix or
//! prompt template named in a detector's labels) with first and last seen,
//! request counts, peak score, and the detectors and reasons behind it: the
//! input of a ban pipeline. Only flagged accounts are tracked, up to a cap.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::score::combine::{Decision, Verdict};

/// What one detector said about a flagged account.
#[derive(Debug, Clone, Serialize)]
pub struct DetectorEvidence {
    /// The account's flagged requests it gave a score above 0.
    pub flagged_requests: u64,
    /// Its highest score on them.
    pub peak_score: f64,
    /// The reason given with the peak score.
    pub reason: String,
}

/// One flagged account.
#[derive(Debug, Clone, Serialize)]
pub struct AccountCase {
    /// The account.
    pub account: String,
    /// Event time of its earliest flagged request, Unix milliseconds.
    pub first_seen_ms: i64,
    /// Event time of its latest request, Unix milliseconds.
    pub last_seen_ms: i64,
    /// Requests seen since the account was first flagged (and the flagged one).
    pub requests: u64,
    /// Requests flagged or blocked.
    pub flagged_requests: u64,
    /// Its highest combined score.
    pub peak_score: f64,
    /// What each detector said, by plugin name.
    pub detectors: BTreeMap<String, DetectorEvidence>,
    /// Shared infrastructure and templates that tie it to others.
    pub clusters: BTreeSet<String>,
}

/// One cluster: flagged accounts tied by a label of the form `kind:id`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterCase {
    /// The label (`card:...`, `prefix:...`, `template:...`).
    pub cluster: String,
    /// The flagged accounts whose requests carried it.
    pub accounts: BTreeSet<String>,
    /// Event time of the earliest flagged request carrying it, Unix milliseconds.
    pub first_seen_ms: i64,
    /// Event time of the latest flagged request carrying it, Unix milliseconds.
    pub last_seen_ms: i64,
    /// Times a detector gave it on a flagged request.
    pub flagged_requests: u64,
    /// The highest score of a detector that gave it.
    pub peak_score: f64,
    /// The detectors that gave it.
    pub detectors: BTreeSet<String>,
    /// The reason given with the peak score.
    pub reason: String,
}

/// Every case, most serious first (`--cases`, `GET /v1/cases`).
#[derive(Debug, Clone, Serialize)]
pub struct Cases {
    /// Flagged accounts, highest peak score first.
    pub accounts: Vec<AccountCase>,
    /// Clusters, most accounts first.
    pub clusters: Vec<ClusterCase>,
    /// Flagged accounts not tracked because the cap was reached.
    pub accounts_dropped: u64,
}

/// Rolls verdicts up into cases as they come.
pub struct CaseBook {
    accounts: HashMap<String, AccountCase>,
    clusters: HashMap<String, ClusterCase>,
    max_accounts: usize,
    dropped: u64,
}

/// Labels of the form `kind:id` name clusters (card:, prefix:, template:).
fn is_cluster(label: &str) -> bool {
    label.split_once(':').is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
}

impl CaseBook {
    /// Tracks at most `max_accounts` flagged accounts.
    pub fn new(max_accounts: usize) -> Self {
        Self { accounts: HashMap::new(), clusters: HashMap::new(), max_accounts, dropped: 0 }
    }

    /// Takes one verdict and its request time.
    pub fn observe(&mut self, v: &Verdict, ts_ms: i64) {
        let flagged = v.decision != Decision::Allow;
        if !flagged {
            if let Some(a) = self.accounts.get_mut(&v.account) {
                a.requests += 1;
                a.last_seen_ms = a.last_seen_ms.max(ts_ms);
            }
            return;
        }
        if !self.accounts.contains_key(&v.account) && self.accounts.len() >= self.max_accounts {
            self.dropped += 1;
            return;
        }
        let a = self.accounts.entry(v.account.clone()).or_insert_with(|| AccountCase {
            account: v.account.clone(),
            first_seen_ms: ts_ms,
            last_seen_ms: ts_ms,
            requests: 0,
            flagged_requests: 0,
            peak_score: 0.0,
            detectors: BTreeMap::new(),
            clusters: BTreeSet::new(),
        });
        a.requests += 1;
        a.flagged_requests += 1;
        a.first_seen_ms = a.first_seen_ms.min(ts_ms);
        a.last_seen_ms = a.last_seen_ms.max(ts_ms);
        a.peak_score = a.peak_score.max(v.score);
        for s in v.signals.iter().filter(|s| s.score > 0.0 && s.error.is_none()) {
            let d = a.detectors.entry(s.plugin.to_string()).or_insert(DetectorEvidence {
                flagged_requests: 0,
                peak_score: 0.0,
                reason: String::new(),
            });
            d.flagged_requests += 1;
            if s.score >= d.peak_score {
                d.peak_score = s.score;
                d.reason = s.reason.clone();
            }
            for l in s.labels.iter().filter(|l| is_cluster(l)) {
                a.clusters.insert(l.clone());
                let c = self.clusters.entry(l.clone()).or_insert_with(|| ClusterCase {
                    cluster: l.clone(),
                    accounts: BTreeSet::new(),
                    first_seen_ms: ts_ms,
                    last_seen_ms: ts_ms,
                    flagged_requests: 0,
                    peak_score: 0.0,
                    detectors: BTreeSet::new(),
                    reason: String::new(),
                });
                c.accounts.insert(v.account.clone());
                c.first_seen_ms = c.first_seen_ms.min(ts_ms);
                c.last_seen_ms = c.last_seen_ms.max(ts_ms);
                c.flagged_requests += 1;
                c.detectors.insert(s.plugin.to_string());
                if s.score >= c.peak_score {
                    c.peak_score = s.score;
                    c.reason = s.reason.clone();
                }
            }
        }
    }

    /// Takes a batch's verdicts with their request times.
    pub fn observe_all(&mut self, verdicts: &[Verdict], ts_ms: &[i64]) {
        for (v, ts) in verdicts.iter().zip(ts_ms) {
            self.observe(v, *ts);
        }
    }

    /// Accounts and clusters, most serious first.
    pub fn cases(&self) -> Cases {
        let mut accounts: Vec<AccountCase> = self.accounts.values().cloned().collect();
        accounts.sort_by(|a, b| b.peak_score.total_cmp(&a.peak_score).then(a.account.cmp(&b.account)));
        let mut clusters: Vec<ClusterCase> = self.clusters.values().cloned().collect();
        clusters.sort_by(|a, b| b.accounts.len().cmp(&a.accounts.len()).then(a.cluster.cmp(&b.cluster)));
        Cases { accounts, clusters, accounts_dropped: self.dropped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::manifest::Mode;
    use crate::score::combine::SignalOut;

    fn verdict(account: &str, score: f64, labels: &[&str]) -> Verdict {
        Verdict {
            id: "r".into(),
            account: account.into(),
            score,
            decision: if score >= 0.5 { Decision::Flag } else { Decision::Allow },
            signals: vec![SignalOut {
                plugin: "shared-infra".into(),
                version: "1".into(),
                digest: "d".into(),
                mode: Mode::Enforce,
                score,
                labels: labels.iter().map(|s| s.to_string()).collect(),
                reason: format!("why {score}"),
                error: None,
            }],
        }
    }

    #[test]
    fn rolls_up_flagged_accounts_and_their_clusters() {
        let mut b = CaseBook::new(10);
        b.observe(&verdict("a", 0.1, &[]), 1);
        b.observe(&verdict("a", 0.7, &["shared-infra", "card:1"]), 2);
        b.observe(&verdict("a", 0.2, &[]), 3);
        b.observe(&verdict("b", 0.9, &["card:1"]), 4);
        let c = b.cases();
        assert_eq!(c.accounts.len(), 2);
        assert_eq!(c.accounts[0].account, "b");
        let a = &c.accounts[1];
        assert_eq!((a.first_seen_ms, a.last_seen_ms, a.requests, a.flagged_requests), (2, 3, 2, 1));
        assert_eq!(a.detectors["shared-infra"].reason, "why 0.7");
        assert_eq!(c.clusters.len(), 1);
        assert_eq!(c.clusters[0].accounts.len(), 2);
        assert_eq!(c.clusters[0].peak_score, 0.9);
    }

    #[test]
    fn bounded() {
        let mut b = CaseBook::new(2);
        for i in 0..5 {
            b.observe(&verdict(&format!("x{i}"), 0.8, &[]), i);
        }
        let c = b.cases();
        assert_eq!((c.accounts.len(), c.accounts_dropped), (2, 3));
    }
}
