//! Candidates in shadow: a plugin's candidate version scores every batch
//! beside the live set (on its own state), and its verdicts are what the
//! live ones would have been with the candidate in place of the live
//! version. Both go into a [`Side`] each, so the admin API can show
//! the accounts the candidate would newly flag, or stop flagging, on live
//! traffic before it is promoted. Nothing the candidate says reaches a
//! verdict.
//!
//! Compared before the campaign stage (its link graph is built from the
//! live verdicts only), so clusters are not compared here; `vigil replay`
//! compares them. Memory: two sides per candidate, each bounded as
//! [`crate::score::compare`] states.

use std::collections::HashMap;
use std::sync::Arc;

use crate::batch::Batch;
use crate::config::Scoring;
use crate::engine::worker::Outcome;
use crate::registry::LivePlugin;
use crate::score::combine::{PluginResult, Verdict, verdicts};
use crate::score::compare::{Comparison, Side};
use crate::util::{lock, now_ms};

/// One candidate's record since it went into shadow (or since the live
/// version last changed).
pub struct Tally {
    /// The live build compared against (none for a new plugin).
    pub live_digest: Option<Arc<str>>,
    /// The candidate's build.
    pub candidate_digest: Arc<str>,
    /// The candidate's version.
    pub candidate_version: Arc<str>,
    /// Since when, Unix milliseconds.
    pub since_ms: i64,
    /// Batches the candidate scored, and those it failed.
    pub batches: u64,
    /// Batches it failed on.
    pub errors: u64,
    live: Side,
    candidate: Side,
}

impl Tally {
    /// The accounts the sides differ on, with up to `examples` each way.
    pub fn comparison(&self, examples: usize) -> Comparison {
        Comparison::new(&self.live, &self.candidate, examples)
    }
}

/// Which tally a batch goes to: the plugin, the candidate's build, the live
/// build. Keyed by all three, a batch still in flight on an older snapshot
/// adds to the tally of what it was scored with, never resetting the
/// current one.
type Key = (Arc<str>, Arc<str>, Option<Arc<str>>);

/// Every candidate's tallies.
pub struct Shadows {
    tallies: std::sync::Mutex<HashMap<Key, Tally>>,
    scoring: Scoring,
    /// Accounts each side keeps (`server.max_cases`).
    max_accounts: usize,
}

impl Shadows {
    /// No candidates yet; verdicts under `scoring`.
    pub fn new(scoring: Scoring, max_accounts: usize) -> Self {
        Self { tallies: Default::default(), scoring, max_accounts }
    }

    /// Takes a batch: the live results and verdicts (before the campaign
    /// stage), and each candidate's outcome, in `shadows` order.
    pub(crate) fn observe(
        &self,
        batch: &Batch,
        results: &[PluginResult<'_>],
        live: &[Verdict],
        shadows: &[LivePlugin],
        outcomes: &[Outcome],
    ) {
        let (scoring, max_accounts) = (&self.scoring, self.max_accounts);
        for (shadow, outcome) in shadows.iter().zip(outcomes) {
            let cand = &shadow.worker.plugin;
            // The live set with the candidate in its plugin's place.
            let mut swapped: Vec<PluginResult<'_>> = Vec::with_capacity(results.len() + 1);
            let mut live_digest = None;
            for r in results {
                if r.plugin.name == cand.name {
                    live_digest = Some(r.plugin.digest.clone());
                } else {
                    swapped.push(PluginResult { plugin: r.plugin, mode: r.mode, result: r.result });
                }
            }
            swapped.push(PluginResult { plugin: cand, mode: shadow.mode, result: &outcome.result });
            let would = verdicts(batch, &swapped, scoring);
            let mut tallies = lock(&self.tallies);
            let key = (cand.name.clone(), cand.digest.clone(), live_digest.clone());
            let t = tallies.entry(key).or_insert_with(|| Tally {
                live_digest,
                candidate_digest: cand.digest.clone(),
                candidate_version: cand.version.clone(),
                since_ms: now_ms(),
                batches: 0,
                errors: 0,
                live: Side::new(scoring.flag_threshold, max_accounts),
                candidate: Side::new(scoring.flag_threshold, max_accounts),
            });
            t.batches += 1;
            t.errors += u64::from(outcome.result.is_err());
            for (l, c) in live.iter().zip(&would) {
                t.live.observe(l);
                t.candidate.observe(c);
            }
        }
    }

    /// The tally of `name`'s candidate build `candidate` against the live
    /// build `live`, if that pair has scored anything.
    pub fn get<T>(&self, name: &str, candidate: &str, live: Option<&str>, f: impl FnOnce(&Tally) -> T) -> Option<T> {
        let key: Key = (name.into(), candidate.into(), live.map(Into::into));
        lock(&self.tallies).get(&key).map(f)
    }

    /// Forgets every tally of `name` (its candidate was promoted).
    pub fn forget(&self, name: &str) {
        lock(&self.tallies).retain(|k, _| *k.0 != *name);
    }

    /// Keeps only the tallies of candidates still in shadow (`shadows`, a
    /// snapshot's): a removed candidate's memory goes with it.
    pub(crate) fn prune(&self, shadows: &[LivePlugin]) {
        let mut tallies = lock(&self.tallies);
        if !tallies.is_empty() {
            let current =
                |k: &Key| shadows.iter().any(|s| s.worker.plugin.name == k.0 && s.worker.plugin.digest == k.1);
            tallies.retain(|k, _| current(k));
        }
    }
}
