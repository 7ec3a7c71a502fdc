//! Verdicts + truth -> the numbers a security team decides by, per detector
//! and combined, at the default thresholds (docs/contract.md): account-level recall,
//! benign-account false-positive rate, precision, and how many requests a
//! campaign account sends before its first flag. Tuning and held-out
//! template families are reported side by side.

use std::collections::HashMap;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::population::Truth;

#[derive(Deserialize)]
struct VerdictLine {
    account: String,
    decision: String,
    #[serde(default)]
    signals: Vec<SignalLine>,
}

#[derive(Deserialize)]
struct SignalLine {
    plugin: String,
    #[serde(default)]
    score: f64,
}

const COMBINED: &str = "combined";

#[derive(Default)]
struct AccountSeen {
    requests: u32,
    /// Per detector (index into `detectors`): requests sent up to and
    /// including the first flagged one.
    first_flag: Vec<Option<u32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub detector: String,
    /// `all`, `tuning`, `held-out`, or a campaign id.
    pub set: String,
    pub campaign_accounts: usize,
    pub flagged_campaign_accounts: usize,
    pub recall: f64,
    pub benign_accounts: usize,
    pub flagged_benign_accounts: usize,
    pub false_positive_rate: f64,
    pub precision: f64,
    /// Requests a campaign account sent before and including its first flag.
    pub requests_to_first_flag_p50: Option<u32>,
    pub requests_to_first_flag_p90: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PersonaRow {
    pub persona: String,
    pub accounts: usize,
    pub flagged: usize,
    pub rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub flag_threshold: f64,
    pub requests: u64,
    pub accounts_seen: usize,
    /// Accounts in the verdicts that the truth file does not know.
    pub unknown_accounts: usize,
    pub rows: Vec<Row>,
    /// Combined false positives by benign persona.
    pub personas: Vec<PersonaRow>,
}

pub fn evaluate(verdicts: impl BufRead, truth: &HashMap<String, Truth>, flag_threshold: f64) -> anyhow::Result<Report> {
    let mut detectors: Vec<String> = vec![COMBINED.to_string()];
    let mut seen: HashMap<String, AccountSeen> = HashMap::new();
    let mut requests = 0u64;
    for (n, line) in verdicts.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: VerdictLine =
            serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("verdicts line {}: {e}", n + 1))?;
        requests += 1;
        let acc = seen.entry(v.account).or_default();
        acc.requests += 1;
        let mut flagged: Vec<usize> = Vec::new();
        if v.decision != "allow" {
            flagged.push(0);
        }
        for s in &v.signals {
            let i = match detectors.iter().position(|d| *d == s.plugin) {
                Some(i) => i,
                None => {
                    detectors.push(s.plugin.clone());
                    detectors.len() - 1
                }
            };
            if s.score >= flag_threshold {
                flagged.push(i);
            }
        }
        if acc.first_flag.len() < detectors.len() {
            acc.first_flag.resize(detectors.len(), None);
        }
        for i in flagged {
            if acc.first_flag[i].is_none() {
                acc.first_flag[i] = Some(acc.requests);
            }
        }
    }

    let unknown_accounts = seen.keys().filter(|a| !truth.contains_key(*a)).count();
    let mut sets: Vec<String> = vec!["all".into(), "tuning".into(), "held-out".into()];
    let mut campaigns: Vec<String> = truth.values().filter_map(|t| t.campaign.clone()).collect();
    campaigns.sort();
    campaigns.dedup();
    sets.extend(campaigns);

    let benign: Vec<(&String, &AccountSeen)> =
        seen.iter().filter(|(a, _)| truth.get(*a).is_some_and(|t| t.label == "benign")).collect();
    let mut rows = Vec::new();
    for (di, d) in detectors.iter().enumerate() {
        let flagged_benign = benign.iter().filter(|(_, s)| s.first_flag.get(di).copied().flatten().is_some()).count();
        for set in &sets {
            let members: Vec<&AccountSeen> = seen
                .iter()
                .filter_map(|(a, s)| {
                    let t = truth.get(a)?;
                    let inside = t.label == "campaign"
                        && match set.as_str() {
                            "all" => true,
                            "tuning" | "held-out" => t.split.as_deref() == Some(set.as_str()),
                            c => t.campaign.as_deref() == Some(c),
                        };
                    inside.then_some(s)
                })
                .collect();
            if members.is_empty() {
                continue;
            }
            let mut to_flag: Vec<u32> =
                members.iter().filter_map(|s| s.first_flag.get(di).copied().flatten()).collect();
            to_flag.sort_unstable();
            let flagged = to_flag.len();
            let pct =
                |p: f64| (!to_flag.is_empty()).then(|| to_flag[((to_flag.len() - 1) as f64 * p).round() as usize]);
            rows.push(Row {
                detector: d.clone(),
                set: set.clone(),
                campaign_accounts: members.len(),
                flagged_campaign_accounts: flagged,
                recall: flagged as f64 / members.len() as f64,
                benign_accounts: benign.len(),
                flagged_benign_accounts: flagged_benign,
                false_positive_rate: flagged_benign as f64 / benign.len().max(1) as f64,
                precision: if flagged + flagged_benign == 0 {
                    0.0
                } else {
                    flagged as f64 / (flagged + flagged_benign) as f64
                },
                requests_to_first_flag_p50: pct(0.5),
                requests_to_first_flag_p90: pct(0.9),
            });
        }
    }

    let mut personas: HashMap<String, (usize, usize)> = HashMap::new();
    for (a, s) in &benign {
        let p = truth[*a].persona.clone().unwrap_or_default();
        let e = personas.entry(p).or_default();
        e.0 += 1;
        e.1 += usize::from(s.first_flag.first().copied().flatten().is_some());
    }
    let mut personas: Vec<PersonaRow> = personas
        .into_iter()
        .map(|(persona, (accounts, flagged))| PersonaRow {
            persona,
            accounts,
            flagged,
            rate: flagged as f64 / accounts as f64,
        })
        .collect();
    personas.sort_by(|a, b| a.persona.cmp(&b.persona));

    Ok(Report { flag_threshold, requests, accounts_seen: seen.len(), unknown_accounts, rows, personas })
}

