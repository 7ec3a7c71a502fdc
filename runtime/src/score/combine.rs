//! Signals -> verdicts: the weighted noisy-or of enforce-mode plugins, and a
//! decision by thresholds. Monitor-mode plugins are reported, never counted;
//! a failed plugin is reported with its error and counts as its failure
//! policy says.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::batch::Batch;
use crate::config::Scoring;
use crate::engine::Signal;
use crate::engine::worker::PluginVersion;
use crate::error::{ErrorKind, PluginError};
use crate::plugin::manifest::{FailurePolicy, Mode};

/// What a verdict says to do with a request, by its combined score;
/// ordered from the mildest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Below the flag threshold.
    Allow,
    /// From the flag threshold, below the block threshold.
    Flag,
    /// From the block threshold.
    Block,
}

impl Decision {
    pub(crate) fn from_score(score: f64, s: &Scoring) -> Self {
        if score >= s.block_threshold {
            Decision::Block
        } else if score >= s.flag_threshold {
            Decision::Flag
        } else {
            Decision::Allow
        }
    }

    /// As verdicts spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Flag => "flag",
            Decision::Block => "block",
        }
    }
}

/// The verdict on one request, as `vigil score` and `POST /v1/score` write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// The request's id.
    pub id: String,
    /// The request's account.
    pub account: String,
    /// The weighted noisy-or of the enforce-mode signals, to 6 decimals.
    pub score: f64,
    /// What `score` means under the thresholds.
    pub decision: Decision,
    /// One per live plugin, monitor mode and failures included.
    pub signals: Vec<SignalOut>,
}

/// One plugin's signal on one request, as a verdict reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignalOut {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// Its version, as its manifest gives it.
    pub version: Arc<str>,
    /// Which build of the plugin (wasm + manifest) this came from.
    pub digest: Arc<str>,
    /// The plugin's mode when the batch was scored.
    pub mode: Mode,
    /// The plugin's score (or what a failure counts as), to 6 decimals.
    pub score: f64,
    /// The plugin's labels (none on a failure).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The plugin's reason (empty on a failure).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Why the plugin failed on the batch, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<SignalError>,
}

/// A plugin's failure, as a signal reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignalError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

/// One plugin's result on a batch, with the version it came from.
pub struct PluginResult<'a> {
    pub(crate) plugin: &'a PluginVersion,
    pub(crate) mode: Mode,
    pub(crate) result: &'a Result<Vec<Signal>, PluginError>,
}

// Six decimals are plenty for a score and keep f32 noise (0.19999999) out
// of the output.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The weighted noisy-or `1 - prod(1 - w_i * s_i)`.
pub fn noisy_or(parts: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    let keep: f64 = parts.into_iter().map(|(w, s)| 1.0 - (w * s).clamp(0.0, 1.0)).product();
    (1.0 - keep).clamp(0.0, 1.0)
}

pub(crate) fn verdicts(batch: &Batch, results: &[PluginResult<'_>], scoring: &Scoring) -> Vec<Verdict> {
    (0..batch.len())
        .map(|i| {
            let rec = &batch.records[i];
            let mut parts = Vec::with_capacity(results.len());
            let signals = results
                .iter()
                .map(|r| {
                    let p = r.plugin;
                    let m = &p.manifest.raw;
                    let (score, labels, reason, error) = match r.result {
                        Ok(sigs) => {
                            let s = &sigs[i];
                            (s.score, s.labels.clone(), s.reason.clone(), None)
                        }
                        Err(e) => {
                            let counted = match m.failure.policy {
                                FailurePolicy::Open => 0.0,
                                FailurePolicy::Closed => m.failure.score as f32,
                            };
                            let err = SignalError { kind: e.kind, message: e.message.clone() };
                            (counted, Vec::new(), String::new(), Some(err))
                        }
                    };
                    let score = round6(f64::from(score));
                    if r.mode == Mode::Enforce {
                        parts.push((m.weight, score));
                    }
                    SignalOut {
                        plugin: p.name.clone(),
                        version: p.version.clone(),
                        digest: p.digest.clone(),
                        mode: r.mode,
                        score,
                        labels,
                        reason,
                        error,
                    }
                })
                .collect();
            let score = round6(noisy_or(parts));
            Verdict {
                id: rec.id.clone(),
                account: rec.account.clone(),
                score,
                decision: Decision::from_score(score, scoring),
                signals,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noisy_or_matches_the_spec() {
        assert_eq!(noisy_or([]), 0.0);
        assert!((noisy_or([(1.0, 0.9)]) - 0.9).abs() < 1e-12);
        // 1 - (1 - 0.5)(1 - 0.5 * 0.8) = 1 - 0.5 * 0.6 = 0.7
        assert!((noisy_or([(1.0, 0.5), (0.5, 0.8)]) - 0.7).abs() < 1e-12);
        assert_eq!(noisy_or([(1.0, 1.0), (1.0, 0.2)]), 1.0);
        assert_eq!(noisy_or([(0.0, 1.0)]), 0.0);
    }

    #[test]
    fn thresholds() {
        let s = Scoring::default();
        assert_eq!(Decision::from_score(0.49, &s), Decision::Allow);
        assert_eq!(Decision::from_score(0.5, &s), Decision::Flag);
        assert_eq!(Decision::from_score(0.9, &s), Decision::Block);
    }
}
