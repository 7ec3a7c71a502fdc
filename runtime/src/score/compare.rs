//! Two plugin sets' verdicts on the same traffic, side by side: the
//! accounts and campaign clusters one flags and the other does not, in all
//! and per detector, with examples. What `vigil replay` prints before a
//! hot-patch is switched to enforce.
//!
//! An account is *flagged* when a verdict on it says flag or block; *by a
//! detector* when that detector's own signal reached the flag threshold
//! (monitor-mode plugins included: that is how a candidate is judged). A
//! cluster is a `campaign:<id>` the campaign stage raised.
//!
//! Memory: per side, one entry (about 200 bytes plus its detectors and
//! clusters) per account something flagged, at most `max_accounts`;
//! the records of accounts past that are counted in `dropped`, not
//! compared, and the comparison says it is incomplete.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::score::campaigns;
use crate::score::combine::{Decision, Verdict};

/// What one side said about an account something flagged.
#[derive(Debug, Clone)]
struct Seen {
    decision: Decision,
    score: f64,
    /// The record of the peak combined score, and the strongest reason on it.
    id: String,
    reason: String,
    /// Peak score of each detector that flagged the account on its own.
    detectors: BTreeMap<String, f64>,
    clusters: BTreeSet<String>,
}

/// One side of a comparison: verdicts in, per account what was flagged.
#[derive(Debug)]
pub struct Side {
    accounts: HashMap<String, Seen>,
    detectors: BTreeSet<String>,
    flag_threshold: f64,
    max_accounts: usize,
    requests: u64,
    dropped: u64,
}

impl Side {
    /// A side that counts a detector's signal from `flag_threshold` and
    /// keeps at most `max_accounts` accounts.
    pub fn new(flag_threshold: f64, max_accounts: usize) -> Self {
        Self {
            accounts: HashMap::new(),
            detectors: BTreeSet::new(),
            flag_threshold,
            max_accounts,
            requests: 0,
            dropped: 0,
        }
    }

    /// Takes one verdict.
    pub fn observe(&mut self, v: &Verdict) {
        self.requests += 1;
        let mut flags = Vec::new();
        let mut clusters = Vec::new();
        for s in v.signals.iter().filter(|s| s.error.is_none()) {
            if *s.plugin == *campaigns::NAME {
                clusters.extend(s.labels.iter().filter(|l| l.starts_with("campaign:")));
            } else {
                if !self.detectors.contains(&*s.plugin) {
                    self.detectors.insert(s.plugin.to_string());
                }
                if s.score >= self.flag_threshold {
                    flags.push((&*s.plugin, s.score));
                }
            }
        }
        if v.decision == Decision::Allow && flags.is_empty() && clusters.is_empty() {
            return;
        }
        if !self.accounts.contains_key(&v.account) && self.accounts.len() >= self.max_accounts {
            self.dropped += 1;
            return;
        }
        let seen = self.accounts.entry(v.account.clone()).or_insert_with(|| Seen {
            decision: Decision::Allow,
            score: -1.0,
            id: String::new(),
            reason: String::new(),
            detectors: BTreeMap::new(),
            clusters: BTreeSet::new(),
        });
        seen.decision = seen.decision.max(v.decision);
        if v.score > seen.score {
            seen.score = v.score;
            seen.id = v.id.clone();
            let top = v.signals.iter().filter(|s| !s.reason.is_empty()).max_by(|a, b| a.score.total_cmp(&b.score));
            seen.reason = top.map(|s| format!("{}: {}", s.plugin, s.reason)).unwrap_or_default();
        }
        for (d, score) in flags {
            let peak = seen.detectors.entry(d.to_string()).or_insert(0.0);
            *peak = peak.max(score);
        }
        seen.clusters.extend(clusters.into_iter().cloned());
    }

    fn flagged(&self) -> impl Iterator<Item = (&String, &Seen)> {
        self.accounts.iter().filter(|(_, s)| s.decision != Decision::Allow)
    }
}

/// How the two sides differ on one thing: all flagged accounts, one
/// detector's, or the raised clusters.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `flagged accounts`, a detector's name, or `campaign clusters`.
    pub what: String,
    /// Accounts (or clusters) the baseline flags.
    pub baseline: usize,
    /// Accounts (or clusters) the candidate flags.
    pub candidate: usize,
    /// In the candidate's and not the baseline's.
    pub newly: usize,
    /// In the baseline's and not the candidate's.
    pub no_longer: usize,
}

/// An account the sides disagree on.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// The account.
    pub account: String,
    /// The baseline's highest decision on it.
    pub baseline: Decision,
    /// Its peak combined score there; `None` where nothing flagged the
    /// account on that side (its scores there are not kept).
    pub baseline_score: Option<f64>,
    /// The candidate's highest decision on it.
    pub candidate: Decision,
    /// Its peak combined score there (`None` likewise).
    pub candidate_score: Option<f64>,
    /// Detectors that flag it on the side that flags it.
    pub detectors: Vec<String>,
    /// The record of that side's peak score, and its strongest reason.
    pub id: String,
    /// The strongest reason on that record.
    pub reason: String,
}