/// Reads a truth file (NDJSON of `Truth`).
pub fn read_truth(r: impl BufRead) -> anyhow::Result<HashMap<String, Truth>> {
    let mut m = HashMap::new();
    for (n, line) in r.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let t: Truth = serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("truth line {}: {e}", n + 1))?;
        m.insert(t.account.clone(), t);
    }
    Ok(m)
}

impl Report {
    /// A table for people.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} requests, {} accounts; flag threshold {} (the default)\n\n",
            self.requests, self.accounts_seen, self.flag_threshold
        );
        s += &format!(
            "{:<24} {:<9} {:>7} {:>9} {:>10} {:>9} {:>8} {:>8}\n",
            "detector", "set", "recall", "FPR", "precision", "accounts", "req p50", "req p90"
        );
        let opt = |v: Option<u32>| v.map_or("-".to_string(), |x| x.to_string());
        for r in &self.rows {
            s += &format!(
                "{:<24} {:<9} {:>7.3} {:>8.3}% {:>10.3} {:>9} {:>8} {:>8}\n",
                r.detector,
                r.set,
                r.recall,
                r.false_positive_rate * 100.0,
                r.precision,
                r.campaign_accounts,
                opt(r.requests_to_first_flag_p50),
                opt(r.requests_to_first_flag_p90)
            );
        }
        s += "\ncombined false positives by benign persona:\n";
        for p in &self.personas {
            s += &format!(
                "  {:<18} {:>6} accounts {:>5} flagged ({:.3}%)\n",
                p.persona,
                p.accounts,
                p.flagged,
                p.rate * 100.0
            );
        }
        if self.unknown_accounts > 0 {
            s += &format!("\nwarning: {} accounts in the verdicts are not in the truth file\n", self.unknown_accounts);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(account: &str, label: &str, campaign: Option<&str>, split: Option<&str>) -> (String, Truth) {
        (
            account.into(),
            Truth {
                account: account.into(),
                label: label.into(),
                persona: (label == "benign").then(|| "casual".into()),
                campaign: campaign.map(Into::into),
                family: None,
                kind: None,
                split: split.map(Into::into),
                styles: vec![],
            },
        )
    }

    #[test]
    fn recall_fpr_precision_and_requests_to_flag() {
        let truth: HashMap<String, Truth> = [
            t("c1", "campaign", Some("x"), Some("tuning")),
            t("c2", "campaign", Some("x"), Some("tuning")),
            t("c3", "campaign", Some("y"), Some("held-out")),
            t("b1", "benign", None, None),
            t("b2", "benign", None, None),
            t("b3", "benign", None, None),
            t("b4", "benign", None, None),
        ]
        .into_iter()
        .collect();
        let v = |a: &str, d: &str, s: f64| {
            format!(r#"{{"account":"{a}","decision":"{d}","signals":[{{"plugin":"p","score":{s}}}]}}"#)
        };
        let lines = [
            v("c1", "allow", 0.1),
            v("c1", "allow", 0.6), // p flags c1 at request 2
            v("c1", "flag", 0.6),  // combined flags c1 at request 3
            v("c2", "allow", 0.0),
            v("c3", "block", 0.2),
            v("b1", "flag", 0.0),
            v("b2", "allow", 0.0),
            v("b3", "allow", 0.0),
            v("b4", "allow", 0.0),
        ]
        .join("\n");
        let r = evaluate(lines.as_bytes(), &truth, 0.5).unwrap();
        let row = |d: &str, s: &str| r.rows.iter().find(|x| x.detector == d && x.set == s).unwrap().clone();
        let all = row("combined", "all");
        assert_eq!((all.campaign_accounts, all.flagged_campaign_accounts), (3, 2));
        assert!((all.recall - 2.0 / 3.0).abs() < 1e-9);
        assert!((all.false_positive_rate - 0.25).abs() < 1e-9);
        assert!((all.precision - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(all.requests_to_first_flag_p50, Some(3));
        assert_eq!(row("combined", "tuning").recall, 0.5);
        assert_eq!(row("combined", "held-out").recall, 1.0);
        let p = row("p", "all");
        assert_eq!(p.flagged_campaign_accounts, 1);
        assert_eq!(p.requests_to_first_flag_p50, Some(2));
        assert_eq!(p.flagged_benign_accounts, 0);
        assert_eq!(r.personas[0].flagged, 1);
    }
}