/// The whole comparison (`vigil replay --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Requests replayed.
    pub requests: u64,
    /// Flagged accounts first, then each detector, then clusters.
    pub rows: Vec<Row>,
    /// Accounts newly flagged, highest candidate score first.
    pub newly_flagged: Vec<Example>,
    /// Accounts no longer flagged, highest baseline score first.
    pub no_longer_flagged: Vec<Example>,
    /// Clusters only the candidate raised, with their accounts.
    pub new_clusters: Vec<(String, usize)>,
    /// Clusters only the baseline raised.
    pub lost_clusters: Vec<(String, usize)>,
    /// Flagged records (both sides together) of accounts a side did not
    /// keep because it held `max_accounts`: when not 0, the counts are
    /// incomplete (an account kept on one side only may show as a change).
    pub dropped: u64,
}

impl Comparison {
    /// Compares the sides, with up to `examples` accounts each way.
    pub fn new(base: &Side, cand: &Side, examples: usize) -> Self {
        let mut rows = vec![diff_row(
            "flagged accounts",
            base.flagged().map(|(a, _)| a).collect(),
            cand.flagged().map(|(a, _)| a).collect(),
        )];
        for d in base.detectors.union(&cand.detectors) {
            let by = |s: &Side| -> BTreeSet<String> {
                s.accounts.iter().filter(|(_, x)| x.detectors.contains_key(d)).map(|(a, _)| a.clone()).collect()
            };
            rows.push(diff_row(d, by(base).iter().collect(), by(cand).iter().collect()));
        }
        let clusters = |s: &Side| -> BTreeMap<String, usize> {
            let mut m = BTreeMap::new();
            for x in s.accounts.values() {
                for c in &x.clusters {
                    *m.entry(c.clone()).or_insert(0) += 1;
                }
            }
            m
        };
        let (bc, cc) = (clusters(base), clusters(cand));
        rows.push(diff_row("campaign clusters", bc.keys().collect(), cc.keys().collect()));
        let only = |a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>| -> Vec<(String, usize)> {
            let mut v: Vec<_> = a.iter().filter(|(k, _)| !b.contains_key(*k)).map(|(k, n)| (k.clone(), *n)).collect();
            v.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            v
        };
        Comparison {
            requests: base.requests.max(cand.requests),
            rows,
            newly_flagged: changed(base, cand, examples, false),
            no_longer_flagged: changed(cand, base, examples, true),
            new_clusters: only(&cc, &bc),
            lost_clusters: only(&bc, &cc),
            dropped: base.dropped + cand.dropped,
        }
    }

    /// The table a person reads.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut t = format!("{:<24} {:>9} {:>9} {:>7} {:>10}\n", "", "baseline", "candidate", "newly", "no longer");
        for r in &self.rows {
            let _ =
                writeln!(t, "{:<24} {:>9} {:>9} {:>7} {:>10}", r.what, r.baseline, r.candidate, r.newly, r.no_longer);
        }
        for (title, list) in [("newly flagged", &self.newly_flagged), ("no longer flagged", &self.no_longer_flagged)] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(t, "\n{title}, e.g.:");
            for e in list {
                let side = |d: Decision, s: Option<f64>| match s {
                    Some(s) => format!("{} {s:.2}", d.as_str()),
                    None => d.as_str().to_string(),
                };
                let _ = writeln!(
                    t,
                    "  {}: {} -> {} [{}] {} ({})",
                    e.account,
                    side(e.baseline, e.baseline_score),
                    side(e.candidate, e.candidate_score),
                    e.detectors.join(", "),
                    e.id,
                    e.reason
                );
            }
        }
        for (title, list) in [("new clusters", &self.new_clusters), ("clusters no longer raised", &self.lost_clusters)]
        {
            if !list.is_empty() {
                let names: Vec<String> = list.iter().take(5).map(|(c, n)| format!("{c} ({n} accounts)")).collect();
                let _ = writeln!(t, "\n{title}: {}{}", names.join(", "), if list.len() > 5 { ", ..." } else { "" });
            }
        }
        if self.dropped > 0 {
            let _ = writeln!(
                t,
                "\nincomplete: {} flagged records of accounts past a side's cap (server.max_cases) were not compared",
                self.dropped
            );
        }
        t
    }
}

fn diff_row(what: &str, base: BTreeSet<&String>, cand: BTreeSet<&String>) -> Row {
    Row {
        what: what.to_string(),
        baseline: base.len(),
        candidate: cand.len(),
        newly: cand.difference(&base).count(),
        no_longer: base.difference(&cand).count(),
    }
}

/// Accounts `to` flags and `from` does not, strongest first; `reverse`
/// when `to` is the baseline.
fn changed(from: &Side, to: &Side, n: usize, reverse: bool) -> Vec<Example> {
    let mut v: Vec<(&String, &Seen)> =
        to.flagged().filter(|(a, _)| from.accounts.get(*a).is_none_or(|s| s.decision == Decision::Allow)).collect();
    v.sort_by(|x, y| y.1.score.total_cmp(&x.1.score).then(x.0.cmp(y.0)));
    v.into_iter()
        .take(n)
        .map(|(a, s)| {
            let other = from.accounts.get(a);
            let (od, os) = other.map_or((Decision::Allow, None), |o| (o.decision, Some(o.score)));
            let mine = (s.decision, Some(s.score));
            let ((bd, bs), (cd, cs)) = if reverse { (mine, (od, os)) } else { ((od, os), mine) };
            Example {
                account: a.clone(),
                baseline: bd,
                baseline_score: bs,
                candidate: cd,
                candidate_score: cs,
                detectors: s.detectors.keys().cloned().collect(),
                id: s.id.clone(),
                reason: s.reason.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::manifest::Mode;
    use crate::score::combine::SignalOut;

    fn v(account: &str, score: f64, signals: &[(&str, f64, &[&str])]) -> Verdict {
        Verdict {
            id: format!("{account}-r"),
            account: account.into(),
            score,
            decision: if score >= 0.5 { Decision::Flag } else { Decision::Allow },
            signals: signals
                .iter()
                .map(|(p, s, labels)| SignalOut {
                    plugin: (*p).into(),
                    version: "1".into(),
                    digest: "d".into(),
                    mode: Mode::Enforce,
                    score: *s,
                    labels: labels.iter().map(|l| l.to_string()).collect(),
                    reason: format!("{p} said {s}"),
                    error: None,
                })
                .collect(),
        }
    }

    #[test]
    fn newly_and_no_longer_flagged_accounts_per_detector_and_cluster() {
        let (mut base, mut cand) = (Side::new(0.5, 100), Side::new(0.5, 100));
        // a: flagged by both; b: only by the candidate (its patched
        // detector); c: only by the baseline; d: nobody.
        for s in [&mut base, &mut cand] {
            s.observe(&v("a", 0.9, &[("x", 0.9, &[]), ("campaign", 0.6, &["campaign:a"])]));
            s.observe(&v("d", 0.1, &[("x", 0.1, &[])]));
        }
        base.observe(&v("b", 0.2, &[("x", 0.2, &[])]));
        cand.observe(&v("b", 0.7, &[("x", 0.7, &[]), ("campaign", 0.6, &["campaign:b"])]));
        base.observe(&v("c", 0.6, &[("y", 0.6, &[])]));
        cand.observe(&v("c", 0.3, &[("y", 0.3, &[])]));
        let c = Comparison::new(&base, &cand, 5);
        let row = |w: &str| c.rows.iter().find(|r| r.what == w).unwrap().clone();
        let flagged = row("flagged accounts");
        assert_eq!((flagged.baseline, flagged.candidate, flagged.newly, flagged.no_longer), (2, 2, 1, 1));
        let x = row("x");
        assert_eq!((x.baseline, x.candidate, x.newly, x.no_longer), (1, 2, 1, 0));
        let y = row("y");
        assert_eq!((y.baseline, y.candidate, y.newly, y.no_longer), (1, 0, 0, 1));
        assert_eq!(c.newly_flagged.len(), 1);
        let e = &c.newly_flagged[0];
        assert_eq!((e.account.as_str(), e.baseline, e.candidate), ("b", Decision::Allow, Decision::Flag));
        assert_eq!(
            (e.baseline_score, e.candidate_score, e.detectors.clone()),
            (None, Some(0.7), vec!["x".to_string()])
        );
        assert_eq!(c.no_longer_flagged[0].account, "c");
        assert_eq!(c.no_longer_flagged[0].baseline_score, Some(0.6));
        assert_eq!(c.new_clusters, vec![("campaign:b".to_string(), 1)]);
        assert!(c.lost_clusters.is_empty());
        let t = c.table();
        assert!(t.contains("newly flagged, e.g.:\n  b: allow -> flag 0.70 [x]"), "{t}");
    }

    #[test]
    fn accounts_past_the_cap_are_counted_not_compared() {
        let mut s = Side::new(0.5, 1);
        s.observe(&v("a", 0.9, &[]));
        s.observe(&v("b", 0.9, &[]));
        s.observe(&v("a", 0.95, &[]));
        s.observe(&v("b", 0.9, &[]));
        assert_eq!((s.accounts.len(), s.dropped, s.requests), (1, 2, 4), "records of b, not compared");
        assert_eq!(s.accounts["a"].score, 0.95);
        let c = Comparison::new(&s, &Side::new(0.5, 1), 5);
        assert_eq!(c.dropped, 2);
        assert!(c.table().contains("incomplete: 2 flagged records"), "{}", c.table());
    }
}
